//! The dealer's preprocessing: walks a plan and generates, per session, the correlated
//! randomness of every step for both parties. It never sees weights or inputs: weight
//! masks `B` come from a per-model seed it shares with the server (the server sends the
//! client `E = W - B` once per model), input masks are fresh per session.

use rayon::prelude::*;

use crate::arith::matmul::matmul;
use crate::arith::prg::{FixedKeyAes, Prg};
use crate::arith::ring;
use crate::party::Party;
use crate::plan::shapes::{head_shapes, layernorm_scales_output, MixShape};
use crate::plan::*;
use crate::preprocessing::material::{
    draw, draw_cmp, draw_relu, Binding, CmpMat, Material, ReluMat, StepMat, Triple,
};
use crate::protocols::dcf;
use crate::protocols::fused;
use crate::protocols::trunc;

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

/// The server's share of a product `v`, given the client's drawn share.
fn correct(v: &[u64], client: &[u64]) -> Vec<u64> {
    ring::sub(v, client)
}

/// Fills the server's `c` of element-wise or matrix triples: `c = a * b` with `a`, `b`
/// the sums of both parties' drawn shares.
fn fill_triple(t0: &Triple, t1: &mut Triple, product: impl Fn(&[u64], &[u64]) -> Vec<u64>) {
    let a = ring::add(&t0.a, &t1.a);
    let b = ring::add(&t0.b, &t1.b);
    t1.c = correct(&product(&a, &b), &t0.c);
}

/// Generates the correction words of every comparison against the mask `r` (both
/// halves' keys, their roots drawn) and hands them to both keys; `f` gives the
/// comparison point and payload of one mask.
fn fill_keys<G: dcf::Group>(
    r: &[u64],
    k0: &mut [dcf::DcfKey<G>],
    k1: &mut [dcf::DcfKey<G>],
    bits: usize,
    f: impl Fn(u64) -> (u64, G) + Sync,
) {
    let cws: Vec<_> = r
        .par_iter()
        .zip(k0.par_iter().zip(k1.par_iter()))
        .with_min_len(64)
        .map(|(&ri, (a, b))| {
            let (alpha, beta) = f(ri);
            dcf::gen(alpha, beta, bits, [a.seed, b.seed])
        })
        .collect();
    for ((a, b), cws) in k0.iter_mut().zip(k1.iter_mut()).zip(cws) {
        a.cws = cws.clone();
        b.cws = cws;
    }
}

/// ReLU's corrections: the DCF keys for `x < r' mod 2^(bits-1)` and the server's shares
/// of `rho` and `rho * r'`, where `rho = rho'_0 xor rho'_1 xor msb_bits(r')`; when the
/// ReLU truncates, also of `r' = r >> shift`, and mod `2^shift` of `t = msb(r)` and
/// `rho * t`.
fn fill_relu(m0: &mut ReluMat, m1: &mut ReluMat) {
    let (bits, shift) = (m0.bits, m0.shift);
    let domain = (1u64 << (bits - 1)) - 1;
    let r = ring::add(&m0.r, &m1.r);
    let hi: Vec<u64> = r.iter().map(|&ri| ri >> shift).collect();
    fill_keys(&hi, &mut m0.keys, &mut m1.keys, bits as usize - 1, |hi| {
        (hi & domain, dcf::Bit(true))
    });
    let low = |v: u64| v & ((1u64 << shift) - 1);
    for (i, &h) in hi.iter().enumerate() {
        let rho = (m0.rho[i] ^ m1.rho[i] ^ ((h >> (bits - 1)) & 1 == 1)) as u64;
        m1.rho_a[i] = rho.wrapping_sub(m0.rho_a[i]);
        m1.rho_r[i] = rho.wrapping_mul(h).wrapping_sub(m0.rho_r[i]);
        if shift > 0 {
            let t = r[i] >> 63;
            m1.hi[i] = h.wrapping_sub(m0.hi[i]);
            m1.wrap[i] = low(t.wrapping_sub(m0.wrap[i]));
            m1.rho_wrap[i] = low((rho * t).wrapping_sub(m0.rho_wrap[i]));
        }
    }
}

/// LayerNorm's comparison corrections: shares of `b = msb(r)` and `b r`, and the keys.
fn fill_cmp(m0: &mut CmpMat, m1: &mut CmpMat) {
    let w = m0.width;
    let m = w.bits - w.shift;
    let r = ring::add(&m0.r, &m1.r);
    let msb = |ri: u64| (ri >> w.shift >> (m - 1)) & 1;
    let low = (1u64 << (m - 1)) - 1;
    fill_keys(&r, &mut m0.keys, &mut m1.keys, w.domain(), |ri| {
        let sign = 1u64.wrapping_sub(2 * msb(ri));
        (
            (ri >> w.shift) & low,
            dcf::Pair([sign, sign.wrapping_mul(ri)]),
        )
    });
    for (i, &ri) in r.iter().enumerate() {
        let b = msb(ri);
        m1.b[i] = b.wrapping_sub(m0.b[i]);
        m1.br[i] = b.wrapping_mul(ri).wrapping_sub(m0.br[i]);
    }
}

/// Both halves of ReLU material for `n` values truncated by `shift` (tests and
/// benchmarks).
pub fn relu_material(n: usize, bits: u32, shift: u32, rng: &mut Prg) -> [ReluMat; 2] {
    let mut prgs = [rng.next_u128(), rng.next_u128()].map(Prg::new);
    let [mut m0, mut m1] = Party::BOTH.map(|p| draw_relu(&mut prgs[p.index()], p, n, bits, shift));
    fill_relu(&mut m0, &mut m1);
    [m0, m1]
}

/// Both halves of comparison material for `n` values (tests and benchmarks).
pub fn cmp_material(n: usize, width: CmpWidth, rng: &mut Prg) -> [CmpMat; 2] {
    let mut prgs = [rng.next_u128(), rng.next_u128()].map(Prg::new);
    let [mut m0, mut m1] = Party::BOTH.map(|p| draw_cmp(&mut prgs[p.index()], p, n, width));
    fill_cmp(&mut m0, &mut m1);
    [m0, m1]
}

/// The dealer's walk over a plan for one session, a step at a time: each half's random
/// parts drawn from its own seed ([`draw`]), then the corrections filled in. A step's
/// material is dropped once handed on, so a session can stream out in bounded memory.
pub struct Generator<'a> {
    plan: &'a SecurePlan,
    masks: &'a ModelMasks,
    binding: [Binding; 2],
    seeds: [u128; 2],
    prgs: [Prg; 2],
    /// The client's input masks of every opening so far (linear steps read them).
    open_masks: Vec<Vec<u64>>,
    next: usize,
}

impl<'a> Generator<'a> {
    pub fn new(plan: &'a SecurePlan, masks: &'a ModelMasks, session: u64, rng: &mut Prg) -> Self {
        let pair = rng.next_u64();
        let seeds = [rng.next_u128(), rng.next_u128()];
        Self {
            plan,
            masks,
            binding: Party::BOTH.map(|party| Binding {
                session,
                pair,
                plan_digest: plan.digest(),
                party,
            }),
            seeds,
            prgs: seeds.map(Prg::new),
            open_masks: vec![Vec::new(); plan.openings.len()],
            next: 0,
        }
    }

    /// Party `party`'s header in the seeded encoding.
    pub fn header(&self, party: Party) -> Vec<u8> {
        self.binding[party.index()].header(self.seeds[party.index()])
    }

    /// Both halves of the next step, `None` after the last.
    pub fn next_step(&mut self) -> Option<[StepMat; 2]> {
        let plan = self.plan;
        let step = plan.steps.get(self.next)?;
        self.next += 1;
        let mut m0 = draw(plan, step, Party::Client, &mut self.prgs[0]);
        let mut m1 = draw(plan, step, Party::Server, &mut self.prgs[1]);
        match (step, &mut m0, &mut m1) {
            (Step::Open { open }, StepMat::Mask(mask), _) => self.open_masks[*open] = mask.clone(),
            (Step::Linear { terms, .. }, StepMat::Linear(s0), StepMat::Linear(s1)) => {
                let private = terms.iter().filter_map(|t| match t {
                    Term::Private { open, weight, cls } => Some((*open, *weight, *cls)),
                    Term::Public { .. } => None,
                });
                for ((open, weight, cls), (x0, x1)) in private.zip(s0.iter().zip(s1.iter_mut())) {
                    let (r, c) = plan.opening_shape(open);
                    let a = if cls {
                        ring::first_row(&self.open_masks[open], c)
                    } else {
                        self.open_masks[open].clone()
                    };
                    let rows = if cls { 1 } else { r };
                    let ws = plan.weights[weight];
                    let b = self.masks.weight_mask(weight, ws.rows * ws.cols);
                    *x1 = correct(&matmul(&a, &b, rows, ws.rows, ws.cols), x0);
                }
            }
            (
                Step::HeadMatMul {
                    a, b, heads, kind, ..
                },
                StepMat::Beaver(t0),
                StepMat::Beaver(t1),
            ) => {
                let (m, k, n) = head_shapes(plan, *a, *b, *heads, *kind);
                for (t0, t1) in t0.iter().zip(t1.iter_mut()) {
                    fill_triple(t0, t1, |a, b| matmul(a, b, m, k, n));
                }
            }
            (Step::Relu { .. }, StepMat::Relu(r0), StepMat::Relu(r1)) => fill_relu(r0, r1),
            (Step::Spline { .. }, StepMat::Spline(c0), StepMat::Spline(c1)) => fill_cmp(c0, c1),
            (Step::RowMax { .. }, StepMat::RowMax(l0), StepMat::RowMax(l1)) => {
                for (c0, c1) in l0.iter_mut().zip(l1.iter_mut()) {
                    fill_cmp(c0, c1);
                }
            }
            (Step::Square { .. }, StepMat::FusedSquare(s0), StepMat::FusedSquare(s1)) => {
                fused::fill_square(s0, s1, 1)
            }
            (Step::Square { .. }, StepMat::Square(t0), StepMat::Square(t1)) => {
                let a = ring::add(&t0.a, &t1.a);
                t1.c = correct(&ring::mul_bcast(&a, 1, &a, 1, a.len()), &t0.c);
            }
            (
                Step::LayerNorm { x, z, inv_sqrt, .. },
                StepMat::LayerNorm {
                    square: s0,
                    cmp: c0,
                    mults: p0,
                    truncs: r0,
                },
                StepMat::LayerNorm {
                    square: s1,
                    cmp: c1,
                    mults: p1,
                    truncs: r1,
                },
            ) => {
                let (rows, d, c) = plan.norm_shape(*x, *z);
                let a = ring::add(&s0.a, &s1.a);
                if inv_sqrt.squares {
                    s1.c = correct(&ring::mul_bcast(&a, d, &a, d, rows), &s0.c);
                }
                fill_cmp(c0, c1);
                for (i, (t0, t1)) in p0.iter().zip(p1.iter_mut()).enumerate() {
                    let cols = if layernorm_scales_output(inv_sqrt, i) {
                        c
                    } else {
                        1
                    };
                    fill_triple(t0, t1, |a, b| ring::mul_bcast(a, 1, b, cols, rows));
                }
                for (t0, t1) in r0.iter().zip(r1.iter_mut()) {
                    trunc::fill(t0, t1);
                }
            }
            (
                Step::LayerNorm { x, mix, .. },
                StepMat::FusedNorm {
                    square: s0,
                    cmp: c0,
                    products: p0,
                    z_trunc: r0,
                    mix: x0,
                },
                StepMat::FusedNorm {
                    square: s1,
                    cmp: c1,
                    products: p1,
                    z_trunc: r1,
                    mix: x1,
                },
            ) => {
                if let Some(m) = MixShape::of(plan, *x, mix) {
                    for (t0, t1) in x0.iter().zip(x1.iter_mut()) {
                        fill_triple(t0, t1, |a, b| matmul(a, b, m.m, m.k, m.n));
                    }
                }
                let (rows, d) = (plan.wires[*x].rows, plan.wires[*x].cols);
                fused::fill_square(s0, s1, d);
                fill_cmp(c0, c1);
                for (m0, m1) in p0.iter().zip(p1.iter_mut()) {
                    fused::fill_pair(m0, m1, rows);
                }
                if let (Some(t0), Some(t1)) = (r0, r1) {
                    trunc::fill(t0, t1);
                }
            }
            (Step::Truncate { .. }, StepMat::Truncate(t0), StepMat::Truncate(t1)) => {
                for (t0, t1) in t0.iter().zip(t1.iter_mut()) {
                    trunc::fill(t0, t1);
                }
            }
            _ => {}
        }
        Some([m0, m1])
    }
}

/// Generates both parties' material for one session of `plan`, whole.
pub fn generate(
    plan: &SecurePlan,
    masks: &ModelMasks,
    session: u64,
    rng: &mut Prg,
) -> [Material; 2] {
    generate_while(plan, masks, session, rng, || true).expect("never stopped")
}

/// [`generate`], asking `go_on` before each step: None once it says no (the
/// requester has left, say), so nobody waits for material no one will take.
pub fn generate_while(
    plan: &SecurePlan,
    masks: &ModelMasks,
    session: u64,
    rng: &mut Prg,
    go_on: impl Fn() -> bool,
) -> Option<[Material; 2]> {
    let mut g = Generator::new(plan, masks, session, rng);
    let mut out = [0, 1].map(|p| Material {
        binding: g.binding[p],
        seed: g.seeds[p],
        steps: Vec::with_capacity(plan.steps.len()),
    });
    while go_on() {
        let Some([m0, m1]) = g.next_step() else {
            return Some(out);
        };
        out[0].steps.push(m0);
        out[1].steps.push(m1);
    }
    None
}
