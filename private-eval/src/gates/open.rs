//! Opening: the client sends its share of a wire's rows minus a fresh dealer mask (its
//! share is the whole value: the server's share of a client input is zero), so the
//! server holds `x - r` and a linear step's correlations with `r` finish the product.

use super::state::State;
use super::*;
use crate::arith::ring;
use crate::plan::OpenId;
use crate::transport::{ChannelExt, MsgKind};

pub(super) struct Open {
    pub open: OpenId,
}

impl Gate for Open {
    fn check(&self, plan: &SecurePlan) -> Result<(), String> {
        match self.open < plan.openings.len() {
            true => Ok(()),
            false => Err(format!(
                "step opens {} of {}",
                self.open,
                plan.openings.len()
            )),
        }
    }

    fn messages(&self, plan: &SecurePlan) -> Vec<Msg> {
        let (r, c) = plan.opening_shape(self.open);
        vec![Msg {
            from: Party::Client,
            payload_bytes: (r * c) as u64 * ELEM,
            wave: 0,
        }]
    }

    fn draw(&self, plan: &SecurePlan, party: Party, prg: &mut Prg) -> StepMat {
        match party {
            Party::Client => {
                let (r, c) = plan.opening_shape(self.open);
                StepMat::Mask(prg.gen(r * c))
            }
            Party::Server => StepMat::Nothing,
        }
    }

    fn fill(&self, dealer: &mut Dealing<'_>, m: [&mut StepMat; 2]) -> Result<(), String> {
        let StepMat::Mask(mask) = &*m[0] else {
            return Err(mismatch("open"));
        };
        dealer.open_masks[self.open] = mask.clone();
        Ok(())
    }

    fn run(
        &self,
        st: &mut State<'_>,
        chan: &mut dyn Channel,
        mat: StepMat,
    ) -> Result<Option<Vec<u64>>, GateError> {
        let op = &st.plan.openings[self.open];
        if st.p == Party::Client {
            let StepMat::Mask(mask) = mat else {
                return Err(bad("a mask"));
            };
            let x = st.rows_of(op.wire, op.rows);
            if mask.len() != x.len() {
                return Err(bad("a mask of the opening's size"));
            }
            chan.send_u64s(MsgKind::Open, &ring::sub(&x, &mask))?;
        } else {
            let (r, c) = st.plan.opening_shape(self.open);
            st.opened[self.open] = Some(chan.recv_u64s(MsgKind::Open, r * c)?);
        }
        Ok(None)
    }

    fn meter(&self, plan: &SecurePlan, _: &[bool], m: &mut dyn Meter) {
        let (r, c) = plan.opening_shape(self.open);
        let n = r * c;
        m.elem(Party::Client, 2.0 * n as f64);
        m.ser(Party::Client, n as u64 * 8);
        m.send(Party::Client, 0);
        m.recv(Party::Server, 0);
        m.ser(Party::Server, n as u64 * 8);
    }

    fn dealer_work(&self, plan: &SecurePlan, w: &mut DealerWork) {
        let (r, c) = plan.opening_shape(self.open);
        w.words += (r * c) as f64;
    }

    fn plain(&self, _: &mut plain::Values<'_>) {}
}
