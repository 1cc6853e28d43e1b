//! `load-test`: many concurrent clients against a dealer and a server running as
//! their own processes (so their memory is theirs), under TLS. Every prediction is
//! checked against the plaintext f64 reference; a second phase repeats the run with
//! part of the clients abandoning their sessions at random steps.

use crate::say::say;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::Args;
use cryptpeft_deploy::attack::Abandon;
use cryptpeft_deploy::keys::Deployment;
use cryptpeft_deploy::roles::{self, ClientReport, RoleConfig};
use cryptpeft_deploy::security::{Role, Security};
use cryptpeft_deploy::setup_cache::SetupCache;
use cryptpeft_private_eval::arith::tensor::Mat;
use cryptpeft_private_eval::model::OwcModel;
use cryptpeft_private_eval::transport::MsgKind;
use cryptpeft_private_eval::{hidden, reference};
use cryptpeft_types::NetworkProfile;
use indicatif::{ProgressBar, ProgressStyle};
use rand::Rng;
use serde::Serialize;

use crate::secure::ModelArgs;

#[derive(Args)]
pub struct LoadArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Serve this checkpoint instead of random weights.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Completed inferences per phase, over all clients.
    #[arg(long, default_value_t = 2000)]
    inferences: usize,
    /// Fraction of the clients that abandon every session at a random step in the
    /// second phase (0: run only the first).
    #[arg(long, default_value_t = 0.5)]
    abandon: f64,
    /// Distinct client inputs (random hidden states, cycled).
    #[arg(long, default_value_t = 8)]
    inputs: usize,
    /// Client inputs from this many digits test images through the shipped backbone
    /// (the checkpoint must be an adapter over it).
    #[cfg(feature = "train")]
    #[arg(long)]
    digits: Option<usize>,
    #[arg(long, default_value = "none")]
    network: NetworkProfile,
    /// Plaintext links instead of TLS.
    #[arg(long)]
    insecure: bool,
    /// Attackers of the hostile phase (0: no such phase): from 127.0.0.2 they trickle
    /// TLS handshakes and first requests and announce oversized frames, at the dealer
    /// and at the server, continuously, while the honest clients run.
    #[arg(long, default_value_t = 24)]
    attackers: usize,
    /// Seconds between an attacker's bytes.
    #[arg(long, default_value_t = 2.0)]
    attack_every: f64,
    /// The dealer's cap on material held for pending sessions (MB).
    #[arg(long, default_value_t = 4096)]
    max_pending_mb: u64,
    /// Where the JSON report goes (also printed).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct Phase {
    name: String,
    clients: usize,
    abandoning_clients: usize,
    completed: usize,
    failures: usize,
    first_failures: Vec<String>,
    abandoned_sessions: usize,
    predictions_differing: usize,
    max_abs_logit_err: f64,
    logits_off_by_more_than_1e_2: usize,
    wall_s: f64,
    inferences_per_s: f64,
    latency_median_s: f64,
    latency_p95_s: f64,
    /// Before the clients start, and the most during the phase (from /proc).
    dealer_idle_rss_mb: f64,
    server_idle_rss_mb: f64,
    dealer_peak_rss_mb: f64,
    server_peak_rss_mb: f64,
    /// The dealer's memory cap: material pending (`--max-pending-mb`).
    dealer_pending_cap_mb: u64,
    /// Hostile phase: attacker threads, and their connections the roles cut off.
    attackers: usize,
    attacks_cut: u64,
}

#[derive(Debug, Serialize)]
struct Report {
    adapter: String,
    backbone: String,
    network: String,
    tls: bool,
    inputs: usize,
    phases: Vec<Phase>,
}

/// One honest client's inference: which input, the result, seconds end to end.
type Outcome = (usize, Result<ClientReport, String>, f64);

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    fn spawn(args: &[&str], log: &Path) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let log = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        Command::new(exe)
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map(Proc)
            .map_err(|e| format!("starting {args:?}: {e}"))
    }

    /// Resident set size now, from /proc (MB).
    fn rss_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0.id()));
        status
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            })
            .map_or(0.0, |kb| kb / 1024.0)
    }
}

fn temp_dir() -> Result<PathBuf, String> {
    let d = std::env::temp_dir().join(format!("cryptpeft-load-{}", std::process::id()));
    std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
    Ok(d)
}

fn free_addr() -> Result<String, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.to_string())
}

fn wait_listening(addr: &str, child: &mut Proc, log: &Path) -> Result<(), String> {
    let t0 = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        if let Ok(Some(st)) = child.0.try_wait() {
            let msg = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!("{addr}: process exited ({st}): {msg}"));
        }
        if t0.elapsed() > Duration::from_secs(120) {
            return Err(format!("{addr}: nothing listens after 120 s"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

struct Setup<'a> {
    model: &'a OwcModel,
    checkpoint: &'a Path,
    inputs: &'a [Vec<Mat>],
    want: Vec<Vec<f64>>,
    dir: &'a Path,
    a: &'a LoadArgs,
}

fn run_phase(
    s: &Setup<'_>,
    name: &str,
    abandoning: usize,
    attackers: usize,
) -> Result<Phase, String> {
    let a = s.a;
    let keys = s.dir.join(format!("keys-{name}"));
    let _ = std::fs::remove_dir_all(&keys);
    let links: Vec<String> = match a.insecure {
        true => vec!["--insecure".into()],
        false => {
            Deployment::generate(&["127.0.0.1".into()], 1)
                .map_err(|e| e.to_string())?
                .write(&keys)
                .map_err(|e| format!("{}: {e}", keys.display()))?;
            vec!["--tls".into(), keys.display().to_string()]
        }
    };
    let links: Vec<&str> = links.iter().map(String::as_str).collect();
    let (daddr, saddr) = (free_addr()?, free_addr()?);
    let net_arg = format!("{}", a.network);
    let dlog = s.dir.join(format!("dealer-{name}.log"));
    let slog = s.dir.join(format!("server-{name}.log"));
    // Room for a finishing session's thread while its client already reconnects, for
    // as many again on the attackers' address.
    let sessions = (4 * a.clients).to_string();
    // Per-address caps count addresses, and every honest client here is 127.0.0.1.
    let per_address = (2 * a.clients).to_string();
    let dealer_per_address = (4 * a.clients).to_string();
    let pending_mb = a.max_pending_mb.to_string();
    let mut dargs = vec![
        "dealer",
        "--listen",
        &daddr,
        "--pending-ttl",
        "10",
        "--max-pending-per-client",
        "256",
        "--max-per-address",
        &dealer_per_address,
        "--max-pending-mb",
        &pending_mb,
    ];
    dargs.extend(&links);
    let mut dealer = Proc::spawn(&dargs, &dlog)?;
    wait_listening(&daddr, &mut dealer, &dlog)?;
    let ckpt = s.checkpoint.display().to_string();
    let mut sargs = vec![
        "serve",
        "--checkpoint",
        &ckpt,
        "--listen",
        &saddr,
        "--dealer",
        &daddr,
        "--max-sessions",
        &sessions,
        "--max-per-address",
        &per_address,
        "--network",
        &net_arg,
    ];
    sargs.extend(&links);
    let mut server = Proc::spawn(&sargs, &slog)?;
    wait_listening(&saddr, &mut server, &slog)?;

    let security = match a.insecure {
        true => Security::Insecure,
        false => Security::from_dir(&keys, Role::Client).map_err(|e| e.to_string())?,
    };
    // Returning clients: each model's setup is downloaded once.
    let config = RoleConfig {
        network: a.network.clone(),
        security,
        connect_wait: Duration::from_secs(30),
        setup_cache: Some(std::sync::Arc::new(SetupCache::in_memory())),
        ..RoleConfig::default()
    };
    // Frames of one whole session, to draw where an abandoning client stops.
    let ops = session_ops(&saddr, &daddr, &s.inputs[0], &config)?;

    let next = AtomicUsize::new(0);
    let done = AtomicBool::new(false);
    let abandoned = AtomicUsize::new(0);
    let results: Mutex<Vec<Outcome>> = Mutex::default();
    let (dealer_peak, server_peak) = (Mutex::new(0f64), Mutex::new(0f64));
    let bar = ProgressBar::new(a.inferences as u64).with_style(
        ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} {per_sec} eta {eta}")
            .expect("template"),
    );
    bar.set_message(format!("{name}:"));
    let (dealer_idle, server_idle) = (dealer.rss_mb(), server.rss_mb());
    let stop_attacks = AtomicBool::new(false);
    let cut = AtomicU64::new(0);
    let every = Duration::from_secs_f64(a.attack_every);
    let t0 = Instant::now();
    std::thread::scope(|sc| {
        for i in 0..attackers {
            use cryptpeft_deploy::attack::{self, Attack};
            let (target, ca, kind) = match i % 2 {
                0 => (&daddr, "dealer-ca.pem", MsgKind::MaterialRequest),
                _ => (&saddr, "server-ca.pem", MsgKind::Hello),
            };
            let how = match i / 2 % 3 {
                0 => Attack::SlowHandshake,
                1 => Attack::SlowRequest(kind),
                _ => Attack::Oversized(kind),
            };
            let (ca, stop, cut) = (keys.join(ca), &stop_attacks, &cut);
            sc.spawn(move || attack::run(how, target, &ca, every, stop, cut));
        }
        sc.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                let mut d = dealer_peak.lock().unwrap();
                *d = d.max(dealer.rss_mb());
                let mut v = server_peak.lock().unwrap();
                *v = v.max(server.rss_mb());
                drop((d, v));
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        for c in 0..a.clients {
            let (config, next, done, abandoned, results, bar) =
                (&config, &next, &done, &abandoned, &results, &bar);
            let stop_attacks = &stop_attacks;
            let daddr = &daddr;
            let saddr = &saddr;
            sc.spawn(move || {
                let mut rng = rand::rng();
                if c < abandoning {
                    while !done.load(Ordering::Relaxed) {
                        let left = rng.random_range(0..ops);
                        let _ = abandoning_session(saddr, daddr, &s.inputs[0], config, left);
                        abandoned.fetch_add(1, Ordering::Relaxed);
                    }
                    return;
                }
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= a.inferences {
                        return;
                    }
                    let input = i % s.inputs.len();
                    let t = Instant::now();
                    let r = roles::run_client(saddr, daddr, &s.inputs[input], config)
                        .map_err(|e| e.to_string());
                    results
                        .lock()
                        .unwrap()
                        .push((input, r, t.elapsed().as_secs_f64()));
                    bar.inc(1);
                    if results.lock().unwrap().len() >= a.inferences {
                        done.store(true, Ordering::Relaxed);
                        stop_attacks.store(true, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    bar.finish_and_clear();
    let wall_s = t0.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    drop((dealer, server));
    let results = results.into_inner().unwrap();
    let mut latencies: Vec<f64> = Vec::new();
    let (mut failures, mut first_failures, mut differing, mut off, mut max_err) =
        (0, Vec::new(), 0, 0, 0f64);
    for (input, r, secs) in &results {
        match r {
            Ok(rep) => {
                latencies.push(*secs);
                let want = &s.want[*input];
                differing += usize::from(rep.predicted != reference::argmax(want));
                let err = rep
                    .logits
                    .iter()
                    .zip(want)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0.0, f64::max);
                off += usize::from(err > 1e-2);
                max_err = max_err.max(err);
            }
            Err(e) => {
                failures += 1;
                if first_failures.len() < 5 {
                    first_failures.push(e.clone());
                }
            }
        }
    }
    let completed = latencies.len();
    let p95 = {
        let mut l = latencies.clone();
        l.sort_by(f64::total_cmp);
        l.get(((l.len() as f64) * 0.95) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    Ok(Phase {
        name: name.into(),
        clients: a.clients,
        abandoning_clients: abandoning,
        completed,
        failures,
        first_failures,
        abandoned_sessions: abandoned.into_inner(),
        predictions_differing: differing,
        max_abs_logit_err: max_err,
        logits_off_by_more_than_1e_2: off,
        wall_s,
        inferences_per_s: completed as f64 / wall_s,
        latency_median_s: cryptpeft_types::stats::median(&latencies).unwrap_or(f64::NAN),
        latency_p95_s: p95,
        dealer_idle_rss_mb: dealer_idle,
        server_idle_rss_mb: server_idle,
        dealer_peak_rss_mb: dealer_peak.into_inner().unwrap(),
        server_peak_rss_mb: server_peak.into_inner().unwrap(),
        dealer_pending_cap_mb: a.max_pending_mb,
        attackers,
        attacks_cut: cut.into_inner(),
    })
}

/// Channel operations of one whole session (counted on a complete run).
fn session_ops(
    server: &str,
    dealer: &str,
    input: &[Mat],
    config: &RoleConfig,
) -> Result<usize, String> {
    let mut chan = Abandon::after(
        roles::connect_server(server, config).map_err(|e| e.to_string())?,
        usize::MAX,
    );
    roles::run_client_over(&mut chan, server, dealer, input, config).map_err(|e| e.to_string())?;
    Ok(chan.used())
}

fn abandoning_session(
    server: &str,
    dealer: &str,
    input: &[Mat],
    config: &RoleConfig,
    left: usize,
) -> Result<(), String> {
    let mut chan = Abandon::after(
        roles::connect_server(server, config).map_err(|e| e.to_string())?,
        left,
    );
    roles::run_client_over(&mut chan, server, dealer, input, config)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

pub fn load_test(a: LoadArgs) -> Result<(), String> {
    if a.clients == 0 || a.inferences == 0 || !(0.0..1.0).contains(&a.abandon) {
        return Err("--clients and --inferences must be positive, --abandon in [0, 1)".into());
    }
    if !(a.attack_every.is_finite() && a.attack_every > 0.0) {
        return Err("--attack-every must be a positive number of seconds".into());
    }
    let dir = temp_dir()?;
    let (model, checkpoint) = match &a.checkpoint {
        Some(p) => (OwcModel::load(p).map_err(|e| e.to_string())?, p.clone()),
        None => {
            let m = a.model.model()?;
            let p = dir.join("adapter.safetensors");
            std::fs::write(&p, m.to_bytes()).map_err(|e| format!("{}: {e}", p.display()))?;
            (m, p)
        }
    };
    let inputs = client_inputs(&a, &model)?;
    let want = inputs
        .iter()
        .map(|x| reference::forward(&model, x))
        .collect();
    let setup = Setup {
        model: &model,
        checkpoint: &checkpoint,
        inputs: &inputs,
        want,
        dir: &dir,
        a: &a,
    };
    let mut phases = vec![run_phase(&setup, "steady", 0, 0)?];
    let abandoning = (a.clients as f64 * a.abandon).round() as usize;
    if abandoning > 0 {
        phases.push(run_phase(&setup, "abandoning", abandoning, 0)?);
    }
    // The attacks speak TLS to the roles' certificates.
    if a.attackers > 0 && !a.insecure {
        phases.push(run_phase(&setup, "hostile", 0, a.attackers)?);
    }
    let report = Report {
        adapter: setup.model.spec.label(),
        backbone: setup.model.backbone.name.clone(),
        network: a.network.name.clone(),
        tls: !a.insecure,
        inputs: inputs.len(),
        phases,
    };
    let json = serde_json::to_string_pretty(&report).expect("report");
    say!("{json}");
    if let Some(out) = &a.out {
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(out, json + "\n").map_err(|e| format!("{}: {e}", out.display()))?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn client_inputs(a: &LoadArgs, model: &OwcModel) -> Result<Vec<Vec<Mat>>, String> {
    #[cfg(feature = "train")]
    let digits = a.digits;
    #[cfg(not(feature = "train"))]
    let digits = None;
    hidden_inputs(model, digits, a.inputs)
}

/// Client inputs: the hidden states of `digits` digits test images through the shipped
/// backbone where given (the `train` feature), else `count` random ones.
pub fn hidden_inputs(
    model: &OwcModel,
    digits: Option<usize>,
    count: usize,
) -> Result<Vec<Vec<Mat>>, String> {
    #[cfg(feature = "train")]
    if let Some(n) = digits {
        return crate::demo::digits_hidden_states(model, n).map(|(h, _)| h);
    }
    #[cfg(not(feature = "train"))]
    if digits.is_some() {
        return Err("--digits needs the `train` feature (the backbone)".into());
    }
    let bb = &model.backbone;
    Ok((0..count.max(1))
        .map(|i| {
            hidden::random(
                model.spec.scope + 1,
                bb.tokens(),
                bb.hidden_dim,
                100 + i as u64,
            )
        })
        .collect())
}
