//! The correlated randomness the building blocks consume (Beaver triples, ReLU and
//! comparison keys; truncation and fused-product material live with their protocols),
//! and the seeded draws of every block's material: each party's random parts from its
//! own seed, with the corrections only the dealer can compute left zero.

use crate::arith::prg::Prg;
use crate::party::Party;
use crate::plan::CmpWidth;
use crate::protocols::dcf::{Bit, Cws, DcfKey, Group, Pair};
use crate::protocols::fused::{Operand, PairMat, ProductMat, SquareMat};
use crate::protocols::trunc::TruncMat;

/// One party's share of a Beaver triple `c = a * b` (matrix or element-wise).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Triple {
    pub a: Vec<u64>,
    pub b: Vec<u64>,
    pub c: Vec<u64>,
}

/// ReLU material ([`crate::protocols::compare::relu`]): shares of the input mask `r`, an XOR share of
/// the masking bit `rho' = rho xor msb(r')`, arithmetic shares of `rho` and of `rho * r'`,
/// and a DCF key for `x < r' mod 2^(bits-1)` with one-bit output, where `r' = r` when the
/// ReLU truncates nothing. When it truncates by `shift`: `r' = r >> shift`, with shares
/// of `r'` (`hi`) and, mod `2^shift`, of `msb(r)` (`wrap`) and `rho * msb(r)` (`rho_wrap`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReluMat {
    pub bits: u32,
    pub shift: u32,
    pub r: Vec<u64>,
    pub rho: Vec<bool>,
    pub rho_a: Vec<u64>,
    pub rho_r: Vec<u64>,
    pub keys: Vec<DcfKey<Bit>>,
    pub hi: Vec<u64>,
    pub wrap: Vec<u64>,
    pub rho_wrap: Vec<u64>,
}

/// Material for one-round comparisons against several thresholds (LayerNorm, splines,
/// max): shares of `r`, of `b = msb(r')` and of `b * r`, and a DCF key for
/// `x < r' mod 2^(m-1)` with payload `((1 - 2b), (1 - 2b) r)`, where `r'` is `r` without
/// its `width.shift` low bits, as an `m = width.bits - width.shift`-bit value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CmpMat {
    pub width: CmpWidth,
    pub r: Vec<u64>,
    pub b: Vec<u64>,
    pub br: Vec<u64>,
    pub keys: Vec<DcfKey<Pair>>,
}

/// `v` mod `2^bits`.
pub(crate) fn low(v: u64, bits: u32) -> u64 {
    v & ((1u64 << bits) - 1)
}

fn bits_of(prg: &mut Prg, n: usize) -> Vec<bool> {
    let words = prg.gen(n.div_ceil(64));
    (0..n)
        .map(|i| (words[i / 64] >> (i % 64)) & 1 == 1)
        .collect()
}

/// The client draws its share; the server's is a correction (zeros until filled).
pub(crate) fn share_or_zero(prg: &mut Prg, party: Party, n: usize) -> Vec<u64> {
    if party == Party::Client {
        prg.gen(n)
    } else {
        vec![0; n]
    }
}

pub(crate) fn triple(prg: &mut Prg, party: Party, a: usize, b: usize, c: usize) -> Triple {
    Triple {
        a: prg.gen(a),
        b: prg.gen(b),
        c: share_or_zero(prg, party, c),
    }
}

fn keys<G: Group>(prg: &mut Prg, party: Party, n: usize, empty: &Cws<G>) -> Vec<DcfKey<G>> {
    (0..n)
        .map(|_| DcfKey {
            party,
            seed: prg.next_u128(),
            cws: empty.clone(),
        })
        .collect()
}

pub(crate) fn trunc(prg: &mut Prg, party: Party, n: usize, bits: u32) -> TruncMat {
    let mask = prg.gen(n).into_iter().map(|v| low(v, bits)).collect();
    let gamma = share_or_zero(prg, party, n)
        .into_iter()
        .map(|v| low(v, bits))
        .collect();
    TruncMat { mask, gamma, bits }
}

/// ReLU material for `n` values truncated by `shift` with its corrections zero.
pub fn draw_relu(prg: &mut Prg, party: Party, n: usize, bits: u32, shift: u32) -> ReluMat {
    let mut m = ReluMat {
        bits,
        shift,
        r: prg.gen(n),
        rho: bits_of(prg, n),
        rho_a: share_or_zero(prg, party, n),
        rho_r: share_or_zero(prg, party, n),
        keys: keys(prg, party, n, &Cws::empty()),
        ..ReluMat::default()
    };
    if shift > 0 {
        m.hi = share_or_zero(prg, party, n);
        let mut low_share = || {
            share_or_zero(prg, party, n)
                .into_iter()
                .map(|v| low(v, shift))
                .collect()
        };
        m.wrap = low_share();
        m.rho_wrap = low_share();
    }
    m
}

/// An operand of `n` values truncated by `shift` in its opening, corrections zero.
fn draw_operand(prg: &mut Prg, party: Party, n: usize, shift: u32) -> Operand {
    let r = prg.gen(n);
    let omega = low_shares(prg, party, n, shift);
    let top = low_shares(prg, party, n, shift);
    Operand {
        shift,
        r,
        omega,
        top,
    }
}

/// Shares mod `2^shift` (none at shift 0) of `n` values.
fn low_shares(prg: &mut Prg, party: Party, n: usize, shift: u32) -> Vec<u64> {
    match shift {
        0 => Vec::new(),
        s => share_or_zero(prg, party, n)
            .into_iter()
            .map(|v| low(v, s))
            .collect(),
    }
}

/// A fused product's material ([`crate::protocols::fused`]) for operands of
/// `(values, shift)` and `out` outputs, corrections zero.
fn draw_product(
    prg: &mut Prg,
    party: Party,
    a: (usize, u32),
    b: (usize, u32),
    out: usize,
) -> ProductMat {
    let a = draw_operand(prg, party, a.0, a.1);
    let b = draw_operand(prg, party, b.0, b.1);
    let c = share_or_zero(prg, party, out);
    let cross_a = low_shares(prg, party, out, b.shift);
    let cross_b = low_shares(prg, party, out, a.shift);
    ProductMat {
        a,
        b,
        c,
        cross_a,
        cross_b,
    }
}

/// A fused norm's product's material, with the square of `b` for a pair.
pub(crate) fn draw_pair(
    prg: &mut Prg,
    party: Party,
    m: &crate::plan::shapes::NormProduct,
) -> PairMat {
    let product = draw_product(prg, party, m.a, m.b, m.out);
    let n = if m.pair { m.b.0 } else { 0 };
    let square_c = share_or_zero(prg, party, n);
    let square_cross = low_shares(prg, party, n, m.b.1);
    PairMat {
        product,
        square_c,
        square_cross,
    }
}

/// The material of `rows` row sums of `d` squares truncated by `shift`, corrections zero.
pub(crate) fn draw_square(
    prg: &mut Prg,
    party: Party,
    rows: usize,
    d: usize,
    shift: u32,
) -> SquareMat {
    let x = draw_operand(prg, party, rows * d, shift);
    let c = share_or_zero(prg, party, rows);
    let cross = low_shares(prg, party, rows * d, shift);
    SquareMat { x, c, cross }
}

/// Comparison material for `n` values with its corrections zero.
pub fn draw_cmp(prg: &mut Prg, party: Party, n: usize, width: CmpWidth) -> CmpMat {
    CmpMat {
        width,
        r: prg.gen(n),
        b: share_or_zero(prg, party, n),
        br: share_or_zero(prg, party, n),
        keys: keys(prg, party, n, &Cws::empty()),
    }
}
