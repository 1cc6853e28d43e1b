//! The dealer as a network service, with limits so that no peer can exhaust it: a
//! registered plan is sized before it is accepted; a session's material is generated
//! outside the global lock (sessions of different clients proceed in parallel);
//! a half whose twin is never fetched expires; pending sessions are capped per client
//! address and in total, and a request over a cap is answered "busy", never an
//! out-of-memory kill. A plan whose halves are too large to hold streams: the client's
//! request generates step by step, sending its own half as it goes and pushing the
//! server's into a bounded pipe that the server's request drains.
//!
//! The books: a session's halves count against the pending-bytes cap from the moment
//! generation starts until they are written to their party (a slow reader's queued
//! half included); generation stops when its requester hangs up, runs under
//! `catch_unwind`, and a session that never becomes ready expires. Registrations hold
//! a lease the server renews; one server keeps at most a few models (past that its
//! least recently renewed one goes), and may drop its own.
//!
//! Who gets what: only a peer with a server certificate (issued by `server-ca.pem`,
//! under TLS) may register a model, and party 1's halves of that model go only to that
//! same certificate holding the registration token. A session is opened by the
//! request for party 0's half, which is handed to the opener in the same reply; a
//! session id that exists already is refused, so nobody else (the server included)
//! ever gets party 0's half of a session the client opened.

use std::collections::HashMap;
use std::net::{IpAddr, TcpListener};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use cryptpeft_types::NetworkProfile;

use crate::messages::{DealerRequest, Registered, MAX_PLAN_BYTES};
use crate::roles::{ctx, DealerLimits, RoleConfig, RoleError};
use crate::security::Fingerprint;
use cryptpeft_private_eval::arith::prg::Prg;
use cryptpeft_private_eval::online::comm;
use cryptpeft_private_eval::party::Party;
use cryptpeft_private_eval::plan::SecurePlan;
use cryptpeft_private_eval::preprocessing::dealer::{self, ModelMasks};
use cryptpeft_private_eval::preprocessing::material::write_step;
use cryptpeft_private_eval::transport::{
    serve_connections, Admit, Channel, ChannelExt, Gate, MsgKind,
};

/// Material of registered plans up to this size is generated once at registration
/// (under `catch_unwind`), so a plan whose generation would fail is refused there.
const TRIAL_GENERATION_BYTES: u64 = 64 << 20;

/// Longest a server's request waits for its session's material to be generated.
const GENERATION_WAIT: Duration = Duration::from_secs(300);

mod stream;
use stream::{forward, send_half, stream_session, PIPE_CHUNKS};

/// The two seeded halves of a session, filled in by whichever request generates them
/// (both None if generation stopped).
#[derive(Default)]
struct Halves {
    ready: Mutex<Option<[Option<Vec<u8>>; 2]>>,
    cv: Condvar,
}

struct Pending {
    model: u64,
    half_bytes: [u64; 2],
    peer: IpAddr,
    created: Instant,
    /// When both halves were ready (None while generating): the TTL runs from here, so
    /// a slow generation under load does not expire before anyone could fetch it.
    ready_at: Option<Instant>,
    halves: Arc<Halves>,
    /// A streamed session's party 1 half, as the generator pushes it.
    pipe: Option<Receiver<Vec<u8>>>,
    taken: [bool; 2],
}

impl Pending {
    /// Bytes of the halves not handed out yet.
    fn held(&self) -> u64 {
        (0..2)
            .filter(|&p| !self.taken[p])
            .map(|p| self.half_bytes[p])
            .sum()
    }
}

/// Who registered a model: a server certificate, or on an insecure dealer an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Registrant {
    Cert(Fingerprint),
    Address(IpAddr),
}

/// A registered model and who may act as its server.
#[derive(Clone)]
struct Model {
    plan: SecurePlan,
    masks: ModelMasks,
    token: u128,
    /// The registering server's certificate (None on an insecure dealer).
    owner: Option<Fingerprint>,
    registrant: Registrant,
    /// Last registration or renewal: the lease runs from here.
    renewed: Instant,
    /// Each party's half of one session, encoded.
    half_bytes: [u64; 2],
    /// Sessions stream ([`DealerLimits::stream_above`]).
    streams: bool,
}

#[derive(Default)]
struct State {
    models: HashMap<u64, Model>,
    pending: HashMap<u64, Pending>,
    /// Bytes of halves handed to a request and not yet written to its party.
    sending: u64,
    /// (session, party) halves handed out or expired, with when: single use. Entries
    /// older than ten TTLs are forgotten (a replayed id then gets fresh material).
    served: HashMap<(u64, Party), Instant>,
}

impl State {
    /// Drops halves nobody fetched within `ttl` of being ready, sessions never ready
    /// within the generation wait, and registrations past their lease.
    fn sweep(&mut self, ttl: Duration, lease: Duration) {
        let now = Instant::now();
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| match p.ready_at {
                Some(t) => now.duration_since(t) > ttl,
                None => now.duration_since(p.created) > GENERATION_WAIT + ttl,
            })
            .map(|(s, _)| *s)
            .collect();
        for s in expired {
            self.pending.remove(&s);
            self.served.insert((s, Party::Client), now);
            self.served.insert((s, Party::Server), now);
        }
        self.served.retain(|_, t| now.duration_since(*t) < ttl * 10);
        self.models
            .retain(|_, m| now.duration_since(m.renewed) <= lease);
    }

    /// Bytes held for sessions: halves waiting, being generated, or being written.
    fn held(&self) -> u64 {
        self.pending.values().map(Pending::held).sum::<u64>() + self.sending
    }
}

/// A half being written to its party: counted in [`State::sending`] until dropped.
struct Sending<'a> {
    state: &'a Mutex<State>,
    bytes: u64,
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.sending -= self.bytes;
    }
}

/// Runs the dealer on `listener` until `stop` returns true (checked between connections).
pub fn run_dealer(
    listener: TcpListener,
    config: RoleConfig,
    stop: impl Fn() -> bool,
) -> Result<(), RoleError> {
    let state = Arc::new(Mutex::new(State::default()));
    let limits = &config.dealer;
    let gate = Gate::new(limits.max_connections, limits.max_connections_per_address);
    serve_connections(&listener, stop, |stream, peer| {
        let Some(admit) = gate.admit(peer.ip()) else {
            return log::warn!("dealer: {peer}: dropped, no connection slot left for its address");
        };
        let (state, cfg) = (state.clone(), config.clone());
        std::thread::spawn(move || {
            let (mut chan, who) = match cfg.security.accept(
                stream,
                &peer.to_string(),
                NetworkProfile::none(),
                cfg.transport.clone(),
            ) {
                Ok(c) => c,
                Err(e) => return log::warn!("dealer: {peer}: {e}"),
            };
            if let Admit::Refuse(..) = admit {
                let n = cfg.dealer.max_connections;
                chan.abort(&busy(format!("{n} connections open")).to_string());
                return log::warn!("dealer: {peer}: refused, {n} connections open");
            }
            let tls = cfg.security.is_tls();
            match serve_request(&mut chan, &state, &cfg.dealer, peer.ip(), tls, who) {
                Ok(what) => log::debug!("dealer: {peer}: {what}"),
                Err(e) => {
                    chan.abort(&e.to_string());
                    log::warn!("dealer: {peer}: {e}");
                }
            }
            let _ = chan.close();
            drop(admit);
        });
    })
    .map_err(ctx("dealer"))
}

/// Checks a plan before the dealer accepts it: its size, and for a plan small enough,
/// that one session's material can be generated.
fn check_plan(plan: &SecurePlan, limits: &DealerLimits) -> Result<(), RoleError> {
    plan.check()
        .map_err(|e| RoleError::Protocol(format!("plan refused: {e}")))?;
    for (i, w) in plan.wires.iter().enumerate() {
        let elems = w.rows.saturating_mul(w.cols);
        if elems > limits.max_wire_elems {
            return Err(RoleError::Protocol(format!(
                "plan refused: wire {i} is {} x {}, more than {} elements",
                w.rows, w.cols, limits.max_wire_elems
            )));
        }
    }
    // Shapes that disagree (beyond what `check` covers) must not take the dealer down.
    let bytes = std::panic::catch_unwind(|| comm::offline_bytes(plan))
        .map_err(|_| RoleError::Protocol("plan refused: malformed (inconsistent wires)".into()))?;
    if bytes > limits.max_session_bytes {
        return Err(RoleError::Protocol(format!(
            "plan refused: one session needs {bytes} bytes of dealer material, more than {}",
            limits.max_session_bytes
        )));
    }
    if bytes <= TRIAL_GENERATION_BYTES {
        let masks = ModelMasks { seed: 1 };
        generate_halves(plan, &masks, 1, &|| true)
            .map_err(|e| RoleError::Protocol(format!("plan refused: {e}")))?;
    }
    Ok(())
}

/// Both halves of a session, generated under `catch_unwind` and while `go_on` holds.
fn generate_halves(
    plan: &SecurePlan,
    masks: &ModelMasks,
    session: u64,
    go_on: &dyn Fn() -> bool,
) -> Result<[Vec<u8>; 2], String> {
    let seed = Prg::os_seed();
    let run = std::panic::AssertUnwindSafe(|| {
        dealer::generate_while(plan, masks, session, &mut Prg::new(seed), go_on)
    });
    match std::panic::catch_unwind(run) {
        Ok(Some([m0, m1])) => Ok([m0.into_bytes(), m1.into_bytes()]),
        Ok(None) => Err("the requester left during generation".into()),
        Err(_) => Err("material generation failed (the plan's shapes disagree)".into()),
    }
}

fn busy(what: String) -> RoleError {
    RoleError::Protocol(format!("dealer busy: {what}; try again later"))
}

fn serve_request(
    chan: &mut impl Channel,
    state: &Mutex<State>,
    limits: &DealerLimits,
    peer: IpAddr,
    tls: bool,
    who: Option<Fingerprint>,
) -> Result<String, RoleError> {
    // Only a server (authenticated, or anyone on an insecure dealer) sends a plan.
    if who.is_some() || !tls {
        chan.limit(MsgKind::MaterialRequest, MAX_PLAN_BYTES);
    }
    let req = chan
        .recv(MsgKind::MaterialRequest)
        .map_err(ctx("dealer waiting for a request"))?;
    let req: DealerRequest =
        serde_json::from_slice(&req).map_err(|e| crate::roles::malformed("dealer request", e))?;
    let registrant = match who {
        Some(f) => Registrant::Cert(f),
        None => Registrant::Address(peer),
    };
    let (reply, what) = match req {
        DealerRequest::Register { plan } => {
            if tls && who.is_none() {
                return Err(RoleError::Protocol(
                    "registration refused: only a server, with a certificate issued by the deployment's server-ca.pem, may register a model".into(),
                ));
            }
            check_plan(&plan, limits)?;
            let half_bytes = [Party::Client, Party::Server].map(|p| comm::material_bytes(&plan, p));
            let streams = half_bytes.iter().any(|&b| b > limits.stream_above);
            let seed = Prg::os_seed();
            let model: u64 = rand::random();
            let mut st = state.lock().expect("dealer state");
            st.sweep(limits.pending_ttl, limits.lease);
            let mut own: Vec<(Instant, u64)> = st
                .models
                .iter()
                .filter(|(_, m)| m.registrant == registrant)
                .map(|(id, m)| (m.renewed, *id))
                .collect();
            own.sort();
            // A server past its share makes room from its own least recently renewed.
            let over = (own.len() + 1).saturating_sub(limits.max_models_per_server.max(1));
            for (_, id) in own.into_iter().take(over) {
                st.models.remove(&id);
                log::info!(
                    "dealer: dropped model {id:016x}: its server registered another past its share"
                );
            }
            if st.models.len() >= limits.max_models {
                return Err(busy(format!("{} models registered", st.models.len())));
            }
            let token = Prg::os_seed();
            let entry = Model {
                plan,
                masks: ModelMasks { seed },
                token,
                owner: who,
                registrant,
                renewed: Instant::now(),
                half_bytes,
                streams,
            };
            st.models.insert(model, entry);
            let reply = serde_json::to_vec(&Registered {
                model,
                seed,
                token,
                lease_s: limits.lease.as_secs_f64(),
            })
            .expect("registration reply");
            (reply, format!("registered model {model:016x}"))
        }
        DealerRequest::Renew { model } | DealerRequest::Unregister { model } => {
            let renew = matches!(req, DealerRequest::Renew { .. });
            let mut st = state.lock().expect("dealer state");
            let Some(m) = st.models.get_mut(&model) else {
                return Err(RoleError::Protocol(format!(
                    "unknown model {model:016x} (its lease ran out, or it was dropped): register again"
                )));
            };
            if m.registrant != registrant || (tls && who.is_none()) {
                return Err(RoleError::Protocol(format!(
                    "model {model:016x} is managed only by the server that registered it"
                )));
            }
            match renew {
                true => {
                    m.renewed = Instant::now();
                    (vec![1], format!("renewed model {model:016x}"))
                }
                false => {
                    st.models.remove(&model);
                    (vec![0], format!("unregistered model {model:016x}"))
                }
            }
        }
        DealerRequest::Material {
            model,
            session,
            party,
            token,
        } => {
            let what = format!("session {session:016x} party {party}");
            let gone = || chan.peer_gone();
            let delivery = material(
                state, limits, peer, who, model, session, party, token, &gone,
            )?;
            let streamed = !matches!(delivery, Delivery::Whole(..));
            chan.send(MsgKind::Material, &[streamed as u8])
                .map_err(ctx("dealer sending material"))?;
            match delivery {
                Delivery::Whole(half, sending) => {
                    send_half(chan, &half)?;
                    drop(sending);
                }
                Delivery::Generate { plan, masks, pipe } => {
                    let r = stream_session(chan, &plan, &masks, session, pipe, limits.pending_ttl);
                    if r.is_err() {
                        let mut st = state.lock().expect("dealer state");
                        st.pending.remove(&session);
                        st.served.insert((session, Party::Server), Instant::now());
                    }
                    r?
                }
                Delivery::Forward { pipe, bytes } => forward(chan, pipe, bytes)?,
            }
            return Ok(what);
        }
    };
    chan.send(MsgKind::Material, &reply)
        .map_err(ctx("dealer replying"))?;
    chan.flush().map_err(ctx("dealer flushing"))?;
    Ok(what)
}

/// How a party gets its half.
enum Delivery<'a> {
    /// The half, counted in the books until it is written.
    Whole(Vec<u8>, Sending<'a>),
    /// Party 0 of a streamed session: this request generates both halves step by step,
    /// its own straight to the client, party 1's into the pipe.
    Generate {
        plan: SecurePlan,
        masks: ModelMasks,
        pipe: SyncSender<Vec<u8>>,
    },
    /// Party 1 of a streamed session: what the generator pushes, `bytes` in all.
    Forward { pipe: Receiver<Vec<u8>>, bytes: u64 },
}

/// A session's generation: its plan and masks, with the pipe of the server's half if
/// it streams.
type Generation = (SecurePlan, ModelMasks, Option<SyncSender<Vec<u8>>>);

/// What a request for a half is admitted to: the session's halves, and either the
/// generation it owns (party 0 opening a session) or the pipe of a streamed one
/// (party 1).
struct Admitted {
    halves: Arc<Halves>,
    generate: Option<Generation>,
    forward: Option<(Receiver<Vec<u8>>, u64)>,
}

/// The books under the global lock: who may have this half, whether the session
/// exists or may open within the caps, and its entry.
fn admit(
    st: &mut State,
    limits: &DealerLimits,
    (peer, who, token): (IpAddr, Option<Fingerprint>, Option<u128>),
    (model, session, party): (u64, u64, Party),
) -> Result<Admitted, RoleError> {
    let p = party.index();
    let refuse = |msg: String| Err(RoleError::Protocol(msg));
    st.sweep(limits.pending_ttl, limits.lease);
    let m = st.models.get(&model).cloned().ok_or_else(|| {
        RoleError::Protocol(format!(
            "unknown model {model:016x}: the server must register first"
        ))
    })?;
    // Party 1's half, with the client's own, would reveal the weight masks.
    if party == Party::Server && (token.is_none_or(|t| (t ^ m.token) != 0) || who != m.owner) {
        return refuse(format!(
            "party 1's material of model {model:016x} goes only to the server that registered it"
        ));
    }
    if st.served.contains_key(&(session, party)) {
        return refuse(format!(
            "material for session {session:016x} party {p} was already handed out or expired; dealer material is single-use"
        ));
    }
    let generate = match (party, st.pending.get(&session)) {
        (Party::Client, Some(_)) => {
            return refuse(format!(
                "session {session:016x} exists already; a client opens a fresh session id"
            ))
        }
        (_, Some(pend)) if pend.model != model => {
            return refuse(format!("session {session:016x} belongs to another model"))
        }
        (_, Some(_)) => None,
        (Party::Server, None) => {
            return refuse(format!(
                "unknown session {session:016x}: the client opens it first"
            ))
        }
        (_, None) => {
            if st.pending.len() >= limits.max_pending_total {
                return Err(busy(format!("{} sessions pending", st.pending.len())));
            }
            let mine = st.pending.values().filter(|q| q.peer == peer).count();
            if mine >= limits.max_pending_per_peer {
                return Err(busy(format!("{mine} sessions of {peer} pending")));
            }
            // A streamed session holds at most the pipe.
            let half_bytes = match m.streams {
                true => [0, (PIPE_CHUNKS * comm::CHUNK) as u64],
                false => m.half_bytes,
            };
            let held = st.held();
            if held + half_bytes.iter().sum::<u64>() > limits.max_pending_bytes {
                return Err(busy(format!("{} MB of material pending", held / 1_000_000)));
            }
            let (tx, rx) = match m.streams {
                true => {
                    let (tx, rx) = sync_channel(PIPE_CHUNKS);
                    (Some(tx), Some(rx))
                }
                false => (None, None),
            };
            st.pending.insert(
                session,
                Pending {
                    model,
                    half_bytes,
                    peer,
                    created: Instant::now(),
                    ready_at: None,
                    halves: Arc::default(),
                    pipe: rx,
                    taken: [false; 2],
                },
            );
            Some((m.plan, m.masks, tx))
        }
    };
    st.served.insert((session, party), Instant::now());
    let pend = st.pending.get_mut(&session).expect("just checked");
    // A whole half counts as pending until handed out (below), a streamed one
    // as the pipe.
    if m.streams {
        pend.taken[p] = true;
    }
    let forward = match party {
        Party::Server => pend.pipe.take(),
        Party::Client => None,
    };
    let halves = pend.halves.clone();
    if forward.is_some() {
        st.pending.remove(&session);
    }
    Ok(Admitted {
        halves,
        generate,
        forward: forward.map(|f| (f, m.half_bytes[1])),
    })
}

/// One party's half of a session. Party 0's request opens the session and generates
/// both halves (outside the global lock); party 1's finds its half waiting.
#[allow(clippy::too_many_arguments)]
fn material<'a>(
    state: &'a Mutex<State>,
    limits: &DealerLimits,
    peer: IpAddr,
    who: Option<Fingerprint>,
    model: u64,
    session: u64,
    party: u8,
    token: Option<u128>,
    gone: &dyn Fn() -> bool,
) -> Result<Delivery<'a>, RoleError> {
    let party = Party::from_bit(party as u64)
        .ok_or_else(|| RoleError::Protocol(format!("party {party} does not exist")))?;
    let p = party.index();
    let Admitted {
        halves,
        generate,
        forward,
    } = admit(
        &mut state.lock().expect("dealer state"),
        limits,
        (peer, who, token),
        (model, session, party),
    )?;
    if let Some((plan, masks, Some(pipe))) = generate {
        return Ok(Delivery::Generate { plan, masks, pipe });
    }
    if let Some((pipe, bytes)) = forward {
        return Ok(Delivery::Forward { pipe, bytes });
    }
    if let Some((plan, masks, None)) = generate {
        let made = generate_halves(&plan, &masks, session, &|| !gone());
        let failed = made.as_ref().err().cloned();
        let halves_bytes = match made {
            Ok([h0, h1]) => [Some(h0), Some(h1)],
            Err(_) => [None, None],
        };
        *halves.ready.lock().expect("halves") = Some(halves_bytes);
        halves.cv.notify_all();
        let mut st = state.lock().expect("dealer state");
        if let Some(why) = failed {
            st.pending.remove(&session);
            st.served.insert((session, Party::Server), Instant::now());
            return Err(RoleError::Protocol(format!(
                "session {session:016x}: {why}"
            )));
        }
        if let Some(pend) = st.pending.get_mut(&session) {
            pend.ready_at = Some(Instant::now());
        }
    }
    let mine = {
        let ready = halves.ready.lock().expect("halves");
        let (mut ready, timeout) = halves
            .cv
            .wait_timeout_while(ready, GENERATION_WAIT, |r| r.is_none())
            .expect("halves");
        if timeout.timed_out() {
            return Err(RoleError::Protocol(format!(
                "session {session:016x}: material generation did not finish"
            )));
        }
        ready.as_mut().expect("ready")[p].take().ok_or_else(|| {
            RoleError::Protocol(format!(
                "session {session:016x}: material generation stopped (the client left)"
            ))
        })?
    };
    // From pending to being written: still on the books until `Sending` drops.
    let mut st = state.lock().expect("dealer state");
    let bytes = mine.len() as u64;
    st.sending += bytes;
    if let Some(q) = st.pending.get_mut(&session) {
        q.taken[p] = true;
        if q.taken == [true; 2] {
            st.pending.remove(&session);
        }
    }
    Ok(Delivery::Whole(mine, Sending { state, bytes }))
}

#[cfg(test)]
mod tests;
