//! Element-wise `x^2`: with a dealer square pair `(a, a^2)`, one simultaneous exchange of
//! `x - a`, the output at `2f` like a product; with `shift` > 0 the input carries `shift`
//! bits above `f` and its opening truncates them ([`crate::protocols::fused`]).

use super::state::State;
use super::*;
use crate::arith::ring;
use crate::plan::WireId;
use crate::protocols::correlations::{draw_square, triple};
use crate::protocols::fused;

pub(super) struct Square {
    pub out: WireId,
    pub x: WireId,
    pub shift: u32,
}

impl Gate for Square {
    fn check(&self, plan: &SecurePlan) -> Result<(), String> {
        wires_exist(plan, &[self.out, self.x])?;
        let fused = [plan.frac_bits, 2 * plan.frac_bits].contains(&self.shift);
        if self.shift != 0 && !(fused && plan.exact_truncation) {
            return Err(format!("a square truncating by {} bits", self.shift));
        }
        Ok(())
    }

    fn messages(&self, plan: &SecurePlan) -> Vec<Msg> {
        both(0, size(plan, self.x)).to_vec()
    }

    fn material_bytes(&self, plan: &SecurePlan, party: Party) -> u64 {
        // Fused: the operand's wrap and top bits, the cross term.
        let (n, c) = (size(plan, self.x), Corrections::of(party));
        c.ring(n) + 3 * c.low(n, self.shift)
    }

    fn draw(&self, plan: &SecurePlan, party: Party, prg: &mut Prg) -> StepMat {
        let n = size(plan, self.x);
        match self.shift {
            0 => StepMat::Square(triple(prg, party, n, 0, n)),
            s => StepMat::FusedSquare(draw_square(prg, party, n, 1, s)),
        }
    }

    fn fill(&self, _: &mut Dealing<'_>, m: [&mut StepMat; 2]) -> Result<(), String> {
        match m {
            [StepMat::FusedSquare(s0), StepMat::FusedSquare(s1)] => fused::fill_square(s0, s1, 1),
            [StepMat::Square(t0), StepMat::Square(t1)] => {
                let a = ring::add(&t0.a, &t1.a);
                t1.c = ring::sub(&ring::mul_bcast(&a, 1, &a, 1, a.len()), &t0.c);
            }
            _ => return Err(mismatch("square")),
        }
        Ok(())
    }

    fn run(
        &self,
        st: &mut State<'_>,
        chan: &mut dyn Channel,
        mat: StepMat,
    ) -> Result<Option<Vec<u64>>, GateError> {
        let n = st.share(self.x).len();
        let y = match (self.shift, mat) {
            (0, StepMat::Square(t)) => {
                if t.a.len() != n || t.c.len() != n {
                    return Err(bad(&format!("a square pair for {n} values")));
                }
                let sq = st.square(chan, st.share(self.x), &t)?;
                st.trunc_out(sq)
            }
            (s, StepMat::FusedSquare(m)) if s > 0 => {
                if !m.x.fits(n, s) || m.c.len() != n || m.cross.len() != n {
                    return Err(bad(&format!("a fused square's material for {n} values")));
                }
                let o = st.open_both(chan, m.x.masked(st.share(self.x), st.p))?;
                fused::square_sums(st.p, &m, &o, 1)
            }
            (0, _) => return Err(bad("a square pair")),
            _ => return Err(bad("a fused square's material")),
        };
        st.shares[self.out] = Some(y);
        Ok(None)
    }

    fn meter(&self, plan: &SecurePlan, _: &[bool], m: &mut dyn Meter) {
        let n = size(plan, self.x);
        m.exchange(n, [0, 1]);
        for p in Party::BOTH {
            m.elem(p, 6.0 * n as f64);
        }
    }

    fn dealer_work(&self, plan: &SecurePlan, w: &mut DealerWork) {
        w.words += if self.shift > 0 { 7.0 } else { 4.0 } * size(plan, self.x) as f64;
    }

    fn plain(&self, ev: &mut plain::Values<'_>) {
        let y = ev.get(self.x).map(|v| v * v);
        ev.set(self.out, y);
    }
}
