//! The client: checks the server's plan against its own expectations, opens a session
//! at the dealer, and runs its half with the hidden states, learning the logits.

use super::*;

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
