//! Distributed comparison function (DCF): function secret sharing of
//! `f(x) = beta if x < alpha else 0` over `n`-bit inputs, with `beta` in `(Z_2^64)^2`
//! (Boyle, Chandran, Gilboa, Gupta, Ishai, Kohli, Boyle: "Function Secret Sharing for
//! Mixed-Mode and Fixed-Point Secure Computation", Eurocrypt 2021, Fig. 3).
//! Each party evaluates its key at public points and gets additive shares of `f(x)`;
//! a key alone reveals nothing about `alpha` or `beta`. One key may be evaluated at any
//! number of points.

use rayon::prelude::*;

use crate::prg::FixedKeyAes;

/// Payload group: two ring elements, added component-wise.
pub type Payload = [u64; 2];

/// Input width: comparisons are on the low 63 bits of a ring element.
pub const DOMAIN_BITS: usize = 63;

/// One level's correction word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cw {
    s: u128,
    v: Payload,
    t_left: bool,
    t_right: bool,
}

/// One party's DCF key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DcfKey {
    party: u8,
    seed: u128,
    cws: Vec<Cw>,
    last: Payload,
}

/// Serialized size of one key in bytes.
pub const fn key_bytes(bits: usize) -> usize {
    1 + 16 + bits * (16 + 16 + 1) + 16
}

fn add(a: Payload, b: Payload) -> Payload {
    [a[0].wrapping_add(b[0]), a[1].wrapping_add(b[1])]
}
fn sub(a: Payload, b: Payload) -> Payload {
    [a[0].wrapping_sub(b[0]), a[1].wrapping_sub(b[1])]
}
fn neg_if(a: Payload, neg: bool) -> Payload {
    if neg {
        [a[0].wrapping_neg(), a[1].wrapping_neg()]
    } else {
        a
    }
}
fn convert(v: u128) -> Payload {
    [v as u64, (v >> 64) as u64]
}

/// Expansion of one seed: (s_L, t_L, v_L, s_R, t_R, v_R).
struct Expanded {
    s: [u128; 2],
    t: [bool; 2],
    v: [Payload; 2],
}

fn expand_many(aes: &FixedKeyAes, seeds: &[u128]) -> Vec<Expanded> {
    let mut blocks: Vec<u128> = seeds
        .iter()
        .flat_map(|&s| [s, s ^ 1, s ^ 2, s ^ 3])
        .collect();
    aes.hash_in_place(&mut blocks);
    blocks
        .chunks_exact(4)
        .map(|b| Expanded {
            s: [b[0] & !1, b[1] & !1],
            t: [b[0] & 1 == 1, b[1] & 1 == 1],
            v: [convert(b[2]), convert(b[3])],
        })
        .collect()
}

fn final_convert(aes: &FixedKeyAes, seeds: &[u128]) -> Vec<Payload> {
    let mut blocks: Vec<u128> = seeds.iter().map(|&s| s ^ 4).collect();
    aes.hash_in_place(&mut blocks);
    blocks.into_iter().map(convert).collect()
}

fn bit(x: u64, level: usize, bits: usize) -> bool {
    (x >> (bits - 1 - level)) & 1 == 1
}

/// Generates the two keys of `x < alpha ? beta : 0` on `bits`-bit inputs.
pub fn gen(alpha: u64, beta: Payload, bits: usize, rng: &mut crate::prg::Prg) -> [DcfKey; 2] {
    let aes = fixed_aes();
    let seeds = [rng.next_u128() & !1, rng.next_u128() & !1];
    let mut s = seeds;
    let mut t = [false, true];
    let mut v_alpha: Payload = [0, 0];
    let mut cws = Vec::with_capacity(bits);
    for level in 0..bits {
        let e = expand_many(aes, &s);
        let a = bit(alpha, level, bits) as usize;
        let (keep, lose) = (a, 1 - a);
        let s_cw = e[0].s[lose] ^ e[1].s[lose];
        let mut v_cw = neg_if(sub(sub(e[1].v[lose], e[0].v[lose]), v_alpha), t[1]);
        if lose == 0 {
            v_cw = add(v_cw, neg_if(beta, t[1]));
        }
        v_alpha = add(
            sub(v_alpha, e[1].v[keep]),
            add(e[0].v[keep], neg_if(v_cw, t[1])),
        );
        let t_cw = [
            e[0].t[0] ^ e[1].t[0] ^ (a == 1) ^ true,
            e[0].t[1] ^ e[1].t[1] ^ (a == 1),
        ];
        cws.push(Cw {
            s: s_cw,
            v: v_cw,
            t_left: t_cw[0],
            t_right: t_cw[1],
        });
        for b in 0..2 {
            s[b] = e[b].s[keep] ^ if t[b] { s_cw } else { 0 };
            t[b] = e[b].t[keep] ^ (t[b] & t_cw[keep]);
        }
    }
    let fin = final_convert(aes, &s);
    let last = neg_if(sub(sub(fin[1], fin[0]), v_alpha), t[1]);
    [0u8, 1].map(|party| DcfKey {
        party,
        seed: seeds[party as usize],
        cws: cws.clone(),
        last,
    })
}

impl DcfKey {
    pub fn bits(&self) -> usize {
        self.cws.len()
    }

    /// Evaluates many keys, each at its own list of points: the output for key `i` and
    /// point `j` is at `[i][j]`. All (key, point) pairs advance level by level in chunks,
    /// so the fixed-key AES calls pipeline, and chunks run in parallel.
    pub fn eval_batch(keys: &[DcfKey], points: &[Vec<u64>]) -> Vec<Vec<Payload>> {
        assert_eq!(keys.len(), points.len());
        let pairs: Vec<(usize, u64)> = points
            .iter()
            .enumerate()
            .flat_map(|(i, xs)| xs.iter().map(move |&x| (i, x)))
            .collect();
        let flat: Vec<Payload> = pairs
            .par_chunks(512)
            .flat_map_iter(|chunk| eval_pairs(keys, chunk))
            .collect();
        let mut out = Vec::with_capacity(keys.len());
        let mut at = 0;
        for xs in points {
            out.push(flat[at..at + xs.len()].to_vec());
            at += xs.len();
        }
        out
    }

    /// Evaluates this key at every point in `xs`.
    pub fn eval_many(&self, xs: &[u64]) -> Vec<Payload> {
        let pairs: Vec<(usize, u64)> = xs.iter().map(|&x| (0, x)).collect();
        eval_pairs(std::slice::from_ref(self), &pairs)
    }

    pub fn to_bytes(&self, out: &mut Vec<u8>) {
        out.push(self.party);
        out.extend_from_slice(&self.seed.to_le_bytes());
        for cw in &self.cws {
            out.extend_from_slice(&cw.s.to_le_bytes());
            out.extend_from_slice(&cw.v[0].to_le_bytes());
            out.extend_from_slice(&cw.v[1].to_le_bytes());
            out.push(cw.t_left as u8 | (cw.t_right as u8) << 1);
        }
        out.extend_from_slice(&self.last[0].to_le_bytes());
        out.extend_from_slice(&self.last[1].to_le_bytes());
    }

    /// Parses a key of `bits` levels from the front of `bytes`; returns it and the rest.
    pub fn from_bytes(bytes: &[u8], bits: usize) -> Result<(Self, &[u8]), String> {
        let need = key_bytes(bits);
        if bytes.len() < need {
            return Err(format!("DCF key needs {need} bytes, {} left", bytes.len()));
        }
        let (b, rest) = bytes.split_at(need);
        let u128_at = |i: usize| u128::from_le_bytes(b[i..i + 16].try_into().unwrap());
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
        let party = b[0];
        if party > 1 {
            return Err(format!("DCF key names party {party}"));
        }
        let mut cws = Vec::with_capacity(bits);
        let mut at = 17;
        for _ in 0..bits {
            let tb = b[at + 32];
            if tb > 3 {
                return Err("DCF key has a malformed control byte".into());
            }
            cws.push(Cw {
                s: u128_at(at),
                v: [u64_at(at + 16), u64_at(at + 24)],
                t_left: tb & 1 == 1,
                t_right: tb & 2 == 2,
            });
            at += 33;
        }
        let last = [u64_at(at), u64_at(at + 8)];
        Ok((
            Self {
                party,
                seed: u128_at(1),
                cws,
                last,
            },
            rest,
        ))
    }
}

/// Evaluates `(key index, point)` pairs level by level.
fn eval_pairs(keys: &[DcfKey], pairs: &[(usize, u64)]) -> Vec<Payload> {
    let aes = fixed_aes();
    let Some(bits) = pairs.first().map(|&(i, _)| keys[i].bits()) else {
        return Vec::new();
    };
    let mut s: Vec<u128> = pairs.iter().map(|&(i, _)| keys[i].seed).collect();
    let mut t: Vec<bool> = pairs.iter().map(|&(i, _)| keys[i].party == 1).collect();
    let mut out = vec![[0u64; 2]; pairs.len()];
    for level in 0..bits {
        let e = expand_many(aes, &s);
        for (j, &(i, x)) in pairs.iter().enumerate() {
            let k = &keys[i];
            let cw = &k.cws[level];
            let dir = bit(x, level, bits) as usize;
            let mut sj = e[j].s[dir];
            let mut tn = e[j].t[dir];
            let mut v = e[j].v[dir];
            if t[j] {
                sj ^= cw.s;
                tn ^= if dir == 0 { cw.t_left } else { cw.t_right };
                v = add(v, cw.v);
            }
            out[j] = add(out[j], neg_if(v, k.party == 1));
            s[j] = sj;
            t[j] = tn;
        }
    }
    let fin = final_convert(aes, &s);
    for (j, &(i, _)) in pairs.iter().enumerate() {
        let k = &keys[i];
        let mut v = fin[j];
        if t[j] {
            v = add(v, k.last);
        }
        out[j] = add(out[j], neg_if(v, k.party == 1));
    }
    out
}

fn fixed_aes() -> &'static FixedKeyAes {
    static AES: std::sync::OnceLock<FixedKeyAes> = std::sync::OnceLock::new();
    AES.get_or_init(FixedKeyAes::default)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prg::Prg;

    fn check(alpha: u64, bits: usize, xs: &[u64], rng: &mut Prg) {
        let beta = [rng.next_u64(), rng.next_u64()];
        let [k0, k1] = gen(alpha, beta, bits, rng);
        let (y0, y1) = (k0.eval_many(xs), k1.eval_many(xs));
        for (j, &x) in xs.iter().enumerate() {
            let want = if x < alpha { beta } else { [0, 0] };
            assert_eq!(add(y0[j], y1[j]), want, "alpha={alpha} x={x} bits={bits}");
        }
    }

    #[test]
    fn dcf_matches_comparison_everywhere_on_small_domain() {
        let mut rng = Prg::new(42);
        let xs: Vec<u64> = (0..64).collect();
        for alpha in 0..64 {
            check(alpha, 6, &xs, &mut rng);
        }
    }

    #[test]
    fn dcf_matches_comparison_on_63_bits() {
        let mut rng = Prg::new(7);
        let mask = (1u64 << 63) - 1;
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
            check(alpha, DOMAIN_BITS, &xs, &mut rng);
        }
    }

    #[test]
    fn key_serialization_round_trip_and_truncation_rejected() {
        let mut rng = Prg::new(3);
        let [k0, _] = gen(12345, [1, 2], DOMAIN_BITS, &mut rng);
        let mut bytes = Vec::new();
        k0.to_bytes(&mut bytes);
        assert_eq!(bytes.len(), key_bytes(DOMAIN_BITS));
        let (back, rest) = DcfKey::from_bytes(&bytes, DOMAIN_BITS).unwrap();
        assert!(rest.is_empty());
        assert_eq!(back, k0);
        assert!(DcfKey::from_bytes(&bytes[..100], DOMAIN_BITS).is_err());
    }
}
