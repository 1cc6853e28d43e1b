//! The online phase: both parties walk the same `SecurePlan`, each with its half of the
//! dealer material, exchanging only masked values over a [`Channel`]. The client ends
//! with the logits; the server learns nothing.

use std::time::Instant;

use crate::arith::fixed::{encode_at, Fixed};
use crate::arith::matmul::matmul;
use crate::arith::ring;
use crate::arith::tensor::Mat;
use crate::party::Party;
use crate::plan::layout::{head_assemble, head_operands, Grid};
use crate::plan::shapes::{head_shapes, masked_weights, weight_bits};
use crate::plan::*;
use crate::preprocessing::dealer::ModelMasks;
use crate::preprocessing::material::{CmpMat, Source, StepMat, Triple};
use crate::protocols::compare::{check_cmp, check_relu, compare, compare_carrying, relu};
use crate::protocols::fused::{self, PairMat, SquareMat};
use crate::protocols::open_both;
use crate::protocols::trunc;
use crate::protocols::trunc::TruncMat;
use crate::transport::{Channel, ChannelExt, MsgKind, TransportError};

mod norm;
mod setup;
use norm::{FusedNorm, LnError};
pub use setup::{
    client_setup, client_setup_message, send_setup, server_setup, sync, ClientKeys, Keys,
    ServerKeys,
};

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("step {index} ({name}): {source}")]
    Transport {
        index: usize,
        name: &'static str,
        #[source]
        source: TransportError,
    },
    #[error("setup: {0}")]
    Setup(#[source] TransportError),
    #[error("dealer material does not fit the plan: {0}")]
    Material(String),
    #[error("bad input: {0}")]
    Input(String),
}

/// Measured cost of one plan step on this party's channel.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepTrace {
    pub name: &'static str,
    pub shape: String,
    /// Bytes on the wire during the step, both directions, headers included.
    pub bytes: u64,
    pub rounds: u64,
    pub seconds: f64,
}

struct State<'a> {
    p: Party,
    fx: Fixed,
    plan: &'a SecurePlan,
    keys: Keys<'a>,
    shares: Vec<Option<Vec<u64>>>,
    /// Wires whose server share is known to be zero (client inputs).
    zero: Vec<bool>,
    opened: Vec<Option<Vec<u64>>>,
}

type StepResult<T> = Result<T, TransportError>;

/// An element-wise product `a * b`: `(a, a_cols, b, b_cols, rows)`, a 1-column side broadcast.
type MulOp<'a> = (&'a [u64], usize, &'a [u64], usize, usize);

impl State<'_> {
    fn share(&self, w: WireId) -> &[u64] {
        self.shares[w]
            .as_deref()
            .expect("plan computes wires before use")
    }

    fn rows_of(&self, w: WireId, rows: Rows) -> Vec<u64> {
        let s = self.share(w);
        match rows {
            Rows::All => s.to_vec(),
            Rows::Cls => s[..self.plan.wires[w].cols].to_vec(),
        }
    }

    fn trunc(&self, mut v: Vec<u64>) -> Vec<u64> {
        self.fx.truncate_shares(&mut v, self.p);
        v
    }

    /// Truncation where a step's output is final: local, or left at `2f` for a later
    /// `Truncate` step under exact truncation.
    fn trunc_out(&self, v: Vec<u64>) -> Vec<u64> {
        match self.plan.exact_truncation {
            true => v,
            false => self.trunc(v),
        }
    }

    /// Truncation by `f` inside a step: local, or exact with the next of `mats`.
    fn trunc_now(
        &self,
        chan: &mut dyn Channel,
        v: Vec<u64>,
        mats: &mut std::slice::Iter<'_, TruncMat>,
    ) -> Result<Vec<u64>, LnError> {
        self.trunc_by(chan, v, mats, self.fx.frac_bits)
    }

    /// [`Self::trunc_now`] by `shift` bits.
    fn trunc_by(
        &self,
        chan: &mut dyn Channel,
        mut v: Vec<u64>,
        mats: &mut std::slice::Iter<'_, TruncMat>,
        shift: u32,
    ) -> Result<Vec<u64>, LnError> {
        if !self.plan.exact_truncation {
            v.iter_mut()
                .for_each(|x| *x = crate::arith::fixed::truncate_share_by(*x, self.p, shift));
            return Ok(v);
        }
        let m = mats
            .next()
            .filter(|m| m.mask.len() == v.len() && m.gamma.len() == v.len() && m.bits == shift)
            .ok_or_else(|| {
                LnError::M(format!(
                    "truncation material for {} values by {shift} bits",
                    v.len()
                ))
            })?;
        Ok(trunc::truncate(chan, self.p, &v, m)?)
    }

    /// Party 0 adds public constants.
    fn konst(&self, c: u64) -> u64 {
        if self.p == Party::Client {
            c
        } else {
            0
        }
    }

    fn grid(&self, w: WireId) -> Grid<u64> {
        Grid {
            rows: self.plan.wires[w].rows,
            cols: self.plan.wires[w].cols,
            data: self.share(w).to_vec(),
        }
    }

    fn open_both(&self, chan: &mut dyn Channel, mine: Vec<u64>) -> StepResult<Vec<u64>> {
        open_both(chan, mine)
    }

    /// Element-wise Beaver products `a_i * b_i` (a side with 1 column broadcasts), all
    /// opened in one exchange; results at `2f` (the caller truncates).
    fn mul_many(
        &self,
        chan: &mut dyn Channel,
        ops: &[MulOp<'_>],
        triples: &[Triple],
    ) -> StepResult<Vec<Vec<u64>>> {
        let mut msg = Vec::new();
        for ((a, _, b, _, _), t) in ops.iter().zip(triples) {
            msg.extend(ring::sub(a, &t.a));
            msg.extend(ring::sub(b, &t.b));
        }
        let open = self.open_both(chan, msg)?;
        let mut at = 0;
        let mut out = Vec::new();
        for (&(a, ac, b, bc, rows), t) in ops.iter().zip(triples) {
            let e = &open[at..at + a.len()];
            let f = &open[at + a.len()..at + a.len() + b.len()];
            at += a.len() + b.len();
            let mut z = ring::add(
                &ring::mul_bcast(e, ac, &t.b, bc, rows),
                &ring::mul_bcast(&t.a, ac, f, bc, rows),
            );
            ring::add_assign(&mut z, &t.c);
            if self.p == Party::Client {
                ring::add_assign(&mut z, &ring::mul_bcast(e, ac, f, bc, rows));
            }
            out.push(z);
        }
        Ok(out)
    }

    /// A piecewise-linear function of shared `v` (at `f` bits) from one comparison
    /// opening: `a_0 + s_0 v + sum_k [v >= t_k] (da_k + ds_k v)`, slopes at `slope_bits`
    /// and the result at `f + slope_bits`. The segments are encoded first and
    /// differenced as ring elements, so the differences telescope exactly to the active
    /// segment's encoding.
    fn piecewise(
        &self,
        chan: &mut dyn Channel,
        v: &[u64],
        (ts, segs): (&[f64], &[(f64, f64)]),
        slope_bits: u32,
        cmp: &CmpMat,
    ) -> StepResult<Vec<u64>> {
        let f = self.fx.frac_bits;
        Ok(self
            .piecewise_at(chan, (v, f), (ts, segs), slope_bits, cmp, &[])?
            .0)
    }

    /// [`Self::piecewise`] of `v` at `v_bits` fractional bits (the result at
    /// `v_bits + slope_bits`), its opening carrying `rider` ([`compare_carrying`]).
    fn piecewise_at(
        &self,
        chan: &mut dyn Channel,
        (v, v_bits): (&[u64], u32),
        (ts, segs): (&[f64], &[(f64, f64)]),
        slope_bits: u32,
        cmp: &CmpMat,
        rider: &[u8],
    ) -> StepResult<(Vec<u64>, Vec<u8>)> {
        let segs: Vec<(u64, u64)> = segs
            .iter()
            .map(|&(a, s)| (encode_at(a, v_bits + slope_bits), encode_at(s, slope_bits)))
            .collect();
        let enc_t: Vec<u64> = ts.iter().map(|&t| encode_at(t, v_bits)).collect();
        let (bits, theirs) = compare_carrying(self.p, chan, v, &enc_t, cmp, rider)?;
        let y = v
            .iter()
            .zip(&bits)
            .map(|(&vi, row)| {
                let (a0, s0) = segs[0];
                let mut acc = self.konst(a0).wrapping_add(vi.wrapping_mul(s0));
                for (k, &(d, dv)) in row.iter().enumerate() {
                    let da = segs[k + 1].0.wrapping_sub(segs[k].0);
                    let ds = segs[k + 1].1.wrapping_sub(segs[k].1);
                    acc = acc
                        .wrapping_add(d.wrapping_mul(da))
                        .wrapping_add(dv.wrapping_mul(ds));
                }
                acc
            })
            .collect();
        Ok((y, theirs))
    }

    /// Row maxima of `x` (`rows` rows) by a tree: at each level the columns pair up,
    /// `max(a, b) = b + [a - b >= 0] (a - b)` from one comparison of the differences
    /// (no product: the comparison gives `d (a - b)` itself); an odd last column waits.
    fn row_max(
        &self,
        chan: &mut dyn Channel,
        mut x: Vec<u64>,
        rows: usize,
        levels: &[CmpMat],
    ) -> StepResult<Vec<u64>> {
        let mut w = x.len() / rows;
        for m in levels {
            let half = w / 2;
            let diff: Vec<u64> = (0..rows * half)
                .map(|i| {
                    let (r, j) = (i / half, i % half);
                    x[r * w + 2 * j].wrapping_sub(x[r * w + 2 * j + 1])
                })
                .collect();
            let d = self.compare(chan, &diff, &[0], m)?;
            let next = w.div_ceil(2);
            x = (0..rows * next)
                .map(|i| {
                    let (r, j) = (i / next, i % next);
                    match j < half {
                        true => x[r * w + 2 * j + 1].wrapping_add(d[r * half + j][0].1),
                        false => x[r * w + w - 1],
                    }
                })
                .collect();
            w = next;
        }
        Ok(x)
    }

    /// Element-wise `x^2` from a square pair `(a, a^2)`: open `e = x - a`, then
    /// `x^2 = e^2 + 2 e a + a^2` (at `2f` bits; the caller truncates).
    fn square(&self, chan: &mut dyn Channel, xs: &[u64], t: &Triple) -> StepResult<Vec<u64>> {
        let e = self.open_both(chan, ring::sub(xs, &t.a))?;
        let mut sq: Vec<u64> = e
            .iter()
            .zip(&t.a)
            .map(|(e, a)| 2u64.wrapping_mul(e.wrapping_mul(*a)))
            .collect();
        ring::add_assign(&mut sq, &t.c);
        if self.p == Party::Client {
            ring::add_assign(
                &mut sq,
                &e.iter().map(|e| e.wrapping_mul(*e)).collect::<Vec<_>>(),
            );
        }
        Ok(sq)
    }

    fn compare(
        &self,
        chan: &mut dyn Channel,
        v: &[u64],
        thresholds: &[u64],
        m: &CmpMat,
    ) -> StepResult<Vec<Vec<(u64, u64)>>> {
        compare(self.p, chan, v, thresholds, m)
    }

    fn step(
        &mut self,
        chan: &mut dyn Channel,
        step: &Step,
        mat: StepMat,
    ) -> Result<Option<Vec<u64>>, ExecError> {
        let bad = |what: &str| ExecError::Material(format!("{} step expects {what}", step.name()));
        match step {
            Step::Open { open } => {
                let op = &self.plan.openings[*open];
                if self.p == Party::Client {
                    let StepMat::Mask(mask) = mat else {
                        return Err(bad("a mask"));
                    };
                    let x = self.rows_of(op.wire, op.rows);
                    if mask.len() != x.len() {
                        return Err(bad("a mask of the opening's size"));
                    }
                    chan.send_u64s(MsgKind::Open, &ring::sub(&x, &mask))
                        .map_err(|e| self.terr(step, e))?;
                } else {
                    let (r, c) = self.plan.opening_shape(*open);
                    let m = chan
                        .recv_u64s(MsgKind::Open, r * c)
                        .map_err(|e| self.terr(step, e))?;
                    self.opened[*open] = Some(m);
                }
            }
            Step::Linear {
                out,
                terms,
                bias,
                shift,
            } => {
                let StepMat::Linear(ab) = mat else {
                    return Err(bad("linear correlations"));
                };
                let keeps = step.keeps_scale();
                // A step of server weights lands at its output scale directly (its
                // weights and coefficients encoded for it, [`weight_bits`]).
                let private = terms.iter().any(|t| matches!(t, Term::Private { .. }));
                let f = self.fx.frac_bits;
                let coef_bits = match private {
                    true => self.plan.linear_out_bits(terms, *shift) - f,
                    false => f,
                };
                let w = &self.plan.wires[*out];
                let mut acc = vec![0u64; w.rows * w.cols];
                let mut ab = ab.into_iter();
                for t in terms {
                    match t {
                        Term::Public { wire, rows, coef } => {
                            let c = match keeps {
                                true => *coef as i64 as u64,
                                false => encode_at(*coef, coef_bits),
                            };
                            ring::add_assign(
                                &mut acc,
                                &ring::scale(&self.rows_of(*wire, *rows), c),
                            );
                        }
                        Term::Private { open, weight, cls } => {
                            let op = &self.plan.openings[*open];
                            let ws = self.plan.weights[*weight];
                            let rows = if *cls {
                                1
                            } else {
                                op.rows.count(self.plan.wires[op.wire].rows)
                            };
                            let corr = ab
                                .next()
                                .ok_or_else(|| bad("one correlation per private term"))?;
                            if corr.len() != rows * ws.cols {
                                return Err(bad("correlations of the term's shape"));
                            }
                            ring::add_assign(&mut acc, &corr);
                            let cut = |v: Vec<u64>| if *cls { v[..ws.rows].to_vec() } else { v };
                            match &self.keys {
                                Keys::Client(k) => {
                                    let x = cut(self.rows_of(op.wire, op.rows));
                                    let e = k.e[*weight].as_ref().expect("masked weight");
                                    ring::add_assign(
                                        &mut acc,
                                        &matmul(&x, e, rows, ws.rows, ws.cols),
                                    );
                                }
                                Keys::Server(k) => {
                                    let m =
                                        cut(self.opened[*open].clone().expect("opened before use"));
                                    let b = k.b[*weight].as_ref().expect("masked weight");
                                    ring::add_assign(
                                        &mut acc,
                                        &matmul(&m, b, rows, ws.rows, ws.cols),
                                    );
                                    if !self.zero[op.wire] {
                                        let x = cut(self.rows_of(op.wire, op.rows));
                                        ring::add_assign(
                                            &mut acc,
                                            &matmul(&x, &k.w[*weight], rows, ws.rows, ws.cols),
                                        );
                                    }
                                }
                            }
                        }
                    }
                }
                if let (Some(b), Keys::Server(k)) = (bias, &self.keys) {
                    // A public step's bias follows its inputs' shift; a step of server
                    // weights has it encoded at its output scale.
                    let lift = if private { 0 } else { *shift };
                    let b = ring::scale(&k.w[*b], 1 << lift);
                    for row in acc.chunks_mut(w.cols) {
                        ring::add_assign(row, &b);
                    }
                }
                self.shares[*out] = Some(match keeps {
                    true => acc,
                    false => self.trunc_out(acc),
                });
            }
            Step::Slice { out, x, from, to } => {
                let g = Grid {
                    rows: self.plan.wires[*x].rows,
                    cols: self.plan.wires[*x].cols,
                    data: self.share(*x).to_vec(),
                };
                self.shares[*out] = Some(g.cols_range(*from, *to).data);
                self.zero[*out] = self.zero[*x];
            }
            Step::HeadMatMul {
                out,
                a,
                b,
                heads,
                kind,
            } => {
                let StepMat::Beaver(triples) = mat else {
                    return Err(bad("Beaver triples"));
                };
                let shape = head_shapes(self.plan, *a, *b, *heads, *kind);
                if !head_triples_fit(&triples, *heads, shape) {
                    return Err(bad("one triple per head of the product's shape"));
                }
                let (x, y) = (self.grid(*a), self.grid(*b));
                let msg = head_masked(&head_operands(*kind, *heads, &x, &y), &triples);
                let open = self.open_both(chan, msg).map_err(|e| self.terr(step, e))?;
                let parts = head_products(self.p, &open, &triples, shape)
                    .into_iter()
                    .map(|z| Grid {
                        rows: shape.0,
                        cols: shape.2,
                        data: self.trunc_out(z),
                    })
                    .collect();
                self.shares[*out] = Some(head_assemble(*kind, parts).data);
            }
            Step::Relu {
                out,
                x,
                bits,
                shift,
            } => {
                let StepMat::Relu(m) = mat else {
                    return Err(bad("ReLU material"));
                };
                let v = self.share(*x);
                check_relu(&m, v.len(), *bits, *shift).map_err(|w| bad(&w))?;
                let res = relu(self.p, chan, v, &m).map_err(|e| self.terr(step, e))?;
                self.shares[*out] = Some(res);
            }
            Step::Square { out, x, shift } if *shift > 0 => {
                let StepMat::FusedSquare(m) = mat else {
                    return Err(bad("a fused square's material"));
                };
                let n = self.share(*x).len();
                if !m.x.fits(n, *shift) || m.c.len() != n || m.cross.len() != n {
                    return Err(bad(&format!("a fused square's material for {n} values")));
                }
                let o = self
                    .open_both(chan, m.x.masked(self.share(*x), self.p))
                    .map_err(|e| self.terr(step, e))?;
                self.shares[*out] = Some(fused::square_sums(self.p, &m, &o, 1));
            }
            Step::Square { out, x, .. } => {
                let StepMat::Square(t) = mat else {
                    return Err(bad("a square pair"));
                };
                let n = self.share(*x).len();
                if t.a.len() != n || t.c.len() != n {
                    return Err(bad(&format!("a square pair for {n} values")));
                }
                let sq = self
                    .square(chan, self.share(*x), &t)
                    .map_err(|e| self.terr(step, e))?;
                self.shares[*out] = Some(self.trunc_out(sq));
            }
            Step::Spline { out, x, func, bits } => {
                let StepMat::Spline(cmp) = mat else {
                    return Err(bad("comparison material"));
                };
                let v = self.share(*x).to_vec();
                check_cmp(&cmp, v.len(), CmpWidth::spline(*bits, self.fx.frac_bits))
                    .map_err(|w| bad(&w))?;
                let y = self
                    .piecewise(
                        chan,
                        &v,
                        (&func.thresholds(), &func.segments()),
                        self.fx.frac_bits,
                        &cmp,
                    )
                    .map_err(|e| self.terr(step, e))?;
                self.shares[*out] = Some(self.trunc_out(y));
            }
            Step::RowMax { out, x, bits } => {
                let StepMat::RowMax(levels) = mat else {
                    return Err(bad("comparison material per level"));
                };
                let w = &self.plan.wires[*x];
                let width = CmpWidth::exact(*bits);
                let want: Vec<usize> = crate::plan::shapes::rowmax_pairs(w).collect();
                if levels.len() != want.len() {
                    return Err(bad(&format!("{} levels of material", want.len())));
                }
                for (m, &n) in levels.iter().zip(&want) {
                    check_cmp(m, n, width).map_err(|w| bad(&w))?;
                }
                let res = self
                    .row_max(chan, self.share(*x).to_vec(), w.rows, &levels)
                    .map_err(|e| self.terr(step, e))?;
                self.shares[*out] = Some(res);
            }
            Step::Shift { out, x, by } => {
                let cols = self.plan.wires[*x].cols;
                let b = self.share(*by);
                let v = self
                    .share(*x)
                    .iter()
                    .enumerate()
                    .map(|(i, xi)| xi.wrapping_sub(b[i / cols]))
                    .collect();
                self.shares[*out] = Some(v);
            }
            Step::LayerNorm {
                out,
                x,
                z,
                eps,
                inv_sqrt,
                shifts,
                mix,
            } if self.plan.fused_norm(inv_sqrt) => {
                let StepMat::FusedNorm {
                    square,
                    cmp,
                    products,
                    z_trunc,
                    mix: mix_triples,
                } = mat
                else {
                    return Err(bad("fused norm material"));
                };
                let norm = FusedNorm {
                    x: *x,
                    z: *z,
                    eps: *eps,
                    params: inv_sqrt,
                    shifts: *shifts,
                    mix: mix.map(|m| (m, mix_triples)),
                };
                let res = self
                    .fused_norm(chan, &norm, square, cmp, products, z_trunc)
                    .map_err(|e| match e {
                        LnError::T(e) => self.terr(step, e),
                        LnError::M(w) => bad(&w),
                    })?;
                self.shares[*out] = Some(res);
            }
            Step::LayerNorm {
                out,
                x,
                z,
                eps,
                inv_sqrt,
                ..
            } => {
                let StepMat::LayerNorm {
                    square,
                    cmp,
                    mults,
                    truncs,
                } = mat
                else {
                    return Err(bad("LayerNorm material"));
                };
                let res = self
                    .layernorm(chan, *x, *z, *eps, inv_sqrt, square, cmp, mults, truncs)
                    .map_err(|e| match e {
                        LnError::T(e) => self.terr(step, e),
                        LnError::M(w) => bad(&w),
                    })?;
                self.shares[*out] = Some(res);
            }
            Step::Truncate { wires, wide } => {
                let StepMat::Truncate(mats) = mat else {
                    return Err(bad("truncation material"));
                };
                let f = self.fx.frac_bits;
                let gather = |ws: &[WireId]| -> Vec<u64> {
                    ws.iter().flat_map(|w| self.share(*w).to_vec()).collect()
                };
                let (narrow, wider) = (gather(wires), gather(wide));
                let fits = |m: &TruncMat, n: usize, bits: u32| {
                    m.mask.len() == n && m.gamma.len() == n && m.bits == bits
                };
                if !fits(&mats[0], narrow.len(), f) || !fits(&mats[1], wider.len(), 2 * f) {
                    return Err(bad("truncation material for every listed value"));
                }
                let groups = [(&narrow[..], &mats[0]), (&wider[..], &mats[1])];
                let t = trunc::truncate_groups(chan, self.p, &groups)
                    .map_err(|e| self.terr(step, e))?;
                for (ws, t) in [wires, wide].into_iter().zip(t) {
                    let mut at = 0;
                    for w in ws {
                        let n = self.plan.wires[*w].rows * self.plan.wires[*w].cols;
                        self.shares[*w] = Some(t[at..at + n].to_vec());
                        at += n;
                    }
                }
            }
            Step::Reveal { wire, shift } => {
                let s = self.share(*wire).to_vec();
                if self.p == Party::Server {
                    chan.send_u64s(MsgKind::Reveal, &s)
                        .map_err(|e| self.terr(step, e))?;
                } else {
                    let theirs = chan
                        .recv_u64s(MsgKind::Reveal, s.len())
                        .map_err(|e| self.terr(step, e))?;
                    let mut v = ring::add(&s, &theirs);
                    // Truncated in the clear: exact.
                    v.iter_mut()
                        .for_each(|x| *x = ((*x as i64) >> shift) as u64);
                    return Ok(Some(v));
                }
            }
        }
        Ok(None)
    }

    fn terr(&self, step: &Step, e: TransportError) -> ExecError {
        ExecError::Transport {
            index: usize::MAX,
            name: step.name(),
            source: e,
        }
    }
}

/// Whether `triples` hold one Beaver triple per head of `[m, k]` by `[k, n]` products.
fn head_triples_fit(triples: &[Triple], heads: usize, (m, k, n): (usize, usize, usize)) -> bool {
    triples.len() == heads
        && triples
            .iter()
            .all(|t| t.a.len() == m * k && t.b.len() == k * n && t.c.len() == m * n)
}

/// A head-wise product's opening: per head, both operands minus their triple's masks.
fn head_masked(ops: &[(Grid<u64>, Grid<u64>)], triples: &[Triple]) -> Vec<u64> {
    let mut msg = Vec::new();
    for ((x, y), t) in ops.iter().zip(triples) {
        msg.extend(ring::sub(&x.data, &t.a));
        msg.extend(ring::sub(&y.data, &t.b));
    }
    msg
}

/// Each head's share of its product from the opened `[e, f]` per head (Beaver: `e B +
/// A f + C`, the client adding `e f`), at the operands' scales summed.
fn head_products(
    p: Party,
    open: &[u64],
    triples: &[Triple],
    (m, k, n): (usize, usize, usize),
) -> Vec<Vec<u64>> {
    triples
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let base = i * (m * k + k * n);
            let e = &open[base..base + m * k];
            let f = &open[base + m * k..base + m * k + k * n];
            let mut z = ring::add(&matmul(e, &t.b, m, k, n), &matmul(&t.a, f, m, k, n));
            ring::add_assign(&mut z, &t.c);
            if p == Party::Client {
                ring::add_assign(&mut z, &matmul(e, f, m, k, n));
            }
            z
        })
        .collect()
}

/// Result of one party's online run.
pub struct RunOutput {
    /// The revealed logits (client only).
    pub logits: Option<Vec<f64>>,
    pub steps: Vec<StepTrace>,
    /// Time spent getting each step's material: expanding it, or waiting for a dealer
    /// that streams it.
    pub material_s: f64,
}

/// Runs the online phase as `party` (the client with the hidden states, or the server).
pub fn run(
    plan: &SecurePlan,
    keys: Keys<'_>,
    material: impl Source,
    hidden: Option<&[Mat]>,
    chan: &mut dyn Channel,
) -> Result<RunOutput, ExecError> {
    match hidden {
        Some(h) => {
            let mut get = |k: usize| {
                h.get(k).cloned().ok_or_else(|| {
                    format!(
                        "hidden state {k} missing: got {} of {}",
                        h.len(),
                        plan.inputs
                    )
                })
            };
            run_with(plan, keys, material, Some(&mut get), chan)
        }
        None => run_with(plan, keys, material, None, chan),
    }
}

/// The client's hidden states as they come: `k` is the plan's input index, asked for
/// in increasing order and only when a step first reads it, so an opening of an early
/// state can leave while the backbone still computes the later ones.
pub type HiddenSource<'a> = &'a mut dyn FnMut(usize) -> Result<Mat, String>;

/// [`run`] with the client's states from `hidden`, each fetched when first needed.
pub fn run_with(
    plan: &SecurePlan,
    keys: Keys<'_>,
    mut material: impl Source,
    mut hidden: Option<HiddenSource<'_>>,
    chan: &mut dyn Channel,
) -> Result<RunOutput, ExecError> {
    let p = match keys {
        Keys::Client(_) => Party::Client,
        Keys::Server(_) => Party::Server,
    };
    let b = material.binding();
    if b.session != chan.session() {
        return Err(ExecError::Material(format!(
            "material is bound to session {:016x}, this channel runs session {:016x}",
            b.session,
            chan.session()
        )));
    }
    if b.party != p || b.plan_digest != plan.digest() {
        return Err(ExecError::Material(format!(
            "material for the {:?} / plan {:x}, expected the {:?} / plan {:x} (a dealer of \
             another release digests plans differently)",
            b.party,
            b.plan_digest,
            p,
            plan.digest(),
        )));
    }
    if p == Party::Client && hidden.is_none() {
        return Err(ExecError::Input("the client needs hidden states".into()));
    }
    let fx = Fixed::new(plan.frac_bits);
    let mut party = State {
        p,
        fx,
        plan,
        keys,
        shares: vec![None; plan.wires.len()],
        zero: vec![false; plan.wires.len()],
        opened: vec![None; plan.openings.len()],
    };
    for (i, w) in plan.wires.iter().enumerate() {
        if let WireKind::ClientInput { .. } = w.kind {
            party.zero[i] = true;
            if p == Party::Server {
                party.shares[i] = Some(vec![0; w.rows * w.cols]);
            }
        }
    }
    // The client's states, loaded in input order as steps first read them.
    let mut load_inputs = |party: &mut State<'_>, upto: usize| -> Result<(), ExecError> {
        let Some(src) = hidden.as_mut() else {
            return Ok(());
        };
        for (i, w) in plan.wires.iter().enumerate() {
            let WireKind::ClientInput { hidden: k } = w.kind else {
                continue;
            };
            if k > upto || party.shares[i].is_some() {
                continue;
            }
            let m = src(k).map_err(ExecError::Input)?;
            if (m.rows, m.cols) != (w.rows, w.cols) {
                return Err(ExecError::Input(format!(
                    "hidden state {k} is {}x{}, the plan needs {}x{}",
                    m.rows, m.cols, w.rows, w.cols
                )));
            }
            if let Some(j) = m.data.iter().position(|v| !v.is_finite() || v.abs() > 1e6) {
                return Err(ExecError::Input(format!(
                    "hidden state {k} element {j} is {} (must be finite, |x| <= 1e6)",
                    m.data[j]
                )));
            }
            party.shares[i] = Some(fx.encode_all(&m.data));
        }
        Ok(())
    };
    let mut traces = Vec::with_capacity(plan.steps.len());
    let mut logits = None;
    let mut waited = 0.0;
    for (index, step) in plan.steps.iter().enumerate() {
        let t = Instant::now();
        let mat = material
            .next_step(plan)
            .map_err(|e| ExecError::Material(e.0))?;
        waited += t.elapsed().as_secs_f64();
        let needed = step
            .reads(&plan.openings)
            .iter()
            .filter_map(|&w| match plan.wires[w].kind {
                WireKind::ClientInput { hidden: k } => Some(k),
                WireKind::Shared => None,
            })
            .max();
        if let Some(k) = needed {
            load_inputs(&mut party, k)?;
        }
        let (before, t0) = (chan.stats(), Instant::now());
        let revealed = party.step(chan, step, mat).map_err(|e| match e {
            ExecError::Transport { name, source, .. } => ExecError::Transport {
                index,
                name,
                source,
            },
            other => other,
        })?;
        if let Some(v) = revealed {
            logits = Some(fx.decode_all(&v));
        }
        let after = chan.stats();
        traces.push(StepTrace {
            name: step.name(),
            shape: plan.step_shape(step),
            bytes: after.total_bytes() - before.total_bytes(),
            rounds: after.rounds - before.rounds,
            seconds: t0.elapsed().as_secs_f64(),
        });
    }
    material.finish().map_err(|e| ExecError::Material(e.0))?;
    Ok(RunOutput {
        logits,
        steps: traces,
        material_s: waited,
    })
}
