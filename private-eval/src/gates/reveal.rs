//! The reveal: the server sends its share, only the client learns the value, and
//! truncates it in the clear by `shift` bits (0, `f` or `2f`: the wire's scale above
//! `f`), which is exact.

use super::state::State;
use super::*;
use crate::arith::ring;
use crate::plan::{WireId, WIDE_LOGIT_BITS};
use crate::transport::{ChannelExt, MsgKind};

pub(super) struct Reveal {
    pub wire: WireId,
    pub shift: u32,
}

impl Gate for Reveal {
    fn check(&self, plan: &SecurePlan) -> Result<(), String> {
        wires_exist(plan, &[self.wire])?;
        let f = plan.frac_bits;
        if ![0, f, 2 * f, 2 * f + WIDE_LOGIT_BITS].contains(&self.shift) {
            return Err(format!("a reveal truncated by {} bits", self.shift));
        }
        Ok(())
    }

    fn messages(&self, plan: &SecurePlan) -> Vec<Msg> {
        vec![Msg {
            from: Party::Server,
            payload_bytes: size(plan, self.wire) as u64 * ELEM,
            wave: 0,
        }]
    }

    /// It rides on the last opening in a fused protocol.
    fn fusable(&self, _: &SecurePlan, _: &Msg) -> bool {
        true
    }

    fn run(
        &self,
        st: &mut State<'_>,
        chan: &mut dyn Channel,
        _: StepMat,
    ) -> Result<Option<Vec<u64>>, GateError> {
        let s = st.share(self.wire).to_vec();
        if st.p == Party::Server {
            chan.send_u64s(MsgKind::Reveal, &s)?;
            return Ok(None);
        }
        let theirs = chan.recv_u64s(MsgKind::Reveal, s.len())?;
        let mut v = ring::add(&s, &theirs);
        v.iter_mut()
            .for_each(|x| *x = ((*x as i64) >> self.shift) as u64);
        Ok(Some(v))
    }

    fn meter(&self, plan: &SecurePlan, _: &[bool], m: &mut dyn Meter) {
        let n = size(plan, self.wire);
        if self.shift > 0 {
            m.elem(Party::Client, n as f64);
        }
        m.elem(Party::Server, n as f64);
        m.ser(Party::Server, n as u64 * 8);
        m.send(Party::Server, 0);
        m.elem(Party::Client, n as f64);
        m.recv(Party::Client, 0);
        m.ser(Party::Client, n as u64 * 8);
        m.elem(Party::Client, 2.0 * n as f64);
    }

    fn plain(&self, ev: &mut plain::Values<'_>) {
        ev.out = ev.get(self.wire).data;
    }
}
