//! Distributed comparison function (DCF): function secret sharing of
//! `f(x) = beta if x < alpha else 0` over `n`-bit inputs (Boyle, Chandran, Gilboa,
//! Gupta, Ishai, Kohli, Boyle: "Function Secret Sharing for Mixed-Mode and Fixed-Point
//! Secure Computation", Eurocrypt 2021, Fig. 3), with the output group a parameter:
//!
//! * [`Bit`]: `Z_2` (XOR shares of `[x < alpha]`). A level's value bit rides in the
//!   child's seed block, so a level costs one 128-bit correction word (the two control
//!   bits packed in its low bits) plus one value bit, and the tree stops 7 levels early:
//!   the leaf's 128-bit block holds the outputs of 128 consecutive inputs (early
//!   termination, Boyle-Gilboa-Ishai). About `16 (n - 7) + 16` bytes per key.
//! * [`Pair`]: `(Z_2^64)^2`, for comparisons whose arithmetic shares must come out in
//!   one round (LayerNorm's thresholds); 32 bytes per level.
//!
//! Each party evaluates its key at public points and gets shares of `f(x)`; a key alone
//! reveals nothing about `alpha` or `beta`. Evaluation hashes only the taken child at
//! each level (one fixed-key AES call per level for `Bit`, two for `Pair`). The two keys
//! share their correction words ([`Cws`]); only the root seeds differ, and those a party
//! derives from its own seed with the dealer ([`crate::preprocessing::material`]).

use rayon::prelude::*;

use crate::arith::prg::FixedKeyAes;
use crate::party::Party;

/// Seeds keep their two low bits clear: the control bit and `Bit`'s value bit live there.
const SEED_MASK: u128 = !3;

/// An output group of a DCF.
pub trait Group: Copy + Default + PartialEq + Eq + std::fmt::Debug + Send + Sync {
    /// log2 of the outputs one 128-bit leaf block holds (early termination).
    const LEAF_BITS: usize;
    /// Bytes of a level's value correction when serialized on its own (0: bit-packed).
    const CW_BYTES: usize;
    fn add(self, o: Self) -> Self;
    fn neg(self) -> Self;
    fn sub(self, o: Self) -> Self {
        self.add(o.neg())
    }
    fn neg_if(self, neg: bool) -> Self {
        if neg {
            self.neg()
        } else {
            self
        }
    }
    /// `self` where `keep`, zero elsewhere, without a branch (control bits are random,
    /// so a branch on them mispredicts half the time).
    fn keep_if(self, keep: bool) -> Self;
    /// A child's value from its hashed seed block, or (`Pair`) from its own hash.
    fn level_value(seed_block: u128, value_block: Option<u128>) -> Self;
    /// Whether a level's value needs its own hash.
    const VALUE_HASH: bool;
    /// Component-wise group operations on a leaf block of `2^LEAF_BITS` outputs.
    fn leaf_add(a: u128, b: u128) -> u128;
    fn leaf_neg(a: u128) -> u128;
    fn leaf_get(l: u128, j: usize) -> Self;
    /// The block holding `v` at every position.
    fn leaf_fill(v: Self) -> u128;
    /// The block holding `beta` at positions below `upto` and zero elsewhere.
    fn leaf_prefix(beta: Self, upto: usize) -> u128;
    fn write(self, out: &mut Vec<u8>);
    fn read(b: &[u8]) -> Self;
}

/// `Z_2`: XOR shares of the comparison bit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bit(pub bool);

impl Group for Bit {
    const LEAF_BITS: usize = 7;
    const CW_BYTES: usize = 0;
    const VALUE_HASH: bool = false;
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        Bit(self.0 ^ o.0)
    }
    #[inline(always)]
    fn neg(self) -> Self {
        self
    }
    #[inline(always)]
    fn keep_if(self, keep: bool) -> Self {
        Bit(self.0 & keep)
    }
    #[inline(always)]
    fn level_value(seed_block: u128, _: Option<u128>) -> Self {
        Bit(seed_block & 2 != 0)
    }
    #[inline(always)]
    fn leaf_add(a: u128, b: u128) -> u128 {
        a ^ b
    }
    #[inline(always)]
    fn leaf_neg(a: u128) -> u128 {
        a
    }
    #[inline(always)]
    fn leaf_get(l: u128, j: usize) -> Self {
        Bit((l >> j) & 1 == 1)
    }
    #[inline(always)]
    fn leaf_fill(v: Self) -> u128 {
        if v.0 {
            u128::MAX
        } else {
            0
        }
    }
    #[inline(always)]
    fn leaf_prefix(beta: Self, upto: usize) -> u128 {
        let below = if upto >= 128 {
            u128::MAX
        } else {
            (1u128 << upto) - 1
        };
        Self::leaf_fill(beta) & below
    }
    #[inline(always)]
    fn write(self, _: &mut Vec<u8>) {}
    #[inline(always)]
    fn read(_: &[u8]) -> Self {
        Bit(false)
    }
}

/// `(Z_2^64)^2`, added component-wise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pair(pub [u64; 2]);

impl Pair {
    fn from_block(b: u128) -> Self {
        Pair([b as u64, (b >> 64) as u64])
    }
    fn block(self) -> u128 {
        self.0[0] as u128 | (self.0[1] as u128) << 64
    }
}

impl Group for Pair {
    const LEAF_BITS: usize = 0;
    const CW_BYTES: usize = 16;
    const VALUE_HASH: bool = true;
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        Pair([
            self.0[0].wrapping_add(o.0[0]),
            self.0[1].wrapping_add(o.0[1]),
        ])
    }
    #[inline(always)]
    fn neg(self) -> Self {
        Pair([self.0[0].wrapping_neg(), self.0[1].wrapping_neg()])
    }
    #[inline(always)]
    fn keep_if(self, keep: bool) -> Self {
        let m = (keep as u64).wrapping_neg();
        Pair([self.0[0] & m, self.0[1] & m])
    }
    #[inline(always)]
    fn level_value(_: u128, value_block: Option<u128>) -> Self {
        Self::from_block(value_block.expect("Pair values have their own hash"))
    }
    #[inline(always)]
    fn leaf_add(a: u128, b: u128) -> u128 {
        Self::from_block(a).add(Self::from_block(b)).block()
    }
    #[inline(always)]
    fn leaf_neg(a: u128) -> u128 {
        Self::from_block(a).neg().block()
    }
    #[inline(always)]
    fn leaf_get(l: u128, _: usize) -> Self {
        Self::from_block(l)
    }
    #[inline(always)]
    fn leaf_fill(v: Self) -> u128 {
        v.block()
    }
    #[inline(always)]
    fn leaf_prefix(beta: Self, upto: usize) -> u128 {
        if upto > 0 {
            beta.block()
        } else {
            0
        }
    }
    #[inline(always)]
    fn write(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.block().to_le_bytes());
    }
    #[inline(always)]
    fn read(b: &[u8]) -> Self {
        Self::from_block(u128::from_le_bytes(b[..16].try_into().unwrap()))
    }
}

/// One level's correction word: the seed correction with the left and right control
/// corrections in its two low bits, and the value correction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cw<G> {
    s: u128,
    v: G,
}

/// The correction words both keys of one comparison share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cws<G> {
    levels: Vec<Cw<G>>,
    last: u128,
}

impl<G: Group> Cws<G> {
    /// No levels yet: a key whose correction words are still to be read.
    pub fn empty() -> Self {
        Self {
            levels: Vec::new(),
            last: 0,
        }
    }

    /// Serialized size for a domain of `bits` bits.
    pub const fn bytes(bits: usize) -> usize {
        let l = levels::<G>(bits);
        l * (16 + G::CW_BYTES) + if G::CW_BYTES == 0 { l.div_ceil(8) } else { 0 } + 16
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        for cw in &self.levels {
            out.extend_from_slice(&cw.s.to_le_bytes());
            cw.v.write(out);
        }
        if G::CW_BYTES == 0 {
            let mut packed = vec![0u8; self.levels.len().div_ceil(8)];
            for (i, cw) in self.levels.iter().enumerate() {
                if cw.v != G::default() {
                    packed[i / 8] |= 1 << (i % 8);
                }
            }
            out.extend_from_slice(&packed);
        }
        out.extend_from_slice(&self.last.to_le_bytes());
    }

    /// Parses the correction words of a `bits`-bit domain from the front of `bytes`.
    pub fn read(bytes: &[u8], bits: usize) -> Result<(Self, &[u8]), String> {
        let need = Self::bytes(bits);
        if bytes.len() < need {
            return Err(format!("DCF key needs {need} bytes, {} left", bytes.len()));
        }
        let (b, rest) = bytes.split_at(need);
        let l = levels::<G>(bits);
        let u128_at = |i: usize| u128::from_le_bytes(b[i..i + 16].try_into().unwrap());
        let step = 16 + G::CW_BYTES;
        let packed = &b[l * step..];
        let levels = (0..l)
            .map(|i| Cw {
                s: u128_at(i * step),
                v: if G::CW_BYTES == 0 {
                    G::leaf_get((packed[i / 8] >> (i % 8) & 1) as u128, 0)
                } else {
                    G::read(&b[i * step + 16..])
                },
            })
            .collect();
        Ok((
            Self {
                levels,
                last: u128_at(need - 16),
            },
            rest,
        ))
    }
}

/// Tree levels above the leaves for a `bits`-bit domain.
pub const fn levels<G: Group>(bits: usize) -> usize {
    bits.saturating_sub(G::LEAF_BITS)
}

/// Position of `x` within its leaf block.
fn leaf_pos<G: Group>(x: u64, bits: usize) -> usize {
    let nu = bits.min(G::LEAF_BITS);
    (x & ((1u64 << nu) - 1)) as usize
}

fn bit(x: u64, level: usize, bits: usize) -> usize {
    ((x >> (bits - 1 - level)) & 1) as usize
}

/// Hash tweaks: children 0/1, `Pair` values 2/3, leaf conversion 4.
const LEAF_TWEAK: u128 = 4;

/// One party's key: its root seed and the shared correction words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DcfKey<G> {
    pub party: Party,
    pub seed: u128,
    pub cws: Cws<G>,
}

/// Generates the correction words of `x < alpha ? beta : 0` on `bits`-bit inputs for
/// the root seeds `roots` (each party's, derived from its own seed).
pub fn gen<G: Group>(alpha: u64, beta: G, bits: usize, roots: [u128; 2]) -> Cws<G> {
    let aes = fixed_aes();
    let mut s = roots.map(|r| r & SEED_MASK);
    let mut t = [false, true];
    let mut v_alpha = G::default();
    let l = levels::<G>(bits);
    let mut levels = Vec::with_capacity(l);
    for level in 0..l {
        let a = bit(alpha, level, bits);
        let (keep, lose) = (a, 1 - a);
        // Both children of both parties.
        let mut blocks = [s[0], s[0] ^ 1, s[1], s[1] ^ 1];
        aes.hash_in_place(&mut blocks);
        let mut vblocks = [s[0] ^ 2, s[0] ^ 3, s[1] ^ 2, s[1] ^ 3];
        if G::VALUE_HASH {
            aes.hash_in_place(&mut vblocks);
        }
        let child = |b: usize, d: usize| blocks[2 * b + d];
        let value = |b: usize, d: usize| G::level_value(child(b, d), Some(vblocks[2 * b + d]));
        let ctl = |b: usize, d: usize| child(b, d) & 1 == 1;
        let s_cw = (child(0, lose) ^ child(1, lose)) & SEED_MASK;
        let mut v_cw = value(1, lose).sub(value(0, lose)).sub(v_alpha).neg_if(t[1]);
        if lose == 0 {
            v_cw = v_cw.add(beta.neg_if(t[1]));
        }
        v_alpha = v_alpha
            .sub(value(1, keep))
            .add(value(0, keep))
            .add(v_cw.neg_if(t[1]));
        let t_cw = [
            ctl(0, 0) ^ ctl(1, 0) ^ (a == 1) ^ true,
            ctl(0, 1) ^ ctl(1, 1) ^ (a == 1),
        ];
        levels.push(Cw {
            s: s_cw | t_cw[0] as u128 | (t_cw[1] as u128) << 1,
            v: v_cw,
        });
        for b in 0..2 {
            let corr = if t[b] { s_cw } else { 0 };
            s[b] = (child(b, keep) & SEED_MASK) ^ corr;
            t[b] = ctl(b, keep) ^ (t[b] & t_cw[keep]);
        }
    }
    let mut fin = [s[0] ^ LEAF_TWEAK, s[1] ^ LEAF_TWEAK];
    aes.hash_in_place(&mut fin);
    let want = G::leaf_add(
        G::leaf_prefix(beta, leaf_pos::<G>(alpha, bits)),
        G::leaf_neg(G::leaf_fill(v_alpha)),
    );
    let mut last = G::leaf_add(G::leaf_add(fin[1], G::leaf_neg(fin[0])), want);
    if t[1] {
        last = G::leaf_neg(last);
    }
    Cws { levels, last }
}

impl<G: Group> DcfKey<G> {
    pub fn bits(&self) -> usize {
        self.cws.levels.len() + G::LEAF_BITS
    }

    /// Evaluates many keys, each at its own list of points: the output for key `i` and
    /// point `j` is at `[i][j]`. A key's points walk its tree together, so a prefix they
    /// share is hashed once (a multi-threshold comparison's points `c - t_k` share their
    /// high bits); all walks advance level by level in chunks of about 1024 points, so
    /// the fixed-key AES calls pipeline, and chunks run in parallel.
    pub fn eval_batch(keys: &[DcfKey<G>], points: &[Vec<u64>], bits: usize) -> Vec<Vec<G>> {
        assert_eq!(keys.len(), points.len());
        let mut bounds = vec![0];
        let mut load = 0;
        for (i, xs) in points.iter().enumerate() {
            load += xs.len();
            if load >= 1024 || i + 1 == points.len() {
                bounds.push(i + 1);
                load = 0;
            }
        }
        bounds
            .par_windows(2)
            .flat_map_iter(|w| eval_shared(&keys[w[0]..w[1]], &points[w[0]..w[1]], bits))
            .collect()
    }

    /// Evaluates key `i` at point `xs[i]` (one point per key, as ReLU does).
    pub fn eval_points(keys: &[DcfKey<G>], xs: &[u64], bits: usize) -> Vec<G> {
        assert_eq!(keys.len(), xs.len());
        let pairs: Vec<(u32, u64)> = xs.iter().enumerate().map(|(i, &x)| (i as u32, x)).collect();
        pairs
            .par_chunks(1024)
            .flat_map_iter(|chunk| eval_pairs(keys, chunk, bits))
            .collect()
    }

    /// Evaluates this key at every point in `xs`.
    pub fn eval_many(&self, xs: &[u64], bits: usize) -> Vec<G> {
        let pairs: Vec<(u32, u64)> = xs.iter().map(|&x| (0, x)).collect();
        eval_pairs(std::slice::from_ref(self), &pairs, bits)
    }
}

/// Tree levels one key's walk hashes at `points` ([`DcfKey::eval_batch`]): the
/// distinct prefixes of every length `1..=levels`.
pub fn walk_levels<G: Group>(points: &[u64], bits: usize) -> usize {
    let mut p = points.to_vec();
    p.sort_unstable();
    (1..=levels::<G>(bits))
        .map(|l| {
            let shift = bits - l;
            1 + p
                .windows(2)
                .filter(|w| w[0] >> shift != w[1] >> shift)
                .count()
        })
        .sum()
}

/// Expected [`walk_levels`] at the points `c - t` for thresholds `ts` (reduced to
/// `bits` bits) and a uniformly random `c`: at a level with blocks of `g` inputs, the
/// distinct prefixes are the circular gaps between the points that contain a block
/// boundary, each with probability `min(1, gap / g)`.
pub fn expected_walk_levels<G: Group>(ts: &[u64], bits: usize) -> f64 {
    let size = 2f64.powi(bits as i32);
    let mask = if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let mut p: Vec<u64> = ts.iter().map(|t| t & mask).collect();
    p.sort_unstable();
    let mut gaps: Vec<f64> = p.windows(2).map(|w| (w[1] - w[0]) as f64).collect();
    gaps.push(size - (p[p.len() - 1] - p[0]) as f64);
    (1..=levels::<G>(bits))
        .map(|l| {
            let g = 2f64.powi((bits - l) as i32);
            gaps.iter()
                .map(|&gap| (gap / g).min(1.0))
                .sum::<f64>()
                .clamp(1.0, p.len() as f64)
        })
        .sum()
}

/// A node of a key's walk: the points `lo..hi` (of the key's sorted points) whose
/// paths pass through it, its seed, control bit and the values summed so far.
#[derive(Clone, Copy)]
struct Node<G> {
    key: u32,
    lo: u32,
    hi: u32,
    s: u128,
    t: bool,
    acc: G,
}

/// Evaluates each key at its points along the union of their paths (a trie): at each
/// level a node's sorted points split into those going left and right, and only the
/// children some point takes are hashed. Same outputs as one walk per point.
fn eval_shared<G: Group>(keys: &[DcfKey<G>], points: &[Vec<u64>], bits: usize) -> Vec<Vec<G>> {
    let aes = fixed_aes();
    let l = levels::<G>(bits);
    // Each key's points sorted, with their original positions.
    let mut sorted: Vec<(u64, u32)> = Vec::new();
    let mut nodes: Vec<Node<G>> = Vec::new();
    for (i, xs) in points.iter().enumerate() {
        let lo = sorted.len() as u32;
        sorted.extend(xs.iter().enumerate().map(|(j, &x)| (x, j as u32)));
        sorted[lo as usize..].sort_unstable();
        if !xs.is_empty() {
            nodes.push(Node {
                key: i as u32,
                lo,
                hi: sorted.len() as u32,
                s: keys[i].seed & SEED_MASK,
                t: keys[i].party == Party::Server,
                acc: G::default(),
            });
        }
    }
    let mut kids: Vec<(Node<G>, usize)> = Vec::with_capacity(nodes.len());
    let mut blocks = Vec::new();
    let mut vblocks = Vec::new();
    for level in 0..l {
        kids.clear();
        for n in &nodes {
            let pts = &sorted[n.lo as usize..n.hi as usize];
            let mid = n.lo + pts.partition_point(|&(x, _)| bit(x, level, bits) == 0) as u32;
            if n.lo < mid {
                kids.push((Node { hi: mid, ..*n }, 0));
            }
            if mid < n.hi {
                kids.push((Node { lo: mid, ..*n }, 1));
            }
        }
        blocks.clear();
        blocks.extend(kids.iter().map(|(n, d)| n.s ^ *d as u128));
        aes.hash_in_place(&mut blocks);
        if G::VALUE_HASH {
            vblocks.clear();
            vblocks.extend(kids.iter().map(|(n, d)| n.s ^ (2 + *d) as u128));
            aes.hash_in_place(&mut vblocks);
        }
        nodes.clear();
        nodes.extend(kids.iter().enumerate().map(|(j, &(n, d))| {
            let cw = &keys[n.key as usize].cws.levels[level];
            let b = blocks[j];
            let m = (n.t as u128).wrapping_neg();
            let v = G::level_value(b, vblocks.get(j).copied()).add(cw.v.keep_if(n.t));
            Node {
                s: (b ^ (cw.s & m)) & SEED_MASK,
                t: (b ^ ((cw.s >> d) & m)) & 1 == 1,
                acc: n.acc.add(v),
                ..n
            }
        }));
    }
    blocks.clear();
    blocks.extend(nodes.iter().map(|n| n.s ^ LEAF_TWEAK));
    aes.hash_in_place(&mut blocks);
    let mut out: Vec<Vec<G>> = points
        .iter()
        .map(|xs| vec![G::default(); xs.len()])
        .collect();
    for (n, &leaf) in nodes.iter().zip(&blocks) {
        let k = &keys[n.key as usize];
        let leaf = match n.t {
            true => G::leaf_add(leaf, k.cws.last),
            false => leaf,
        };
        for &(x, j) in &sorted[n.lo as usize..n.hi as usize] {
            let y = G::leaf_get(leaf, leaf_pos::<G>(x, bits));
            // Party 1's outputs are negated: once, here, for every level's value.
            out[n.key as usize][j as usize] = n.acc.add(y).neg_if(k.party == Party::Server);
        }
    }
    out
}

/// Evaluates `(key index, point)` pairs level by level, hashing only the taken child.
fn eval_pairs<G: Group>(keys: &[DcfKey<G>], pairs: &[(u32, u64)], bits: usize) -> Vec<G> {
    let aes = fixed_aes();
    let l = levels::<G>(bits);
    let key = |i: u32| &keys[i as usize];
    let mut s: Vec<u128> = pairs
        .iter()
        .map(|&(i, _)| key(i).seed & SEED_MASK)
        .collect();
    let mut t: Vec<bool> = pairs
        .iter()
        .map(|&(i, _)| key(i).party == Party::Server)
        .collect();
    let mut acc = vec![G::default(); pairs.len()];
    let mut blocks = vec![0u128; pairs.len()];
    let mut vblocks = vec![0u128; if G::VALUE_HASH { pairs.len() } else { 0 }];
    for level in 0..l {
        for (j, &(_, x)) in pairs.iter().enumerate() {
            blocks[j] = s[j] ^ bit(x, level, bits) as u128;
        }
        aes.hash_in_place(&mut blocks);
        if G::VALUE_HASH {
            for (j, &(_, x)) in pairs.iter().enumerate() {
                vblocks[j] = s[j] ^ (2 + bit(x, level, bits)) as u128;
            }
            aes.hash_in_place(&mut vblocks);
        }
        for (j, &(i, x)) in pairs.iter().enumerate() {
            let cw = &key(i).cws.levels[level];
            let b = blocks[j];
            let m = (t[j] as u128).wrapping_neg();
            let v = G::level_value(b, vblocks.get(j).copied()).add(cw.v.keep_if(t[j]));
            acc[j] = acc[j].add(v);
            s[j] = (b ^ (cw.s & m)) & SEED_MASK;
            t[j] = (b ^ ((cw.s >> bit(x, level, bits)) & m)) & 1 == 1;
        }
    }
    for (j, sj) in s.iter().enumerate() {
        blocks[j] = sj ^ LEAF_TWEAK;
    }
    aes.hash_in_place(&mut blocks);
    pairs
        .iter()
        .enumerate()
        .map(|(j, &(i, x))| {
            let k = key(i);
            let mut leaf = blocks[j];
            if t[j] {
                leaf = G::leaf_add(leaf, k.cws.last);
            }
            let y = G::leaf_get(leaf, leaf_pos::<G>(x, bits));
            // Party 1's outputs are negated: once, here, for every level's value.
            acc[j].add(y).neg_if(k.party == Party::Server)
        })
        .collect()
}

fn fixed_aes() -> &'static FixedKeyAes {
    static AES: std::sync::OnceLock<FixedKeyAes> = std::sync::OnceLock::new();
    AES.get_or_init(FixedKeyAes::default)
}

/// Both keys of one comparison, roots drawn from `rng` (tests and benchmarks).
pub fn gen_keys<G: Group>(
    alpha: u64,
    beta: G,
    bits: usize,
    rng: &mut crate::arith::prg::Prg,
) -> [DcfKey<G>; 2] {
    let roots = [rng.next_u128(), rng.next_u128()];
    let cws = gen(alpha, beta, bits, roots);
    Party::BOTH.map(|party| DcfKey {
        party,
        seed: roots[party.index()],
        cws: cws.clone(),
    })
}

#[cfg(test)]
mod tests;
