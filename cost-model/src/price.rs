//! Prices a [`SecurePlan`] under a network profile.
//!
//! * Bytes and rounds come from [`cryptpeft_private_eval::online::comm`]: the frames each step sends, as
//!   the executor sends them, replayed under the transport's depth rule. They are exact.
//! * Offline bytes: both parties' encoded dealer material
//!   ([`cryptpeft_private_eval::online::comm::offline_bytes`]), exactly what `local::infer` reports.
//! * Time: a discrete-event simulation of the two parties walking the plan in the
//!   executor's order. Each party alternates local work (priced from per-operation
//!   [`Constants`]) with sends (which return at once, as the transport queues them) and
//!   receives (which wait for the frame). Each direction is its own link: a frame
//!   occupies it for `bytes * 8 / bandwidth`, then arrives one one-way delay later, plus
//!   the local socket's copy time and a per-frame latency. With
//!   [`Deployment::SharedMachine`] (how `local::infer` and this repository's
//!   benchmarks run) both parties' work shares the cores: whole-pool work (large
//!   matmuls, DCF batches) of both parties at once runs at half speed each. The
//!   predicted online time is the client's, from the start of `exec::run` to the
//!   revealed logits, like `Inference::online_s`; setup (`E = W - B`) is not online.

use std::fmt::Write as _;

use cryptpeft_private_eval::gates::{self, meter::Meter};
use cryptpeft_private_eval::online::comm;
use cryptpeft_private_eval::party::Party;
use cryptpeft_private_eval::plan::*;
use cryptpeft_private_eval::protocols::dcf;
use cryptpeft_types::NetworkProfile;
use serde::Serialize;

use crate::constants::Constants;

/// Where the two parties run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum Deployment {
    /// Both parties on one machine sharing its cores (the in-process harness).
    #[default]
    SharedMachine,
    /// Each party on its own machine with the calibrated cores.
    SeparateMachines,
}

/// Cost of one plan step, as the client's channel and clock see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepCost {
    pub name: &'static str,
    pub shape: String,
    /// Online bytes on the wire, both directions, headers included.
    pub bytes: u64,
    pub rounds: u64,
    /// Predicted seconds on the client's clock (its work plus waiting).
    pub seconds: f64,
    /// The client's own compute in the step (seconds at full speed).
    pub client_compute_s: f64,
    /// The server's own compute in the step.
    pub server_compute_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostReport {
    pub network: String,
    /// Online bytes, both directions, frame headers included (`Stats::total_bytes`).
    pub online_bytes: u64,
    pub online_bytes_client_to_server: u64,
    pub online_bytes_server_to_client: u64,
    pub online_frames: u64,
    /// Both parties' encoded dealer material for one session.
    pub offline_bytes: u64,
    /// The once-per-model setup message `E = W - B` (not online), header included.
    pub setup_bytes: u64,
    pub rounds: u64,
    /// The plan's dependency-depth bound: the openings on its critical path with every
    /// truncation, select and reveal fused into a neighbour. `rounds / depth_bound` is
    /// what they cost in round trips.
    pub depth_bound: u64,
    /// Event-simulated online seconds (overlap of compute, links and delays).
    pub predicted_online_s: f64,
    /// The additive decomposition, for explanation: client + server compute (no
    /// overlap), bytes over the bandwidth, rounds x one-way delay.
    pub compute_s: f64,
    pub transfer_s: f64,
    pub latency_s: f64,
    /// Predicted offline seconds for one session, [`offline`]: the dealer's
    /// generation, then each half over a link like the online one, then its expansion.
    pub predicted_offline_s: f64,
    /// The dealer's share of it.
    pub offline_dealer_s: f64,
    pub steps: Vec<StepCost>,
}

#[derive(Debug, Clone, Copy)]
struct Work {
    secs: f64,
    par: bool,
}

#[derive(Debug, Clone, Copy)]
enum Act {
    Work(Work),
    Send(usize),
    Recv(usize),
    /// Records the time (client: step boundaries).
    Mark,
}

struct Pricer<'a> {
    c: &'a Constants,
    acts: [Vec<Act>; 2],
    compute: [f64; 2],
    /// The first frame of the step being priced.
    frame_base: usize,
}

impl Pricer<'_> {
    fn work(&mut self, p: usize, secs: f64, par: bool) {
        if secs > 0.0 {
            self.compute[p] += secs;
            self.acts[p].push(Act::Work(Work { secs, par }));
        }
    }
    fn elem(&mut self, p: usize, n: f64) {
        self.work(p, n / self.c.elementwise_per_s, false);
    }
    /// The ring GEMM pads `m` and `n` to its micro-tile, packs `B` on
    /// every call, and spreads both over the pool.
    fn matmul(&mut self, p: usize, m: usize, k: usize, n: usize) {
        let c = self.c;
        let [tm, tn] = c.matmul_tile;
        let (mp, np) = (m.div_ceil(tm) * tm, n.div_ceil(tn) * tn);
        let secs = c.matmul_call_s
            + 2.0 * (mp * k * np) as f64 / (c.matmul_gops * 1e9)
            + (k * np) as f64 / c.matmul_pack_per_s;
        self.work(p, secs, true);
    }
    fn ser(&mut self, p: usize, bytes: u64) {
        self.work(p, bytes as f64 / self.c.serialize_bytes_per_s, false);
    }
    /// The DCF walks of `keys` keys at `points` points each, `levels` tree levels per
    /// key: `eval_batch` walks chunks of about 1024 points over the pool.
    fn dcf(&mut self, p: usize, keys: usize, points: usize, levels: f64) {
        let total = keys as f64 * levels;
        if keys * points <= 1024 {
            self.work(p, total / self.c.dcf_levels_per_s, false);
        } else {
            let pts = (keys * points) as f64;
            let secs = total / self.c.dcf_pool_levels_per_s + pts / self.c.dcf_pool_points_per_s;
            self.work(p, secs, true);
        }
    }
}

impl Meter for Pricer<'_> {
    fn elem(&mut self, p: Party, n: f64) {
        Pricer::elem(self, p.index(), n)
    }
    fn matmul(&mut self, p: Party, m: usize, k: usize, n: usize) {
        Pricer::matmul(self, p.index(), m, k, n)
    }
    fn ser(&mut self, p: Party, bytes: u64) {
        Pricer::ser(self, p.index(), bytes)
    }
    fn dcf(&mut self, p: Party, keys: usize, points: usize, levels: f64) {
        Pricer::dcf(self, p.index(), keys, points, levels)
    }
    /// The calibrated two-party time of ReLU's local work, both parties at once, so
    /// half each as pool work; one chunk of 1024 values runs on one thread.
    fn relu_local(&mut self, p: Party, n: usize, bits: u32) {
        let local = relu_seconds(self.c, n, bits) / 2.0;
        if n <= 1024 {
            self.work(p.index(), local * self.c.threads as f64, false);
        } else {
            self.work(p.index(), local, true);
        }
    }
    fn send(&mut self, p: Party, frame: usize) {
        self.acts[p.index()].push(Act::Send(self.frame_base + frame));
    }
    fn recv(&mut self, p: Party, frame: usize) {
        self.acts[p.index()].push(Act::Recv(self.frame_base + frame));
    }
}

/// Two-party seconds of ReLU's local work on `n` values of `bits` bits.
pub fn relu_seconds(c: &Constants, n: usize, bits: u32) -> f64 {
    let levels = dcf::levels::<dcf::Bit>(bits as usize - 1) as f64;
    n as f64 * (c.relu_value_s + levels * c.relu_level_s)
}

/// Prices `plan` under `profile` with the shared-machine deployment.
pub fn cost(plan: &SecurePlan, profile: &NetworkProfile, constants: &Constants) -> CostReport {
    cost_with(plan, profile, constants, Deployment::SharedMachine)
}

pub fn cost_with(
    plan: &SecurePlan,
    profile: &NetworkProfile,
    c: &Constants,
    deployment: Deployment,
) -> CostReport {
    let comm = comm::simulate(plan);
    let zero = gates::zero_wires(plan);
    let mut pr = Pricer {
        c,
        acts: [Vec::new(), Vec::new()],
        compute: [0.0; 2],
        frame_base: 0,
    };
    // Client prologue inside `exec::run`: check and encode the hidden states.
    let inputs: usize = plan
        .wires
        .iter()
        .filter(|w| matches!(w.kind, WireKind::ClientInput { .. }))
        .map(|w| w.rows * w.cols)
        .sum();
    pr.elem(0, 3.0 * inputs as f64);
    pr.acts[0].push(Act::Mark);
    let mut step_compute = Vec::with_capacity(plan.steps.len());
    let mut frame_base = 0usize;
    for (step, sc) in plan.steps.iter().zip(&comm.steps) {
        let before = pr.compute;
        pr.frame_base = frame_base;
        gates::meter(plan, step, &zero, &mut pr);
        for p in 0..2 {
            pr.work(p, c.step_overhead_s, false);
        }
        pr.acts[0].push(Act::Mark);
        step_compute.push([pr.compute[0] - before[0], pr.compute[1] - before[1]]);
        frame_base += sc.frames.len();
    }
    let frames: Vec<(Party, u64)> = comm
        .steps
        .iter()
        .flat_map(|s| s.frames.iter().map(|f| (f.msg.from, f.msg.wire_bytes())))
        .collect();
    debug_assert_eq!(frames.len(), frame_base);
    let marks = simulate(&pr.acts, &frames, profile, c, deployment);
    let steps: Vec<StepCost> = plan
        .steps
        .iter()
        .zip(&comm.steps)
        .enumerate()
        .map(|(i, (step, sc))| StepCost {
            name: step.name(),
            shape: plan.step_shape(step),
            bytes: sc.bytes,
            rounds: sc.rounds,
            seconds: marks[i + 1] - marks[i],
            client_compute_s: step_compute[i][0],
            server_compute_s: step_compute[i][1],
        })
        .collect();
    let off = offline(plan, c, profile);
    CostReport {
        network: profile.name.clone(),
        online_bytes: comm.bytes,
        online_bytes_client_to_server: comm.bytes_client_to_server,
        online_bytes_server_to_client: comm.bytes_server_to_client,
        online_frames: comm.frames,
        offline_bytes: off.bytes,
        setup_bytes: comm::setup_bytes(plan),
        rounds: comm.rounds,
        depth_bound: plan.depth_bound(),
        predicted_online_s: *marks.last().unwrap_or(&0.0),
        compute_s: pr.compute[0] + pr.compute[1],
        transfer_s: profile.serialization_s(comm.bytes),
        latency_s: comm.rounds as f64 * profile.one_way_delay_s,
        predicted_offline_s: off.seconds,
        offline_dealer_s: off.dealer_s,
        steps,
    }
}

/// The offline side of one session.
pub struct Offline {
    /// Both parties' seeded halves.
    pub bytes: u64,
    /// Generation and serialization of both halves, the larger half's transfer over a
    /// link like the online one (both go out at once, to different parties) and one
    /// delay, then the party's expansion (its own PRG draws, about half the dealer's,
    /// and reading the corrections).
    pub seconds: f64,
    /// The dealer's generation alone.
    pub dealer_s: f64,
}

/// Prices the offline side of one session of `plan`.
pub fn offline(plan: &SecurePlan, c: &Constants, profile: &NetworkProfile) -> Offline {
    let halves = [Party::Client, Party::Server].map(|p| comm::material_bytes(plan, p));
    let big = halves[0].max(halves[1]);
    let w = gates::dealer_work(plan);
    let dealer_s = w.words / c.prg_words_per_s
        + w.ops / (c.matmul_gops * 1e9)
        + w.key_levels / c.dcf_keygen_levels_per_s
        + w.relu_levels / c.relu_keygen_levels_per_s;
    let serialize = (halves[0] + halves[1]) as f64 / c.serialize_bytes_per_s;
    let expand = w.words / 2.0 / c.prg_words_per_s + big as f64 / c.serialize_bytes_per_s;
    Offline {
        bytes: halves[0] + halves[1],
        seconds: dealer_s
            + serialize
            + profile.serialization_s(big)
            + profile.one_way_delay_s
            + expand,
        dealer_s,
    }
}

/// The event simulation; returns the client's marks (prologue end, then each step's end).
fn simulate(
    acts: &[Vec<Act>; 2],
    frames: &[(Party, u64)],
    profile: &NetworkProfile,
    c: &Constants,
    deployment: Deployment,
) -> Vec<f64> {
    let mut arrival: Vec<Option<f64>> = vec![None; frames.len()];
    let mut link_free = [0f64; 2];
    let mut pc = [0usize; 2];
    let mut job: [Option<Work>; 2] = [None, None];
    let mut marks = vec![0.0];
    marks.clear();
    let mut now = 0f64;
    let threads = c.threads as f64;
    loop {
        // Run every zero-time action that can run now.
        let mut progressed = true;
        while progressed {
            progressed = false;
            for p in 0..2 {
                while job[p].is_none() && pc[p] < acts[p].len() {
                    match acts[p][pc[p]] {
                        Act::Work(w) => job[p] = Some(w),
                        Act::Send(f) => {
                            let (from, bytes) = frames[f];
                            debug_assert_eq!(from.index(), p);
                            let start = now.max(link_free[p]);
                            link_free[p] = start + profile.serialization_s(bytes);
                            arrival[f] = Some(
                                link_free[p]
                                    + profile.one_way_delay_s
                                    + bytes as f64 / c.socket_bytes_per_s
                                    + c.frame_latency_s,
                            );
                        }
                        Act::Recv(f) => match arrival[f] {
                            Some(a) if a <= now => {}
                            _ => break,
                        },
                        Act::Mark => {
                            if p == 0 {
                                marks.push(now);
                            }
                        }
                    }
                    pc[p] += 1;
                    progressed = true;
                }
            }
        }
        if job.iter().all(Option::is_none) && pc[0] >= acts[0].len() && pc[1] >= acts[1].len() {
            break;
        }
        // Speed of the running work: shared cores, proportional to demand.
        let demand: f64 = job
            .iter()
            .flatten()
            .map(|w| if w.par { threads } else { 1.0 })
            .sum();
        let rate = match deployment {
            Deployment::SharedMachine => (threads / demand).min(1.0),
            Deployment::SeparateMachines => 1.0,
        };
        let mut next = f64::INFINITY;
        for p in 0..2 {
            if let Some(w) = job[p] {
                next = next.min(now + w.secs / rate);
            } else if pc[p] < acts[p].len() {
                if let Act::Recv(f) = acts[p][pc[p]] {
                    if let Some(a) = arrival[f] {
                        next = next.min(a);
                    }
                }
            }
        }
        assert!(
            next.is_finite(),
            "pricing deadlock: both parties wait (plan/frames mismatch)"
        );
        let dt = next - now;
        for j in job.iter_mut() {
            if let Some(w) = j {
                // The job that sets `next` ends there (compared as computed, so a
                // remainder below the clock's resolution cannot stall the loop).
                if now + w.secs / rate <= next {
                    *j = None;
                } else {
                    w.secs -= dt * rate;
                }
            }
        }
        now = next;
    }
    marks
}

/// `rounds` beside the dependency-depth bound, for people.
pub fn depth_note(rounds: u64, bound: u64) -> String {
    format!(
        "dependency-depth bound {bound}: {:.2}x",
        rounds as f64 / bound.max(1) as f64
    )
}

/// The per-step table, one line per step, and the totals.
pub fn format_table(report: &CostReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>4}  {:<14} {:<22} {:>12} {:>6} {:>10} {:>10} {:>10}",
        "#", "step", "shape", "bytes", "rounds", "ms", "client ms", "server ms"
    );
    for (i, st) in report.steps.iter().enumerate() {
        let _ = writeln!(
            s,
            "{:>4}  {:<14} {:<22} {:>12} {:>6} {:>10.3} {:>10.3} {:>10.3}",
            i,
            st.name,
            st.shape,
            st.bytes,
            st.rounds,
            st.seconds * 1e3,
            st.client_compute_s * 1e3,
            st.server_compute_s * 1e3
        );
    }
    let _ = writeln!(
        s,
        "total ({}): online {} B in {} frames ({} client->server, {} server->client), {} rounds ({}), predicted {:.2} ms",
        report.network,
        report.online_bytes,
        report.online_frames,
        report.online_bytes_client_to_server,
        report.online_bytes_server_to_client,
        report.rounds,
        depth_note(report.rounds, report.depth_bound),
        report.predicted_online_s * 1e3
    );
    let _ = writeln!(
        s,
        "  additive view: compute {:.2} ms (both parties) + transfer {:.2} ms + latency {:.2} ms; offline {} B, ~{:.2} ms (dealer ~{:.2} ms); setup {} B",
        report.compute_s * 1e3,
        report.transfer_s * 1e3,
        report.latency_s * 1e3,
        report.offline_bytes,
        report.predicted_offline_s * 1e3,
        report.offline_dealer_s * 1e3,
        report.setup_bytes
    );
    s
}

/// Prints [`format_table`] to stdout.
pub fn print_table(report: &CostReport) {
    print!("{}", format_table(report));
}
