//! One party's view of the online phase: its shares of every wire so far, the keys
//! from setup, and the operations gates share (Beaver products, piecewise-linear
//! functions from one comparison, row maxima, squares, truncations inside a gate).

use crate::arith::fixed::{encode_at, Fixed};
use crate::arith::ring;
use crate::party::Party;
use crate::plan::layout::Grid;
use crate::plan::*;
use crate::protocols::compare::{compare, compare_carrying};
use crate::protocols::correlations::{CmpMat, Triple};
use crate::protocols::open_both;
use crate::protocols::trunc;
use crate::protocols::trunc::TruncMat;
use crate::transport::{Channel, TransportError};

use super::keys::Keys;
use super::GateError;

pub(crate) struct State<'a> {
    pub p: Party,
    pub fx: Fixed,
    pub plan: &'a SecurePlan,
    pub keys: Keys<'a>,
    pub shares: Vec<Option<Vec<u64>>>,
    /// Wires whose server share is known to be zero ([`super::zero_wires`]).
    pub zero: Vec<bool>,
    pub opened: Vec<Option<Vec<u64>>>,
}

pub(crate) type StepResult<T> = Result<T, TransportError>;

/// An element-wise product `a * b`: `(a, a_cols, b, b_cols, rows)`, a 1-column side broadcast.
type MulOp<'a> = (&'a [u64], usize, &'a [u64], usize, usize);

impl State<'_> {
    pub fn share(&self, w: WireId) -> &[u64] {
        self.shares[w]
            .as_deref()
            .expect("plan computes wires before use")
    }

    pub fn rows_of(&self, w: WireId, rows: Rows) -> Vec<u64> {
        let s = self.share(w);
        match rows {
            Rows::All => s.to_vec(),
            Rows::Cls => s[..self.plan.wires[w].cols].to_vec(),
        }
    }

    pub fn trunc(&self, mut v: Vec<u64>) -> Vec<u64> {
        self.fx.truncate_shares(&mut v, self.p);
        v
    }

    /// Truncation where a step's output is final: local, or left at `2f` for a later
    /// `Truncate` step under exact truncation.
    pub fn trunc_out(&self, v: Vec<u64>) -> Vec<u64> {
        match self.plan.exact_truncation {
            true => v,
            false => self.trunc(v),
        }
    }

    /// Truncation by `f` inside a step: local, or exact with the next of `mats`.
    pub fn trunc_now(
        &self,
        chan: &mut dyn Channel,
        v: Vec<u64>,
        mats: &mut std::slice::Iter<'_, TruncMat>,
    ) -> Result<Vec<u64>, GateError> {
        self.trunc_by(chan, v, mats, self.fx.frac_bits)
    }

    /// [`Self::trunc_now`] by `shift` bits.
    pub fn trunc_by(
        &self,
        chan: &mut dyn Channel,
        mut v: Vec<u64>,
        mats: &mut std::slice::Iter<'_, TruncMat>,
        shift: u32,
    ) -> Result<Vec<u64>, GateError> {
        if !self.plan.exact_truncation {
            v.iter_mut()
                .for_each(|x| *x = crate::arith::fixed::truncate_share_by(*x, self.p, shift));
            return Ok(v);
        }
        let m = mats
            .next()
            .filter(|m| m.mask.len() == v.len() && m.gamma.len() == v.len() && m.bits == shift)
            .ok_or_else(|| {
                GateError::Material(format!(
                    "truncation material for {} values by {shift} bits",
                    v.len()
                ))
            })?;
        Ok(trunc::truncate(chan, self.p, &v, m)?)
    }

    /// Party 0 adds public constants.
    pub fn konst(&self, c: u64) -> u64 {
        if self.p == Party::Client {
            c
        } else {
            0
        }
    }

    pub fn grid(&self, w: WireId) -> Grid<u64> {
        Grid {
            rows: self.plan.wires[w].rows,
            cols: self.plan.wires[w].cols,
            data: self.share(w).to_vec(),
        }
    }

    pub fn open_both(&self, chan: &mut dyn Channel, mine: Vec<u64>) -> StepResult<Vec<u64>> {
        open_both(chan, mine)
    }

    /// Element-wise Beaver products `a_i * b_i` (a side with 1 column broadcasts), all
    /// opened in one exchange; results at `2f` (the caller truncates).
    pub fn mul_many(
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
    pub fn piecewise(
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
    pub fn piecewise_at(
        &self,
        chan: &mut dyn Channel,
        (v, v_bits): (&[u64], u32),
        (ts, segs): (&[f64], &[(f64, f64)]),
        slope_bits: u32,
        cmp: &CmpMat,
        rider: &[u8],
    ) -> StepResult<(Vec<u64>, Vec<u8>)> {
        let segs = encode_segments(segs, v_bits, slope_bits);
        let (mut ys, theirs) =
            self.piecewise_encoded(chan, (v, v_bits), ts, &[segs], cmp, rider)?;
        Ok((ys.remove(0), theirs))
    }

    /// Several piecewise-linear functions of `v` from the one comparison of
    /// [`Self::piecewise_at`], each given as its segments' encoded `(intercept, slope)`.
    pub fn piecewise_encoded(
        &self,
        chan: &mut dyn Channel,
        (v, v_bits): (&[u64], u32),
        ts: &[f64],
        fns: &[Vec<(u64, u64)>],
        cmp: &CmpMat,
        rider: &[u8],
    ) -> StepResult<(Vec<Vec<u64>>, Vec<u8>)> {
        let enc_t: Vec<u64> = ts.iter().map(|&t| encode_at(t, v_bits)).collect();
        let (bits, theirs) = compare_carrying(self.p, chan, v, &enc_t, cmp, rider)?;
        let eval = |segs: &Vec<(u64, u64)>| -> Vec<u64> {
            v.iter()
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
                .collect()
        };
        Ok((fns.iter().map(eval).collect(), theirs))
    }

    /// Row maxima of `x` (`rows` rows) by a tree: at each level the columns pair up,
    /// `max(a, b) = b + [a - b >= 0] (a - b)` from one comparison of the differences
    /// (no product: the comparison gives `d (a - b)` itself); an odd last column waits.
    pub fn row_max(
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
    pub fn square(&self, chan: &mut dyn Channel, xs: &[u64], t: &Triple) -> StepResult<Vec<u64>> {
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

    pub fn compare(
        &self,
        chan: &mut dyn Channel,
        v: &[u64],
        thresholds: &[u64],
        m: &CmpMat,
    ) -> StepResult<Vec<Vec<(u64, u64)>>> {
        compare(self.p, chan, v, thresholds, m)
    }
}

/// Segments `(intercept, slope)` encoded for a function of `v` at `v_bits`: slopes at
/// `slope_bits`, the result at `v_bits + slope_bits` ([`State::piecewise_encoded`]).
pub(super) fn encode_segments(
    segs: &[(f64, f64)],
    v_bits: u32,
    slope_bits: u32,
) -> Vec<(u64, u64)> {
    segs.iter()
        .map(|&(a, s)| (encode_at(a, v_bits + slope_bits), encode_at(s, slope_bits)))
        .collect()
}
