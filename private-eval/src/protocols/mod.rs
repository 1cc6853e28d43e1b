//! Two-party building blocks used by the online executor: the opening they all start
//! from, distributed comparison functions (the keys behind comparison, ReLU and row
//! max) and the gates built on them, exact truncation, and products whose operands are
//! truncated in their own opening.

pub mod compare;
pub mod correlations;
pub mod dcf;
pub mod fused;
pub mod trunc;

use crate::arith::ring;
use crate::transport::{Channel, ChannelExt, MsgKind, TransportError};

/// Both parties send `x_i - mask_i` for every operand and open the differences.
pub fn open_both(chan: &mut dyn Channel, mine: Vec<u64>) -> Result<Vec<u64>, TransportError> {
    chan.send_u64s(MsgKind::Open, &mine)?;
    let theirs = chan.recv_u64s(MsgKind::Open, mine.len())?;
    Ok(ring::add(&mine, &theirs))
}
