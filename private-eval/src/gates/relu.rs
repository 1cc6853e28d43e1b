//! ReLU by a DCF key on the low `bits` bits of the masked input
//! ([`crate::protocols::compare::relu`]): two simultaneous exchanges, the masked shares,
//! then one masked bit per value (the select). With `shift` > 0 the input is at
//! `f + shift` bits and its opening truncates it exactly on the way.

use super::state::State;
use super::*;
use crate::plan::WireId;
use crate::protocols::compare::{check_relu, fill_relu, relu};
use crate::protocols::correlations::draw_relu;
use crate::protocols::dcf::Bit;

pub(super) struct Relu {
    pub out: WireId,
    pub x: WireId,
    pub bits: u32,
    pub shift: u32,
}

impl Gate for Relu {
    fn check(&self, plan: &SecurePlan) -> Result<(), String> {
        wires_exist(plan, &[self.out, self.x])?;
        let (f, bits, shift) = (plan.frac_bits, self.bits, self.shift);
        if !(f + 2..=64 - shift).contains(&bits) {
            return Err(format!("ReLU width {bits} bits after a shift of {shift}"));
        }
        let wide = shift == 2 * f && plan.wide_allowed();
        if ![0, f].contains(&shift) && !wide || !plan.exact_truncation && shift > 0 {
            return Err(format!("ReLU truncating by {shift} bits"));
        }
        Ok(())
    }

    fn messages(&self, plan: &SecurePlan) -> Vec<Msg> {
        let n = size(plan, self.x);
        let mut msgs = both(0, n).to_vec();
        msgs.extend([Party::Client, Party::Server].map(|from| Msg {
            from,
            payload_bytes: n.div_ceil(8) as u64,
            wave: 1,
        }));
        msgs
    }

    /// The select: a fused protocol lets it ride on the next opening.
    fn fusable(&self, _: &SecurePlan, msg: &Msg) -> bool {
        msg.wave != 0
    }

    fn material_bytes(&self, plan: &SecurePlan, party: Party) -> u64 {
        let (n, c) = (size(plan, self.x), Corrections::of(party));
        // Truncating: the shares of `r >> shift`, `msb(r)` and `rho msb(r)`.
        let trunc = match self.shift {
            0 => 0,
            s => c.ring(n) + 2 * c.low(n, s),
        };
        c.ring(2 * n) + trunc + (n * Cws::<Bit>::bytes(self.bits as usize - 1)) as u64
    }

    fn draw(&self, plan: &SecurePlan, party: Party, prg: &mut Prg) -> StepMat {
        StepMat::Relu(draw_relu(
            prg,
            party,
            size(plan, self.x),
            self.bits,
            self.shift,
        ))
    }

    fn fill(&self, _: &mut Dealing<'_>, m: [&mut StepMat; 2]) -> Result<(), String> {
        let [StepMat::Relu(r0), StepMat::Relu(r1)] = m else {
            return Err(mismatch("relu"));
        };
        fill_relu(r0, r1);
        Ok(())
    }

    fn run(
        &self,
        st: &mut State<'_>,
        chan: &mut dyn Channel,
        mat: StepMat,
    ) -> Result<Option<Vec<u64>>, GateError> {
        let StepMat::Relu(m) = mat else {
            return Err(bad("ReLU material"));
        };
        let v = st.share(self.x);
        check_relu(&m, v.len(), self.bits, self.shift).map_err(|w| bad(&w))?;
        let res = relu(st.p, chan, v, &m)?;
        st.shares[self.out] = Some(res);
        Ok(None)
    }

    fn meter(&self, plan: &SecurePlan, _: &[bool], m: &mut dyn Meter) {
        m.relu(size(plan, self.x), self.bits);
    }

    fn dealer_work(&self, plan: &SecurePlan, w: &mut DealerWork) {
        let n = size(plan, self.x) as f64;
        w.relu_levels += n * crate::protocols::dcf::levels::<Bit>(self.bits as usize - 1) as f64;
        // A truncating ReLU's dealer also shares `r >> shift`, `msb(r)`, `rho msb(r)`.
        w.words += if self.shift > 0 { 12.0 } else { 9.0 } * n;
    }

    fn plain(&self, ev: &mut plain::Values<'_>) {
        let y = ev.get(self.x).map(|v| v.max(0.0));
        ev.set(self.out, y);
    }
}
