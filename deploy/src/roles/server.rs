//! The server: holds the checkpoint, answers each client's hello with the plan and the
//! setup, and runs its half of every session with material fetched from the dealer.

use super::*;

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
