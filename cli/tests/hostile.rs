//! The hostile-peer suite: the dealer and the server run as real `cryptpeft`
//! processes on loopback, each test is one named attack, and during and after every
//! attack an honest client (`cryptpeft infer`, another process) completes an
//! inference whose class is the plaintext model's. Attackers come from 127.0.0.2, so
//! the per-address caps that contain them leave the honest client (127.0.0.1) alone.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{free_addr, wait_listening, Kill, BIN};
use cryptpeft_deploy::attack::{self, header};
use cryptpeft_deploy::security::{Role, Security};
use cryptpeft_private_eval::transport::{Channel, MsgKind, TransportConfig};
use cryptpeft_types::NetworkProfile;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Seconds a peer has for a frame to start, and for its handshake and first request.
const TIMEOUT: &str = "3";
const HANDSHAKE: &str = "2";
/// Longest any attacker is held before being cut off (handshake or frame deadline
/// plus slack for a loaded machine).
const CUT_WITHIN: Duration = Duration::from_secs(12);

/// A role process with its stderr in a file.
struct Proc {
    child: Kill,
    log: PathBuf,
}

impl Proc {
    fn start(args: &[&str], log: &Path) -> Proc {
        let f = std::fs::File::create(log).unwrap();
        let child = Command::new(BIN)
            .args(args)
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .unwrap();
        Proc {
            child: Kill(child),
            log: log.to_path_buf(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log holds `needle`; panics with the log if it does not soon.
    fn expect_log(&self, needle: &str) -> String {
        let t = Instant::now();
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            assert!(
                t.elapsed() < CUT_WITHIN,
                "no `{needle}` in {}:\n{log}",
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Resident memory from `/proc`, in MB.
    fn rss_mb(&self) -> f64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.child.0.id())).unwrap();
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap();
        kb / 1e3
    }

    fn alive(&mut self) -> bool {
        self.child.0.try_wait().unwrap().is_none()
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The command failed, and its error says `what`.
fn fails_saying(o: &Output, what: &str) {
    assert!(!o.status.success(), "succeeded: {}", stderr(o));
    assert!(stderr(o).contains(what), "no `{what}` in: {}", stderr(o));
}

/// A deployment: keys, one checkpoint, a dealer and a server, and the class the
/// plaintext model gives the client's hidden states.
struct Site {
    dir: PathBuf,
    keys: String,
    ckpt: String,
    hidden: String,
    want: usize,
    dealer: Proc,
    server: Proc,
    daddr: String,
    saddr: String,
}

fn checkpoint(dir: &Path, name: &str, adapter: &str, backbone: &str) -> (String, String, usize) {
    let ckpt = dir.join(format!("{name}.safetensors"));
    let hid = dir.join(format!("{name}-hidden.safetensors"));
    let (c, h) = (ckpt.to_str().unwrap(), hid.to_str().unwrap());
    let args = [
        "random-checkpoint",
        "--adapter",
        adapter,
        "--backbone",
        backbone,
        "--classes",
        "5",
        "--out",
        c,
    ];
    assert!(run(&args).status.success());
    assert!(run(&["random-hidden", "--checkpoint", c, "--out", h])
        .status
        .success());
    let model = cryptpeft_private_eval::model::OwcModel::load(&ckpt).unwrap();
    let states = cryptpeft_private_eval::hidden::load(&hid, model.spec.scope + 1).unwrap();
    let logits = cryptpeft_private_eval::reference::forward(&model, &states);
    let want = cryptpeft_private_eval::reference::argmax(&logits);
    (c.to_string(), h.to_string(), want)
}

impl Site {
    fn start(name: &str, dealer_extra: &[&str]) -> Site {
        let dir =
            std::env::temp_dir().join(format!("cryptpeft-hostile-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let keys = dir.join("keys").to_str().unwrap().to_string();
        let out = run(&[
            "keys",
            "--out",
            &keys,
            "--host",
            "127.0.0.1",
            "--servers",
            "2",
            "--clients",
            "1",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let (ckpt, hidden, want) = checkpoint(&dir, "adapter", "h=2,r=8,s=2", "vit-mini");
        let daddr = free_addr();
        let mut args = vec![
            "dealer",
            "--listen",
            &daddr,
            "--tls",
            &keys,
            "--timeout",
            TIMEOUT,
            "--handshake-timeout",
            HANDSHAKE,
        ];
        args.extend_from_slice(dealer_extra);
        let dealer = Proc::start(&args, &dir.join("dealer.log"));
        wait_listening(&daddr);
        let saddr = free_addr();
        let server = serve(&dir, &ckpt, &saddr, &daddr, &keys, "server.log");
        Site {
            dir,
            keys,
            ckpt,
            hidden,
            want,
            dealer,
            server,
            daddr,
            saddr,
        }
    }

    /// `infer` against `server` and `dealer` with the deployment's client files.
    fn infer_at(&self, server: &str, dealer: &str, extra: &[&str]) -> Output {
        let mut args = vec![
            "infer",
            "--server",
            server,
            "--dealer",
            dealer,
            "--tls",
            &self.keys,
            "--hidden-states",
            &self.hidden,
            "--timeout",
            "20",
            "--no-setup-cache",
            "--json",
        ];
        args.extend_from_slice(extra);
        run(&args)
    }

    /// `serve` with the keys in `keys` against `dealer`, expected to stop.
    fn serve_once(&self, keys: &str, dealer: &str) -> Output {
        let saddr = free_addr();
        let args = [
            "serve",
            "--checkpoint",
            &self.ckpt,
            "--listen",
            &saddr,
            "--dealer",
            dealer,
            "--tls",
            keys,
        ];
        run(&args)
    }

    /// An honest client's inference gives the plaintext model's class.
    fn honest(&self) {
        let out = self.infer_at(&self.saddr, &self.daddr, &[]);
        assert!(
            out.status.success(),
            "honest client failed: {}",
            stderr(&out)
        );
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(r["predicted"].as_u64().unwrap() as usize, self.want);
    }

    /// A copy of the keys directory with `swaps` (destination, source) files replaced:
    /// an attacker's directory holding another role's key.
    fn forged_keys(&self, name: &str, swaps: &[(&str, &str)]) -> String {
        let forged = self.dir.join(name);
        std::fs::create_dir_all(&forged).unwrap();
        for e in std::fs::read_dir(&self.keys).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), forged.join(e.file_name())).unwrap();
        }
        for (to, from) in swaps {
            std::fs::copy(Path::new(&self.keys).join(from), forged.join(to)).unwrap();
        }
        forged.to_str().unwrap().to_string()
    }
}

/// The model id a server printed.
fn model_id(server: &Proc) -> u64 {
    let log = server.expect_log("model ");
    let at = log.find("model ").unwrap() + 6;
    u64::from_str_radix(&log[at..at + 16], 16).unwrap()
}

fn serve(dir: &Path, ckpt: &str, saddr: &str, daddr: &str, keys: &str, log: &str) -> Proc {
    serve_with(dir, ckpt, saddr, daddr, keys, log, &[])
}

fn serve_with(
    dir: &Path,
    ckpt: &str,
    saddr: &str,
    daddr: &str,
    keys: &str,
    log: &str,
    extra: &[&str],
) -> Proc {
    let mut args = vec![
        "serve",
        "--checkpoint",
        ckpt,
        "--listen",
        saddr,
        "--dealer",
        daddr,
        "--tls",
        keys,
        "--timeout",
        TIMEOUT,
        "--handshake-timeout",
        HANDSHAKE,
    ];
    args.extend_from_slice(extra);
    let p = Proc::start(&args, &dir.join(log));
    wait_listening(saddr);
    p
}

/// Waits until the peer has closed `sock`; panics if it is still open after
/// [`CUT_WITHIN`].
fn cut_off(mut sock: TcpStream, since: Instant) {
    let left = CUT_WITHIN.saturating_sub(since.elapsed());
    assert!(
        attack::closed_within(&mut sock, left).is_some(),
        "still connected after {CUT_WITHIN:?}"
    );
}

fn tls_attacker(addr: &str, keys: &str, ca: &str) -> attack::Tls {
    attack::tls(addr, &Path::new(keys).join(ca)).unwrap()
}

/// A TLS server on a free port presenting `cert`/`key` (files of `dir`) and answering
/// nothing: a peer posing with another role's certificate.
fn posing_server(dir: &str, cert: &str, key: &str) -> String {
    let chain: Vec<_> = CertificateDer::pem_file_iter(Path::new(dir).join(cert))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(Path::new(dir).join(key)).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let config = Arc::new(config);
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, s);
            let _ = tls.conn.complete_io(&mut tls.sock);
            let _ = tls.read(&mut [0u8; 64]);
        }
    });
    addr
}

#[test]
fn dealer_impersonation_with_a_server_certificate() {
    let site = Site::start("fake-dealer", &[]);
    // The user's mistake the issue found: a server's key in the dealer's place. The
    // dealer refuses to start, saying why.
    let swapped = site.forged_keys(
        "swapped",
        &[
            ("dealer.pem", "server-2.pem"),
            ("dealer.key", "server-2.key"),
        ],
    );
    let fake = free_addr();
    let out = run(&["dealer", "--listen", &fake, "--tls", &swapped]);
    fails_saying(&out, "dealer.pem is not a dealer certificate");
    // An attacker who also swaps the CA file starts; no honest peer accepts it.
    let forged = site.forged_keys(
        "forged",
        &[
            ("dealer.pem", "server-2.pem"),
            ("dealer.key", "server-2.key"),
            ("dealer-ca.pem", "server-ca.pem"),
        ],
    );
    let fake_dealer = Proc::start(
        &["dealer", "--listen", &fake, "--tls", &forged],
        &site.dir.join("fake-dealer.log"),
    );
    wait_listening(&fake);
    let out = site.infer_at(&site.saddr, &fake, &[]);
    fails_saying(&out, "not issued by dealer-ca.pem");
    let out = site.serve_once(&site.keys, &fake);
    fails_saying(&out, "not issued by dealer-ca.pem");
    drop(fake_dealer);
    site.honest();
}

#[test]
fn server_impersonation_with_the_dealers_certificate() {
    let site = Site::start("fake-server", &[]);
    // Registering at the dealer with the dealer's own key: refused at the handshake.
    let forged = site.forged_keys(
        "forged",
        &[
            ("server.pem", "dealer.pem"),
            ("server.key", "dealer.key"),
            ("server-ca.pem", "dealer-ca.pem"),
        ],
    );
    let out = site.serve_once(&forged, &site.daddr);
    fails_saying(&out, "refused our certificate");
    site.dealer.expect_log("invalid peer certificate");
    // Posing as a server to clients: the client refuses the dealer's certificate.
    let fake = posing_server(&site.keys, "dealer.pem", "dealer.key");
    let out = site.infer_at(&fake, &site.daddr, &[]);
    fails_saying(&out, "not issued by server-ca.pem");
    site.honest();
}

#[test]
fn a_client_certificate_used_as_a_server() {
    let site = Site::start("client-as-server", &[]);
    let fake = posing_server(&site.keys, "client.pem", "client.key");
    let out = site.infer_at(&fake, &site.daddr, &[]);
    fails_saying(
        &out,
        "does not allow extended key usage for server authentication",
    );
    // Nor does the client's key make a server: `serve` refuses it as its certificate.
    let forged = site.forged_keys(
        "forged",
        &[("server.pem", "client.pem"), ("server.key", "client.key")],
    );
    let out = site.serve_once(&forged, &site.daddr);
    fails_saying(&out, "server.pem is not a server certificate");
    site.honest();
}

/// Opens `n` connections from 127.0.0.2 that send one byte of a TLS ClientHello every
/// 500 ms; checks an honest inference meanwhile, then that every one is cut off.
fn slowloris_handshake(site: &Site, addr: &str, n: usize, who: &Proc) {
    let t = Instant::now();
    let socks: Vec<TcpStream> = (0..n).map(|_| attack::connect(addr).unwrap()).collect();
    let trickle = {
        let mut socks: Vec<TcpStream> = socks.iter().map(|s| s.try_clone().unwrap()).collect();
        std::thread::spawn(move || {
            for _ in 0..40 {
                for s in &mut socks {
                    let _ = s.write_all(&[0x16]);
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    };
    site.honest();
    for s in socks {
        cut_off(s, t);
    }
    who.expect_log("127.0.0.2");
    drop(trickle);
    site.honest();
}

#[test]
fn slowloris_on_the_handshake_at_the_dealer() {
    let site = Site::start("slow-handshake-dealer", &[]);
    // More than the dealer's connection slots: the per-address cap drops the rest.
    slowloris_handshake(&site, &site.daddr, 150, &site.dealer);
}

#[test]
fn slowloris_on_the_handshake_at_the_server() {
    let site = Site::start("slow-handshake-server", &[]);
    slowloris_handshake(&site, &site.saddr, 20, &site.server);
}

/// Completes TLS handshakes from 127.0.0.2, then sends the first frame one byte every
/// 500 ms; checks an honest inference meanwhile and that each is cut off.
fn slowloris_first_request(site: &Site, addr: &str, ca: &str, kind: MsgKind, n: usize) {
    let t = Instant::now();
    let mut conns: Vec<_> = (0..n).map(|_| tls_attacker(addr, &site.keys, ca)).collect();
    let frame = header(2, kind);
    let trickle = std::thread::spawn(move || {
        for b in frame {
            for c in &mut conns {
                let _ = c.write_all(&[b]).and_then(|()| c.flush());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        conns
    });
    site.honest();
    let conns = trickle.join().unwrap();
    for c in conns {
        cut_off(c.sock, t);
    }
    site.honest();
}

#[test]
fn slowloris_on_the_first_request_at_the_dealer() {
    let site = Site::start("slow-request-dealer", &[]);
    slowloris_first_request(
        &site,
        &site.daddr,
        "dealer-ca.pem",
        MsgKind::MaterialRequest,
        40,
    );
    site.dealer.expect_log("timed out");
}

#[test]
fn slowloris_on_the_first_request_at_the_server() {
    let site = Site::start("slow-request-server", &[]);
    slowloris_first_request(&site, &site.saddr, "server-ca.pem", MsgKind::Hello, 4);
    site.server.expect_log("timed out");
}

#[test]
fn a_slow_reader_of_a_large_half() {
    // The dealer's slowest accepted rate is 20 MB/s here, so a half of several MB must
    // be taken within a few seconds.
    let site = Site::start("slow-reader", &["--min-rate-kbs", "20000"]);
    let (big, _, _) = checkpoint(&site.dir, "big", "h=4,r=64,s=4", "vit-b16");
    let saddr = free_addr();
    let big_server = serve(&site.dir, &big, &saddr, &site.daddr, &site.keys, "big.log");
    let model = model_id(&big_server);
    // Party 0's half of a fresh session, read a byte every 100 ms.
    let mut tls = tls_attacker(&site.daddr, &site.keys, "dealer-ca.pem");
    let req = format!(r#"{{"Material":{{"model":{model},"session":12345,"party":0}}}}"#);
    tls.write_all(&attack::frame(MsgKind::MaterialRequest, req.as_bytes()))
        .unwrap();
    tls.flush().unwrap();
    let sock = tls.sock.try_clone().unwrap();
    let t = Instant::now();
    let reader = std::thread::spawn(move || {
        let mut b = [0u8; 1];
        while tls.sock.read(&mut b).is_ok_and(|n| n > 0) {
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    site.honest();
    site.dealer.expect_log("did not take it within");
    cut_off(sock, t);
    drop(reader);
    site.honest();
}

#[test]
fn an_oversized_frame_before_authentication() {
    let site = Site::start("oversized", &[]);
    let rss = site.dealer.rss_mb();
    for (addr, ca, kind, who) in [
        (
            &site.daddr,
            "dealer-ca.pem",
            MsgKind::MaterialRequest,
            &site.dealer,
        ),
        (&site.saddr, "server-ca.pem", MsgKind::Hello, &site.server),
    ] {
        let mut tls = tls_attacker(addr, &site.keys, ca);
        // A 1 GiB frame announced by an anonymous peer: refused from its header.
        tls.write_all(&header(1 << 30, kind)).unwrap();
        tls.write_all(&[0u8; 4096]).unwrap();
        tls.flush().unwrap();
        who.expect_log("frame of 1073741824 bytes exceeds the limit of 4096 bytes");
        cut_off(tls.sock, Instant::now());
    }
    assert!(site.dealer.rss_mb() < rss + 64.0, "the dealer grew");
    site.honest();
}

#[test]
fn abort_text_injection() {
    let site = Site::start("abort", &[]);
    let mut tls = tls_attacker(&site.saddr, &site.keys, "server-ca.pem");
    let forged = "bye\n[2026-12-03T00:00:00Z ERROR cryptpeft] dealer compromised\x1b[2J";
    tls.write_all(&attack::frame(MsgKind::Abort, forged.as_bytes()))
        .unwrap();
    tls.flush().unwrap();
    let log = site.server.expect_log("peer aborted");
    assert!(log.contains(r"bye\n[2026"), "{log}");
    assert!(
        !log.lines()
            .any(|l| l.starts_with("[2026-12-03T00:00:00Z ERROR"))
            && !log.contains('\x1b'),
        "{log}"
    );
    site.honest();
}

/// A keys directory in which `server.*` are server `i`'s.
fn server_keys(site: &Site, i: usize) -> String {
    site.forged_keys(
        &format!("server-{i}"),
        &[
            ("server.pem", &format!("server-{i}.pem")),
            ("server.key", &format!("server-{i}.key")),
        ],
    )
}

#[test]
fn registry_exhaustion_by_one_server() {
    let site = Site::start("registry", &["--max-models-per-server", "8", "-v"]);
    let keys = server_keys(&site, 2);
    let config = cryptpeft_deploy::roles::RoleConfig {
        security: Security::from_dir(Path::new(&keys), Role::Server).unwrap(),
        ..Default::default()
    };
    let model = cryptpeft_private_eval::model::OwcModel::load(Path::new(&site.ckpt)).unwrap();
    let (plan, weights) =
        cryptpeft_private_eval::plan::lower::lower(&model, Default::default()).unwrap();
    let rss = site.dealer.rss_mb();
    // 300 registrations under one certificate: each past the 8th drops its oldest.
    for _ in 0..300 {
        cryptpeft_deploy::roles::Server::new(plan.clone(), &weights, &site.daddr, config.clone())
            .unwrap();
    }
    site.dealer.expect_log("past its share");
    assert!(site.dealer.rss_mb() < rss + 64.0, "the registry grew");
    // The honest server's own model is untouched.
    site.honest();
}

#[test]
fn a_server_restarted_300_times_against_one_dealer() {
    let mut site = Site::start("restarts", &["-v"]);
    let rss = site.dealer.rss_mb();
    // Killed, not stopped: no unregistration; the dealer's per-server share and the
    // leases keep the registry bounded.
    for i in 0..300 {
        let old = &mut site.server.child.0;
        old.kill().unwrap();
        old.wait().unwrap();
        let log = format!("server-{}.log", i % 2);
        site.server = serve(
            &site.dir,
            &site.ckpt,
            &site.saddr,
            &site.daddr,
            &site.keys,
            &log,
        );
    }
    assert!(site.dealer.alive());
    site.dealer.expect_log("past its share");
    assert!(site.dealer.rss_mb() < rss + 64.0, "the dealer grew");
    site.honest();
}

/// A malicious server with a genuine certificate: it answers a client's hello with
/// `plan` (the honest model's plan, edited) and nothing else.
fn hostile_plan(site: &Site, edit: impl FnOnce(&mut serde_json::Value) + Send + 'static) -> String {
    let model = cryptpeft_private_eval::model::OwcModel::load(Path::new(&site.ckpt)).unwrap();
    let (plan, _) = cryptpeft_private_eval::plan::lower::lower(&model, Default::default()).unwrap();
    let mut plan = serde_json::to_value(&plan).unwrap();
    edit(&mut plan);
    let spec = serde_json::json!({
        "protocol": cryptpeft_private_eval::plan::PROTOCOL,
        "model": 1,
        "plan": plan,
        "classes": 5,
        "setup_digest": "",
        "setup_sent": false,
    });
    let security = Security::from_dir(Path::new(&site.keys), Role::Server).unwrap();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let peer = s.peer_addr().unwrap().to_string();
            let config = TransportConfig::default();
            let Ok((mut chan, _)) = security.accept(s, &peer, NetworkProfile::none(), config)
            else {
                continue;
            };
            if chan.recv(MsgKind::Hello).is_ok() {
                let _ = chan.send(MsgKind::Spec, &serde_json::to_vec(&spec).unwrap());
                let _ = chan.recv(MsgKind::Session);
            }
        }
    });
    addr
}

#[test]
fn a_plan_with_an_out_of_bounds_slice() {
    let site = Site::start("slice", &[]);
    let fake = hostile_plan(&site, |plan| {
        let steps = plan["steps"].as_array_mut().unwrap();
        steps.insert(
            0,
            serde_json::json!({"Slice": {"out": 1, "x": 0, "from": 0, "to": 1_000_000}}),
        );
    });
    let out = site.infer_at(&fake, &site.daddr, &[]);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("plan refused") && e.contains("slice 0..1000000"),
        "{e}"
    );
    site.honest();
}

#[test]
fn a_plan_asking_for_excessive_comparisons() {
    let site = Site::start("comparisons", &[]);
    let fake = hostile_plan(&site, |plan| {
        let wires = plan["wires"].as_array_mut().unwrap();
        let mut big = wires[0].clone();
        big["rows"] = 8192.into();
        big["cols"] = 8192.into();
        wires.push(big);
        let w = wires.len() - 1;
        let steps = plan["steps"].as_array_mut().unwrap();
        for _ in 0..100 {
            steps.insert(
                0,
                serde_json::json!({"Relu": {"out": w, "x": w, "bits": 32}}),
            );
        }
    });
    let out = site.infer_at(&fake, &site.daddr, &[]);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("plan refused") && e.contains("comparisons in one session"),
        "{e}"
    );
    site.honest();
}

#[test]
fn a_requester_that_disconnects_during_generation() {
    let site = Site::start("disconnect", &[]);
    let (big, _, _) = checkpoint(&site.dir, "big", "h=4,r=64,s=4", "vit-b16");
    let saddr = free_addr();
    let big_server = serve(&site.dir, &big, &saddr, &site.daddr, &site.keys, "big.log");
    let model = model_id(&big_server);
    let rss = site.dealer.rss_mb();
    for session in 1..=20u64 {
        let mut tls = tls_attacker(&site.daddr, &site.keys, "dealer-ca.pem");
        let req = format!(r#"{{"Material":{{"model":{model},"session":{session},"party":0}}}}"#);
        tls.write_all(&attack::frame(MsgKind::MaterialRequest, req.as_bytes()))
            .unwrap();
        tls.flush().unwrap();
        // Gone before any material could be sent.
        drop(tls);
    }
    site.dealer.expect_log("left during generation");
    assert!(
        site.dealer.rss_mb() < rss + 256.0,
        "the dealer kept abandoned material"
    );
    site.honest();
}

#[test]
fn old_single_ca_keys_are_refused_with_how_to_reissue() {
    let site = Site::start("old-keys", &[]);
    let old = site.forged_keys("old", &[("ca.pem", "dealer-ca.pem")]);
    for f in ["dealer-ca.pem", "server-ca.pem", "client-ca.pem"] {
        std::fs::remove_file(Path::new(&old).join(f)).unwrap();
    }
    let out = run(&["dealer", "--listen", &free_addr(), "--tls", &old]);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("before certificates were bound to roles") && e.contains("cryptpeft keys"),
        "{e}"
    );
}

#[test]
fn a_pinned_digest_admits_only_that_plan() {
    let site = Site::start("pin", &[]);
    let log = site.server.expect_log("--expect-digest): ");
    let digest = log.split("--expect-digest): ").nth(1).unwrap()[..64].to_string();
    let out = site.infer_at(&site.saddr, &site.daddr, &["--expect-digest", &digest]);
    assert!(out.status.success(), "{}", stderr(&out));
    let other = "0".repeat(64);
    let out = site.infer_at(&site.saddr, &site.daddr, &["--expect-digest", &other]);
    fails_saying(&out, "not the expected");
    // Nor does a client run local truncation it did not ask for.
    let saddr = free_addr();
    let _local = serve_with(
        &site.dir,
        &site.ckpt,
        &saddr,
        &site.daddr,
        &site.keys,
        "local.log",
        &["--local-truncation"],
    );
    let out = site.infer_at(&saddr, &site.daddr, &[]);
    fails_saying(&out, "local truncation");
    let out = site.infer_at(&saddr, &site.daddr, &["--allow-local-truncation"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn an_operator_unregisters_a_model_with_its_servers_keys_only() {
    let site = Site::start("unregister", &[]);
    let model = format!("{:016x}", model_id(&site.server));
    let unregister = |keys: &str| {
        run(&[
            "unregister",
            "--dealer",
            &site.daddr,
            "--model",
            &model,
            "--tls",
            keys,
        ])
    };
    // Another server's certificate may not.
    let out = unregister(&server_keys(&site, 2));
    fails_saying(&out, "managed only by the server that registered it");
    site.honest();
    let out = unregister(&site.keys);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = site.infer_at(&site.saddr, &site.daddr, &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("unknown model"), "{}", stderr(&out));
}

#[test]
fn a_server_for_known_clients_admits_only_certified_ones() {
    let site = Site::start("known-clients", &[]);
    let saddr = free_addr();
    let _known = serve_with(
        &site.dir,
        &site.ckpt,
        &saddr,
        &site.daddr,
        &site.keys,
        "known.log",
        &["--known-clients"],
    );
    // The deployment's client holds client.pem: admitted.
    let out = site.infer_at(&saddr, &site.daddr, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    // An anonymous one (no client.pem in its directory) is refused at the handshake.
    let anonymous = site.dir.join("anonymous");
    std::fs::create_dir_all(&anonymous).unwrap();
    for f in ["dealer-ca.pem", "server-ca.pem"] {
        std::fs::copy(Path::new(&site.keys).join(f), anonymous.join(f)).unwrap();
    }
    let out = run(&[
        "infer",
        "--server",
        &saddr,
        "--dealer",
        &site.daddr,
        "--tls",
        anonymous.to_str().unwrap(),
        "--hidden-states",
        &site.hidden,
        "--no-setup-cache",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("certificate"), "{}", stderr(&out));
}
