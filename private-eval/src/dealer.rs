//! The dealer's preprocessing: walks a plan and generates, per session, the correlated
//! randomness of every step for both parties. It never sees weights or inputs: weight
//! masks `B` come from a per-model seed it shares with the server (the server sends the
//! client `E = W - B` once per model), input masks are fresh per session.

use rayon::prelude::*;

use crate::dcf;
use crate::material::{CmpMat, Material, StepMat, Triple};
use crate::matmul::matmul;
use crate::plan::*;
use crate::prg::{FixedKeyAes, Prg};
use crate::ring::{self, LOW63};
use crate::trunc;

/// The per-model weight masks `B_w`, derived from a seed the dealer and server share.
#[derive(Debug, Clone, Copy)]
pub struct ModelMasks {
    pub seed: u128,
}

impl ModelMasks {
    pub fn weight_mask(&self, w: WeightId, len: usize) -> Vec<u64> {
        let mut h = [self.seed ^ ((w as u128) << 1 | 1)];
        FixedKeyAes::default().hash_in_place(&mut h);
        Prg::new(h[0]).gen(len)
    }
}

/// Which weights are multiplied by the server under masks (as opposed to biases the
/// server adds): the ones that need `E = W - B` at setup.
pub fn masked_weights(plan: &SecurePlan) -> Vec<bool> {
    let mut used = vec![false; plan.weights.len()];
    for step in &plan.steps {
        if let Step::Linear { terms, .. } = step {
            for t in terms {
                if let Term::Private { weight, .. } = t {
                    used[*weight] = true;
                }
            }
        }
    }
    used
}

fn share(v: Vec<u64>, rng: &mut Prg) -> (Vec<u64>, Vec<u64>) {
    let s0 = rng.gen(v.len());
    let s1 = ring::sub(&v, &s0);
    (s0, s1)
}

fn triple(a: Vec<u64>, b: Vec<u64>, c: Vec<u64>, rng: &mut Prg) -> [Triple; 2] {
    let (a0, a1) = share(a, rng);
    let (b0, b1) = share(b, rng);
    let (c0, c1) = share(c, rng);
    [
        Triple {
            a: a0,
            b: b0,
            c: c0,
        },
        Triple {
            a: a1,
            b: b1,
            c: c1,
        },
    ]
}

/// Element-wise triple, `a` of `a_cols` (1 = broadcast) and `b` of `cols` columns.
fn elementwise(rows: usize, a_cols: usize, cols: usize, rng: &mut Prg) -> [Triple; 2] {
    let a = rng.gen(rows * a_cols);
    let b = rng.gen(rows * cols);
    let c = ring::mul_bcast(&a, a_cols, &b, cols, rows);
    triple(a, b, c, rng)
}

/// Comparison material for `n` masked values.
pub fn cmp_material(n: usize, rng: &mut Prg) -> [CmpMat; 2] {
    let r = rng.gen(n);
    let seeds: Vec<u128> = (0..n).map(|_| rng.next_u128()).collect();
    let keys: Vec<[dcf::DcfKey; 2]> = r
        .par_iter()
        .zip(seeds.par_iter())
        .with_min_len(64)
        .map(|(&ri, &seed)| {
            let b = ri >> 63;
            let sign = 1u64.wrapping_sub(2 * b);
            dcf::gen(
                ri & LOW63,
                [sign, sign.wrapping_mul(ri)],
                dcf::DOMAIN_BITS,
                &mut Prg::new(seed),
            )
        })
        .collect();
    let b: Vec<u64> = r.iter().map(|x| x >> 63).collect();
    let br: Vec<u64> = r.iter().zip(&b).map(|(x, b)| x.wrapping_mul(*b)).collect();
    let (r0, r1) = share(r, rng);
    let (b0, b1) = share(b, rng);
    let (br0, br1) = share(br, rng);
    let (k0, k1): (Vec<_>, Vec<_>) = keys.into_iter().map(|[a, b]| (a, b)).unzip();
    [
        CmpMat {
            r: r0,
            b: b0,
            br: br0,
            keys: k0,
        },
        CmpMat {
            r: r1,
            b: b1,
            br: br1,
            keys: k1,
        },
    ]
}

/// Operand shapes `(m, k, n)` of each head's product in a `HeadMatMul`.
pub fn head_shapes(
    plan: &SecurePlan,
    a: WireId,
    b: WireId,
    heads: usize,
    kind: HeadProduct,
) -> (usize, usize, usize) {
    let (wa, wb) = (&plan.wires[a], &plan.wires[b]);
    match kind {
        HeadProduct::Scores => (wa.rows, wa.cols / heads, wb.rows),
        HeadProduct::Mix => (wa.rows / heads, wa.cols, wb.cols / heads),
    }
}

/// Number of element-wise products LayerNorm's inverse square root runs after the
/// comparisons: three per Newton iteration, then the final scaling.
pub fn layernorm_mults(p: &InvSqrtParams) -> usize {
    3 * p.newton as usize + 1
}

/// Values of each exact truncation inside a LayerNorm of `rows` rows and `c` output
/// columns, in order: the variances, the initial inverse square roots, four per Newton
/// iteration, the output. None under local truncation.
pub fn layernorm_truncs(plan: &SecurePlan, rows: usize, c: usize, p: &InvSqrtParams) -> Vec<usize> {
    if !plan.exact_truncation {
        return Vec::new();
    }
    let mut v = vec![rows, rows];
    v.extend(std::iter::repeat_n(rows, 4 * p.newton as usize));
    v.push(rows * c);
    v
}

/// Values a `Truncate` step truncates.
pub fn truncate_len(plan: &SecurePlan, wires: &[WireId]) -> usize {
    wires
        .iter()
        .map(|w| plan.wires[*w].rows * plan.wires[*w].cols)
        .sum()
}

/// Generates both parties' material for one session of `plan`.
pub fn generate(
    plan: &SecurePlan,
    masks: &ModelMasks,
    session: u64,
    rng: &mut Prg,
) -> [Material; 2] {
    let pair = rng.next_u64();
    let mut out = [0u8, 1].map(|party| Material {
        session,
        pair,
        plan_digest: plan.digest(),
        party,
        steps: Vec::new(),
    });
    let mut open_masks: Vec<Vec<u64>> = vec![Vec::new(); plan.openings.len()];
    for step in &plan.steps {
        let [m0, m1] = match step {
            Step::Open { open } => {
                let (r, c) = plan.opening_shape(*open);
                open_masks[*open] = rng.gen(r * c);
                [StepMat::Mask(open_masks[*open].clone()), StepMat::Nothing]
            }
            Step::Linear { terms, .. } => {
                let (mut s0, mut s1) = (Vec::new(), Vec::new());
                for t in terms {
                    if let Term::Private { open, weight, cls } = t {
                        let (r, c) = plan.opening_shape(*open);
                        let a = if *cls {
                            ring::first_row(&open_masks[*open], c)
                        } else {
                            open_masks[*open].clone()
                        };
                        let rows = if *cls { 1 } else { r };
                        let ws = plan.weights[*weight];
                        let b = masks.weight_mask(*weight, ws.rows * ws.cols);
                        let (x0, x1) = share(matmul(&a, &b, rows, ws.rows, ws.cols), rng);
                        s0.push(x0);
                        s1.push(x1);
                    }
                }
                [StepMat::Linear(s0), StepMat::Linear(s1)]
            }
            Step::HeadMatMul {
                a, b, heads, kind, ..
            } => {
                let (m, k, n) = head_shapes(plan, *a, *b, *heads, *kind);
                let (mut t0, mut t1) = (Vec::new(), Vec::new());
                for _ in 0..*heads {
                    let x = rng.gen(m * k);
                    let y = rng.gen(k * n);
                    let z = matmul(&x, &y, m, k, n);
                    let [p0, p1] = triple(x, y, z, rng);
                    t0.push(p0);
                    t1.push(p1);
                }
                [StepMat::Beaver(t0), StepMat::Beaver(t1)]
            }
            Step::Relu { x, .. } => {
                let w = &plan.wires[*x];
                let [c0, c1] = cmp_material(w.rows * w.cols, rng);
                [StepMat::Relu(c0), StepMat::Relu(c1)]
            }
            Step::LayerNorm { x, z, inv_sqrt, .. } => {
                let (rows, d, c) = (
                    plan.wires[*x].rows,
                    plan.wires[*x].cols,
                    plan.wires[*z].cols,
                );
                let sq = rng.gen(rows * d);
                let sq2 = ring::mul_bcast(&sq, d, &sq, d, rows);
                let [s0, s1] = triple(sq, Vec::new(), sq2, rng);
                let [c0, c1] = cmp_material(rows, rng);
                let (mut t0, mut t1) = (Vec::new(), Vec::new());
                for i in 0..layernorm_mults(inv_sqrt) {
                    let last = i + 1 == layernorm_mults(inv_sqrt);
                    let [p0, p1] = elementwise(rows, 1, if last { c } else { 1 }, rng);
                    t0.push(p0);
                    t1.push(p1);
                }
                let (mut r0, mut r1) = (Vec::new(), Vec::new());
                for n in layernorm_truncs(plan, rows, c, inv_sqrt) {
                    let [a, b] = trunc::dealer(n, plan.frac_bits, rng);
                    r0.push(a);
                    r1.push(b);
                }
                [
                    StepMat::LayerNorm {
                        square: s0,
                        cmp: c0,
                        mults: t0,
                        truncs: r0,
                    },
                    StepMat::LayerNorm {
                        square: s1,
                        cmp: c1,
                        mults: t1,
                        truncs: r1,
                    },
                ]
            }
            Step::Truncate { wires } => {
                let [a, b] = trunc::dealer(truncate_len(plan, wires), plan.frac_bits, rng);
                [StepMat::Truncate(a), StepMat::Truncate(b)]
            }
            Step::Slice { .. } | Step::Reveal { .. } => [StepMat::Nothing, StepMat::Nothing],
        };
        out[0].steps.push(m0);
        out[1].steps.push(m1);
    }
    out
}
