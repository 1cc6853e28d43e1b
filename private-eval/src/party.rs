//! The two parties of the online phase, one type for the executor, the protocols and
//! the byte counts (the dealer's wire format and DCF keys still carry a party bit).

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
}
