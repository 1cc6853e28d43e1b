//! A party's half of a session as it comes from the dealer: a one-byte frame saying
//! whether it streams, then the seeded encoding in frames of at most
//! [`comm::CHUNK`] bytes. A whole half is read and expanded before the online
//! phase; a streamed one (a plan whose halves are too large to hold, see
//! `cryptpeft_deploy::roles::DealerLimits::stream_above`) is expanded step by step while the
//! online phase runs, the dealer connection open throughout. Either way no more is read
//! than the plan says the half holds.

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::online::comm;
use crate::party::Party;
use crate::plan::SecurePlan;
use crate::preprocessing::material::{Binding, Expander, Material, MaterialError, Source, StepMat};
use crate::transport::{Channel, MsgKind};

/// The bytes of a half as its frames arrive.
pub struct HalfStream<C> {
    chan: C,
    chunk: Vec<u8>,
    at: usize,
    /// Bytes of the half still to come.
    left: u64,
    /// Bytes exchanged with the dealer so far, frames and request included.
    exchanged: Arc<AtomicU64>,
}

impl<C: Channel> Read for HalfStream<C> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.at == self.chunk.len() {
            if self.left == 0 {
                return Ok(0);
            }
            let chunk = self
                .chan
                .recv(MsgKind::Material)
                .map_err(|e| io::Error::other(format!("from the dealer: {e}")))?;
            self.exchanged
                .store(self.chan.stats().total_bytes(), Ordering::Relaxed);
            if chunk.is_empty() || chunk.len() as u64 > self.left {
                return Err(io::Error::other(format!(
                    "the dealer sent a frame of {} bytes with {} of the half left",
                    chunk.len(),
                    self.left
                )));
            }
            self.left -= chunk.len() as u64;
            (self.chunk, self.at) = (chunk, 0);
        }
        let n = out.len().min(self.chunk.len() - self.at);
        out[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// A party's half: expanded whole, or streaming from the dealer.
pub enum Half<C> {
    Whole(Material),
    /// Boxed: the expander carries its AES key schedule.
    Streamed(Box<Expander<HalfStream<C>>>),
}

impl<C: Channel> Half<C> {
    /// Receives `party`'s half of a session of `plan` on `chan` (the request sent);
    /// returns it and a counter of the bytes exchanged with the dealer, which for a
    /// streamed half keeps growing during the online phase.
    pub fn receive(
        plan: &SecurePlan,
        party: Party,
        mut chan: C,
    ) -> Result<(Self, Arc<AtomicU64>), MaterialError> {
        let mode = chan
            .recv(MsgKind::Material)
            .map_err(|e| MaterialError(format!("from the dealer: {e}")))?;
        let streamed = match mode.as_slice() {
            [0] => false,
            [1] => true,
            _ => return Err(MaterialError("the dealer sent no valid mode frame".into())),
        };
        let exchanged = Arc::new(AtomicU64::new(chan.stats().total_bytes()));
        let stream = HalfStream {
            chan,
            chunk: Vec::new(),
            at: 0,
            left: comm::material_bytes(plan, party),
            exchanged: exchanged.clone(),
        };
        let ex = Expander::new(plan, stream)?;
        let half = match streamed {
            true => Half::Streamed(Box::new(ex)),
            false => Half::Whole(ex.expand_all(plan)?),
        };
        Ok((half, exchanged))
    }
}

impl<C: Channel> std::fmt::Debug for Half<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = match self {
            Half::Whole(_) => "whole",
            Half::Streamed(_) => "streamed",
        };
        write!(f, "{how} half {:?}", self.binding())
    }
}

impl<C: Channel> Source for Half<C> {
    fn binding(&self) -> Binding {
        match self {
            Half::Whole(m) => m.binding(),
            Half::Streamed(e) => e.binding(),
        }
    }

    fn next_step(&mut self, plan: &SecurePlan) -> Result<StepMat, MaterialError> {
        match self {
            Half::Whole(m) => m.next_step(plan),
            Half::Streamed(e) => e.next_step(plan),
        }
    }

    fn finish(self) -> Result<(), MaterialError> {
        match self {
            Half::Whole(m) => Source::finish(m),
            Half::Streamed(e) => e.finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arith::prg::Prg;
    use crate::model::OwcModel;
    use crate::plan::lower::lower;
    use crate::preprocessing::dealer::{generate, ModelMasks};
    use crate::transport::memory_pair;
    use cryptpeft_types::{AdapterSpec, BackboneSpec, NetworkProfile};
    use std::time::Duration;

    fn plan() -> SecurePlan {
        let m = OwcModel::random(
            AdapterSpec::paper(1, 4, 1),
            BackboneSpec::test_small(),
            3,
            1,
        );
        lower(&m, Default::default()).unwrap().0
    }

    /// What a party makes of a dealer sending `frames`: the error, if any, once every
    /// step has been asked for.
    fn receive(plan: &SecurePlan, frames: Vec<Vec<u8>>) -> Result<(), String> {
        let (mut dealer, party) = memory_pair(NetworkProfile::none(), Duration::from_secs(5));
        for f in &frames {
            dealer.send(MsgKind::Material, f).unwrap();
        }
        dealer.flush().unwrap();
        drop(dealer);
        let (mut half, _) = Half::receive(plan, Party::Client, party).map_err(|e| e.0)?;
        for _ in 0..plan.steps.len() {
            half.next_step(plan).map_err(|e| e.0)?;
        }
        half.finish().map_err(|e| e.0)
    }

    #[test]
    fn a_half_is_read_to_the_plans_length_and_no_further() {
        let plan = plan();
        let [m0, _] = generate(&plan, &ModelMasks { seed: 1 }, 7, &mut Prg::new(2));
        let bytes = m0.into_bytes();
        let chunks = |b: &[u8]| b.chunks(100).map(<[u8]>::to_vec).collect::<Vec<_>>();
        for mode in [0u8, 1] {
            let mut frames = vec![vec![mode]];
            frames.extend(chunks(&bytes));
            receive(&plan, frames.clone()).unwrap();
            // One byte more than the plan's half, in the last frame or a frame of its own.
            let mut long = frames.clone();
            long.last_mut().unwrap().push(0);
            let e = receive(&plan, long).unwrap_err();
            assert!(e.contains("sent a frame of"), "{e}");
            // One byte short: the half ends early.
            let mut short = frames.clone();
            short.last_mut().unwrap().pop();
            let e = receive(&plan, short).unwrap_err();
            assert!(e.contains("from the dealer"), "{e}");
        }
        let e = receive(&plan, vec![vec![2]]).unwrap_err();
        assert!(e.contains("no valid mode frame"), "{e}");
    }
}
