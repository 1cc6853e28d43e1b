//! The loopback harness behind `bench-secure`: the three roles over loopback TCP
//! (TLS by default), each run measured end to end.

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cryptpeft_private_eval::arith::tensor::Mat;
use cryptpeft_private_eval::baseline::BaselineModel;
use cryptpeft_private_eval::model::OwcModel;
use cryptpeft_private_eval::online::exec::StepTrace;
use cryptpeft_private_eval::party::Party;
use cryptpeft_private_eval::plan::lower::{self, LowerOptions};
use cryptpeft_private_eval::plan::*;
use cryptpeft_private_eval::{reference, transport};
use cryptpeft_types::stats::median;
use cryptpeft_types::NetworkProfile;
use serde::Serialize;

use crate::keys::Deployment;
use crate::roles::{self, RoleConfig, RoleError, Server};
use crate::security::{Role, Security};

#[derive(Debug, Serialize)]
pub struct SecureBench {
    pub adapter: String,
    pub backbone: String,
    pub network: String,
    pub repeat: usize,
    pub online_bytes: u64,
    pub online_bytes_client_to_server: u64,
    pub online_bytes_server_to_client: u64,
    /// Dealer traffic of both parties per inference.
    pub offline_bytes: u64,
    pub offline_bytes_client: u64,
    /// `E = W - B` sent once per model and client (neither online nor dealer traffic).
    pub setup_bytes: u64,
    pub rounds: u64,
    /// The plan's dependency-depth bound ([`SecurePlan::depth_bound`]): rounds if every
    /// truncation, select and reveal rode on a neighbouring opening.
    pub depth_bound: u64,
    pub online_s: f64,
    pub online_s_all: Vec<f64>,
    /// The client's wait for streamed material within `online_s` (0 for a whole half).
    pub material_s: f64,
    pub streamed: bool,
    pub offline_s: f64,
    pub max_abs_logit_err: f64,
    /// Links under TLS (a throwaway CA per run) or plaintext.
    pub tls: bool,
    /// Online bytes on the wire, TLS records included.
    pub online_wire_bytes: u64,
    /// The client-server TLS handshake, both directions (once per connection).
    pub handshake_bytes: u64,
    /// Median time to connect to the server (TCP, and TLS shaped like the link).
    pub connect_s: f64,
    pub steps: Vec<StepTrace>,
}

fn bind() -> Result<(TcpListener, String), RoleError> {
    let l = transport::listen("127.0.0.1:0").map_err(|e| RoleError::Protocol(e.to_string()))?;
    let addr = l
        .local_addr()
        .map_err(|e| RoleError::Protocol(e.to_string()))?
        .to_string();
    Ok((l, addr))
}

/// Runs dealer, server and client (threads of this process, real TCP on loopback,
/// under TLS if `tls`; the plan lowered with `opts`), `repeat` inferences, each a
/// fresh session and connection;
/// checks every result against the reference.
pub fn bench_secure(
    model: &OwcModel,
    hidden: &[Mat],
    network: NetworkProfile,
    repeat: usize,
    tls: bool,
    opts: LowerOptions,
) -> Result<SecureBench, RoleError> {
    let (plan, weights) =
        lower::lower(model, opts).map_err(|e| RoleError::Protocol(e.to_string()))?;
    let want = reference::forward(model, hidden);
    let what = (model.spec.label(), model.backbone.name.clone());
    bench_plan(what, plan, weights, &want, hidden, network, repeat, tls)
}

/// [`bench_secure`] for a baseline ([`cryptpeft_private_eval::baseline`]): its layers on the client's
/// hidden state `hidden[0]`.
pub fn bench_baseline(
    model: &BaselineModel,
    hidden: &[Mat],
    network: NetworkProfile,
    repeat: usize,
    tls: bool,
    opts: LowerOptions,
) -> Result<SecureBench, RoleError> {
    let (plan, weights) = model
        .lower(opts)
        .map_err(|e| RoleError::Protocol(e.to_string()))?;
    let want = reference::layers_forward(
        &model.layers,
        model.backbone.heads,
        &model.final_norm,
        &model.head,
        &hidden[0],
    );
    let what = (model.kind.to_string(), model.backbone.name.clone());
    bench_plan(what, plan, weights, &want, hidden, network, repeat, tls)
}

/// Serves `plan` and runs `repeat` clients against it, comparing each result with `want`;
/// `what` names the model and its backbone.
#[allow(clippy::too_many_arguments)]
fn bench_plan(
    (label, backbone): (String, String),
    plan: SecurePlan,
    weights: PlanWeights,
    want: &[f64],
    hidden: &[Mat],
    network: NetworkProfile,
    repeat: usize,
    tls: bool,
) -> Result<SecureBench, RoleError> {
    let keys = match tls {
        true => Some(
            Deployment::generate(&["127.0.0.1".into()], 1)
                .map_err(|e| RoleError::Protocol(format!("making certificates: {e}")))?,
        ),
        false => None,
    };
    // The limits sized to this plan: a deployment's defaults (2 GiB a session) refuse
    // the largest baselines.
    let half = [Party::Client, Party::Server]
        .map(|p| cryptpeft_private_eval::online::comm::material_bytes(&plan, p))
        .into_iter()
        .max()
        .unwrap_or(0);
    let mut limits = RoleConfig::default();
    // The benchmark's client runs the plan it lowered itself, local truncation included.
    limits.client.allow_local_truncation = !plan.exact_truncation;
    // Generating and expanding a whole half takes a while: a second per 20 MB. A
    // streamed half comes a step at a time.
    if half <= limits.dealer.stream_above {
        limits.transport.read_timeout += Duration::from_secs(half / 20_000_000);
    }
    let setup = cryptpeft_private_eval::online::comm::setup_bytes(&plan);
    let depth_bound = plan.depth_bound();
    limits.transport.read_timeout += Duration::from_secs(setup / 20_000_000);
    limits.dealer.max_session_bytes = limits.dealer.max_session_bytes.max(2 * half + (1 << 20));
    limits.dealer.max_pending_bytes = limits.dealer.max_pending_bytes.max(2 * half + (1 << 20));
    let role = |r| RoleConfig {
        network: network.clone(),
        security: keys.as_ref().map_or(Security::Insecure, |k| k.security(r)),
        ..limits.clone()
    };
    let config = role(Role::Client);
    let stop = Arc::new(AtomicBool::new(false));
    let (dl, daddr) = bind()?;
    let (sl, saddr) = bind()?;
    let st = stop.clone();
    let dcfg = role(Role::Dealer);
    let dealer = std::thread::spawn(move || {
        crate::dealer_service::run_dealer(dl, dcfg, || st.load(Ordering::Relaxed))
    });
    let server = Server::new(plan, &weights, &daddr, role(Role::Server));
    // The server keeps its encoded copy; at ViT-B/16 LoRA these are 2.4 GB.
    drop(weights);
    let server = match server {
        Ok(s) => s,
        Err(e) => {
            stop.store(true, Ordering::Relaxed);
            let _ = dealer.join();
            return Err(e);
        }
    };
    // The server stops first, so it unregisters at a dealer still listening.
    let server_stop = AtomicBool::new(false);
    let out = std::thread::scope(|s| {
        let (st, srv) = (&server_stop, &server);
        let serving = s.spawn(move || srv.serve(sl, || st.load(Ordering::Relaxed)));
        let result: Result<Vec<roles::ClientReport>, RoleError> = (0..repeat.max(1))
            .map(|_| roles::run_client(&saddr, &daddr, hidden, &config))
            .collect();
        server_stop.store(true, Ordering::Relaxed);
        serving.join().expect("server thread")?;
        let reports: Vec<roles::ClientReport> = result?;
        let err = reports
            .iter()
            .map(|r| cryptpeft_private_eval::arith::tensor::max_abs_diff(&r.logits, want))
            .fold(0.0, f64::max);
        let online: Vec<f64> = reports.iter().map(|r| r.online_s).collect();
        let all = online.clone();
        let offline: Vec<f64> = reports.iter().map(|r| r.offline_s).collect();
        let connect: Vec<f64> = reports.iter().map(|r| r.connect_s).collect();
        let material: Vec<f64> = reports.iter().map(|r| r.material_s).collect();
        let mid = reports.len() / 2;
        let r = &reports[mid];
        Ok(SecureBench {
            adapter: label,
            backbone,
            network: network.name.clone(),
            repeat: reports.len(),
            online_bytes: r.online_bytes,
            online_bytes_client_to_server: r.online_bytes_sent,
            online_bytes_server_to_client: r.online_bytes_received,
            // Both parties' dealer traffic per inference.
            offline_bytes: r.offline_bytes + server.dealer_bytes() / reports.len() as u64,
            offline_bytes_client: r.offline_bytes,
            setup_bytes: r.setup_bytes,
            rounds: r.rounds,
            depth_bound,
            online_s: median(&online).unwrap_or(f64::NAN),
            online_s_all: all,
            material_s: median(&material).unwrap_or(f64::NAN),
            streamed: r.streamed,
            offline_s: median(&offline).unwrap_or(f64::NAN),
            max_abs_logit_err: err,
            tls,
            online_wire_bytes: r.online_wire_bytes,
            handshake_bytes: r.handshake_bytes,
            connect_s: median(&connect).unwrap_or(f64::NAN),
            steps: r.steps.clone(),
        })
    });
    stop.store(true, Ordering::Relaxed);
    let _ = dealer.join();
    out
}

/// Peak memory of an end-to-end run per byte of the setup `E`, which the run holds in
/// several forms (the server's weights and masks, the message, the client's copy, the
/// frames): LoRA at ViT-B/16 peaked at 14.6 GB with a 2.36 GB setup (6.2x), all roles
/// in one process.
const PEAK_PER_SETUP_BYTE: f64 = 7.0;

/// Refuses an end-to-end run of `plan` (named `label`) that would not fit in this
/// machine's available memory, before it starts.
pub fn check_memory(label: &str, plan: &SecurePlan) -> Result<(), String> {
    let need = PEAK_PER_SETUP_BYTE * cryptpeft_private_eval::online::comm::setup_bytes(plan) as f64;
    match cryptpeft_types::memory::available_bytes() {
        Some(avail) if need > avail => Err(format!(
            "{label}: an end-to-end run needs about {:.1} GB of memory, {:.1} GB are available; \
             leave it out of --measure to price it only",
            need / 1e9,
            avail / 1e9
        )),
        _ => Ok(()),
    }
}
