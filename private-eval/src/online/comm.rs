//! What each plan step puts on the wire, stated next to the protocols (see
//! [`crate::online::exec`]) so the cost model prices exactly what the executor sends, and the
//! exact length of the dealer material ([`crate::preprocessing::material`]) a plan consumes.
//!
//! | step | frames (payload in ring elements of 8 bytes) |
//! | --- | --- |
//! | `Open` | client -> server: the opened rows x cols |
//! | `Linear`, `Slice`, `Shift` | none (local) |
//! | `HeadMatMul` | both at once: per head `m*k + k*n` (masked operands) |
//! | `Relu` | both at once, in sequence: one masked value per input, then one masked bit per input (bytes, not ring elements) |
//! | `Square`, `Spline` | both at once: one masked value per input |
//! | `RowMax` | both at once, one exchange per tree level: one masked difference per pair |
//! | `LayerNorm` | both at once, in sequence: `rows*d` (square), `rows` (comparison), `2*rows` three times per Newton iteration, `rows + rows*c` per scaling ([`crate::plan::shapes::layernorm_waves`]); a mixing norm's product opening rides in its comparison or first product |
//! | `Truncate` | both at once: one masked bit per value, `ceil(shift/8)` bytes each (not ring elements) |
//! | `Reveal` | server -> client: the wire |
//!
//! Under exact truncation a `LayerNorm` also truncates exactly after its exchanges
//! (see [`crate::protocols::trunc`]); a direct guess skips the one after the comparison and
//! truncates its one scaling by `f` plus the guess's slope bits.
//!
//! Every frame adds [`HEADER_LEN`] bytes. Rounds follow the transport's rule (see
//! [`crate::transport::Channel`]): each end keeps the largest depth it has received;
//! a frame carries that plus one; in a simultaneous exchange each party sends before
//! it receives. [`simulate`] replays the plan under that rule.

use serde::Serialize;

use crate::party::Party;
use crate::plan::shapes::{
    head_shapes, layernorm_mults, layernorm_scales_output, layernorm_truncs, layernorm_waves,
    masked_weights, norm_products, numerator_len, private_terms, rowmax_pairs, truncate_len,
    variance_shift, LnWave, MixShape,
};
use crate::plan::*;
use crate::preprocessing::material::HEADER_BYTES;
use crate::protocols::dcf::{Bit, Cws, Pair};
use crate::transport::HEADER_LEN;

/// One frame of a step. Frames of the same `wave` are sent by their parties before
/// either receives the other's (a simultaneous exchange); waves run in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Msg {
    pub from: Party,
    pub payload_bytes: u64,
    pub wave: u32,
}

impl Msg {
    /// Bytes on the wire, header included.
    pub fn wire_bytes(&self) -> u64 {
        self.payload_bytes + HEADER_LEN as u64
    }
}

const ELEM: u64 = 8;

/// One exact truncation of groups of `n` values by `shift` bits: both parties send a
/// masked bit per value, in `ceil(shift / 8)` bytes, every group in one frame.
fn trunc_msgs(groups: &[(usize, u32)]) -> [Msg; 2] {
    let payload_bytes = groups
        .iter()
        .map(|&(n, shift)| (n * crate::protocols::trunc::wire_bytes(shift)) as u64)
        .sum();
    [Party::Client, Party::Server].map(|from| Msg {
        from,
        payload_bytes,
        wave: 0,
    })
}

fn both(wave: u32, elems: usize) -> [Msg; 2] {
    let payload_bytes = elems as u64 * ELEM;
    [Party::Client, Party::Server].map(|from| Msg {
        from,
        payload_bytes,
        wave,
    })
}

/// The frames `step` sends, in order.
pub fn step_messages(plan: &SecurePlan, step: &Step) -> Vec<Msg> {
    match step {
        Step::Open { open } => {
            let (r, c) = plan.opening_shape(*open);
            vec![Msg {
                from: Party::Client,
                payload_bytes: (r * c) as u64 * ELEM,
                wave: 0,
            }]
        }
        Step::Linear { .. } | Step::Slice { .. } | Step::Shift { .. } => Vec::new(),
        Step::HeadMatMul {
            a, b, heads, kind, ..
        } => {
            let (m, k, n) = head_shapes(plan, *a, *b, *heads, *kind);
            both(0, heads * (m * k + k * n)).to_vec()
        }
        Step::Relu { x, .. } => {
            let n = plan.wires[*x].rows * plan.wires[*x].cols;
            let mut msgs = both(0, n).to_vec();
            msgs.extend([Party::Client, Party::Server].map(|from| Msg {
                from,
                payload_bytes: n.div_ceil(8) as u64,
                wave: 1,
            }));
            msgs
        }
        Step::Square { x, .. } | Step::Spline { x, .. } => {
            both(0, plan.wires[*x].rows * plan.wires[*x].cols).to_vec()
        }
        Step::RowMax { x, .. } => rowmax_pairs(&plan.wires[*x])
            .enumerate()
            .flat_map(|(k, n)| {
                both(0, n).map(|m| Msg {
                    wave: k as u32,
                    ..m
                })
            })
            .collect(),
        Step::LayerNorm {
            x,
            z,
            inv_sqrt,
            shifts,
            mix,
            ..
        } => {
            let mix = MixShape::of(plan, *x, mix);
            let waves: Vec<[Msg; 2]> =
                layernorm_waves(plan, plan.norm_shape(*x, *z), inv_sqrt, *shifts, mix)
                    .into_iter()
                    .map(|w| match w {
                        LnWave::Square(n) => both(0, n),
                        LnWave::Product { elems, rides, .. } => both(0, elems + rides),
                        LnWave::Compare {
                            values,
                            carries,
                            rides,
                            ..
                        } => {
                            let rider = carries.map_or(0, |t| {
                                t.values * crate::protocols::trunc::wire_bytes(t.shift)
                            }) + rides * ELEM as usize;
                            [Party::Client, Party::Server].map(|from| Msg {
                                from,
                                payload_bytes: values as u64 * ELEM + rider as u64,
                                wave: 0,
                            })
                        }
                        LnWave::Truncate(t) => trunc_msgs(&t.map(|t| (t.values, t.shift))),
                    })
                    .collect();
            waves
                .into_iter()
                .enumerate()
                .flat_map(|(k, w)| {
                    w.map(|m| Msg {
                        wave: k as u32,
                        ..m
                    })
                })
                .collect()
        }
        Step::Truncate { wires, wide } => {
            let f = plan.frac_bits;
            trunc_msgs(&[
                (truncate_len(plan, wires), f),
                (truncate_len(plan, wide), 2 * f),
            ])
            .to_vec()
        }
        Step::Reveal { wire, .. } => {
            let w = &plan.wires[*wire];
            vec![Msg {
                from: Party::Server,
                payload_bytes: (w.rows * w.cols) as u64 * ELEM,
                wave: 0,
            }]
        }
    }
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
fn simulate_keeping(plan: &SecurePlan, keep: impl Fn(&Step, &Msg) -> bool) -> Comm {
    let mut seen = [0u64; 2];
    let mut max_depth = 0u64;
    let mut steps = Vec::with_capacity(plan.steps.len());
    let (mut c2s, mut s2c, mut frames) = (0u64, 0u64, 0u64);
    for step in &plan.steps {
        let mut msgs = step_messages(plan, step);
        msgs.retain(|m| keep(step, m));
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
        .map(|(_, s)| (s.rows * s.cols) as u64 * ELEM)
        .sum::<u64>();
    payload + payload.div_ceil(CHUNK as u64).max(1) * HEADER_LEN as u64
}

/// Length of `party`'s seeded half ([`Material::to_bytes`](crate::preprocessing::material::Material::to_bytes))
/// for one session of `plan`, computed from the shapes: the header, then the
/// corrections ([`crate::preprocessing::material::corrections`]): the server's shares of products,
/// `ceil(shift/8)` bytes per value of an exact truncation, and the DCF correction words
/// (both parties).
pub fn material_bytes(plan: &SecurePlan, party: Party) -> u64 {
    let server = party == Party::Server;
    let ring = |n: usize| if server { 8 * n as u64 } else { 0 };
    let low = |n: usize, bits: u32| {
        if server {
            (n * crate::protocols::trunc::wire_bytes(bits)) as u64
        } else {
            0
        }
    };
    // Comparison material: the server's shares of `b` and `b r`, and every key.
    let cmp = |n: usize, w: CmpWidth| ring(2 * n) + (n * Cws::<Pair>::bytes(w.domain())) as u64;
    let mut total = HEADER_BYTES as u64;
    for step in &plan.steps {
        total += match step {
            Step::Open { .. } | Step::Slice { .. } | Step::Shift { .. } | Step::Reveal { .. } => 0,
            Step::Linear { terms, .. } => ring(private_terms(plan, terms).sum()),
            Step::HeadMatMul {
                a, b, heads, kind, ..
            } => {
                let (m, _, n) = head_shapes(plan, *a, *b, *heads, *kind);
                ring(heads * m * n)
            }
            Step::Square { x, shift, .. } => {
                // Fused: the operand's wrap and top bits, the cross term.
                let n = plan.wires[*x].rows * plan.wires[*x].cols;
                ring(n) + 3 * low(n, *shift)
            }
            Step::Spline { x, bits, .. } => {
                let n = plan.wires[*x].rows * plan.wires[*x].cols;
                cmp(n, CmpWidth::spline(*bits, plan.frac_bits))
            }
            Step::RowMax { x, bits, .. } => rowmax_pairs(&plan.wires[*x])
                .map(|n| cmp(n, CmpWidth::exact(*bits)))
                .sum(),
            Step::Relu { x, bits, shift, .. } => {
                let n = plan.wires[*x].rows * plan.wires[*x].cols;
                // Truncating: the shares of `r >> shift`, `msb(r)` and `rho msb(r)`.
                let trunc = match shift {
                    0 => 0,
                    s => ring(n) + 2 * low(n, *s),
                };
                ring(2 * n) + trunc + (n * Cws::<Bit>::bytes(*bits as usize - 1)) as u64
            }
            Step::LayerNorm {
                x,
                z,
                inv_sqrt,
                shifts,
                mix,
                ..
            } if plan.fused_norm(inv_sqrt) => {
                let (rows, d, c) = plan.norm_shape(*x, *z);
                let mix = MixShape::of(plan, *x, mix);
                // Operands: `omega` and `msb(r)` mod 2^s; products: `base_a base_b` and
                // the two cross terms mod 2^s ([`crate::protocols::fused`]).
                let operand = |(n, s): (usize, u32)| 2 * low(n, s);
                let sq = if inv_sqrt.squares { rows * d } else { 0 };
                // The squares' material: one ring element per row (their sum).
                let square = operand((sq, shifts[0])) + ring(sq / d.max(1)) + low(sq, shifts[0]);
                let sv = variance_shift(plan, inv_sqrt, *shifts);
                let zs = mix.map_or(0, |_| plan.frac_bits);
                let products: u64 = norm_products(plan, rows, c, inv_sqrt, sv, zs)
                    .iter()
                    .map(|m| {
                        let square = if m.pair {
                            ring(m.b.0) + low(m.b.0, m.b.1)
                        } else {
                            0
                        };
                        operand(m.a)
                            + operand(m.b)
                            + ring(m.out)
                            + low(m.out, m.b.1)
                            + low(m.out, m.a.1)
                            + square
                    })
                    .sum();
                let truncs = low(numerator_len(rows, d, c, mix), shifts[1]);
                // The product's triples: the server's shares of `A B` per head.
                let mixing = mix.map_or(0, |m| ring(m.heads * m.m * m.n));
                square + products + truncs + mixing + cmp(rows, CmpWidth::FULL)
            }
            Step::LayerNorm { x, z, inv_sqrt, .. } => {
                let (rows, d, c) = plan.norm_shape(*x, *z);
                let scalings = (0..layernorm_mults(plan, inv_sqrt))
                    .filter(|&i| layernorm_scales_output(inv_sqrt, i))
                    .count();
                let per_row = layernorm_mults(plan, inv_sqrt) - scalings;
                let truncs: u64 = layernorm_truncs(plan, rows, c, inv_sqrt)
                    .iter()
                    .map(|t| low(t.values, t.shift))
                    .sum();
                let sq = if inv_sqrt.squares { rows * d } else { 0 };
                ring(sq + per_row * rows + scalings * rows * c) + truncs + cmp(rows, CmpWidth::FULL)
            }
            Step::Truncate { wires, wide } => {
                low(truncate_len(plan, wires), plan.frac_bits)
                    + low(truncate_len(plan, wide), 2 * plan.frac_bits)
            }
        };
    }
    total
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
        simulate_keeping(self, |step, m| match step {
            Step::Truncate { .. } | Step::Reveal { .. } => false,
            Step::Relu { .. } => m.wave == 0,
            Step::LayerNorm {
                x,
                z,
                inv_sqrt,
                shifts,
                mix,
                ..
            } => {
                let mix = MixShape::of(self, *x, mix);
                let waves = layernorm_waves(self, self.norm_shape(*x, *z), inv_sqrt, *shifts, mix);
                !matches!(waves[m.wave as usize], LnWave::Truncate(_))
            }
            _ => true,
        })
        .rounds
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
        // in the norm's own exchanges: no truncation and no product of its own, and
        // ReLU's select is the only frame a ReLU-softmax block spends above its bound.
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
        let (bound, rounds) = bound("h=2,r=64,s=2,attn=relu-softmax,norm=none");
        assert!(4 * rounds <= 5 * bound, "{rounds} rounds, bound {bound}");
    }
}
