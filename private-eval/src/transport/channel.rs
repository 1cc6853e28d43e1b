//! The channel trait the protocols are written against.

use super::error::TransportError;
use super::frame::MsgKind;
use super::stats::Stats;

/// A framed, authenticated-by-session, ordered two-party channel.
///
/// # Rounds
/// Every frame carries a *depth*. Each end keeps `seen` = the largest depth it
/// has received; a frame it sends carries `seen + 1`. `stats().rounds` is the
/// largest depth sent or received. So frames sent without waiting for anything
/// in between share a depth (they are pipelined), a simultaneous exchange of
/// both parties is 1 round, and request -> response is 2 rounds: the rounds are
/// the longest chain of messages on the critical path, on both ends alike once
/// each has received the other's last frame.
///
/// [`reset_rounds`](Channel::reset_rounds) zeroes `seen` and the maxima (not
/// the byte counters). It is consistent only at a quiescent point: each end
/// must call it *after* receiving the peer's last pre-online frame and *before*
/// sending its first online frame, e.g. right after a synchronizing exchange
/// (both send, then both receive). Frames are FIFO, so the peer's online frames
/// arrive after that synchronizing frame, and every online frame then carries a
/// depth counted from the reset on both ends. Resetting while a pre-reset frame
/// is still in flight would let its old depth leak into the new count.
pub trait Channel: Send {
    /// Queues one frame; returns without waiting for the peer (like a socket
    /// buffer). Errors from earlier asynchronous writes surface here.
    fn send(&mut self, kind: MsgKind, payload: &[u8]) -> Result<(), TransportError>;
    /// Receives the next frame, which must be of `kind` and this session.
    fn recv(&mut self, kind: MsgKind) -> Result<Vec<u8>, TransportError>;
    fn stats(&self) -> Stats;
    fn reset_rounds(&mut self);
    fn session(&self) -> u64;
    fn set_session(&mut self, id: u64);
    /// Waits until everything sent has been written to the socket.
    fn flush(&mut self) -> Result<(), TransportError> {
        Ok(())
    }
    /// Bytes on the wire so far where they differ from the frames' (TLS records,
    /// handshake included); None on a plaintext link.
    fn wire_bytes(&self) -> Option<u64> {
        None
    }
    /// Receives no frame of `kind` larger than `max_bytes` from now on: each role
    /// allows a message only the size it can have at that point of the protocol.
    fn limit(&mut self, kind: MsgKind, max_bytes: u64);
    /// Whether the peer has closed its end (see [`Stream::peer_gone`](super::Stream::peer_gone)).
    fn peer_gone(&self) -> bool {
        false
    }
    /// [`limit`](Channel::limit) for every kind.
    fn limit_all(&mut self, max_bytes: u64) {
        for kind in MsgKind::ALL {
            self.limit(kind, max_bytes);
        }
    }
}

impl<C: Channel + ?Sized> Channel for Box<C> {
    fn send(&mut self, kind: MsgKind, payload: &[u8]) -> Result<(), TransportError> {
        (**self).send(kind, payload)
    }
    fn recv(&mut self, kind: MsgKind) -> Result<Vec<u8>, TransportError> {
        (**self).recv(kind)
    }
    fn stats(&self) -> Stats {
        (**self).stats()
    }
    fn reset_rounds(&mut self) {
        (**self).reset_rounds()
    }
    fn session(&self) -> u64 {
        (**self).session()
    }
    fn set_session(&mut self, id: u64) {
        (**self).set_session(id)
    }
    fn flush(&mut self) -> Result<(), TransportError> {
        (**self).flush()
    }
    fn wire_bytes(&self) -> Option<u64> {
        (**self).wire_bytes()
    }
    fn limit(&mut self, kind: MsgKind, max_bytes: u64) {
        (**self).limit(kind, max_bytes)
    }
    fn peer_gone(&self) -> bool {
        (**self).peer_gone()
    }
}

/// Typed helpers on any [`Channel`] (ring elements travel as little-endian u64).
pub trait ChannelExt: Channel {
    fn send_u64s(&mut self, kind: MsgKind, values: &[u64]) -> Result<(), TransportError> {
        self.send(kind, &u64s_to_bytes(values))
    }

    /// Receives exactly `expected_len` values; any other length is an error
    /// naming both.
    fn recv_u64s(
        &mut self,
        kind: MsgKind,
        expected_len: usize,
    ) -> Result<Vec<u64>, TransportError> {
        let bytes = self.recv(kind)?;
        if bytes.len() != expected_len * 8 {
            return Err(TransportError::WrongLength {
                kind,
                expected: expected_len,
                got: bytes.len(),
            });
        }
        Ok(bytes_to_u64s(&bytes))
    }

    /// Tells the peer why we stop; its pending or next `recv` fails with
    /// `PeerAborted` carrying `reason`. Best effort: errors are ignored.
    /// The reason is cut to [`MAX_ABORT_BYTES`](super::limits::MAX_ABORT_BYTES).
    fn abort(&mut self, reason: &str) {
        let mut end = reason.len().min(super::limits::MAX_ABORT_BYTES as usize);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let _ = self.send(MsgKind::Abort, &reason.as_bytes()[..end]);
        let _ = self.flush();
    }
}

impl<C: Channel + ?Sized> ChannelExt for C {}

pub fn u64s_to_bytes(values: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * 8);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// `bytes.len()` must be a multiple of 8 (trailing bytes are ignored).
pub fn bytes_to_u64s(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}
