//! A product of two shared wires per head (attention scores `Q K^T`, or the mix with
//! the values): one Beaver triple per head, both operands of every head opened in one
//! simultaneous exchange; the output at the operands' scales summed.

use super::state::State;
use super::*;
use crate::arith::matmul::matmul;
use crate::arith::ring;
use crate::arith::tensor::Mat;
use crate::plan::layout::{head_assemble, head_operands, Grid};
use crate::plan::shapes::head_shapes;
use crate::plan::{HeadProduct, WireId};
use crate::protocols::correlations::{triple, Triple};

pub(super) struct HeadMatMul {
    pub out: WireId,
    pub a: WireId,
    pub b: WireId,
    pub heads: usize,
    pub kind: HeadProduct,
}

impl HeadMatMul {
    fn shape(&self, plan: &SecurePlan) -> (usize, usize, usize) {
        head_shapes(plan, self.a, self.b, self.heads, self.kind)
    }
}

impl Gate for HeadMatMul {
    fn check(&self, plan: &SecurePlan) -> Result<(), String> {
        wires_exist(plan, &[self.out, self.a, self.b])?;
        if self.heads == 0 {
            return Err("a product over 0 heads".into());
        }
        Ok(())
    }

    fn messages(&self, plan: &SecurePlan) -> Vec<Msg> {
        let (m, k, n) = self.shape(plan);
        both(0, self.heads * (m * k + k * n)).to_vec()
    }

    fn material_bytes(&self, plan: &SecurePlan, party: Party) -> u64 {
        let (m, _, n) = self.shape(plan);
        Corrections::of(party).ring(self.heads * m * n)
    }

    fn draw(&self, plan: &SecurePlan, party: Party, prg: &mut Prg) -> StepMat {
        let (m, k, n) = self.shape(plan);
        StepMat::Beaver(
            (0..self.heads)
                .map(|_| triple(prg, party, m * k, k * n, m * n))
                .collect(),
        )
    }

    fn fill(&self, dealer: &mut Dealing<'_>, m: [&mut StepMat; 2]) -> Result<(), String> {
        let [StepMat::Beaver(t0), StepMat::Beaver(t1)] = m else {
            return Err(mismatch("head product"));
        };
        let (m, k, n) = self.shape(dealer.plan);
        for (t0, t1) in t0.iter().zip(t1.iter_mut()) {
            fill_triple(t0, t1, |a, b| matmul(a, b, m, k, n));
        }
        Ok(())
    }

    fn run(
        &self,
        st: &mut State<'_>,
        chan: &mut dyn Channel,
        mat: StepMat,
    ) -> Result<Option<Vec<u64>>, GateError> {
        let StepMat::Beaver(triples) = mat else {
            return Err(bad("Beaver triples"));
        };
        let shape = self.shape(st.plan);
        if !head_triples_fit(&triples, self.heads, shape) {
            return Err(bad("one triple per head of the product's shape"));
        }
        let (x, y) = (st.grid(self.a), st.grid(self.b));
        let msg = head_masked(&head_operands(self.kind, self.heads, &x, &y), &triples);
        let open = st.open_both(chan, msg)?;
        let parts = head_products(st.p, &open, &triples, shape)
            .into_iter()
            .map(|z| Grid {
                rows: shape.0,
                cols: shape.2,
                data: st.trunc_out(z),
            })
            .collect();
        st.shares[self.out] = Some(head_assemble(self.kind, parts).data);
        Ok(None)
    }

    fn meter(&self, plan: &SecurePlan, _: &[bool], m: &mut dyn Meter) {
        let (mm, k, n) = self.shape(plan);
        let ops = self.heads * (mm * k + k * n);
        for p in Party::BOTH {
            m.elem(p, (size(plan, self.a) + size(plan, self.b) + ops) as f64);
        }
        m.exchange(ops, [0, 1]);
        m.head_products(self.heads, (mm, k, n));
    }

    fn dealer_work(&self, plan: &SecurePlan, w: &mut DealerWork) {
        let (m, k, n) = self.shape(plan);
        w.ops += 2.0 * (self.heads * m * k * n) as f64;
        w.words += 3.0 * (self.heads * (m * k + k * n + m * n)) as f64;
    }

    fn plain(&self, ev: &mut plain::Values<'_>) {
        let grid = |m: Mat| Grid {
            rows: m.rows,
            cols: m.cols,
            data: m.data,
        };
        let mat = |g: Grid<f64>| Mat::new(g.rows, g.cols, g.data);
        let parts = head_operands(
            self.kind,
            self.heads,
            &grid(ev.get(self.a)),
            &grid(ev.get(self.b)),
        )
        .into_iter()
        .map(|(x, y)| grid(mat(x).matmul(&mat(y))))
        .collect();
        ev.set(self.out, mat(head_assemble(self.kind, parts)));
    }
}

/// Fills the server's `c` of element-wise or matrix triples: `c = a * b` with `a`, `b`
/// the sums of both parties' drawn shares.
pub(super) fn fill_triple(
    t0: &Triple,
    t1: &mut Triple,
    product: impl Fn(&[u64], &[u64]) -> Vec<u64>,
) {
    let a = ring::add(&t0.a, &t1.a);
    let b = ring::add(&t0.b, &t1.b);
    t1.c = ring::sub(&product(&a, &b), &t0.c);
}

/// Whether `triples` hold one Beaver triple per head of `[m, k]` by `[k, n]` products.
pub(super) fn head_triples_fit(
    triples: &[Triple],
    heads: usize,
    (m, k, n): (usize, usize, usize),
) -> bool {
    triples.len() == heads
        && triples
            .iter()
            .all(|t| t.a.len() == m * k && t.b.len() == k * n && t.c.len() == m * n)
}

/// A head-wise product's opening: per head, both operands minus their triple's masks.
pub(super) fn head_masked(ops: &[(Grid<u64>, Grid<u64>)], triples: &[Triple]) -> Vec<u64> {
    let mut msg = Vec::new();
    for ((x, y), t) in ops.iter().zip(triples) {
        msg.extend(ring::sub(&x.data, &t.a));
        msg.extend(ring::sub(&y.data, &t.b));
    }
    msg
}

/// Each head's share of its product from the opened `[e, f]` per head (Beaver: `e B +
/// A f + C`, the client adding `e f`), at the operands' scales summed.
pub(super) fn head_products(
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
