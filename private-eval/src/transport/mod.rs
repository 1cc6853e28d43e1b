//! Two-party transport: length-prefixed frames with a kind, a session id and a
//! round depth over TCP (plain or TLS 1.3; a Unix socket pair in tests), with read timeouts,
//! a frame size limit checked before allocation, network shaping applied
//! inside the transport, and byte/round accounting.
//!
//! Wire format of one frame (all integers little-endian):
//!
//! ```text
//! payload length u32 | kind u8 | session id u64 | depth u32 | payload
//! ```
//!
//! The 17 header bytes are counted in [`Stats`], so a message of `p` payload
//! bytes costs exactly `17 + p` on the wire; `depth` carries the round count
//! (see [`Channel`]).
//!
//! * [`frame`]: wire format and [`MsgKind`].
//! * [`channel`]: the [`Channel`] trait (round semantics), [`ChannelExt`].
//! * [`framed`]: [`FramedChannel`], the one implementation, and [`memory_pair`].
//! * [`limits`]: deadlines and frame limits of a channel end.
//! * [`shaping`]: the writer thread that applies bandwidth and delay.
//! * [`stats`]: [`Stats`] counters.
//! * [`tcp`]: connect / listen / accept.
//! * TLS lives in the deployment crate (`cryptpeft_deploy::tls`): the core builds none.

pub mod channel;
pub mod error;
pub mod frame;
pub mod framed;
pub mod limits;
pub mod shaping;
pub mod stats;
pub mod stream;
pub mod tcp;

pub use channel::{bytes_to_u64s, u64s_to_bytes, Channel, ChannelExt};
pub use error::TransportError;
pub use frame::{MsgKind, HEADER_LEN};
pub use framed::{memory_pair, printable, try_memory_pair, FramedChannel};
pub use limits::{TransportConfig, MAX_ABORT_BYTES, PRE_AUTH_FRAME};
pub use stats::Stats;
pub use stream::Stream;
pub use tcp::{
    accept, connect, dial, listen, serve_connections, AddressSlot, Admit, Gate, Slot, Slots,
};

#[cfg(test)]
mod tests;
