//! A spline ([`crate::plan::SplineFn`], GELU or a softmax's exponential): one comparison
//! opening whose DCF keys give `[x >= t]` and its product with `x` for every threshold,
//! on `bits`-bit inputs; the output at `2f` like a product.

use super::state::State;
use super::*;
use crate::plan::{SplineFn, WireId};
use crate::protocols::compare::{check_cmp, fill_cmp};
use crate::protocols::correlations::draw_cmp;

pub(super) struct Spline {
    pub out: WireId,
    pub x: WireId,
    pub func: SplineFn,
    pub bits: u32,
}

impl Spline {
    fn width(&self, plan: &SecurePlan) -> CmpWidth {
        CmpWidth::spline(self.bits, plan.frac_bits)
    }
}

impl Gate for Spline {
    fn check(&self, plan: &SecurePlan) -> Result<(), String> {
        wires_exist(plan, &[self.out, self.x])?;
        check_width(plan, self.bits)
    }

    fn messages(&self, plan: &SecurePlan) -> Vec<Msg> {
        both(0, size(plan, self.x)).to_vec()
    }

    fn material_bytes(&self, plan: &SecurePlan, party: Party) -> u64 {
        Corrections::of(party).cmp(size(plan, self.x), self.width(plan))
    }

    fn draw(&self, plan: &SecurePlan, party: Party, prg: &mut Prg) -> StepMat {
        StepMat::Spline(draw_cmp(prg, party, size(plan, self.x), self.width(plan)))
    }

    fn fill(&self, _: &mut Dealing<'_>, m: [&mut StepMat; 2]) -> Result<(), String> {
        let [StepMat::Spline(c0), StepMat::Spline(c1)] = m else {
            return Err(mismatch("spline"));
        };
        fill_cmp(c0, c1);
        Ok(())
    }

    fn run(
        &self,
        st: &mut State<'_>,
        chan: &mut dyn Channel,
        mat: StepMat,
    ) -> Result<Option<Vec<u64>>, GateError> {
        let StepMat::Spline(cmp) = mat else {
            return Err(bad("comparison material"));
        };
        let v = st.share(self.x).to_vec();
        check_cmp(&cmp, v.len(), self.width(st.plan)).map_err(|w| bad(&w))?;
        let f = st.fx.frac_bits;
        let y = st.piecewise(
            chan,
            &v,
            (&self.func.thresholds(), &self.func.segments()),
            f,
            &cmp,
        )?;
        st.shares[self.out] = Some(st.trunc_out(y));
        Ok(None)
    }

    fn meter(&self, plan: &SecurePlan, _: &[bool], m: &mut dyn Meter) {
        let n = size(plan, self.x);
        let ts =
            crate::arith::fixed::Fixed::new(plan.frac_bits).encode_all(&self.func.thresholds());
        m.compare(n, &ts, self.width(plan), [0, 1]);
        for p in Party::BOTH {
            m.elem(p, 4.0 * (n * ts.len()) as f64);
        }
    }

    fn dealer_work(&self, plan: &SecurePlan, w: &mut DealerWork) {
        w.keys(size(plan, self.x), self.width(plan));
        w.words += 6.0 * size(plan, self.x) as f64;
    }

    fn plain(&self, ev: &mut plain::Values<'_>) {
        let y = ev.get(self.x).map(|v| self.func.exact(v));
        ev.set(self.out, y);
    }
}
