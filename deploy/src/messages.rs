//! What servers and clients say to the dealer, shared by both ends so that the dealer
//! service does not reach into the roles for its wire format.

use cryptpeft_private_eval::plan::SecurePlan;
use serde::{Deserialize, Serialize};

/// Largest plan (JSON) a registration or a spec may carry.
pub const MAX_PLAN_BYTES: u64 = 64 << 20;

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum DealerRequest {
    /// Server: register a plan; the reply carries the model id and the weight-mask seed.
    Register { plan: SecurePlan },
    /// Either party: its half of a session's material. Party 1's half needs the token
    /// the dealer gave the registering server.
    Material {
        model: u64,
        session: u64,
        party: u8,
        #[serde(default)]
        token: Option<u128>,
    },
    /// The registering server (same certificate): keep `model` registered.
    Renew { model: u64 },
    /// The registering server, on shutdown or by `cryptpeft unregister`: drop `model`.
    Unregister { model: u64 },
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Registered {
    pub(crate) model: u64,
    pub(crate) seed: u128,
    /// Entitles the registering server, and only it, to party 1's halves of this model.
    pub(crate) token: u128,
    /// Seconds the registration lasts unless renewed.
    #[serde(default)]
    pub(crate) lease_s: f64,
}
