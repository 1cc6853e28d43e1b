//! What a plan puts on the wire, from each gate's frames ([`crate::gates`]: every gate
//! states its own next to its online half, so the cost model prices exactly what the
//! executor sends), and the exact length of the dealer material a plan consumes.
//!
//! | step | frames (payload in ring elements of 8 bytes) |
//! | --- | --- |
//! | `Open` | client -> server: the opened rows x cols |
//! | `Linear`, `Slice`, `Shift` | none (local) |
//! | `HeadMatMul` | both at once: per head `m*k + k*n` (masked operands) |
//! | `Relu` | both at once, in sequence: one masked value per input, then one masked bit per input (bytes, not ring elements) |
//! | `Square`, `Spline` | both at once: one masked value per input |
//! | `RowMax` | both at once, one exchange per tree level: one masked difference per pair |
//! | `LayerNorm` | both at once, in sequence: the waves of [`crate::plan::shapes::layernorm_waves`]; a mixing norm's product opening rides in its comparison or first product |
//! | `Truncate` | both at once: one masked bit per value, `ceil(shift/8)` bytes each (not ring elements) |
//! | `Reveal` | server -> client: the wire |
//!
//! Every frame adds [`HEADER_LEN`] bytes. Rounds follow the transport's rule (see
//! [`crate::transport::Channel`]): each end keeps the largest depth it has received;
//! a frame carries that plus one; in a simultaneous exchange each party sends before
//! it receives. [`simulate`] replays the plan under that rule.

use serde::Serialize;

pub use crate::gates::Msg;
use crate::gates::{gate, Gate};
use crate::party::Party;
use crate::plan::shapes::masked_weights;
use crate::plan::*;
use crate::preprocessing::material::HEADER_BYTES;
use crate::transport::HEADER_LEN;

/// The frames `step` sends, in order.
pub fn step_messages(plan: &SecurePlan, step: &Step) -> Vec<Msg> {
    gate(step).messages(plan)
}

/// A frame with the depth the transport stamps on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Frame {
    pub msg: Msg,
    pub depth: u64,
}

/// Communication of one step as the client's channel counts it (both directions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepComm {
    pub frames: Vec<Frame>,
    /// Bytes on the wire, both directions, headers included.
    pub bytes: u64,
    /// Rounds this step adds to the running maximum depth.
    pub rounds: u64,
}

/// Online communication of a whole plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Comm {
    pub steps: Vec<StepComm>,
    pub bytes: u64,
    pub bytes_client_to_server: u64,
    pub bytes_server_to_client: u64,
    pub frames: u64,
    pub rounds: u64,
}

/// Replays the plan's frames under the transport's depth rule. Every frame of a step is
/// received within the step by the other party, so the client's channel sees all of
/// them: `bytes` and `rounds` are what `Stats` reports on the client end after the
/// synchronizing exchange that ends setup.
pub fn simulate(plan: &SecurePlan) -> Comm {
    simulate_keeping(plan, |_, _| true)
}

/// [`simulate`] with only the frames `keep` admits.
fn simulate_keeping(plan: &SecurePlan, keep: impl Fn(&dyn Gate, &Msg) -> bool) -> Comm {
    let mut seen = [0u64; 2];
    let mut max_depth = 0u64;
    let mut steps = Vec::with_capacity(plan.steps.len());
    let (mut c2s, mut s2c, mut frames) = (0u64, 0u64, 0u64);
    for step in &plan.steps {
        let g = gate(step);
        let mut msgs = g.messages(plan);
        msgs.retain(|m| keep(&*g, m));
        let before = max_depth;
        let mut out = Vec::with_capacity(msgs.len());
        let mut bytes = 0;
        let mut i = 0;
        while i < msgs.len() {
            let wave = msgs[i].wave;
            let j = i + msgs[i..].iter().take_while(|m| m.wave == wave).count();
            // Everyone in the wave sends first (with what it has seen so far) ...
            let sent: Vec<Frame> = msgs[i..j]
                .iter()
                .map(|m| Frame {
                    msg: *m,
                    depth: seen[m.from.index()] + 1,
                })
                .collect();
            // ... then receives the peer's frame.
            for f in &sent {
                let to = 1 - f.msg.from.index();
                seen[to] = seen[to].max(f.depth);
                max_depth = max_depth.max(f.depth);
                bytes += f.msg.wire_bytes();
                frames += 1;
                match f.msg.from {
                    Party::Client => c2s += f.msg.wire_bytes(),
                    Party::Server => s2c += f.msg.wire_bytes(),
                }
            }
            out.extend(sent);
            i = j;
        }
        steps.push(StepComm {
            frames: out,
            bytes,
            rounds: max_depth - before,
        });
    }
    Comm {
        steps,
        bytes: c2s + s2c,
        bytes_client_to_server: c2s,
        bytes_server_to_client: s2c,
        frames,
        rounds: max_depth,
    }
}

/// Bytes of the setup message `E = W - B` (server to client, once per model; not
/// online): its elements in frames of at most [`CHUNK`] bytes, at least one.
pub fn setup_bytes(plan: &SecurePlan) -> u64 {
    let payload = masked_weights(plan)
        .iter()
        .zip(&plan.weights)
        .filter(|(m, _)| **m)
        .map(|(_, s)| (s.rows * s.cols) as u64 * 8)
        .sum::<u64>();
    payload + payload.div_ceil(CHUNK as u64).max(1) * HEADER_LEN as u64
}

/// Length of `party`'s seeded half ([`Material::to_bytes`](crate::preprocessing::material::Material::to_bytes))
/// for one session of `plan`, computed from the shapes: the header, then the
/// corrections ([`crate::preprocessing::material::corrections`]): the server's shares of products,
/// `ceil(shift/8)` bytes per value of an exact truncation, and the DCF correction words
/// (both parties).
pub fn material_bytes(plan: &SecurePlan, party: Party) -> u64 {
    HEADER_BYTES as u64
        + plan
            .steps
            .iter()
            .map(|s| gate(s).material_bytes(plan, party))
            .sum::<u64>()
}

/// Offline bytes of one session as the in-process harness reports them
/// ([`crate::online::local::Inference::offline_bytes`]): both parties' encoded material.
pub fn offline_bytes(plan: &SecurePlan) -> u64 {
    material_bytes(plan, Party::Client) + material_bytes(plan, Party::Server)
}

/// Largest piece of a dealer's half, or of the setup `E`, in one frame: no message needs
/// a frame limit of its own size.
pub const CHUNK: usize = 4 << 20;

impl SecurePlan {
    /// The dependency-depth bound: the plan's rounds ([`simulate`], the transport's rule)
    /// with every frame a fused protocol can do without removed: truncation exchanges
    /// (`Truncate` steps and a norm's own), ReLU's select and the reveal. No protocol
    /// built from this plan's gates takes fewer rounds, so measured rounds over this
    /// bound is what truncations, selects and the reveal cost in round trips.
    pub fn depth_bound(&self) -> u64 {
        simulate_keeping(self, |g, m| !g.fusable(self, m)).rounds
    }
}

#[cfg(test)]
mod depth_tests {
    use crate::model::OwcModel;
    use crate::plan::lower::{lower, LowerOptions};
    use cryptpeft_types::{AdapterSpec, BackboneSpec};

    fn bound(spec: &str) -> (u64, u64) {
        let spec: AdapterSpec = spec.parse().unwrap();
        let model = OwcModel::symbolic(spec, BackboneSpec::vit_b16(), 100);
        let plan = lower(&model, LowerOptions::default()).unwrap().0;
        (
            plan.depth_bound(),
            crate::online::comm::simulate(&plan).rounds,
        )
    }

    #[test]
    fn the_papers_cifar_adapter_needs_seven_openings() {
        // Input, scores product, scores opening, mix product, its opening, ReLU,
        // the head's opening; the reveal rides on the last.
        let (bound, rounds) = bound("h=1,r=300,s=1");
        assert_eq!((bound, rounds), (7, 8));
    }

    #[test]
    fn no_plan_takes_fewer_rounds_than_its_bound() {
        for attn in ["linatten", "softmax", "relu-softmax", "2quad", "none"] {
            for norm in ["affine", "layernorm", "none"] {
                for act in ["relu", "gelu", "square"] {
                    let spec = format!("h=2,r=32,s=2,k=2,attn={attn},norm={norm},act={act}");
                    let (bound, rounds) = bound(&spec);
                    assert!(0 < bound && bound <= rounds, "{spec}: {bound} > {rounds}");
                }
            }
        }
    }

    #[test]
    fn one_exchange_fewer_in_a_block_saves_two_rounds() {
        // An exchange moves everything after it by one, and an opening rides free only
        // after an even number of exchanges in its block: without the truncation
        // exchange before the scores of one block the opening after its norm rides, so
        // ReLU-softmax's 22 rounds become 20, not 21 (docs/results.md).
        let spec: AdapterSpec = "h=2,r=64,s=2,attn=relu-softmax".parse().unwrap();
        let model = OwcModel::symbolic(spec, BackboneSpec::vit_b16(), 100);
        let plan = lower(&model, LowerOptions::default()).unwrap().0;
        let truncations: Vec<usize> = (0..plan.steps.len())
            .filter(|&k| matches!(plan.steps[k], crate::plan::Step::Truncate { .. }))
            .collect();
        assert_eq!(truncations.len(), 2, "one per block");
        let without = |drop: &[usize]| {
            let mut p = plan.clone();
            p.steps = (0..plan.steps.len())
                .filter(|k| !drop.contains(k))
                .map(|k| plan.steps[k].clone())
                .collect();
            crate::online::comm::simulate(&p).rounds
        };
        assert_eq!(without(&[]), 22);
        assert_eq!(without(&truncations[..1]), 20);
        assert_eq!(without(&truncations[1..]), 20);
        assert_eq!(without(&truncations), 18);
    }

    #[test]
    fn parallel_chains_count_once() {
        // Two scopes open their hidden states at once: one more adapter block adds
        // its own products, not another input opening.
        let (one, _) = bound("h=1,r=64,s=1,attn=none");
        let (two, _) = bound("h=1,r=64,s=2,attn=none");
        assert!(two > one && two < 2 * one, "{one} {two}");
    }

    #[test]
    fn normalized_attention_mixes_inside_its_norm() {
        // The row normalization runs after the product with the values, which rides
        // in the norm's own exchanges: no truncation and no product of its own. A
        // ReLU-softmax's norm (protocol 7, Newton on `1/v`) takes its comparison and two
        // products, and leaves its output at `2f`: nothing truncates it.
        for attn in ["relu-softmax", "softmax", "2quad"] {
            let spec: AdapterSpec = format!("h=2,r=32,s=1,attn={attn},norm=none")
                .parse()
                .unwrap();
            let model = OwcModel::symbolic(spec, BackboneSpec::vit_b16(), 100);
            let plan = lower(&model, LowerOptions::default()).unwrap().0;
            let mixes = |s: &crate::plan::Step| {
                matches!(s, crate::plan::Step::LayerNorm { mix: Some(_), .. })
            };
            assert!(plan.steps.iter().any(mixes), "{attn}");
            assert!(
                !plan.steps.iter().any(|s| s.name() == "matmul-mix"),
                "{attn}"
            );
        }
        let spec: AdapterSpec = "h=2,r=64,s=2,attn=relu-softmax,norm=none".parse().unwrap();
        let model = OwcModel::symbolic(spec, BackboneSpec::vit_b16(), 100);
        let plan = lower(&model, LowerOptions::default()).unwrap().0;
        let comm = crate::online::comm::simulate(&plan);
        let norms: Vec<usize> = (0..plan.steps.len())
            .filter(|&i| matches!(plan.steps[i], crate::plan::Step::LayerNorm { .. }))
            .collect();
        assert_eq!(norms.len(), 2);
        for i in norms {
            assert_eq!(comm.steps[i].rounds, 3, "step {i}");
            let crate::plan::Step::LayerNorm { out, .. } = plan.steps[i] else {
                unreachable!()
            };
            let truncates = |s: &crate::plan::Step| matches!(s, crate::plan::Step::Truncate { wires, wide } if wires.contains(&out) || wide.contains(&out));
            assert!(!plan.steps.iter().any(truncates), "step {i}'s output");
        }
    }
}
