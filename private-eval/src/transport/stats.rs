//! Traffic counters of one channel end.

use std::ops::{Add, Sub};

/// Bytes and frames this end wrote and read, headers included (a message of
/// `p` payload bytes counts `17 + p`), and the online rounds so far (see
/// [`Channel`](super::Channel) for the round semantics).
///
/// `after - before` gives a phase's or a step's own traffic. Rounds are a
/// running maximum of frame depths, which only grow, so their difference is the
/// rounds added in between (saturating, in case a `reset_rounds` lies between).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub frames_sent: u64,
    pub frames_received: u64,
    pub rounds: u64,
}

impl Stats {
    /// Bytes in both directions.
    pub fn total_bytes(&self) -> u64 {
        self.bytes_sent + self.bytes_received
    }
}

impl Sub for Stats {
    type Output = Stats;

    fn sub(self, rhs: Stats) -> Stats {
        Stats {
            bytes_sent: self.bytes_sent.saturating_sub(rhs.bytes_sent),
            bytes_received: self.bytes_received.saturating_sub(rhs.bytes_received),
            frames_sent: self.frames_sent.saturating_sub(rhs.frames_sent),
            frames_received: self.frames_received.saturating_sub(rhs.frames_received),
            rounds: self.rounds.saturating_sub(rhs.rounds),
        }
    }
}

/// Sums consecutive phases or steps of one end (rounds add up too).
impl Add for Stats {
    type Output = Stats;

    fn add(self, rhs: Stats) -> Stats {
        Stats {
            bytes_sent: self.bytes_sent + rhs.bytes_sent,
            bytes_received: self.bytes_received + rhs.bytes_received,
            frames_sent: self.frames_sent + rhs.frames_sent,
            frames_received: self.frames_received + rhs.frames_received,
            rounds: self.rounds + rhs.rounds,
        }
    }
}
