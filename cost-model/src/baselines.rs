//! Analytic prices of the baselines under this project's protocols (same dealer model,
//! same per-protocol formulas as the executor), for comparison with OWC adapters.
//! These plans are not executable here (the executor has no softmax yet); they
//! are priced additively: compute (both parties, no overlap) + bytes / bandwidth +
//! rounds x one-way delay.
//!
//! | protocol | online bytes (both directions) | rounds | assumption |
//! | --- | --- | --- | --- |
//! | opening of a shared `m x k` wire, linear layer with server weights | `8 m k + 17` | 1 | as `Step::Open` + `Step::Linear`: client sends masked share, weights masked once per model |
//! | Beaver product per head `[m x k] [k x n]` | `2 (8 h (m k + k n) + 17)` | 1 | as `Step::HeadMatMul` |
//! | element-wise square of `n` values | `2 (8 n + 17)` | 1 | one opening of `x - a` (as LayerNorm's square) |
//! | element-wise product of `n` values | `2 (16 n + 17)` | 1 | Beaver (as LayerNorm's Newton products) |
//! | ReLU / comparison of `n` values against `t` thresholds | `2 (8 n + 17)` | 1 | DCF with a dealer (as `Step::Relu`), `n t` DCF evaluations per party |
//! | LayerNorm of `rows x d` | as `Step::LayerNorm` (square, threshold PWL, 1 Newton, scaling) | `3 + 3 newton` | our executor's protocol |
//! | softmax over `rows x n` | max by a tree of `ceil(log2 n)` (comparison + select product) levels; exp by the limit `(1 + x/2^8)^(2^8)` = 8 squarings; row sum local; reciprocal by a threshold PWL (1 comparison) + 3 Newton iterations (2 products each); final product | `2 ceil(log2 n) + 8 + 1 + 6 + 1` | CrypTen's exp/reciprocal structure with our DCF comparisons |
//! | GELU of `n` values | DCF comparison against 4 segment thresholds, `x^2` (square), `x^3` (product), one product selecting the segment polynomial | 4 | SIGMA-style DCF piecewise polynomial (degree 3) |
//!
//! Layers: SFT runs the last `k` ViT layers (attention with softmax, GELU MLP, two
//! LayerNorms, residuals local) plus final LayerNorm and head under MPC on the
//! client's plaintext hidden state (first opening one-way), without dead-token
//! elimination (as the paper's CrypTen baseline). PEFT-LoRA runs all `L` layers under
//! MPC from the patch embedding (LoRA folds into the weights: same price as the
//! frozen layer). PEFT-AdaptFormer adds, per layer, a parallel bottleneck adapter
//! (`d -> 64`, ReLU, `64 -> d`) on the MLP's normed input (sharing its opening).

use cryptpeft_types::{BackboneSpec, NetworkProfile};
use private_eval::plan::InvSqrtParams;
use serde::Serialize;

use crate::constants::Constants;

/// Price of one baseline.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BaselineCost {
    pub name: String,
    pub online_bytes: u64,
    pub rounds: u64,
    /// Both parties' compute, seconds.
    pub compute_s: f64,
    pub predicted_online_s: f64,
}

struct Acc<'a> {
    c: &'a Constants,
    bytes: u64,
    rounds: u64,
    compute: f64,
}

const H: u64 = 17;

impl Acc<'_> {
    fn elem(&mut self, n: f64) {
        self.compute += 2.0 * n / self.c.elementwise_per_s;
    }
    fn matmul(&mut self, m: usize, k: usize, n: usize, times: f64) {
        let [tm, tn] = self.c.matmul_tile;
        let (mp, np) = (m.div_ceil(tm) * tm, n.div_ceil(tn) * tn);
        self.compute += times
            * (self.c.matmul_call_s
                + 2.0 * (mp * k * np) as f64 / (self.c.matmul_gops * 1e9)
                + (k * np) as f64 / self.c.matmul_pack_per_s);
    }
    fn ser(&mut self, bytes: u64) {
        self.compute += 2.0 * bytes as f64 / self.c.serialize_bytes_per_s;
    }
    /// One-way opening of `n` values plus a server-weight linear map `[m x k] -> n_out`.
    fn open_linear(&mut self, m: usize, k: usize, n: usize) {
        self.bytes += 8 * (m * k) as u64 + H;
        self.rounds += 1;
        self.ser(8 * (m * k) as u64);
        self.matmul(m, k, n, 3.0); // client 1, server 2
        self.elem(3.0 * (m * n) as f64);
    }
    fn exchange(&mut self, per_party: usize) {
        let b = 8 * per_party as u64;
        self.bytes += 2 * (b + H);
        self.rounds += 1;
        self.ser(2 * b);
        self.elem(4.0 * per_party as f64);
    }
    fn square(&mut self, n: usize) {
        self.exchange(n);
        self.elem(5.0 * n as f64);
    }
    fn product(&mut self, n: usize) {
        self.exchange(2 * n);
        self.elem(6.0 * n as f64);
    }
    fn compare(&mut self, n: usize, thresholds: usize) {
        self.exchange(n);
        let pairs = (n * thresholds) as f64;
        self.compute += 2.0 * pairs / self.c.dcf_pool_evals_per_s;
        self.elem(10.0 * pairs);
    }
    fn heads(&mut self, h: usize, m: usize, k: usize, n: usize) {
        self.exchange(h * (m * k + k * n));
        self.matmul(m, k, n, 5.0 * h as f64);
        self.elem(6.0 * (h * m * n) as f64);
    }
    fn layernorm(&mut self, rows: usize, d: usize, c: usize) {
        let p = InvSqrtParams::default();
        self.square(rows * d);
        self.compare(rows, p.thresholds().len());
        for _ in 0..3 * p.newton {
            self.product(rows);
        }
        self.exchange(rows + rows * c);
        self.elem(6.0 * (rows * c) as f64);
    }
    fn softmax(&mut self, rows: usize, n: usize) {
        let levels = (n as f64).log2().ceil() as usize;
        let mut width = n;
        for _ in 0..levels {
            width = width.div_ceil(2);
            self.compare(rows * width, 1);
            self.product(rows * width);
        }
        for _ in 0..8 {
            self.square(rows * n);
        }
        self.elem((rows * n) as f64);
        self.compare(rows, 64);
        for _ in 0..3 {
            self.product(rows);
            self.product(rows);
        }
        self.product(rows * n);
    }
    fn gelu(&mut self, n: usize) {
        self.compare(n, 4);
        self.square(n);
        self.product(n);
        self.product(n);
    }
    fn relu(&mut self, n: usize) {
        self.compare(n, 1);
    }
    /// One ViT encoder layer on a shared (or, first, the client's plaintext) `[N, d]`
    /// input. As in our lowering, a LayerNorm's output is already the following linear
    /// map (gamma and the map fold into `z`), so LN1 yields Q, K, V and LN2 yields FC1
    /// (and, for AdaptFormer, the adapter's down projection).
    fn vit_layer(&mut self, bb: &BackboneSpec, adaptformer: bool) {
        let (n, d, h, f) = (bb.tokens(), bb.hidden_dim, bb.heads, bb.mlp_dim);
        let dh = d / h;
        let extra = if adaptformer { 64 } else { 0 };
        self.open_linear(n, d, 3 * d + d); // centred input and z = QKV
        self.layernorm(n, d, 3 * d);
        self.heads(h, n, dh, n); // Q K^T
        self.softmax(h * n, n);
        self.heads(h, n, n, dh); // P V
        self.open_linear(n, d, d); // output projection (residual local)
        self.open_linear(n, d, d + f + extra); // centred input and z = FC1 (+ down)
        self.layernorm(n, d, f + extra);
        self.gelu(n * f);
        self.open_linear(n, f, d); // FC2
        if adaptformer {
            self.relu(n * 64);
            self.open_linear(n, 64, d); // up
        }
    }
}

fn finish(name: &str, a: Acc<'_>, profile: &NetworkProfile) -> BaselineCost {
    BaselineCost {
        name: name.into(),
        online_bytes: a.bytes,
        rounds: a.rounds,
        compute_s: a.compute,
        predicted_online_s: a.compute
            + profile.serialization_s(a.bytes)
            + a.rounds as f64 * profile.one_way_delay_s,
    }
}

fn head(a: &mut Acc<'_>, bb: &BackboneSpec, classes: usize) {
    a.layernorm(1, bb.hidden_dim, classes);
    a.bytes += 8 * classes as u64 + H; // reveal
    a.rounds += 1;
}

/// SFT of the last `layers` layers (1 or 2 in the paper) with softmax, GELU, LayerNorm.
pub fn sft(
    bb: &BackboneSpec,
    layers: usize,
    classes: usize,
    profile: &NetworkProfile,
    c: &Constants,
) -> BaselineCost {
    let mut a = Acc {
        c,
        bytes: 0,
        rounds: 0,
        compute: 0.0,
    };
    // The client's plaintext hidden state: its opening is one-way and first.
    for _ in 0..layers {
        a.vit_layer(bb, false);
    }
    head(&mut a, bb, classes);
    finish(&format!("SFT last {layers}"), a, profile)
}

/// PEFT with the whole backbone under MPC: LoRA (`adaptformer = false`) or AdaptFormer.
pub fn peft_full(
    bb: &BackboneSpec,
    adaptformer: bool,
    classes: usize,
    profile: &NetworkProfile,
    c: &Constants,
) -> BaselineCost {
    let mut a = Acc {
        c,
        bytes: 0,
        rounds: 0,
        compute: 0.0,
    };
    let n = bb.tokens();
    let patch = bb.channels * bb.patch_size * bb.patch_size;
    a.open_linear(n - 1, patch, bb.hidden_dim); // patch embedding of the client's image
    for _ in 0..bb.layers {
        a.vit_layer(bb, adaptformer);
    }
    head(&mut a, bb, classes);
    finish(
        if adaptformer {
            "PEFT-AdaptFormer"
        } else {
            "PEFT-LoRA"
        },
        a,
        profile,
    )
}

/// All four baselines of the paper.
pub fn all(
    bb: &BackboneSpec,
    classes: usize,
    profile: &NetworkProfile,
    c: &Constants,
) -> Vec<BaselineCost> {
    vec![
        sft(bb, 1, classes, profile, c),
        sft(bb, 2, classes, profile, c),
        peft_full(bb, false, classes, profile, c),
        peft_full(bb, true, classes, profile, c),
    ]
}
