//! Subcommands of the secure evaluator: the three roles and their benchmarks.

use crate::say::say;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use cryptpeft_deploy::keys::Deployment;
use cryptpeft_deploy::roles::RoleError;
use cryptpeft_deploy::security::{Role, Security};
use cryptpeft_deploy::setup_cache::SetupCache;
use cryptpeft_deploy::{loopback, roles};
use cryptpeft_private_eval::baseline::{Baseline, BaselineModel};
use cryptpeft_private_eval::plan::InvSqrtParams;
use cryptpeft_private_eval::{bench, hidden, model::OwcModel, plan::lower, transport};
use cryptpeft_types::{AdapterSpec, AttentionKind, BackboneSpec, NetworkProfile, NormKind};

type Res = Result<(), String>;

#[derive(Args)]
pub struct NetArgs {
    /// Network profile of the client-server link: none, lan, wan, custom:mbit=..,delay_ms=..
    #[arg(long, default_value = "none")]
    network: NetworkProfile,
    /// Seconds to wait for any message before failing.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    /// Directory from `cryptpeft keys`: the role CAs (`dealer-ca.pem`, `server-ca.pem`,
    /// `client-ca.pem`) and this role's certificate and key (`dealer.*`, `server.*`; a
    /// client needs only the CAs, and `client.*` where servers admit known clients only).
    #[arg(long, value_name = "DIR")]
    tls: Option<PathBuf>,
    /// Seconds an accepted connection has for its TLS handshake and first request.
    #[arg(long, default_value_t = 10.0)]
    handshake_timeout: f64,
    /// Slowest transfer accepted (KB/s): a message of B bytes must arrive, or be taken
    /// by the peer, within --timeout plus B at this rate, so a peer trickling bytes or
    /// reading slowly is dropped.
    #[arg(long, default_value_t = 256.0)]
    min_rate_kbs: f64,
    /// Plaintext TCP, for benchmarks on a trusted machine: anyone on the network then
    /// reads the client's input and can take the server's weights.
    #[arg(long, conflicts_with = "tls")]
    insecure: bool,
}

impl NetArgs {
    fn config(&self, role: Role) -> Result<roles::RoleConfig, String> {
        self.config_with(role, false)
    }

    fn config_with(&self, role: Role, known_clients: bool) -> Result<roles::RoleConfig, String> {
        for (name, v) in [
            ("--timeout", self.timeout),
            ("--handshake-timeout", self.handshake_timeout),
            ("--min-rate-kbs", self.min_rate_kbs),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("{name} {v}: must be a positive number"));
            }
        }
        let security = match (&self.tls, self.insecure) {
            (Some(dir), _) => {
                Security::from_dir_with(dir, role, known_clients).map_err(|e| e.to_string())?
            }
            (None, true) => Security::Insecure,
            (None, false) => {
                return Err(
                    "give --tls DIR (certificates from `cryptpeft keys`) or, for \
                     benchmarks on a trusted machine, --insecure"
                        .into(),
                )
            }
        };
        let mut c = roles::RoleConfig {
            network: self.network.clone(),
            security,
            ..Default::default()
        };
        c.transport.read_timeout = Duration::from_secs_f64(self.timeout);
        c.transport.handshake_deadline = Duration::from_secs_f64(self.handshake_timeout);
        c.transport.min_rate = (self.min_rate_kbs * 1e3) as u64;
        Ok(c)
    }
}

#[derive(Args)]
pub struct KeysArgs {
    /// Where to write the role CAs (dealer-ca, server-ca, client-ca: .pem and .key),
    /// dealer.pem/.key, server.pem/.key (server-2.* ...) and client.pem/.key (...).
    #[arg(long, default_value = "keys")]
    out: PathBuf,
    /// Names or IP addresses the dealer and servers are dialled at (repeat the flag).
    #[arg(long = "host", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()])]
    hosts: Vec<String>,
    /// Server certificates to issue (one per server machine).
    #[arg(long, default_value_t = 1)]
    servers: usize,
    /// Client certificates to issue, for servers started with --known-clients.
    #[arg(long, default_value_t = 0)]
    clients: usize,
}

/// Writes a deployment's CA and certificates.
pub fn keys(a: KeysArgs) -> Res {
    if a.servers == 0 {
        return Err("--servers must be at least 1".into());
    }
    if ["ca.key", "dealer-ca.key"]
        .iter()
        .any(|f| a.out.join(f).exists())
    {
        return Err(format!(
            "{}: holds a CA already; new keys would lock out every machine using it (choose another --out)",
            a.out.display()
        ));
    }
    let dep = Deployment::generate_with_clients(&a.hosts, a.servers, a.clients)
        .map_err(|e| e.to_string())?;
    dep.write(&a.out)
        .map_err(|e| format!("{}: {e}", a.out.display()))?;
    eprintln!(
        "wrote one CA per role, a dealer, {} server and {} client certificate(s) for {} to {}: \
         copy the three *-ca.pem to every machine, dealer.* to the dealer, server.* to the \
         server, client.* to known clients; keep the *-ca.key offline",
        a.servers,
        a.clients,
        a.hosts.join(", "),
        a.out.display()
    );
    Ok(())
}

#[derive(Args)]
pub struct DealerArgs {
    #[arg(long, default_value = "127.0.0.1:7000")]
    listen: String,
    #[command(flatten)]
    net: NetArgs,
    /// Largest dealer material (MB, both parties) one session of a registered plan may need.
    #[arg(long, default_value_t = 2048.0)]
    max_session_mb: f64,
    /// Seconds a generated half waits for its party before it is dropped (for a streamed
    /// session: the server's longest pause in taking its half).
    #[arg(long, default_value_t = 60.0)]
    pending_ttl: f64,
    /// Sessions with material waiting, per client address.
    #[arg(long, default_value_t = 16)]
    max_pending_per_client: usize,
    /// Sessions with material waiting, in total.
    #[arg(long, default_value_t = 256)]
    max_pending: usize,
    /// Material held for waiting sessions (MB): bounds the dealer's memory.
    #[arg(long, default_value_t = 4096.0)]
    max_pending_mb: f64,
    /// Plans whose larger half exceeds this (MB) stream their material during the online
    /// phase (the dealer stays connected to both parties) instead of handing it over
    /// whole before it.
    #[arg(long, default_value_t = 2000.0)]
    stream_above_mb: f64,
    /// Connections served at once.
    #[arg(long, default_value_t = 128)]
    max_connections: usize,
    /// Connections from one address at once (a server takes one per session it runs).
    #[arg(long, default_value_t = 48)]
    max_per_address: usize,
    /// Models one server keeps registered; past it, its least recently renewed goes.
    #[arg(long, default_value_t = 16)]
    max_models_per_server: usize,
    /// Seconds a registration lasts unless its server renews it.
    #[arg(long, default_value_t = 120.0)]
    lease: f64,
}

pub fn dealer(a: DealerArgs) -> Res {
    for (name, v) in [
        ("--max-session-mb", a.max_session_mb),
        ("--pending-ttl", a.pending_ttl),
        ("--max-pending-mb", a.max_pending_mb),
        ("--stream-above-mb", a.stream_above_mb),
        ("--lease", a.lease),
    ] {
        if !(v.is_finite() && v > 0.0) {
            return Err(format!("{name} {v}: must be a positive number"));
        }
    }
    let mut config = a.net.config(Role::Dealer)?;
    config.dealer = roles::DealerLimits {
        max_session_bytes: (a.max_session_mb * 1e6) as u64,
        pending_ttl: Duration::from_secs_f64(a.pending_ttl),
        max_pending_per_peer: a.max_pending_per_client,
        max_pending_total: a.max_pending,
        max_pending_bytes: (a.max_pending_mb * 1e6) as u64,
        stream_above: (a.stream_above_mb * 1e6) as u64,
        max_connections: a.max_connections.max(1),
        max_connections_per_address: a.max_per_address.max(1),
        max_models_per_server: a.max_models_per_server.max(1),
        lease: Duration::from_secs_f64(a.lease),
        ..Default::default()
    };
    let l = transport::listen(&a.listen).map_err(|e| e.to_string())?;
    eprintln!("dealer: listening on {}", a.listen);
    cryptpeft_deploy::dealer_service::run_dealer(l, config, || false).map_err(|e| e.to_string())
}

#[derive(Args)]
pub struct UnregisterArgs {
    #[arg(long, default_value = "127.0.0.1:7000")]
    dealer: String,
    /// The model id `serve` printed (hex).
    #[arg(long)]
    model: String,
    #[command(flatten)]
    net: NetArgs,
}

/// Drops a registered model at the dealer, with the certificate of its server.
pub fn unregister(a: UnregisterArgs) -> Res {
    let model = u64::from_str_radix(a.model.trim_start_matches("0x"), 16)
        .map_err(|e| format!("--model {}: {e} (the hex id `serve` printed)", a.model))?;
    let config = a.net.config(Role::Server)?;
    roles::unregister(&a.dealer, model, &config).map_err(|e| e.to_string())?;
    eprintln!("unregistered model {model:016x} at {}", a.dealer);
    Ok(())
}

#[derive(Args)]
pub struct ServeArgs {
    #[arg(long)]
    checkpoint: PathBuf,
    #[arg(long, default_value = "127.0.0.1:7001")]
    listen: String,
    #[arg(long, default_value = "127.0.0.1:7000")]
    dealer: String,
    #[command(flatten)]
    net: NetArgs,
    /// Client sessions run at once; more are told the server is busy.
    #[arg(long, default_value_t = 8)]
    max_sessions: usize,
    /// Connections from one client address at once; more are dropped.
    #[arg(long, default_value_t = 4)]
    max_per_address: usize,
    /// Admit only clients with a certificate from client-ca.pem (`keys --clients N`).
    #[arg(long)]
    known_clients: bool,
    #[command(flatten)]
    protocol: ProtocolArgs,
}

/// How the plan's protocols are set up (the server's choice; the client follows its plan).
#[derive(Args, Clone)]
pub struct ProtocolArgs {
    /// Local truncation (one round per layer cheaper, wrong with a small probability
    /// per value) instead of exact truncation with the dealer.
    #[arg(long)]
    local_truncation: bool,
    /// Width of ReLU's comparison in bits: exact for inputs below 2^(bits-17) in
    /// magnitude (f = 16); each bit costs about 2 bytes of dealer keys per value and party.
    #[arg(long, default_value_t = lower::RELU_BITS)]
    relu_bits: u32,
    /// Newton iterations of the norms' inverse square root (LayerNorm, softmax's row
    /// sums): each costs 3 rounds (its products truncate their operands in their own
    /// openings under exact truncation). With 0 under exact truncation the piecewise
    /// guess is the answer: a LayerNorm takes 5 rounds and softmax's row normalization
    /// 3 (6 each with one Newton).
    #[arg(long, default_value_t = InvSqrtParams::default().newton)]
    ln_newton: u32,
    /// Segments per octave of the inverse square root's first, piecewise-linear guess:
    /// more segments cost DCF evaluations, not rounds or bytes, and replace Newton.
    #[arg(long, default_value_t = InvSqrtParams::default().per_octave)]
    ln_per_octave: u32,
}

impl Default for ProtocolArgs {
    fn default() -> Self {
        Self {
            local_truncation: false,
            relu_bits: lower::RELU_BITS,
            ln_newton: InvSqrtParams::default().newton,
            ln_per_octave: InvSqrtParams::default().per_octave,
        }
    }
}

impl ProtocolArgs {
    /// Lowering options from the flags.
    pub fn lower(&self) -> lower::LowerOptions {
        lower::LowerOptions {
            exact_truncation: !self.local_truncation,
            relu_bits: self.relu_bits,
            inv_sqrt: InvSqrtParams {
                newton: self.ln_newton,
                per_octave: self.ln_per_octave,
                ..Default::default()
            },
            ..Default::default()
        }
    }
}

pub fn serve(a: ServeArgs) -> Res {
    let model = OwcModel::load(&a.checkpoint).map_err(|e| e.to_string())?;
    let (plan, weights) = lower::lower(&model, a.protocol.lower())
        .map_err(|e| format!("{}: {e}", a.checkpoint.display()))?;
    if a.max_sessions == 0 {
        return Err("--max-sessions must be at least 1".into());
    }
    let config = roles::RoleConfig {
        max_sessions: a.max_sessions,
        max_sessions_per_address: a.max_per_address.max(1),
        ..a.net.config_with(Role::Server, a.known_clients)?
    };
    let server =
        roles::Server::new(plan, &weights, &a.dealer, config).map_err(|e| e.to_string())?;
    let l = transport::listen(&a.listen).map_err(|e| e.to_string())?;
    eprintln!(
        "server: {} ({}) listening on {}, model {:016x}\nplan digest (clients pin it with --expect-digest): {}",
        a.checkpoint.display(),
        model.spec.label(),
        a.listen,
        server.model_id(),
        server.plan_digest(),
    );
    server.serve(l, || false).map_err(|e| e.to_string())
}

#[derive(Args)]
pub struct InferArgs {
    #[arg(long, default_value = "127.0.0.1:7001")]
    server: String,
    #[arg(long, default_value = "127.0.0.1:7000")]
    dealer: String,
    /// safetensors with `hidden.0 .. hidden.s` (`[N, d]`): the states entering layers L-s..L-1 and x_L.
    #[arg(long, required_unless_present_any = ["image", "images"], conflicts_with_all = ["image", "images"])]
    hidden_states: Option<PathBuf>,
    /// A PNG or JPEG image: the client runs the public backbone on it, then the adapter
    /// privately with the server.
    #[arg(long, conflicts_with = "images")]
    image: Option<PathBuf>,
    /// Every PNG and JPEG file of a folder, one private inference each.
    #[arg(long)]
    images: Option<PathBuf>,
    /// The public backbone for --image/--images (torchvision-layout safetensors).
    #[arg(long, default_value = "train/assets/vit_mini_fmnist04.safetensors")]
    backbone: PathBuf,
    /// Where the backbone runs for --image/--images: `cpu`, or `wgpu` (a build with the
    /// `wgpu` feature).
    #[cfg(feature = "train")]
    #[arg(long, default_value = "cpu", value_parser = device_choice)]
    device: cryptpeft_train::DeviceChoice,
    /// Benchmarks only: the server's checkpoint, to compare each private class with the
    /// plaintext model's on the same states (a real client never holds it).
    #[arg(long, value_name = "CHECKPOINT")]
    check_against: Option<PathBuf>,
    /// Benchmarks only: start the online phase once every hidden state exists, instead
    /// of opening the early states while the backbone computes the later ones.
    #[arg(long)]
    states_at_once: bool,
    /// Number of hidden states in the file (scope + 1); by default as many as the file has.
    #[arg(long)]
    count: Option<usize>,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    net: NetArgs,
    /// Where per-model setups are kept between runs (default: ~/.cache/cryptpeft/setup).
    #[arg(long, value_name = "DIR")]
    setup_cache: Option<PathBuf>,
    /// Download the setup every time.
    #[arg(long, conflicts_with = "setup_cache")]
    no_setup_cache: bool,
    /// The plan digest `serve` printed: run only that model (its architecture and
    /// protocol parameters; the weights stay the server's secret).
    #[arg(long, value_name = "SHA256")]
    expect_digest: Option<String>,
    /// Run a plan with local truncation (wrong with a small probability per value) if
    /// the server asks for it; otherwise such a plan is refused.
    #[arg(long)]
    allow_local_truncation: bool,
}

#[cfg(feature = "train")]
fn device_choice(s: &str) -> Result<cryptpeft_train::DeviceChoice, String> {
    match s {
        "cpu" => Ok(cryptpeft_train::DeviceChoice::Cpu),
        "wgpu" => Ok(cryptpeft_train::DeviceChoice::Wgpu),
        other => Err(format!("`{other}`: cpu or wgpu")),
    }
}

/// The default setup cache: `$XDG_CACHE_HOME/cryptpeft/setup` or `~/.cache/...`.
fn default_setup_cache() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("cryptpeft").join("setup"))
}

fn count_hidden(path: &std::path::Path) -> Result<usize, String> {
    (0..64)
        .take_while(|&i| hidden::load(path, i + 1).is_ok())
        .count()
        .checked_sub(0)
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("{}: no readable hidden.0 tensor", path.display()))
}

pub fn infer(a: InferArgs) -> Res {
    let mut config = a.net.config(Role::Client)?;
    config.client.expect_digest = a.expect_digest.clone();
    config.client.allow_local_truncation = a.allow_local_truncation;
    if !a.no_setup_cache {
        config.setup_cache = a
            .setup_cache
            .clone()
            .or_else(default_setup_cache)
            .map(|d| std::sync::Arc::new(SetupCache::in_dir(&d)));
    }
    let Some(path) = &a.hidden_states else {
        return infer_images(&a, &config);
    };
    let count = match a.count {
        Some(c) => c,
        None => count_hidden(path)?,
    };
    let h = hidden::load(path, count)?;
    let r = roles::run_client(&a.server, &a.dealer, &h, &config).map_err(|e| e.to_string())?;
    if a.json {
        say!("{}", serde_json::to_string_pretty(&r).unwrap());
    } else {
        say!(
            "logits: {:?}",
            r.logits
                .iter()
                .map(|v| (v * 1e4).round() / 1e4)
                .collect::<Vec<_>>()
        );
        say!("predicted class: {}", r.predicted);
        say!(
            "online: {} bytes ({} client->server, {} server->client), {} rounds, {:.4} s; offline (dealer to client): {} bytes, {:.4} s; setup: {} bytes{}",
            r.online_bytes, r.online_bytes_sent, r.online_bytes_received, r.rounds, r.online_s, r.offline_bytes, r.offline_s, r.setup_bytes,
            if r.setup_cached { " (E from the cache)" } else { "" }
        );
    }
    Ok(())
}

#[cfg(feature = "train")]
fn infer_images(a: &InferArgs, config: &roles::RoleConfig) -> Res {
    let paths = match (&a.image, &a.images) {
        (Some(p), _) => cryptpeft_client::image_paths(p, false)?,
        (None, Some(d)) => cryptpeft_client::image_paths(d, true)?,
        (None, None) => return Err("give --hidden-states, --image or --images".into()),
    };
    let check = match &a.check_against {
        Some(p) => Some(OwcModel::load(p).map_err(|e| format!("{}: {e}", p.display()))?),
        None => None,
    };
    let reports = cryptpeft_client::run(
        &a.backbone,
        &paths,
        (&a.server, &a.dealer),
        config,
        check.as_ref(),
        a.states_at_once,
        a.device,
    )?;
    let agree = reports
        .iter()
        .filter(|r| r.plaintext == Some(r.predicted))
        .count();
    if a.json {
        say!("{}", serde_json::to_string_pretty(&reports).unwrap());
    }
    if check.is_some() {
        eprintln!(
            "{agree} of {} private classes equal the plaintext model's",
            reports.len()
        );
    }
    if a.json {
        return Ok(());
    }
    for r in &reports {
        say!(
            "{}: class {}; backbone {:.3} s, end to end {:.3} s ({:.3} s after the backbone); {} bytes, {} rounds",
            r.image.display(),
            r.predicted,
            r.backbone_s,
            r.end_to_end_s,
            r.after_backbone_s,
            r.online_bytes,
            r.rounds
        );
    }
    Ok(())
}

#[cfg(not(feature = "train"))]
fn infer_images(_: &InferArgs, _: &roles::RoleConfig) -> Res {
    Err("--image and --images need the backbone: build with the `train` feature".into())
}

#[derive(Args)]
pub struct ModelArgs {
    /// Adapter as h=..,r=..,s=..[,k=..,attention=..,norm=..,scale=..]
    #[arg(long, default_value = "h=1,r=300,s=1")]
    adapter: AdapterSpec,
    #[arg(long, default_value = "vit-b16")]
    backbone: String,
    #[arg(long)]
    norm: Option<NormKind>,
    #[arg(long)]
    attention: Option<AttentionKind>,
    #[arg(long)]
    blocks: Option<usize>,
    #[arg(long, default_value_t = 100)]
    pub classes: usize,
    /// A baseline's plan instead of the adapter's: sft-K (the last K layers), lora or
    /// adaptformer, with random weights of trained scale.
    #[arg(long)]
    pub baseline: Option<Baseline>,
    /// Seed of the random weights (benchmarks and test checkpoints).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[command(flatten)]
    pub protocol: ProtocolArgs,
}

impl ModelArgs {
    /// The adapter with the flag overrides applied, validated against the backbone.
    pub fn spec(&self) -> Result<(AdapterSpec, BackboneSpec), String> {
        let mut spec = self.adapter.clone();
        if let Some(n) = self.norm {
            spec.norm = n;
        }
        if let Some(at) = self.attention {
            spec.attention = at;
        }
        if let Some(k) = self.blocks {
            spec.blocks = k;
        }
        let bb = BackboneSpec::by_name(&self.backbone).map_err(|e| e.to_string())?;
        spec.validate(bb.layers).map_err(|e| e.to_string())?;
        Ok((spec, bb))
    }

    /// Lowering options from the flags.
    pub fn lower(&self) -> lower::LowerOptions {
        self.protocol.lower()
    }

    pub fn model(&self) -> Result<OwcModel, String> {
        let (spec, bb) = self.spec()?;
        Ok(OwcModel::random(spec, bb, self.classes, self.seed))
    }
}

#[derive(Args)]
pub struct BenchSecureArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[arg(long, default_value = "wan")]
    network: NetworkProfile,
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    #[arg(long)]
    json: bool,
    /// Plaintext links (the protocol's own bytes, as the cost model prices them)
    /// instead of TLS.
    #[arg(long)]
    insecure: bool,
}

pub fn bench_secure(a: BenchSecureArgs) -> Res {
    let r = match a.model.baseline {
        Some(kind) => {
            let (_, bb) = a.model.spec()?;
            let model = BaselineModel::random(kind, bb.clone(), a.model.classes, a.model.seed)?;
            let h = hidden::random(1, bb.tokens(), bb.hidden_dim, a.model.seed ^ 0x41);
            loopback::bench_baseline(
                &model,
                &h,
                a.network,
                a.repeat,
                !a.insecure,
                a.model.lower(),
            )
        }
        None => adapter_bench(&a),
    }
    .map_err(|e| e.to_string())?;
    print_bench(&r, a.json)
}

fn adapter_bench(a: &BenchSecureArgs) -> Result<loopback::SecureBench, RoleError> {
    let model = a.model.model().map_err(RoleError::Protocol)?;
    let h = hidden::random(
        model.spec.scope + 1,
        model.backbone.tokens(),
        model.backbone.hidden_dim,
        a.model.seed ^ 0x41,
    );
    loopback::bench_secure(
        &model,
        &h,
        a.network.clone(),
        a.repeat,
        !a.insecure,
        a.model.lower(),
    )
}

fn print_bench(r: &loopback::SecureBench, json: bool) -> Res {
    if json {
        say!("{}", serde_json::to_string_pretty(r).unwrap());
    } else {
        say!(
            "{:<14} {:>16} {:>12} {:>7} {:>10}",
            "step",
            "shape",
            "bytes",
            "rounds",
            "seconds"
        );
        for s in &r.steps {
            say!(
                "{:<14} {:>16} {:>12} {:>7} {:>10.5}",
                s.name,
                s.shape,
                s.bytes,
                s.rounds,
                s.seconds
            );
        }
        say!(
            "{} {} {}: online {} B, {} rounds ({}), median {:.4} s over {}; offline {} B ({:.3} s); max |logit err| {:.2e}",
            r.adapter, r.backbone, r.network, r.online_bytes, r.rounds,
            cryptpeft_cost_model::depth_note(r.rounds, r.depth_bound),
            r.online_s, r.repeat, r.offline_bytes, r.offline_s, r.max_abs_logit_err
        );
        if r.tls {
            say!(
                "TLS: {} B online on the wire (+{} B of records), handshake {} B, connect {:.4} s",
                r.online_wire_bytes,
                r.online_wire_bytes - r.online_bytes,
                r.handshake_bytes,
                r.connect_s
            );
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct BenchProtocolsArgs {
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// Only these protocols (default: all of them).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    #[arg(long, value_delimiter = ',', default_value = "none,lan,wan")]
    networks: Vec<NetworkProfile>,
    #[arg(long, default_value = "results/protocols.csv")]
    out: PathBuf,
}

pub fn bench_protocols(a: BenchProtocolsArgs) -> Res {
    let mut rows = Vec::new();
    if let Some(p) = a
        .only
        .iter()
        .find(|p| !bench::PROTOCOLS.contains(&p.as_str()))
    {
        return Err(format!(
            "unknown protocol `{p}` (one of {:?})",
            bench::PROTOCOLS
        ));
    }
    for profile in &a.networks {
        for p in bench::PROTOCOLS
            .into_iter()
            .filter(|p| a.only.is_empty() || a.only.iter().any(|o| o == p))
        {
            let r = bench::bench_protocol(p, profile, a.repeat).map_err(|e| e.to_string())?;
            say!(
                "{:<14} {:<14} {:<5} {:>10} B ({:>6.2} B/value) {:>2} rounds {:>9.5} s",
                r.protocol,
                r.shape,
                r.network,
                r.online_bytes,
                r.bytes_per_value,
                r.rounds,
                r.median_s
            );
            rows.push(r);
        }
    }
    let mut f = std::fs::File::create(&a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
    writeln!(
        f,
        "protocol,shape,network,online_bytes,bytes_per_value,rounds,median_s"
    )
    .map_err(|e| e.to_string())?;
    for r in rows {
        writeln!(
            f,
            "{},{},{},{},{:.3},{},{:.6}",
            r.protocol, r.shape, r.network, r.online_bytes, r.bytes_per_value, r.rounds, r.median_s
        )
        .map_err(|e| e.to_string())?;
    }
    eprintln!("wrote {}", a.out.display());
    Ok(())
}

#[derive(Args)]
pub struct RandomCheckpointArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[arg(long)]
    out: PathBuf,
}

pub fn random_checkpoint(a: RandomCheckpointArgs) -> Res {
    let m = a.model.model()?;
    std::fs::write(&a.out, m.to_bytes()).map_err(|e| format!("{}: {e}", a.out.display()))
}

#[derive(Args)]
pub struct RandomHiddenArgs {
    /// Checkpoint whose spec sets the shapes.
    #[arg(long)]
    checkpoint: PathBuf,
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

pub fn random_hidden(a: RandomHiddenArgs) -> Res {
    let m = OwcModel::load(&a.checkpoint).map_err(|e| e.to_string())?;
    let h = hidden::random(
        m.spec.scope + 1,
        m.backbone.tokens(),
        m.backbone.hidden_dim,
        a.seed,
    );
    hidden::save(&a.out, &h)
}
