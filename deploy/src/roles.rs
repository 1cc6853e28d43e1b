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

/// A server ready to answer clients: its plan, weights and registration with the dealer.
pub struct Server {
    plan: SecurePlan,
    keys: ServerKeys,
    /// `E = W - B` and its digest, computed once.
    setup: Vec<u64>,
    setup_digest: String,
    model: u64,
    /// The dealer's proof that this server registered `model`; never leaves for clients.
    token: u128,
    dealer: String,
    config: RoleConfig,
    /// Bytes exchanged with the dealer for sessions so far (the server's offline traffic).
    dealer_bytes: AtomicU64,
    /// How long the dealer keeps the registration without a renewal.
    lease: Duration,
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

impl Server {
    /// Registers the plan with the dealer and prepares the weight masks.
    pub fn new(
        plan: SecurePlan,
        weights: &PlanWeights,
        dealer: &str,
        config: RoleConfig,
    ) -> Result<Self, RoleError> {
        let mut chan = dealer_request(
            dealer,
            &DealerRequest::Register { plan: plan.clone() },
            &config,
        )?;
        let reply = chan
            .recv(MsgKind::Material)
            .map_err(ctx(format!("waiting for the dealer{}", tls_hint(&config))))?;
        let reg: Registered = serde_json::from_slice(&reply)
            .map_err(|e| RoleError::Protocol(format!("dealer registration reply: {e}")))?;
        let keys = ServerKeys::new(&plan, weights, &ModelMasks { seed: reg.seed });
        let lease = Duration::try_from_secs_f64(reg.lease_s).unwrap_or(Duration::MAX);
        let setup = keys.setup_message();
        let setup_digest = setup_cache::digest(plan.digest(), &setup);
        Ok(Self {
            plan,
            keys,
            setup,
            setup_digest,
            model: reg.model,
            token: reg.token,
            dealer: dealer.to_string(),
            config,
            dealer_bytes: Default::default(),
            lease,
        })
    }

    /// SHA-256 of the plan, for clients to pin (`infer --expect-digest`).
    pub fn plan_digest(&self) -> String {
        self.plan.sha256_hex()
    }

    /// Asks the dealer to keep this model registered for another lease.
    pub fn renew(&self) -> Result<(), RoleError> {
        manage(
            &self.dealer,
            DealerRequest::Renew { model: self.model },
            &self.config,
        )
    }

    /// Drops this model at the dealer: its sessions can no longer be opened.
    pub fn unregister(&self) -> Result<(), RoleError> {
        manage(
            &self.dealer,
            DealerRequest::Unregister { model: self.model },
            &self.config,
        )
    }

    /// Total bytes exchanged with the dealer for sessions so far.
    pub fn dealer_bytes(&self) -> u64 {
        self.dealer_bytes.load(Ordering::Relaxed)
    }

    /// The plan this server runs.
    pub fn plan(&self) -> &SecurePlan {
        &self.plan
    }

    /// The id the dealer gave this model.
    pub fn model_id(&self) -> u64 {
        self.model
    }

    /// Fetches this server's half (party 1) of a session from the dealer.
    pub fn material(&self, session: u64) -> Result<(DealerHalf, Arc<AtomicU64>), RoleError> {
        let who = Requester::Server { token: self.token };
        fetch_material(
            &self.dealer,
            &self.plan,
            self.model,
            session,
            who,
            &self.config,
        )
    }

    /// Answers one client connection: per session the spec, the setup (unless the
    /// client has it), then the online phase; a client may run many sessions on one
    /// connection and leaves by closing it. Returns the number of sessions. On failure
    /// the client is told why (an `Abort` frame) before the connection drops.
    pub fn handle(&self, mut chan: impl Channel) -> Result<u64, RoleError> {
        let mut done = 0;
        loop {
            match self.handle_inner(&mut chan, done > 0) {
                Ok(true) => {
                    done += 1;
                    chan.set_session(0);
                    chan.limit_all(PRE_AUTH_FRAME);
                }
                Ok(false) => return Ok(done),
                Err(e) => {
                    chan.abort(&format!("server: {e}"));
                    return Err(e);
                }
            }
        }
    }

    /// One session; `false` when the client left after an earlier one (it closed the
    /// connection, or stayed silent past the read timeout).
    fn handle_inner<C: Channel>(&self, chan: &mut C, later: bool) -> Result<bool, RoleError> {
        let hello = match chan.recv(MsgKind::Hello) {
            Err(TransportError::PeerClosed { .. } | TransportError::Timeout { .. }) if later => {
                return Ok(false)
            }
            r => r.map_err(ctx("server waiting for the client's hello"))?,
        };
        let hello: Hello = serde_json::from_slice(&hello).map_err(|e| malformed("hello", e))?;
        same_protocol("client", hello.protocol)?;
        let classes = self.plan.wires.last().map_or(0, |w| w.cols);
        let setup_sent = hello.setup.as_deref() != Some(self.setup_digest.as_str());
        let spec = serde_json::to_vec(&SpecMsg {
            protocol: PROTOCOL,
            model: self.model,
            plan: self.plan.clone(),
            classes,
            setup_digest: self.setup_digest.clone(),
            setup_sent,
        })
        .unwrap();
        chan.send(MsgKind::Spec, &spec)
            .map_err(ctx("server sending the plan"))?;
        if setup_sent {
            exec::send_setup(chan, &self.setup).map_err(RoleError::Exec)?;
        }
        let session = chan
            .recv(MsgKind::Session)
            .map_err(ctx("server waiting for the client's session"))?;
        let SessionMsg { session } =
            serde_json::from_slice(&session).map_err(|e| malformed("session message", e))?;
        chan.set_session(session);
        let (material, dealt) = self.material(session)?;
        // The session is known: the client's openings may be as large as the plan's.
        let exchange = self.plan.max_exchange_bytes();
        chan.limit(MsgKind::Open, exchange);
        chan.limit(MsgKind::Reveal, exchange);
        exec::sync(chan, material.binding().pair)?;
        let run = exec::run(&self.plan, Keys::Server(&self.keys), material, None, chan);
        self.dealer_bytes
            .fetch_add(dealt.load(Ordering::Relaxed), Ordering::Relaxed);
        run?;
        chan.flush().map_err(ctx("server flushing"))?;
        Ok(true)
    }

    /// Serves clients, up to `max_sessions` at once, until `stop` returns true. Each
    /// connection gets its own thread, where the TLS handshake runs too.
    /// The registration is renewed while it serves and dropped when `stop` ends it.
    pub fn serve(&self, listener: TcpListener, stop: impl Fn() -> bool) -> Result<(), RoleError> {
        let gate = transport::Gate::new(
            self.config.max_sessions,
            self.config.max_sessions_per_address,
        );
        let cfg = &self.config;
        let stopped = std::sync::atomic::AtomicBool::new(false);
        let r = std::thread::scope(|s| {
            s.spawn(|| self.keep_registered(&stopped));
            let stop = || {
                let now = stop();
                stopped.store(now, Ordering::Relaxed);
                now
            };
            let r = transport::serve_connections(&listener, stop, |stream, peer| {
                let Some(admit) = gate.admit(peer.ip()) else {
                    return log::warn!(
                        "server: client {peer}: dropped, no slot left for its address"
                    );
                };
                s.spawn(move || {
                    let accepted = cfg.security.accept(
                        stream,
                        &peer.to_string(),
                        cfg.network.clone(),
                        cfg.transport.clone(),
                    );
                    let mut chan = match accepted {
                        Ok((c, _)) => c,
                        Err(e) => return log::warn!("server: client {peer}: {e}"),
                    };
                    if let Admit::Refuse(..) = admit {
                        let n = cfg.max_sessions;
                        chan.abort(&format!(
                            "server busy: {n} sessions running; try again later"
                        ));
                        return log::warn!("server: client {peer}: refused, {n} sessions running");
                    }
                    match self.handle(chan) {
                        Ok(n) => log::info!("server: {n} session(s) with {peer} done"),
                        Err(e) => log::warn!("server: client {peer}: {e}"),
                    }
                    drop(admit);
                });
            });
            stopped.store(true, Ordering::Relaxed);
            r
        });
        if let Err(e) = self.unregister() {
            log::warn!("server: unregistering model {:016x}: {e}", self.model);
        }
        r.map_err(ctx("server"))
    }

    /// Renews the registration every quarter lease until `stopped`; a failed renewal
    /// is logged and retried at the next.
    fn keep_registered(&self, stopped: &std::sync::atomic::AtomicBool) {
        let every = (self.lease / 4).max(Duration::from_millis(100));
        let mut last = Instant::now();
        while !stopped.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
            if last.elapsed() >= every {
                last = Instant::now();
                if let Err(e) = self.renew() {
                    log::warn!("server: renewing model {:016x}: {e}", self.model);
                }
            }
        }
    }
}

/// What the client prints.
#[derive(Debug, Clone, Serialize)]
pub struct ClientReport {
    pub logits: Vec<f64>,
    pub predicted: usize,
    pub online_bytes: u64,
    pub online_bytes_sent: u64,
    pub online_bytes_received: u64,
    pub rounds: u64,
    pub online_s: f64,
    /// Part of `online_s` spent getting each step's material: for a streamed half,
    /// expanding it and waiting for the dealer.
    pub material_s: f64,
    /// Whether the half streamed during the online phase
    /// ([`DealerLimits::stream_above`]).
    pub streamed: bool,
    pub offline_bytes: u64,
    pub offline_s: f64,
    pub setup_bytes: u64,
    /// The setup `E` came from the client's cache (not downloaded).
    pub setup_cached: bool,
    /// Bytes on the wire of the online phase, TLS records included (equal to
    /// `online_bytes` on a plaintext link).
    pub online_wire_bytes: u64,
    /// TLS handshake bytes with the server, both directions (0 on a plaintext link).
    pub handshake_bytes: u64,
    /// Connecting to the server: TCP, and the TLS handshake shaped like the link.
    pub connect_s: f64,
    pub steps: Vec<StepTrace>,
}

/// The client: connects to the server and the dealer, runs one inference on the
/// backbone's states `hidden` (the plan reads the last `scope + 1`; more may come).
pub fn run_client(
    server: &str,
    dealer: &str,
    hidden: &[Mat],
    config: &RoleConfig,
) -> Result<ClientReport, RoleError> {
    run_client_with(server, dealer, last_states(hidden), config)
}

/// The source of the plan's inputs from all of a backbone's states: input `k` of the
/// last `count`.
fn last_states(hidden: &[Mat]) -> impl FnMut(usize, usize) -> Result<Mat, String> + '_ {
    move |k, count| {
        hidden
            .len()
            .checked_sub(count)
            .and_then(|first| hidden.get(first + k))
            .cloned()
            .ok_or_else(|| format!("{} hidden states, the plan needs {count}", hidden.len()))
    }
}

/// [`run_client`] with the hidden states computed while it connects, gets the plan and
/// setup, fetches the dealer's half and runs: `hidden(k, count)` gives input `k` of the
/// plan's `count` (the backbone's last states), asked for only when a step first needs
/// it, so the client's backbone overlaps everything before, and an early state's
/// opening leaves while the later ones are computed.
pub fn run_client_with(
    server: &str,
    dealer: &str,
    hidden: impl FnMut(usize, usize) -> Result<Mat, String>,
    config: &RoleConfig,
) -> Result<ClientReport, RoleError> {
    let mut conn = ClientConnection::open(server, config)?;
    let connect_s = conn.connect_s;
    conn.run(dealer, hidden, config)
        .map(|r| ClientReport { connect_s, ..r })
}

/// A client's connection to the server, kept for many sessions (images): the TLS
/// handshake happens once, and the setup comes with the first session.
pub struct ClientConnection {
    chan: FramedChannel<Link>,
    server: String,
    /// Connecting took this long.
    pub connect_s: f64,
}

impl ClientConnection {
    pub fn open(server: &str, config: &RoleConfig) -> Result<Self, RoleError> {
        let t = Instant::now();
        let chan = connect_server(server, config)?;
        Ok(Self {
            chan,
            server: server.to_string(),
            connect_s: t.elapsed().as_secs_f64(),
        })
    }

    /// One session (see [`run_client_with`]). After an error the connection is spent:
    /// open another.
    pub fn run(
        &mut self,
        dealer: &str,
        hidden: impl FnMut(usize, usize) -> Result<Mat, String>,
        config: &RoleConfig,
    ) -> Result<ClientReport, RoleError> {
        let r = client_session(&mut self.chan, &self.server, dealer, hidden, config);
        if let Err(e) = &r {
            self.chan.abort(&format!("client: {e}"));
        }
        self.chan.set_session(0);
        r
    }
}

/// The client's connection to `server`: TCP, then TLS unless insecure, shaped like
/// the client-server link.
pub fn connect_server(server: &str, config: &RoleConfig) -> Result<FramedChannel<Link>, RoleError> {
    let mut chan = config
        .security
        .connect(
            server,
            Peer::Server,
            0,
            config.network.clone(),
            config.transport.clone(),
            config.connect_wait,
        )
        .map_err(ctx(format!("connecting to the server at {server}")))?;
    // Until the plan is known: a plan, and the setup in chunks.
    chan.limit_all(PRE_AUTH_FRAME);
    chan.limit(MsgKind::Spec, MAX_PLAN_BYTES);
    chan.limit(
        MsgKind::Setup,
        cryptpeft_private_eval::online::comm::CHUNK as u64,
    );
    Ok(chan)
}

/// Refuses a server's plan the client did not agree to run: another model than the
/// pinned one, local truncation it did not ask for, or sizes past its bounds.
fn check_spec(plan: &SecurePlan, checks: &ClientChecks) -> Result<(), RoleError> {
    let refuse = |why: String| Err(RoleError::Protocol(format!("plan refused: {why}")));
    plan.check()
        .or_else(|e| refuse(format!("malformed plan from the server: {e}")))?;
    if let Some(want) = &checks.expect_digest {
        let got = plan.sha256_hex();
        if !got.eq_ignore_ascii_case(want.trim()) {
            return refuse(format!(
                "the server runs plan {got}, not the expected {want} (--expect-digest)"
            ));
        }
    }
    if !plan.exact_truncation && !checks.allow_local_truncation {
        return refuse(
            "the server asks for local truncation (wrong with a small probability per value); \
             allow it with --allow-local-truncation"
                .into(),
        );
    }
    if let Some((i, w)) = plan
        .wires
        .iter()
        .enumerate()
        .find(|(_, w)| w.rows.saturating_mul(w.cols) > checks.max_wire_elems)
    {
        return refuse(format!(
            "wire {i} is {} x {}, more than {} values",
            w.rows, w.cols, checks.max_wire_elems
        ));
    }
    let comparisons = plan.comparisons();
    if comparisons > checks.max_comparisons {
        return refuse(format!(
            "{comparisons} comparisons in one session, more than {}",
            checks.max_comparisons
        ));
    }
    let bytes =
        std::panic::catch_unwind(|| cryptpeft_private_eval::online::comm::offline_bytes(plan))
            .map_err(|_| RoleError::Protocol("plan refused: inconsistent shapes".into()))?;
    if bytes > checks.max_session_bytes {
        return refuse(format!(
            "one session needs {bytes} bytes of dealer material, more than {}",
            checks.max_session_bytes
        ));
    }
    Ok(())
}

/// One inference over a channel connected to `server` (`run_client` connects first);
/// on failure the server is told why.
pub fn run_client_over<C: Channel>(
    chan: &mut C,
    server: &str,
    dealer: &str,
    hidden: &[Mat],
    config: &RoleConfig,
) -> Result<ClientReport, RoleError> {
    let r = client_session(chan, server, dealer, last_states(hidden), config);
    if let Err(e) = &r {
        chan.abort(&format!("client: {e}"));
    }
    r
}

fn client_session<C: Channel>(
    chan: &mut C,
    server: &str,
    dealer: &str,
    mut hidden: impl FnMut(usize, usize) -> Result<Mat, String>,
    config: &RoleConfig,
) -> Result<ClientReport, RoleError> {
    let handshake_bytes = chan.wire_bytes().unwrap_or(0);
    let cache = config.setup_cache.as_deref();
    let hello = Hello {
        setup: cache.and_then(|c| c.digest_for(server)),
        protocol: PROTOCOL,
    };
    chan.send(MsgKind::Hello, &serde_json::to_vec(&hello).unwrap())
        .map_err(ctx("client hello"))?;
    let spec = chan.recv(MsgKind::Spec).map_err(ctx(format!(
        "client waiting for the plan{}",
        tls_hint(config)
    )))?;
    let spec: SpecMsg =
        serde_json::from_slice(&spec).map_err(|e| malformed("plan from the server", e))?;
    same_protocol("server", spec.protocol)?;
    check_spec(&spec.plan, &config.client)?;
    let exchange = spec.plan.max_exchange_bytes();
    chan.limit(MsgKind::Open, exchange);
    chan.limit(MsgKind::Reveal, exchange);
    let plan_digest = spec.plan.digest();
    let setup = if spec.setup_sent {
        let msg = exec::client_setup_message(&spec.plan, chan)?;
        if setup_cache::digest(plan_digest, &msg) != spec.setup_digest {
            return Err(RoleError::Protocol(
                "the server's setup does not match the digest it announced".into(),
            ));
        }
        let msg = std::sync::Arc::new(msg);
        if let Some(c) = cache {
            c.put(server, &spec.setup_digest, msg.clone());
        }
        msg
    } else {
        cache
            .and_then(|c| c.get(server, plan_digest, &spec.setup_digest))
            .ok_or_else(|| {
                RoleError::Protocol(
                    "the server skipped the setup but the cached one does not match its digest"
                        .into(),
                )
            })?
    };
    let keys = exec::ClientKeys::from_message(&spec.plan, &setup);
    // The keys hold their own copy (the cache, if any, another).
    drop(setup);
    let setup_bytes = chan.stats().total_bytes();
    // The session is opened at the dealer before anyone else learns its id.
    let session: u64 = rand::random::<u64>() | 1;
    let t_off = Instant::now();
    let (material, dealt) = fetch_material(
        dealer,
        &spec.plan,
        spec.model,
        session,
        Requester::Client,
        config,
    )?;
    let offline_s = t_off.elapsed().as_secs_f64();
    let msg = serde_json::to_vec(&SessionMsg { session }).unwrap();
    chan.send(MsgKind::Session, &msg)
        .map_err(ctx("client announcing its session"))?;
    chan.set_session(session);
    exec::sync(chan, material.binding().pair)?;
    let streamed = matches!(material, Half::Streamed(_));
    let count = spec.plan.inputs;
    let mut source = |k: usize| hidden(k, count);
    let before: Stats = chan.stats();
    let wire_before = chan.wire_bytes();
    let t = Instant::now();
    let out = exec::run_with(
        &spec.plan,
        Keys::Client(&keys),
        material,
        Some(&mut source),
        chan,
    )?;
    let online_s = t.elapsed().as_secs_f64();
    let offline_bytes = dealt.load(Ordering::Relaxed);
    let online = chan.stats() - before;
    let online_wire_bytes = match (wire_before, chan.wire_bytes()) {
        (Some(a), Some(b)) => b - a,
        _ => online.total_bytes(),
    };
    let logits = out
        .logits
        .ok_or_else(|| RoleError::Protocol("the plan revealed nothing".into()))?;
    let predicted = cryptpeft_private_eval::reference::argmax(&logits);
    Ok(ClientReport {
        logits,
        predicted,
        online_bytes: online.total_bytes(),
        online_bytes_sent: online.bytes_sent,
        online_bytes_received: online.bytes_received,
        rounds: online.rounds,
        online_s,
        material_s: out.material_s,
        streamed,
        offline_bytes,
        offline_s,
        setup_bytes,
        setup_cached: !spec.setup_sent,
        online_wire_bytes,
        handshake_bytes,
        connect_s: 0.0,
        steps: out.steps,
    })
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
