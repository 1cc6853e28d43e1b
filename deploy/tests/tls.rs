//! Every link under TLS: who may connect and ask for what, and what a network
//! observer sees (recorded through a relaying proxy on each link).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cryptpeft_deploy::keys::Deployment;
use cryptpeft_deploy::roles::{fetch_material, run_client, Requester, RoleConfig, Server};
use cryptpeft_deploy::security::{Role, Security, Tls, Trust};
use cryptpeft_deploy::setup_cache::SetupCache;
use cryptpeft_private_eval::model::OwcModel;
use cryptpeft_private_eval::plan::lower::lower;
use cryptpeft_private_eval::{hidden, reference, transport};
use cryptpeft_types::{AdapterSpec, BackboneSpec};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

fn hosts() -> Vec<String> {
    vec!["127.0.0.1".into(), "localhost".into()]
}

fn config(security: Security) -> RoleConfig {
    RoleConfig {
        security,
        transport: transport::TransportConfig {
            read_timeout: Duration::from_secs(10),
            ..Default::default()
        },
        connect_wait: Duration::from_secs(2),
        ..RoleConfig::default()
    }
}

fn model() -> OwcModel {
    OwcModel::random(
        AdapterSpec::paper(1, 8, 2),
        BackboneSpec::test_small(),
        3,
        1,
    )
}

/// A dealer thread on loopback, stopped when dropped.
struct Dealer {
    addr: String,
    stop: Arc<AtomicBool>,
}

impl Drop for Dealer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn dealer(security: Security) -> Dealer {
    let l = transport::listen("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let st = stop.clone();
    let cfg = config(security);
    std::thread::spawn(move || {
        cryptpeft_deploy::dealer_service::run_dealer(l, cfg, || st.load(Ordering::Relaxed))
    });
    Dealer { addr, stop }
}

fn register(dealer: &str, security: Security) -> Result<Server, String> {
    let (plan, weights) = lower(&model(), Default::default()).unwrap();
    Server::new(plan, &weights, dealer, config(security)).map_err(|e| e.to_string())
}

fn plan() -> cryptpeft_private_eval::plan::SecurePlan {
    lower(&model(), Default::default()).unwrap().0
}

fn certs(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap()
}

fn key(pem: &str) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap()
}

fn refused<T>(r: Result<T, impl std::fmt::Display>) -> String {
    match r {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    }
}

/// Relays every connection to `target` and records both directions of each.
struct Recorder {
    addr: String,
    transcripts: Arc<Mutex<Vec<Vec<u8>>>>,
}

fn recorder(target: String) -> Recorder {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let transcripts = Arc::new(Mutex::new(Vec::new()));
    let t = transcripts.clone();
    std::thread::spawn(move || {
        for inbound in l.incoming() {
            let Ok(inbound) = inbound else { return };
            let outbound = TcpStream::connect(&target).unwrap();
            for (mut from, mut to) in [
                (inbound.try_clone().unwrap(), outbound.try_clone().unwrap()),
                (outbound, inbound),
            ] {
                let t = t.clone();
                std::thread::spawn(move || {
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 8192];
                    while let Ok(n) = from.read(&mut buf) {
                        if n == 0 || to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        seen.extend_from_slice(&buf[..n]);
                    }
                    let _ = to.shutdown(std::net::Shutdown::Write);
                    t.lock().unwrap().push(seen);
                });
            }
        }
    });
    Recorder { addr, transcripts }
}

/// Splits a byte stream into TLS records; None if it is not one (a plaintext
/// frame, or bytes past the last whole record).
fn tls_records(stream: &[u8]) -> Option<Vec<(u8, usize)>> {
    let mut out = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        if rest.len() < 5 {
            return None;
        }
        let (kind, version, len) = (
            rest[0],
            [rest[1], rest[2]],
            u16::from_be_bytes([rest[3], rest[4]]),
        );
        // TLS 1.3 records say 1.2 (0x0303); the first ClientHello may say 1.0.
        if !(20..=23).contains(&kind) || !matches!(version, [3, 1] | [3, 3]) {
            return None;
        }
        let len = len as usize;
        if len > (1 << 14) + 256 || rest.len() < 5 + len {
            return None;
        }
        out.push((kind, len));
        rest = &rest[5 + len..];
    }
    Some(out)
}

/// Runs one inference with every link recorded; returns the logits and transcripts.
fn recorded_inference(
    dealer_sec: Security,
    server_sec: Security,
    client_sec: Security,
) -> (Vec<f64>, Vec<f64>, Vec<Vec<u8>>) {
    let d = dealer(dealer_sec);
    let dealer_link = recorder(d.addr.clone());
    let m = model();
    let (plan, weights) = lower(&m, Default::default()).unwrap();
    let server = Server::new(plan, &weights, &dealer_link.addr, config(server_sec)).unwrap();
    let l = transport::listen("127.0.0.1:0").unwrap();
    let server_link = recorder(l.local_addr().unwrap().to_string());
    let x = hidden::random(3, 10, 16, 4);
    let stop = AtomicBool::new(false);
    let logits = std::thread::scope(|s| {
        s.spawn(|| server.serve(l, || stop.load(Ordering::Relaxed)).unwrap());
        let r = run_client(
            &server_link.addr,
            &dealer_link.addr,
            &x,
            &config(client_sec),
        );
        stop.store(true, Ordering::Relaxed);
        r.unwrap().logits
    });
    std::thread::sleep(Duration::from_millis(200));
    let mut all = dealer_link.transcripts.lock().unwrap().clone();
    all.extend(server_link.transcripts.lock().unwrap().iter().cloned());
    (logits, reference::forward(&m, &x), all)
}

#[test]
fn a_tls_inference_matches_plaintext_and_the_wire_carries_only_records() {
    let dep = Deployment::generate(&hosts(), 1).unwrap();
    let (logits, want, transcripts) = recorded_inference(
        dep.security(Role::Dealer),
        dep.security(Role::Server),
        dep.security(Role::Client),
    );
    let err = logits
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(err < 1e-2, "logit error {err}");
    // Registration, two dealer fetches, one client-server link, the unregistration
    // when the server stops: both directions each.
    assert_eq!(transcripts.len(), 2 * 5);
    for t in &transcripts {
        let records = tls_records(t)
            .unwrap_or_else(|| panic!("not TLS records: {:?}", &t[..t.len().min(32)]));
        assert!(!records.is_empty());
        // After the handshake everything is application data (23) or an alert (21).
        assert!(
            records.iter().skip(2).all(|(k, _)| matches!(k, 21 | 23)),
            "{records:?}"
        );
    }
    // The recorder itself tells plaintext apart: an insecure run fails the same check.
    let (_, _, plain) =
        recorded_inference(Security::Insecure, Security::Insecure, Security::Insecure);
    assert!(plain.iter().all(|t| tls_records(t).is_none()));
    let plan_json = b"\"wires\"";
    assert!(plain
        .iter()
        .any(|t| t.windows(plan_json.len()).any(|w| w == plan_json)));
    assert!(!transcripts
        .iter()
        .any(|t| t.windows(plan_json.len()).any(|w| w == plan_json)));
}

#[test]
fn peers_without_a_valid_certificate_are_refused() {
    let dep = Deployment::generate(&hosts(), 1).unwrap();
    let rogue = Deployment::generate(&hosts(), 1).unwrap();
    let d = dealer(dep.security(Role::Dealer));
    // A server that trusts the right CA but holds a certificate from another: the
    // dealer refuses its certificate.
    let trust = Trust {
        server_ca: certs(&rogue.server_ca.cert_pem),
        ..dep.trust()
    };
    let forged = Tls::new(
        trust,
        Some((
            certs(&rogue.servers[0].cert_pem),
            key(&rogue.servers[0].key_pem),
        )),
        Role::Server,
    )
    .unwrap();
    let e = refused(register(&d.addr, Security::Tls(Arc::new(forged))));
    assert!(e.contains("refused our certificate"), "{e}");
    // A server from another deployment does not accept the dealer either.
    let e = refused(register(&d.addr, rogue.security(Role::Server)));
    assert!(
        e.contains("TLS handshake") && e.contains("certificate"),
        "{e}"
    );
    // A client trusting another CA does not accept the dealer.
    let e = refused(fetch_material(
        &d.addr,
        &plan(),
        1,
        1,
        Requester::Client,
        &config(rogue.security(Role::Client)),
    ));
    assert!(
        e.contains("TLS handshake") && e.contains("certificate"),
        "{e}"
    );
    // A plaintext peer gets nothing: the dealer expects a TLS handshake.
    let e = refused(fetch_material(
        &d.addr,
        &plan(),
        1,
        1,
        Requester::Client,
        &config(Security::Insecure),
    ));
    assert!(e.contains("--insecure"), "{e}");
    // A certificate for other names: the client dials 127.0.0.1, the dealer is "elsewhere".
    let elsewhere = Deployment::generate(&["elsewhere.example".into()], 1).unwrap();
    let d2 = dealer(elsewhere.security(Role::Dealer));
    let e = refused(fetch_material(
        &d2.addr,
        &plan(),
        1,
        1,
        Requester::Client,
        &config(elsewhere.security(Role::Client)),
    ));
    assert!(
        e.contains("TLS handshake") && e.contains("certificate"),
        "{e}"
    );
}

#[test]
fn only_the_registering_server_gets_party_one() {
    let dep = Deployment::generate(&hosts(), 2).unwrap();
    let d = dealer(dep.security(Role::Dealer));
    let client = config(dep.security(Role::Client));
    // A client (no certificate) may not register: its plan is more than the dealer
    // reads from an unauthenticated peer, so the connection is dropped.
    let e = refused(register(&d.addr, dep.security(Role::Client)));
    assert!(e.contains("waiting for the dealer"), "{e}");
    let server = register(&d.addr, dep.security(Role::Server)).unwrap();
    let m = server.model_id();
    fetch_material(&d.addr, server.plan(), m, 11, Requester::Client, &client).unwrap();
    // A client asking for party 1's half (any token) is refused.
    let e = refused(fetch_material(
        &d.addr,
        server.plan(),
        m,
        11,
        Requester::Server { token: 7 },
        &client,
    ));
    assert!(e.contains("only to the server that registered it"), "{e}");
    // So is another authenticated server (with a model of its own). That a leaked
    // token does not help it either is a unit test of the dealer.
    let other = register(&d.addr, dep.security_of(Role::Server, 1)).unwrap();
    let guess = Requester::Server { token: 7 };
    let e = refused(fetch_material(
        &d.addr,
        server.plan(),
        m,
        11,
        guess,
        &config(dep.security_of(Role::Server, 1)),
    ));
    assert!(e.contains("only to the server that registered it"), "{e}");
    assert_ne!(other.model_id(), m);
    // The registering server gets it, once.
    server.material(11).unwrap();
    let e = refused(server.material(11));
    assert!(e.contains("single-use"), "{e}");
}

#[test]
fn a_returning_client_reuses_its_cached_setup() {
    let dep = Deployment::generate(&hosts(), 1).unwrap();
    let d = dealer(dep.security(Role::Dealer));
    let server = register(&d.addr, dep.security(Role::Server)).unwrap();
    let l = transport::listen("127.0.0.1:0").unwrap();
    let saddr = l.local_addr().unwrap().to_string();
    let dir = std::env::temp_dir().join(format!("cryptpeft-tls-cache-{}", std::process::id()));
    let x = hidden::random(3, 10, 16, 4);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| server.serve(l, || stop.load(Ordering::Relaxed)).unwrap());
        let client = |cache| RoleConfig {
            setup_cache: Some(Arc::new(cache)),
            ..config(dep.security(Role::Client))
        };
        let first = run_client(&saddr, &d.addr, &x, &client(SetupCache::in_dir(&dir))).unwrap();
        // A new process: only the directory survives.
        let again = run_client(&saddr, &d.addr, &x, &client(SetupCache::in_dir(&dir))).unwrap();
        stop.store(true, Ordering::Relaxed);
        assert!(!first.setup_cached && again.setup_cached);
        assert!(
            again.setup_bytes * 5 < first.setup_bytes,
            "{} vs {}",
            again.setup_bytes,
            first.setup_bytes
        );
        assert_eq!(first.logits.len(), again.logits.len());
        for (a, b) in first.logits.iter().zip(&again.logits) {
            assert!((a - b).abs() < 1e-2);
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn without_a_chosen_security_no_link_opens() {
    let d = dealer(
        Deployment::generate(&hosts(), 1)
            .unwrap()
            .security(Role::Dealer),
    );
    let unset = RoleConfig {
        connect_wait: Duration::from_secs(2),
        ..RoleConfig::default()
    };
    let e = refused(fetch_material(
        &d.addr,
        &plan(),
        1,
        1,
        Requester::Client,
        &unset,
    ));
    assert!(e.contains("no link security chosen"), "{e}");
}
