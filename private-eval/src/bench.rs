//! Benchmarks of single protocols at ViT-B/16 shapes (`bench-protocols`); the roles'
//! end-to-end benchmark is the deployment crate's loopback harness.

use std::time::Duration;

use cryptpeft_types::stats::median;
use cryptpeft_types::NetworkProfile;
use serde::Serialize;

use crate::arith::tensor::Mat;
use crate::online::local;
use crate::plan::*;
use crate::transport::{self, FramedChannel, TransportConfig};

/// One row of `results/protocols.csv`.
#[derive(Debug, Serialize, Clone)]
pub struct ProtocolRow {
    pub protocol: String,
    pub shape: String,
    pub network: String,
    pub online_bytes: u64,
    pub bytes_per_value: f64,
    pub rounds: u64,
    pub median_s: f64,
}

/// A one-protocol plan, its weights, the client's inputs and the number of values.
pub type ProtocolPlan = (SecurePlan, PlanWeights, Vec<Mat>, usize);

/// A one-protocol plan: the client's input `[n, d]`, a public linear step that turns it
/// into a shared wire where needed, then the protocol under test (the last step).
pub fn protocol_plan(name: &str) -> ProtocolPlan {
    let b = &mut Inputs(7);
    match name {
        "relu" | "square" | "gelu" | "exp" | "max" => activation(b, name),
        "softmax" => softmax(b),
        "layernorm" => layernorm(b),
        "matmul" => matmul(b),
        "linear-client" | "linear-shared" => linear(b, name),
        "2quad-norm" => quad_norm(b),
        other => panic!("unknown protocol {other}"),
    }
}

/// The benchmark's inputs: a fixed linear congruential stream, so every run measures
/// the same values.
struct Inputs(u64);

impl Inputs {
    /// An `r x c` matrix uniform in `[-scale, scale)`.
    fn rand_mat(&mut self, r: usize, c: usize, scale: f64) -> Mat {
        Mat::new(
            r,
            c,
            (0..r * c)
                .map(|_| {
                    self.0 = self
                        .0
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((self.0 >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 2.0 * scale
                })
                .collect(),
        )
    }
}

fn wire(name: &str, rows: usize, cols: usize, kind: WireKind) -> Wire {
    Wire {
        name: name.into(),
        rows,
        cols,
        kind,
    }
}

/// The client's input and the shared copy [`public`] makes of it.
fn input(name: &str, rows: usize, cols: usize) -> Vec<Wire> {
    vec![
        wire(name, rows, cols, WireKind::ClientInput { hidden: 0 }),
        wire(&format!("{name}s"), rows, cols, WireKind::Shared),
    ]
}

/// A public linear step copying wire `w` into `w + 1`.
fn public(w: WireId) -> Step {
    Step::Linear {
        out: w + 1,
        terms: vec![Term::Public {
            wire: w,
            rows: Rows::All,
            coef: 1.0,
        }],
        bias: None,
        shift: 0,
    }
}

/// A plan without openings or weights; a linear protocol adds its own.
fn plan(wires: Vec<Wire>, steps: Vec<Step>) -> SecurePlan {
    SecurePlan {
        wires,
        openings: vec![],
        weights: vec![],
        steps,
        inputs: 1,
        frac_bits: 16,
        exact_truncation: false,
    }
}

/// ViT-B/16's MLP activations (ReLU, square, GELU) and its scores' exp and row max.
fn activation(b: &mut Inputs, name: &str) -> ProtocolPlan {
    let shared = WireKind::Shared;
    // ViT-B/16's MLP (197 x 3072) for the activations; its attention scores
    // (12 heads x 197 queries over 197 keys) for exp and max.
    let (n, c) = match name {
        "exp" | "max" => (12 * 197, 197),
        _ => (197, 3072),
    };
    let bits = crate::plan::lower::RELU_BITS;
    let (act, out_cols) = match name {
        "relu" => (
            Step::Relu {
                out: 2,
                x: 1,
                bits,
                shift: 0,
            },
            c,
        ),
        "gelu" | "exp" => (
            Step::Spline {
                out: 2,
                x: 1,
                func: match name {
                    "gelu" => SplineFn::Gelu,
                    _ => SplineFn::Exp,
                },
                bits,
            },
            c,
        ),
        "max" => (Step::RowMax { out: 2, x: 1, bits }, 1),
        _ => (
            Step::Square {
                out: 2,
                x: 1,
                shift: 0,
            },
            c,
        ),
    };
    let p = plan(
        [input("x", n, c), vec![wire("y", n, out_cols, shared)]].concat(),
        vec![public(0), act],
    );
    let x = match name {
        "exp" => b.rand_mat(n, c, 8.0).map(|v| v - 8.0),
        _ => b.rand_mat(n, c, 3.0),
    };
    (p, PlanWeights { mats: vec![] }, vec![x], n * c)
}

/// Softmax over ViT-B/16's scores.
fn softmax(b: &mut Inputs) -> ProtocolPlan {
    let shared = WireKind::Shared;
    // Softmax over ViT-B/16's scores: max tree, shift, exp, row normalization.
    let (rows, n) = (12 * 197, 197);
    let bits = crate::plan::lower::RELU_BITS;
    let p = plan(
        [
            input("s", rows, n),
            vec![
                wire("m", rows, 1, shared),
                wire("x", rows, n, shared),
                wire("e", rows, n, shared),
                wire("p", rows, n, shared),
            ],
        ]
        .concat(),
        vec![
            public(0),
            Step::RowMax { out: 2, x: 1, bits },
            Step::Shift {
                out: 3,
                x: 1,
                by: 2,
            },
            Step::Spline {
                out: 4,
                x: 3,
                func: SplineFn::Exp,
                bits,
            },
            Step::LayerNorm {
                out: 5,
                x: 4,
                z: 4,
                eps: 0.0,
                inv_sqrt: InvSqrtParams {
                    power: 2,
                    squares: false,
                    min_exp: -1,
                    max_exp: 9,
                    ..Default::default()
                },
                shifts: [0, 0],
                mix: None,
            },
        ],
    );
    (
        p,
        PlanWeights { mats: vec![] },
        vec![b.rand_mat(rows, n, 4.0)],
        rows * n,
    )
}

/// LayerNorm at ViT-B/16's width.
fn layernorm(b: &mut Inputs) -> ProtocolPlan {
    let shared = WireKind::Shared;
    // LayerNorm at ViT-B/16's width: 197 x 768, centred and scaled input.
    let (n, d) = (197, 768);
    let p = plan(
        [input("x", n, d), vec![wire("y", n, d, shared)]].concat(),
        vec![
            public(0),
            Step::LayerNorm {
                out: 2,
                x: 1,
                z: 1,
                eps: 1e-6,
                inv_sqrt: InvSqrtParams::default(),
                shifts: [0, 0],
                mix: None,
            },
        ],
    );
    let x = b.rand_mat(n, d, 3.0).map(|v| v / (d as f64).sqrt());
    (p, PlanWeights { mats: vec![] }, vec![x], n * d)
}

/// A head-wise product at ViT-B/16's scores.
fn matmul(b: &mut Inputs) -> ProtocolPlan {
    let shared = WireKind::Shared;
    // ViT-B/16's scores: 12 heads of 197 x 64 by 64 x 197.
    let (n, r, h) = (197, 768, 12);
    let p = plan(
        [
            input("q", n, 2 * r),
            vec![
                wire("a", n, r, shared),
                wire("b", n, r, shared),
                wire("s", h * n, n, shared),
            ],
        ]
        .concat(),
        vec![
            public(0),
            Step::Slice {
                out: 2,
                x: 1,
                from: 0,
                to: r,
            },
            Step::Slice {
                out: 3,
                x: 1,
                from: r,
                to: 2 * r,
            },
            Step::HeadMatMul {
                out: 4,
                a: 2,
                b: 3,
                heads: h,
                kind: HeadProduct::Scores,
            },
        ],
    );
    (
        p,
        PlanWeights { mats: vec![] },
        vec![b.rand_mat(n, 2 * r, 0.3)],
        h * n * n,
    )
}

/// A private linear map of the client's input or of a shared wire.
fn linear(b: &mut Inputs, name: &str) -> ProtocolPlan {
    let shared = WireKind::Shared;
    let (n, d, r) = (197, 768, 300);
    let w = b.rand_mat(d, r, 1.0 / (d as f64).sqrt());
    let src = if name == "linear-client" { 0 } else { 1 };
    let p = SecurePlan {
        openings: vec![Opening {
            wire: src,
            rows: Rows::All,
            wide: false,
        }],
        weights: vec![WeightShape { rows: d, cols: r }],
        ..plan(
            [input("x", n, d), vec![wire("y", n, r, shared)]].concat(),
            vec![
                public(0),
                Step::Open { open: 0 },
                Step::Linear {
                    out: 2,
                    terms: vec![Term::Private {
                        open: 0,
                        weight: 0,
                        cls: false,
                    }],
                    bias: None,
                    shift: 0,
                },
            ],
        )
    };
    (
        p,
        PlanWeights { mats: vec![w] },
        vec![b.rand_mat(n, d, 1.0)],
        n * d,
    )
}

/// 2Quad's row normalization at ViT-B/16.
fn quad_norm(b: &mut Inputs) -> ProtocolPlan {
    let shared = WireKind::Shared;
    // 2Quad's row normalization at ViT-B/16: 12 heads x 197 queries over 197 keys,
    // `w / sum_row w` for `w = x^2`, `x` the shifted scores (in [2, 8]).
    let (rows, n) = (12 * 197, 197);
    let p = plan(
        [
            input("x", rows, n),
            vec![wire("e", rows, n, shared), wire("p", rows, n, shared)],
        ]
        .concat(),
        vec![
            public(0),
            Step::Square {
                out: 2,
                x: 1,
                shift: 0,
            },
            Step::LayerNorm {
                out: 3,
                x: 2,
                z: 2,
                eps: 0.0,
                inv_sqrt: InvSqrtParams {
                    power: 2,
                    squares: false,
                    ..Default::default()
                },
                shifts: [0, 0],
                mix: None,
            },
        ],
    );
    let x = b.rand_mat(rows, n, 3.0).map(|v| v + 5.0);
    (p, PlanWeights { mats: vec![] }, vec![x], rows * n)
}

pub const PROTOCOLS: [&str; 11] = [
    "relu",
    "square",
    "gelu",
    "max",
    "exp",
    "softmax",
    "layernorm",
    "matmul",
    "linear-shared",
    "linear-client",
    "2quad-norm",
];

/// Times one protocol over loopback TCP: bytes and rounds of its steps (the opening
/// and the local linear step together for the linear protocols), median seconds.
pub fn bench_protocol(
    name: &str,
    network: &NetworkProfile,
    repeat: usize,
) -> Result<ProtocolRow, String> {
    let (plan, weights, hidden, values) = protocol_plan(name);
    // Everything after the public step that shares the client's input.
    let first = 1;
    let mut secs = Vec::new();
    let mut row = None;
    for i in 0..repeat.max(1) {
        let l = transport::listen("127.0.0.1:0").map_err(|e| e.to_string())?;
        let addr = l.local_addr().map_err(|e| e.to_string())?.to_string();
        let cfg = TransportConfig {
            read_timeout: Duration::from_secs(60),
            ..TransportConfig::default()
        };
        let (c, s) = std::thread::scope(|sc| {
            let h = sc.spawn(|| {
                transport::accept(&l, 0, network.clone(), cfg.clone(), Duration::from_secs(10))
            });
            let c = transport::connect(
                &addr,
                0,
                network.clone(),
                cfg.clone(),
                Duration::from_secs(10),
            );
            (c, h.join().expect("accept thread"))
        });
        let (c, s): (FramedChannel<_>, FramedChannel<_>) =
            (c.map_err(|e| e.to_string())?, s.map_err(|e| e.to_string())?);
        let inf = local::infer(&plan, &weights, &hidden, c, s, 1000 + i as u128)
            .map_err(|e| e.to_string())?;
        let steps = &inf.steps[first..];
        secs.push(steps.iter().map(|t| t.seconds).sum());
        let bytes: u64 = steps.iter().map(|t| t.bytes).sum();
        row = Some(ProtocolRow {
            protocol: name.into(),
            shape: plan.step_shape(plan.steps.last().unwrap()),
            network: network.name.clone(),
            online_bytes: bytes,
            bytes_per_value: bytes as f64 / values as f64,
            rounds: steps.iter().map(|t| t.rounds).sum(),
            median_s: 0.0,
        });
    }
    let mut row = row.expect("at least one run");
    row.median_s = median(&secs).unwrap_or(f64::NAN);
    Ok(row)
}
