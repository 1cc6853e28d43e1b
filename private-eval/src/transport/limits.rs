//! What one channel end accepts and how long it waits: deadlines, frame sizes, the
//! slowest rate. Below the channel, its writer thread and the framed channel, which
//! all read it.

use std::time::Duration;

use cryptpeft_types::NetworkProfile;

/// Limits of one channel end.
#[derive(Debug, Clone, PartialEq)]
pub struct TransportConfig {
    /// Longest wait for a frame to start (and for the peer to take ours).
    pub read_timeout: Duration,
    /// Largest payload accepted or sent; checked before any allocation. Roles lower
    /// it per message kind ([`Channel::limit`](super::Channel::limit)).
    pub max_frame_bytes: u64,
    /// Slowest rate a frame may travel at (bytes per second): a frame of `b` bytes
    /// must be read, or taken by the peer, within
    /// [`frame_budget`](TransportConfig::frame_budget), so a peer trickling bytes or
    /// reading slowly is dropped instead of holding a thread.
    pub min_rate: u64,
    /// An accepted connection's TLS handshake and first request complete within this.
    pub handshake_deadline: Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            read_timeout: Duration::from_secs(30),
            max_frame_bytes: 1 << 30,
            min_rate: 256 << 10,
            handshake_deadline: Duration::from_secs(10),
        }
    }
}

impl TransportConfig {
    /// Longest a frame of `bytes` may take once started: the read timeout, plus its
    /// bytes at the slowest accepted rate, plus twice its time on the shaped link.
    pub fn frame_budget(&self, bytes: u64, profile: &NetworkProfile) -> Duration {
        let slow = bytes as f64 / self.min_rate.max(1) as f64;
        let link = 2.0 * (profile.serialization_s(bytes) + profile.one_way_delay_s);
        self.read_timeout + Duration::from_secs_f64(slow + link)
    }
}

/// Largest frame read from a peer before it is authenticated and its session known:
/// a hello, a session id, a material request.
pub const PRE_AUTH_FRAME: u64 = 4 << 10;

/// Largest abort reason sent or read (bytes); longer ones are cut.
pub const MAX_ABORT_BYTES: u64 = 1 << 10;
