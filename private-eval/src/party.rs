//! The two parties of the online phase, one type for the executor, the protocols, the
//! dealer's material and the byte counts; only the wire formats carry it as a bit.

use serde::Serialize;

/// A party of the online phase: the client holds the hidden states, the server the
/// adapter's weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Party {
    Client,
    Server,
}

impl Party {
    /// 0 for the client, 1 for the server: the party's index in the sharing.
    pub fn index(self) -> usize {
        match self {
            Party::Client => 0,
            Party::Server => 1,
        }
    }

    /// Both parties, in index order.
    pub const BOTH: [Party; 2] = [Party::Client, Party::Server];

    /// The party of wire bit `bit` (0 client, 1 server), none for another value.
    pub fn from_bit(bit: u64) -> Option<Party> {
        match bit {
            0 => Some(Party::Client),
            1 => Some(Party::Server),
            _ => None,
        }
    }
}
