//! A linear step: public terms (coefficients times shared wires) computed locally, and
//! private terms (an opened wire times a server weight) from the dealer's correlations
//! `A_open * B_weight`: the server adds `(x - A) B + x_s W`, the client `x E` with
//! `E = W - B` from setup. Under exact truncation its output stays at `2f` until a
//! truncation step lists it; a step of only whole public coefficients keeps its scale.

use super::state::State;
use super::*;
use crate::arith::fixed::encode_at;
use crate::arith::matmul::matmul;
use crate::arith::ring;
use crate::gates::keys::Keys;
use crate::plan::layout::select_rows;
use crate::plan::shapes::private_terms;
use crate::plan::{Term, WeightId, WireId, WIDE_LOGIT_BITS};
use crate::protocols::correlations::share_or_zero;

pub(super) struct Linear<'a> {
    pub step: &'a Step,
    pub out: WireId,
    pub terms: &'a [Term],
    pub bias: Option<WeightId>,
    pub shift: u32,
}

impl Linear<'_> {
    /// The private terms as `(open, weight, cls)`, in term order.
    fn private(&self) -> impl Iterator<Item = (usize, WeightId, bool)> + '_ {
        self.terms.iter().filter_map(|t| match t {
            Term::Private { open, weight, cls } => Some((*open, *weight, *cls)),
            Term::Public { .. } => None,
        })
    }
}

impl Gate for Linear<'_> {
    fn check(&self, plan: &SecurePlan) -> Result<(), String> {
        wires_exist(plan, &[self.out])?;
        let (f, shift) = (plan.frac_bits, self.shift);
        let keeps = self.step.keeps_scale();
        let public = self.private().next().is_none();
        let most = if keeps { 2 } else { 1 } * f;
        let finer = match plan.wide_linear(self.terms) {
            true => WIDE_LOGIT_BITS,
            false => f,
        };
        let precise =
            !public && shift == finer && plan.exact_truncation && plan.only_revealed(self.out);
        if shift != 0 && !(public && shift % f == 0 && shift <= most) && !precise {
            return Err(format!("a linear step at {shift} bits above f"));
        }
        let weight = |w: WeightId| match w < plan.weights.len() {
            true => Ok(()),
            false => Err(format!("step names weight {w} of {}", plan.weights.len())),
        };
        self.bias.map_or(Ok(()), weight)?;
        for t in self.terms {
            match *t {
                Term::Public { wire, .. } => wires_exist(plan, &[wire])?,
                Term::Private {
                    open, weight: w, ..
                } => {
                    weight(w)?;
                    if open >= plan.openings.len() {
                        return Err(format!("term opens {open}"));
                    }
                }
            }
        }
        Ok(())
    }

    fn material_bytes(&self, plan: &SecurePlan, party: Party) -> u64 {
        Corrections::of(party).ring(private_terms(plan, self.terms).sum())
    }

    fn draw(&self, plan: &SecurePlan, party: Party, prg: &mut Prg) -> StepMat {
        StepMat::Linear(
            private_terms(plan, self.terms)
                .map(|n| share_or_zero(prg, party, n))
                .collect(),
        )
    }

    fn fill(&self, dealer: &mut Dealing<'_>, m: [&mut StepMat; 2]) -> Result<(), String> {
        let [StepMat::Linear(s0), StepMat::Linear(s1)] = m else {
            return Err(mismatch("linear"));
        };
        let plan = dealer.plan;
        for ((open, weight, cls), (x0, x1)) in self.private().zip(s0.iter().zip(s1.iter_mut())) {
            let (r, c) = plan.opening_shape(open);
            let a = if cls {
                ring::first_row(&dealer.open_masks[open], c)
            } else {
                dealer.open_masks[open].clone()
            };
            let rows = if cls { 1 } else { r };
            let ws = plan.weights[weight];
            let b = dealer.masks.weight_mask(weight, ws.rows * ws.cols);
            *x1 = ring::sub(&matmul(&a, &b, rows, ws.rows, ws.cols), x0);
        }
        Ok(())
    }

    fn run(
        &self,
        st: &mut State<'_>,
        _: &mut dyn Channel,
        mat: StepMat,
    ) -> Result<Option<Vec<u64>>, GateError> {
        let StepMat::Linear(ab) = mat else {
            return Err(bad("linear correlations"));
        };
        let keeps = self.step.keeps_scale();
        // A step of server weights lands at its output scale directly (its weights and
        // coefficients encoded for it, [`crate::plan::shapes::weight_bits`]).
        let private = self.private().next().is_some();
        let f = st.fx.frac_bits;
        let coef_bits = match private {
            true => st.plan.linear_out_bits(self.terms, self.shift) - f,
            false => f,
        };
        let w = &st.plan.wires[self.out];
        let mut acc = vec![0u64; w.rows * w.cols];
        let mut ab = ab.into_iter();
        for t in self.terms {
            match *t {
                Term::Public { wire, rows, coef } => {
                    let c = match keeps {
                        true => coef as i64 as u64,
                        false => encode_at(coef, coef_bits),
                    };
                    ring::add_assign(&mut acc, &ring::scale(&st.rows_of(wire, rows), c));
                }
                Term::Private { open, weight, cls } => {
                    let corr = ab
                        .next()
                        .ok_or_else(|| bad("one correlation per private term"))?;
                    private_term(st, (open, weight, cls), &corr, &mut acc)?;
                }
            }
        }
        if let (Some(b), Keys::Server(k)) = (self.bias, &st.keys) {
            // A public step's bias follows its inputs' shift; a step of server weights
            // has it encoded at its output scale.
            let lift = if private { 0 } else { self.shift };
            let b = ring::scale(&k.w[b], 1 << lift);
            for row in acc.chunks_mut(w.cols) {
                ring::add_assign(row, &b);
            }
        }
        st.shares[self.out] = Some(match keeps {
            true => acc,
            false => st.trunc_out(acc),
        });
        Ok(None)
    }

    fn meter(&self, plan: &SecurePlan, zero: &[bool], m: &mut dyn Meter) {
        let n_out = size(plan, self.out) as f64;
        for p in Party::BOTH {
            m.elem(p, 2.0 * n_out); // accumulator, truncation
            if self.bias.is_some() && p == Party::Server {
                m.elem(p, n_out);
            }
        }
        for t in self.terms {
            match *t {
                Term::Public { .. } => {
                    for p in Party::BOTH {
                        m.elem(p, 3.0 * n_out);
                    }
                }
                Term::Private { open, weight, cls } => {
                    let (r, _) = plan.opening_shape(open);
                    let rows = if cls { 1 } else { r };
                    let ws = plan.weights[weight];
                    let wire = plan.openings[open].wire;
                    let copies = (r * plan.wires[wire].cols) as f64;
                    for p in Party::BOTH {
                        m.elem(p, copies + 2.0 * n_out);
                        m.matmul(p, rows, ws.rows, ws.cols);
                    }
                    if !zero[wire] {
                        m.elem(Party::Server, copies + n_out);
                        m.matmul(Party::Server, rows, ws.rows, ws.cols);
                    }
                }
            }
        }
    }

    fn dealer_work(&self, plan: &SecurePlan, w: &mut DealerWork) {
        for (open, weight, cls) in self.private() {
            let (r, _) = plan.opening_shape(open);
            let rows = if cls { 1 } else { r };
            let ws = plan.weights[weight];
            w.ops += 2.0 * (rows * ws.rows * ws.cols) as f64;
            w.words += (ws.rows * ws.cols + 2 * rows * ws.cols) as f64;
        }
    }

    fn plain(&self, ev: &mut plain::Values<'_>) {
        let w = &ev.plan.wires[self.out];
        let mut acc = crate::arith::tensor::Mat::zeros(w.rows, w.cols);
        for t in self.terms {
            let part = match *t {
                Term::Public { wire, rows, coef } => {
                    select_rows(&ev.get(wire), rows).map(|v| v * coef)
                }
                Term::Private { open, weight, cls } => {
                    let op = &ev.plan.openings[open];
                    let mut x = select_rows(&ev.get(op.wire), op.rows);
                    if cls {
                        x = x.rows_range(0, 1);
                    }
                    x.matmul(&ev.weights.mats[weight])
                }
            };
            acc = acc.add(&part);
        }
        if let Some(b) = self.bias {
            acc = acc.add_row(&ev.weights.mats[b].data);
        }
        ev.set(self.out, acc);
    }
}

/// Adds one party's share of a private term `x W` (the opening's rows, or its first row
/// for a class-token term) to `acc`, with the dealer's correlation `corr` of its shape.
fn private_term(
    st: &State<'_>,
    (open, weight, cls): (usize, WeightId, bool),
    corr: &[u64],
    acc: &mut [u64],
) -> Result<(), GateError> {
    let op = &st.plan.openings[open];
    let ws = st.plan.weights[weight];
    let rows = if cls {
        1
    } else {
        op.rows.count(st.plan.wires[op.wire].rows)
    };
    if corr.len() != rows * ws.cols {
        return Err(bad("correlations of the term's shape"));
    }
    ring::add_assign(acc, corr);
    let cut = |v: Vec<u64>| if cls { v[..ws.rows].to_vec() } else { v };
    match &st.keys {
        Keys::Client(k) => {
            let x = cut(st.rows_of(op.wire, op.rows));
            let e = k.e[weight].as_ref().expect("masked weight");
            ring::add_assign(acc, &matmul(&x, e, rows, ws.rows, ws.cols));
        }
        Keys::Server(k) => {
            let m = cut(st.opened[open].clone().expect("opened before use"));
            let b = k.b[weight].as_ref().expect("masked weight");
            ring::add_assign(acc, &matmul(&m, b, rows, ws.rows, ws.cols));
            if !st.zero[op.wire] {
                let x = cut(st.rows_of(op.wire, op.rows));
                ring::add_assign(acc, &matmul(&x, &k.w[weight], rows, ws.rows, ws.cols));
            }
        }
    }
    Ok(())
}
