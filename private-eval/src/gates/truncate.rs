//! Exact truncation ([`crate::protocols::trunc`]) of wires at `2f` bits to `f`, and of
//! `wide` wires at `3f` (linear maps of a wide opening) by `2f`, all in one exchange,
//! in place: under exact truncation linear steps and products leave their outputs at
//! `2f` until a truncation step lists them.

use super::state::State;
use super::*;
use crate::plan::shapes::truncate_len;
use crate::plan::WireId;
use crate::protocols::correlations::trunc;
use crate::protocols::trunc::{self as exact, TruncMat};

pub(super) struct Truncate<'a> {
    pub wires: &'a [WireId],
    pub wide: &'a [WireId],
}

impl Truncate<'_> {
    /// The two groups as `(values, shift)`.
    fn groups(&self, plan: &SecurePlan) -> [(usize, u32); 2] {
        let f = plan.frac_bits;
        [
            (truncate_len(plan, self.wires), f),
            (truncate_len(plan, self.wide), 2 * f),
        ]
    }
}

impl Gate for Truncate<'_> {
    fn check(&self, plan: &SecurePlan) -> Result<(), String> {
        if !self.wide.is_empty() && !plan.wide_allowed() {
            return Err(format!(
                "{} fractional bits truncated from 3f",
                plan.frac_bits
            ));
        }
        wires_exist(plan, self.wires)?;
        wires_exist(plan, self.wide)
    }

    fn messages(&self, plan: &SecurePlan) -> Vec<Msg> {
        trunc_msgs(&self.groups(plan)).to_vec()
    }

    /// The whole step is a truncation: a fused protocol does it inside its neighbours.
    fn fusable(&self, _: &SecurePlan, _: &Msg) -> bool {
        true
    }

    fn material_bytes(&self, plan: &SecurePlan, party: Party) -> u64 {
        let c = Corrections::of(party);
        self.groups(plan).iter().map(|&(n, s)| c.low(n, s)).sum()
    }

    fn draw(&self, plan: &SecurePlan, party: Party, prg: &mut Prg) -> StepMat {
        StepMat::Truncate(self.groups(plan).map(|(n, s)| trunc(prg, party, n, s)))
    }

    fn fill(&self, _: &mut Dealing<'_>, m: [&mut StepMat; 2]) -> Result<(), String> {
        let [StepMat::Truncate(t0), StepMat::Truncate(t1)] = m else {
            return Err(mismatch("truncate"));
        };
        for (t0, t1) in t0.iter().zip(t1.iter_mut()) {
            exact::fill(t0, t1);
        }
        Ok(())
    }

    fn run(
        &self,
        st: &mut State<'_>,
        chan: &mut dyn Channel,
        mat: StepMat,
    ) -> Result<Option<Vec<u64>>, GateError> {
        let StepMat::Truncate(mats) = mat else {
            return Err(bad("truncation material"));
        };
        let f = st.fx.frac_bits;
        let gather =
            |ws: &[WireId]| -> Vec<u64> { ws.iter().flat_map(|w| st.share(*w).to_vec()).collect() };
        let (narrow, wider) = (gather(self.wires), gather(self.wide));
        let fits = |m: &TruncMat, n: usize, bits: u32| {
            m.mask.len() == n && m.gamma.len() == n && m.bits == bits
        };
        if !fits(&mats[0], narrow.len(), f) || !fits(&mats[1], wider.len(), 2 * f) {
            return Err(bad("truncation material for every listed value"));
        }
        let groups = [(&narrow[..], &mats[0]), (&wider[..], &mats[1])];
        let t = exact::truncate_groups(chan, st.p, &groups)?;
        for (ws, t) in [self.wires, self.wide].into_iter().zip(t) {
            let mut at = 0;
            for &w in ws {
                let n = size(st.plan, w);
                st.shares[w] = Some(t[at..at + n].to_vec());
                at += n;
            }
        }
        Ok(None)
    }

    /// Exact in the clear: truncation only changes the fixed-point scale (floored on
    /// the grid where the interpreter models it).
    fn meter(&self, plan: &SecurePlan, _: &[bool], m: &mut dyn Meter) {
        let groups = self.groups(plan);
        for p in Party::BOTH {
            let n = groups[0].0 + groups[1].0;
            m.elem(p, 2.0 * n as f64); // gather and scatter the wires
        }
        m.truncate(&groups, [0, 1]);
    }

    fn dealer_work(&self, plan: &SecurePlan, w: &mut DealerWork) {
        let [(a, _), (b, _)] = self.groups(plan);
        w.words += 5.0 * (a + b) as f64;
    }

    fn plain(&self, ev: &mut plain::Values<'_>) {
        if ev.floor_truncated {
            for &w in self.wires.iter().chain(self.wide) {
                ev.floor(w);
            }
        }
    }
}
