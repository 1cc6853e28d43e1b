//! The deployed service: a dealer, a server and a client, each its own process,
//! talking over TCP. The dealer registers models (it learns only the public plan),
//! then hands each party its half of a session's material exactly once. The server
//! holds the checkpoint; the client holds the hidden states and learns the logits.
//!
//! Every link is TLS 1.3 unless [`Security::Insecure`] is chosen (see
//! [`crate::security`]: who authenticates whom).
//!
//! Handshakes: every connection starts on session 0. The client says `Hello`, the
//! server answers with the plan and the setup; the client then opens a session at
//! the dealer under a fresh random id (getting party 0's half), and only then
//! announces the id to the server (`Session`); both ends switch to it, and the
//! server fetches party 1's half. For a plan too large to hold
//! ([`DealerLimits::stream_above`]) the halves stream over those same dealer
//! connections while the online phase runs ([`cryptpeft_private_eval::online::half`]).

use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cryptpeft_types::NetworkProfile;
use serde::{Deserialize, Serialize};

pub use crate::messages::MAX_PLAN_BYTES;
use crate::messages::{DealerRequest, Registered};
use crate::security::{Peer, Security, PRE_AUTH_FRAME};
use crate::setup_cache::{self, SharedSetupCache};
use crate::tls::Link;
use cryptpeft_private_eval::arith::tensor::Mat;
use cryptpeft_private_eval::model::OwcModel;
use cryptpeft_private_eval::online::exec::{self, ExecError, Keys, ServerKeys, StepTrace};
use cryptpeft_private_eval::online::half::Half;
use cryptpeft_private_eval::party::Party;
use cryptpeft_private_eval::plan::{PlanWeights, SecurePlan, PROTOCOL};
use cryptpeft_private_eval::preprocessing::dealer::ModelMasks;
use cryptpeft_private_eval::preprocessing::material::Source;
use cryptpeft_private_eval::transport::{
    self, Admit, Channel, ChannelExt, FramedChannel, MsgKind, Stats, TransportConfig,
    TransportError,
};

mod client;
mod server;
pub use client::*;
pub use server::Server;

#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    #[error("{context}: {source}")]
    Transport {
        context: String,
        #[source]
        source: TransportError,
    },
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error("{0}")]
    Protocol(String),
}

/// A peer's malformed message, its parser's words escaped (they may quote the peer).
pub(crate) fn malformed(what: &str, e: impl std::fmt::Display) -> RoleError {
    let e = cryptpeft_private_eval::transport::printable(e.to_string().as_bytes());
    RoleError::Protocol(format!("malformed {what}: {e}"))
}

pub(crate) fn ctx(context: impl Into<String>) -> impl FnOnce(TransportError) -> RoleError {
    let context = context.into();
    move |source| RoleError::Transport { context, source }
}

/// How long a role waits for a peer to connect or answer.
#[derive(Debug, Clone)]
pub struct RoleConfig {
    pub transport: TransportConfig,
    pub connect_wait: Duration,
    /// Shaping of the client-server link (each side shapes what it sends).
    pub network: NetworkProfile,
    /// What the dealer accepts (used by the dealer only).
    pub dealer: DealerLimits,
    /// Client sessions a server runs at once (one thread each); more are told "busy".
    pub max_sessions: usize,
    /// This role's TLS settings, or plaintext. Each role has its own: in one process
    /// the three roles take three configs.
    pub security: Security,
    /// The client's cache of per-model setups (none: download every time).
    pub setup_cache: Option<SharedSetupCache>,
    /// Connections a server takes from one address at once.
    pub max_sessions_per_address: usize,
    /// What a client accepts from a server (used by the client only).
    pub client: ClientChecks,
}

impl Default for RoleConfig {
    /// Secure by default: links refuse to open until a [`Security`] is chosen.
    fn default() -> Self {
        Self {
            transport: TransportConfig::default(),
            connect_wait: Duration::from_secs(10),
            network: NetworkProfile::none(),
            dealer: DealerLimits::default(),
            max_sessions: 8,
            security: Security::Unset,
            setup_cache: None,
            max_sessions_per_address: 4,
            client: ClientChecks::default(),
        }
    }
}

/// What a client checks in the plan a server sends before running it: a hostile
/// server chooses the function, and these bound what that choice can cost or risk.
#[derive(Debug, Clone)]
pub struct ClientChecks {
    /// The plan's SHA-256 ([`SecurePlan::sha256_hex`]) the client expects, as `serve`
    /// prints it: pins the model's architecture and protocol parameters.
    pub expect_digest: Option<String>,
    /// Run plans with local truncation (which fails with a small probability per
    /// value); off, such a plan is refused.
    pub allow_local_truncation: bool,
    /// Largest wire (rows x cols) of a plan.
    pub max_wire_elems: usize,
    /// Largest dealer material of one session, both halves (bytes).
    pub max_session_bytes: u64,
    /// Most comparisons (ReLU, spline, row-max values) in one session.
    pub max_comparisons: u64,
}

impl Default for ClientChecks {
    fn default() -> Self {
        Self {
            expect_digest: None,
            allow_local_truncation: false,
            max_wire_elems: 64 << 20,
            max_session_bytes: 64 << 30,
            max_comparisons: 1 << 32,
        }
    }
}

/// What one dealer accepts.
#[derive(Debug, Clone)]
pub struct DealerLimits {
    /// Largest material (both parties' halves, encoded) one session of a registered plan
    /// may need.
    pub max_session_bytes: u64,
    /// Largest wire (rows x cols) of a registered plan.
    pub max_wire_elems: usize,
    /// Registered models at most.
    pub max_models: usize,
    /// A generated half not fetched within this time is dropped.
    pub pending_ttl: Duration,
    /// Sessions with material waiting, per client address and in total.
    pub max_pending_per_peer: usize,
    pub max_pending_total: usize,
    /// Material held for pending sessions, in bytes: bounds the dealer's memory.
    pub max_pending_bytes: u64,
    /// Connections served at once (one thread each); more are told "busy" and closed.
    pub max_connections: usize,
    /// Connections from one address at once; more are dropped unanswered.
    pub max_connections_per_address: usize,
    /// Models one server (one certificate; one address when insecure) keeps
    /// registered: past it, its least recently renewed one is dropped.
    pub max_models_per_server: usize,
    /// A registration not renewed for this long is dropped (a server renews it every
    /// quarter of it while it runs).
    pub lease: Duration,
    /// A plan whose larger half exceeds this many bytes streams its material during the
    /// online phase instead of handing it over whole before: neither the dealer nor a
    /// party then holds more than a step of it (LoRA's and AdaptFormer's halves at
    /// ViT-B/16 are about 15 GB each).
    pub stream_above: u64,
}

impl Default for DealerLimits {
    fn default() -> Self {
        Self {
            max_session_bytes: 2 << 30,
            max_wire_elems: 64 << 20,
            max_models: 256,
            pending_ttl: Duration::from_secs(60),
            max_pending_per_peer: 16,
            max_pending_total: 256,
            max_pending_bytes: 4 << 30,
            max_connections: 128,
            max_connections_per_address: 48,
            max_models_per_server: 16,
            lease: Duration::from_secs(120),
            stream_above: 2_000_000_000,
        }
    }
}

/// Who asks the dealer for a session's material: the client (party 0) or the server
/// that registered the model (party 1, proven by the dealer's token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requester {
    Client,
    Server { token: u128 },
}

/// A plaintext end talking to a TLS peer sees it hang up at once; say why that may be.
fn tls_hint(config: &RoleConfig) -> &'static str {
    match config.security {
        Security::Insecure => " (a TLS peer hangs up on an --insecure one)",
        Security::Tls(_) | Security::Unset => "",
    }
}

/// Connects to the dealer and sends `req`.
fn dealer_request(
    addr: &str,
    req: &DealerRequest,
    config: &RoleConfig,
) -> Result<FramedChannel<Link>, RoleError> {
    let mut chan = config
        .security
        .connect(
            addr,
            Peer::Dealer,
            0,
            NetworkProfile::none(),
            config.transport.clone(),
            config.connect_wait,
        )
        .map_err(ctx(format!("connecting to the dealer at {addr}")))?;
    // Replies are small; material comes in chunks.
    chan.limit_all(PRE_AUTH_FRAME);
    chan.limit(
        MsgKind::Material,
        cryptpeft_private_eval::online::comm::CHUNK as u64,
    );
    chan.send(MsgKind::MaterialRequest, &serde_json::to_vec(req).unwrap())
        .map_err(ctx("asking the dealer"))?;
    Ok(chan)
}

/// Sends the dealer a request about a registered model and waits for its "done".
pub(crate) fn manage(addr: &str, req: DealerRequest, config: &RoleConfig) -> Result<(), RoleError> {
    let mut chan = dealer_request(addr, &req, config)?;
    chan.recv(MsgKind::Material)
        .map_err(ctx(format!("waiting for the dealer{}", tls_hint(config))))?;
    Ok(())
}

/// Drops a registered model at the dealer: what `cryptpeft unregister` does, with the
/// certificate of the server that registered it.
pub fn unregister(dealer: &str, model: u64, config: &RoleConfig) -> Result<(), RoleError> {
    manage(dealer, DealerRequest::Unregister { model }, config)
}

/// A party's half as [`fetch_material`] gets it.
pub type DealerHalf = Half<FramedChannel<Link>>;

/// Fetches this party's seeded half of a session: expanded whole, or, for a plan that
/// streams, its header, the rest coming during the online phase. Returns it and a
/// counter of the bytes exchanged with the dealer.
pub fn fetch_material(
    dealer: &str,
    plan: &SecurePlan,
    model: u64,
    session: u64,
    who: Requester,
    config: &RoleConfig,
) -> Result<(DealerHalf, Arc<AtomicU64>), RoleError> {
    let (party, token) = match who {
        Requester::Client => (Party::Client, None),
        Requester::Server { token } => (Party::Server, Some(token)),
    };
    let req = DealerRequest::Material {
        model,
        session,
        party: party.index() as u8,
        token,
    };
    let chan = dealer_request(dealer, &req, config)?;
    let (half, bytes) = Half::receive(plan, party, chan).map_err(|e| {
        RoleError::Protocol(format!(
            "material from the dealer{}: {}",
            tls_hint(config),
            e.0
        ))
    })?;
    let b = half.binding();
    if b.session != session || b.party != party {
        return Err(RoleError::Protocol(
            "the dealer sent material for another session or party".into(),
        ));
    }
    Ok((half, bytes))
}

/// The client's first message: its [`PROTOCOL`] version and the setup digest it holds
/// for this server, if any.
#[derive(Debug, Serialize, Deserialize)]
struct Hello {
    #[serde(default)]
    setup: Option<String>,
    #[serde(default = "first_protocol")]
    protocol: u32,
}

/// The version of peers from before versions were sent.
fn first_protocol() -> u32 {
    1
}

/// Refuses a peer whose plans mean something else: the same plan would compute other
/// numbers.
fn same_protocol(peer: &str, theirs: u32) -> Result<(), RoleError> {
    match theirs == PROTOCOL {
        true => Ok(()),
        false => Err(RoleError::Protocol(format!(
            "the {peer} speaks protocol {theirs} and this build {PROTOCOL}: run the same \
             release on both sides"
        ))),
    }
}

/// The session the client opened at the dealer.
#[derive(Debug, Serialize, Deserialize)]
struct SessionMsg {
    session: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct SpecMsg {
    #[serde(default = "first_protocol")]
    protocol: u32,
    model: u64,
    plan: SecurePlan,
    classes: usize,
    /// Digest of `E` ([`setup_cache::digest`]); `E` follows unless the client holds it.
    setup_digest: String,
    setup_sent: bool,
}

/// Loads a model and lowers it: what `serve` does before registering.
pub fn load_server_model(
    model: &OwcModel,
    opts: cryptpeft_private_eval::plan::lower::LowerOptions,
) -> Result<(SecurePlan, PlanWeights), RoleError> {
    cryptpeft_private_eval::plan::lower::lower(model, opts)
        .map_err(|e| RoleError::Protocol(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_of_another_protocol_is_refused_by_name() {
        // A client from before versions were sent.
        let old: Hello = serde_json::from_str(r#"{"setup":null}"#).unwrap();
        assert_eq!(old.protocol, 1);
        let e = same_protocol("client", old.protocol)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("client speaks protocol 1") && e.contains(&format!("this build {PROTOCOL}")),
            "{e}"
        );
        assert!(same_protocol("server", PROTOCOL).is_ok());
    }
}
