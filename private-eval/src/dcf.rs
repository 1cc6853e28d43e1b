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
//! derives from its own seed with the dealer ([`crate::material`]).

use rayon::prelude::*;

use crate::prg::FixedKeyAes;

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
    fn add(self, o: Self) -> Self {
        Bit(self.0 ^ o.0)
    }
    fn neg(self) -> Self {
        self
    }
    fn level_value(seed_block: u128, _: Option<u128>) -> Self {
        Bit(seed_block & 2 != 0)
    }
    fn leaf_add(a: u128, b: u128) -> u128 {
        a ^ b
    }
    fn leaf_neg(a: u128) -> u128 {
        a
    }
    fn leaf_get(l: u128, j: usize) -> Self {
        Bit((l >> j) & 1 == 1)
    }
    fn leaf_fill(v: Self) -> u128 {
        if v.0 {
            u128::MAX
        } else {
            0
        }
    }
    fn leaf_prefix(beta: Self, upto: usize) -> u128 {
        let below = if upto >= 128 {
            u128::MAX
        } else {
            (1u128 << upto) - 1
        };
        Self::leaf_fill(beta) & below
    }
    fn write(self, _: &mut Vec<u8>) {}
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
    fn add(self, o: Self) -> Self {
        Pair([
            self.0[0].wrapping_add(o.0[0]),
            self.0[1].wrapping_add(o.0[1]),
        ])
    }
    fn neg(self) -> Self {
        Pair([self.0[0].wrapping_neg(), self.0[1].wrapping_neg()])
    }
    fn level_value(_: u128, value_block: Option<u128>) -> Self {
        Self::from_block(value_block.expect("Pair values have their own hash"))
    }
    fn leaf_add(a: u128, b: u128) -> u128 {
        Self::from_block(a).add(Self::from_block(b)).block()
    }
    fn leaf_neg(a: u128) -> u128 {
        Self::from_block(a).neg().block()
    }
    fn leaf_get(l: u128, _: usize) -> Self {
        Self::from_block(l)
    }
    fn leaf_fill(v: Self) -> u128 {
        v.block()
    }
    fn leaf_prefix(beta: Self, upto: usize) -> u128 {
        if upto > 0 {
            beta.block()
        } else {
            0
        }
    }
    fn write(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.block().to_le_bytes());
    }
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
    pub party: u8,
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
    /// point `j` is at `[i][j]`. All (key, point) pairs advance level by level in chunks,
    /// so the fixed-key AES calls pipeline, and chunks run in parallel.
    pub fn eval_batch(keys: &[DcfKey<G>], points: &[Vec<u64>], bits: usize) -> Vec<Vec<G>> {
        assert_eq!(keys.len(), points.len());
        let pairs: Vec<(u32, u64)> = points
            .iter()
            .enumerate()
            .flat_map(|(i, xs)| xs.iter().map(move |&x| (i as u32, x)))
            .collect();
        let flat: Vec<G> = pairs
            .par_chunks(1024)
            .flat_map_iter(|chunk| eval_pairs(keys, chunk, bits))
            .collect();
        let mut out = Vec::with_capacity(keys.len());
        let mut at = 0;
        for xs in points {
            out.push(flat[at..at + xs.len()].to_vec());
            at += xs.len();
        }
        out
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

/// Evaluates `(key index, point)` pairs level by level, hashing only the taken child.
fn eval_pairs<G: Group>(keys: &[DcfKey<G>], pairs: &[(u32, u64)], bits: usize) -> Vec<G> {
    let aes = fixed_aes();
    let l = levels::<G>(bits);
    let key = |i: u32| &keys[i as usize];
    let mut s: Vec<u128> = pairs
        .iter()
        .map(|&(i, _)| key(i).seed & SEED_MASK)
        .collect();
    let mut t: Vec<bool> = pairs.iter().map(|&(i, _)| key(i).party == 1).collect();
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
            let k = key(i);
            let cw = &k.cws.levels[level];
            let b = blocks[j];
            let mut v = G::level_value(b, vblocks.get(j).copied());
            let mut sj = b & SEED_MASK;
            let mut tn = b & 1 == 1;
            if t[j] {
                sj ^= cw.s & SEED_MASK;
                tn ^= (cw.s >> bit(x, level, bits)) & 1 == 1;
                v = v.add(cw.v);
            }
            acc[j] = acc[j].add(v.neg_if(k.party == 1));
            s[j] = sj;
            t[j] = tn;
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
            acc[j].add(y.neg_if(k.party == 1))
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
    rng: &mut crate::prg::Prg,
) -> [DcfKey<G>; 2] {
    let roots = [rng.next_u128(), rng.next_u128()];
    let cws = gen(alpha, beta, bits, roots);
    [0u8, 1].map(|party| DcfKey {
        party,
        seed: roots[party as usize],
        cws: cws.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prg::Prg;

    fn check<G: Group>(alpha: u64, beta: G, bits: usize, xs: &[u64], rng: &mut Prg) {
        let [k0, k1] = gen_keys(alpha, beta, bits, rng);
        let (y0, y1) = (k0.eval_many(xs, bits), k1.eval_many(xs, bits));
        for (j, &x) in xs.iter().enumerate() {
            let want = if x < alpha { beta } else { G::default() };
            assert_eq!(y0[j].add(y1[j]), want, "alpha={alpha} x={x} bits={bits}");
        }
    }

    fn pair(rng: &mut Prg) -> Pair {
        Pair([rng.next_u64(), rng.next_u64()])
    }

    #[test]
    fn dcf_matches_comparison_everywhere_on_small_domains() {
        let mut rng = Prg::new(42);
        // Below, at and above the leaf width (early termination).
        for bits in [3, 7, 8, 10] {
            let xs: Vec<u64> = (0..1u64 << bits).collect();
            for alpha in (0..1u64 << bits)
                .step_by(bits.max(3) - 2)
                .chain([(1u64 << bits) - 1])
            {
                check(alpha, Bit(true), bits, &xs, &mut rng);
                let beta = pair(&mut rng);
                check(alpha, beta, bits, &xs, &mut rng);
            }
        }
    }

    #[test]
    fn dcf_matches_comparison_on_wide_domains() {
        let mut rng = Prg::new(7);
        for bits in [31, 63] {
            let mask = (1u64 << bits) - 1;
            for _ in 0..20 {
                let alpha = rng.next_u64() & mask;
                let mut xs: Vec<u64> = (0..50).map(|_| rng.next_u64() & mask).collect();
                xs.extend([
                    0,
                    mask,
                    alpha,
                    alpha.wrapping_sub(1) & mask,
                    (alpha + 1) & mask,
                ]);
                // Same leaf as alpha, both sides.
                xs.extend([alpha & !127, alpha | 127].map(|x| x & mask));
                check(alpha, Bit(true), bits, &xs, &mut rng);
                let beta = pair(&mut rng);
                check(alpha, beta, bits, &xs, &mut rng);
            }
        }
    }

    #[test]
    fn batch_evaluation_matches_single() {
        let mut rng = Prg::new(5);
        let keys: Vec<DcfKey<Bit>> = (0..40)
            .map(|i| gen_keys(rng.next_u64() >> 33, Bit(true), 31, &mut rng)[i % 2].clone())
            .collect();
        let points: Vec<Vec<u64>> = (0..40)
            .map(|i| (0..i % 4).map(|_| rng.next_u64() >> 33).collect())
            .collect();
        let batch = DcfKey::eval_batch(&keys, &points, 31);
        for (k, (key, xs)) in keys.iter().zip(&points).enumerate() {
            assert_eq!(batch[k], key.eval_many(xs, 31));
        }
    }

    #[test]
    fn correction_words_round_trip_and_truncation_rejected() {
        let mut rng = Prg::new(3);
        for bits in [31, 63] {
            let cws = gen(12345, Bit(true), bits, [rng.next_u128(), rng.next_u128()]);
            let mut bytes = Vec::new();
            cws.write(&mut bytes);
            assert_eq!(bytes.len(), Cws::<Bit>::bytes(bits));
            let (back, rest) = Cws::<Bit>::read(&bytes, bits).unwrap();
            assert!(rest.is_empty());
            assert_eq!(back, cws);
            assert!(Cws::<Bit>::read(&bytes[..100], bits).is_err());
            let cws = gen(
                12345,
                pair(&mut rng),
                bits,
                [rng.next_u128(), rng.next_u128()],
            );
            let mut bytes = Vec::new();
            cws.write(&mut bytes);
            assert_eq!(bytes.len(), Cws::<Pair>::bytes(bits));
            assert_eq!(Cws::<Pair>::read(&bytes, bits).unwrap().0, cws);
        }
        // 31-bit Bit keys: 24 levels of 16 bytes, 3 bytes of value bits, the leaf.
        assert_eq!(Cws::<Bit>::bytes(31), 24 * 16 + 3 + 16);
    }
}
