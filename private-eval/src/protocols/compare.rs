//! Comparison gates, each on one masked opening and DCF keys (Boyle et al., Eurocrypt
//! 2021): ReLU, which may truncate its input in the same opening, and comparisons
//! against public thresholds (the splines', the norms' guesses, the row maximum's), which
//! may carry another protocol's bytes in their frame.

use crate::arith::prg::Prg;
use crate::arith::ring;
use crate::party::Party;
use crate::plan::CmpWidth;
use crate::protocols::correlations::{draw_cmp, draw_relu, CmpMat, ReluMat};
use crate::protocols::dcf::{self, DcfKey};
use crate::protocols::open_both;
use crate::transport::{Channel, MsgKind, TransportError};
use rayon::prelude::*;

/// ReLU of shared `v` in two exchanges (a one-bit DCF, then a select). Open
/// `c = v + r`; for `|v| < 2^(m-1)`, `d = [v >= 0] = 1 xor c_(m-1) xor r_(m-1) xor
/// [c mod 2^(m-1) < r mod 2^(m-1)]`, and the DCF gives XOR shares of the bracket. Each
/// party publishes its share of `d xor rho` (`rho` random: nothing leaks); with
/// `delta = d xor rho` public, `d = delta + (1 - 2 delta) rho` and
/// `d v = d c - (delta r + (1 - 2 delta) rho r)`, from the dealer's shares of `rho`
/// and `rho r`. Exact, with zero failure probability, under the width bound.
///
/// Truncating by `s = shift` on the way: the client adds `2^62`, so for `|v| < 2^62`
/// the opened `c = v + 2^62 + r` wrapped around the ring exactly when `msb(c) = 0` and
/// `t = msb(r) = 1`, and `u = (c >> s) - 2^(62-s) - (r >> s) + (1 - msb(c)) t 2^(64-s)`
/// is `floor(v / 2^s)` or one more (faithful, like [`crate::protocols::trunc`]), with
/// the public `c` and the dealer's shares of `r' = r >> s` and `t`. The comparison
/// then runs on `u` with `r'` for `r` (`u = (c >> s) - 2^(62-s) - r'` mod `2^m`, as
/// `m + s <= 64`), and `d u` takes `t`'s term from the shares of `t` and `rho t`.
pub fn relu(
    p: Party,
    chan: &mut dyn Channel,
    v: &[u64],
    m: &ReluMat,
) -> Result<Vec<u64>, TransportError> {
    let (top, s) = (m.bits - 1, m.shift);
    let client = p == Party::Client;
    let mut mine = ring::add(v, &m.r);
    if s > 0 && client {
        mine.iter_mut().for_each(|x| *x = x.wrapping_add(1 << 62));
    }
    let c = open_both(chan, mine)?;
    // The public part of the (truncated) input, and the mask it carries.
    let (u, mask) = match s {
        0 => (c.clone(), &m.r),
        _ => (
            c.iter()
                .map(|&ci| (ci >> s).wrapping_sub(1 << (62 - s)))
                .collect(),
            &m.hi,
        ),
    };
    let points: Vec<u64> = u.iter().map(|&ui| ui & ((1u64 << top) - 1)).collect();
    let lt = DcfKey::eval_points(&m.keys, &points, top as usize);
    let mine: Vec<bool> = (0..c.len())
        .map(|i| lt[i].0 ^ m.rho[i] ^ (client && (u[i] >> top) & 1 == 0))
        .collect();
    chan.send(MsgKind::Open, &pack_bits(&mine))?;
    let theirs = unpack_bits(&chan.recv(MsgKind::Open)?, c.len())?;
    Ok((0..c.len())
        .map(|i| {
            let delta = (mine[i] ^ theirs[i]) as u64;
            let flip = 1u64.wrapping_sub(2 * delta);
            let d = (if client { delta } else { 0 }).wrapping_add(flip.wrapping_mul(m.rho_a[i]));
            let dr = delta
                .wrapping_mul(mask[i])
                .wrapping_add(flip.wrapping_mul(m.rho_r[i]));
            let y = d.wrapping_mul(u[i]).wrapping_sub(dr);
            if s > 0 && c[i] >> 63 == 0 {
                let dt = delta
                    .wrapping_mul(m.wrap[i])
                    .wrapping_add(flip.wrapping_mul(m.rho_wrap[i]));
                y.wrapping_add(dt << (64 - s))
            } else {
                y
            }
        })
        .collect())
}

/// Bits packed eight to a byte, least significant first.
pub fn pack_bits(bits: &[bool]) -> Vec<u8> {
    let mut out = vec![0u8; bits.len().div_ceil(8)];
    for (i, &b) in bits.iter().enumerate() {
        out[i / 8] |= (b as u8) << (i % 8);
    }
    out
}

fn unpack_bits(bytes: &[u8], n: usize) -> Result<Vec<bool>, TransportError> {
    if bytes.len() != n.div_ceil(8) {
        return Err(TransportError::WrongLength {
            kind: MsgKind::Open,
            expected: n.div_ceil(8),
            got: bytes.len(),
        });
    }
    Ok((0..n).map(|i| (bytes[i / 8] >> (i % 8)) & 1 == 1).collect())
}

/// Shares of `d = [v >= t]` and `d * v` for each public threshold `t` (encoded), from
/// one opening `c = v + r` and the DCF keys. On the material's width
/// ([`crate::plan::CmpWidth`]), with `'` dropping the `shift` low bits and arithmetic
/// on `m = bits - shift` bits: for `v' - t' = (c' - t') - r'`,
/// `msb(v' - t') = msb(c' - t') xor msb(r') xor [(c' - t') mod 2^(m-1) < r' mod 2^(m-1)]`,
/// and the key's payload also gives `u * r` (the whole `r`), so `d * v = d * c - d * r`
/// needs no extra round.
pub fn compare(
    p: Party,
    chan: &mut dyn Channel,
    v: &[u64],
    thresholds: &[u64],
    m: &CmpMat,
) -> Result<Comparisons, TransportError> {
    Ok(compare_carrying(p, chan, v, thresholds, m, &[])?.0)
}

/// Per value, per threshold `t`: shares of `[v >= t]` and of `[v >= t] v`.
pub type Comparisons = Vec<Vec<(u64, u64)>>;

/// [`compare`], its opening's frame also carrying `rider` (another protocol's bytes of
/// the same length at both parties, such as a truncation's): returns the peer's.
pub fn compare_carrying(
    p: Party,
    chan: &mut dyn Channel,
    v: &[u64],
    thresholds: &[u64],
    m: &CmpMat,
    rider: &[u8],
) -> Result<(Comparisons, Vec<u8>), TransportError> {
    let w = m.width;
    let bits = w.bits - w.shift;
    let low = (1u64 << (bits - 1)) - 1;
    let mine = ring::add(v, &m.r);
    let mut msg = crate::transport::u64s_to_bytes(&mine);
    msg.extend_from_slice(rider);
    chan.send(MsgKind::Open, &msg)?;
    let got = chan.recv(MsgKind::Open)?;
    if got.len() != msg.len() {
        return Err(TransportError::WrongLength {
            kind: MsgKind::Open,
            expected: msg.len(),
            got: got.len(),
        });
    }
    let (theirs, their_rider) = got.split_at(mine.len() * 8);
    let c = ring::add(&mine, &crate::transport::bytes_to_u64s(theirs));
    let diff = |ci: u64, t: u64| (ci >> w.shift).wrapping_sub(t >> w.shift);
    let points: Vec<Vec<u64>> = c
        .iter()
        .map(|&ci| thresholds.iter().map(|&t| diff(ci, t) & low).collect())
        .collect();
    let evals = DcfKey::eval_batch(&m.keys, &points, w.domain());
    Ok((
        c.iter()
            .enumerate()
            .map(|(i, &ci)| {
                thresholds
                    .iter()
                    .zip(&evals[i])
                    .map(|(&t, y)| {
                        let a = (diff(ci, t) >> (bits - 1)) & 1;
                        let sign = 1u64.wrapping_sub(2 * a);
                        let u = m.b[i].wrapping_add(y.0[0]);
                        let ur = m.br[i].wrapping_add(y.0[1]);
                        let d = (if p == Party::Client { 1 - a } else { 0 })
                            .wrapping_sub(sign.wrapping_mul(u));
                        let dr = (1 - a)
                            .wrapping_mul(m.r[i])
                            .wrapping_sub(sign.wrapping_mul(ur));
                        (d, d.wrapping_mul(ci).wrapping_sub(dr))
                    })
                    .collect()
            })
            .collect(),
        their_rider.to_vec(),
    ))
}

/// Expected DCF tree levels one value's comparison walks ([`compare`]) against the
/// encoded `thresholds` on `width`: the points `c' - t'` share their high bits.
pub fn compare_walk_levels(thresholds: &[u64], width: CmpWidth) -> f64 {
    let ts: Vec<u64> = thresholds.iter().map(|t| t >> width.shift).collect();
    dcf::expected_walk_levels::<dcf::Pair>(&ts, width.domain())
}

pub(crate) fn check_relu(m: &ReluMat, n: usize, bits: u32, shift: u32) -> Result<(), String> {
    let truncated = if shift > 0 { n } else { 0 };
    let sizes = [
        (m.r.len(), n),
        (m.rho.len(), n),
        (m.rho_a.len(), n),
        (m.rho_r.len(), n),
        (m.keys.len(), n),
        (m.hi.len(), truncated),
        (m.wrap.len(), truncated),
        (m.rho_wrap.len(), truncated),
    ];
    if m.bits != bits || m.shift != shift || sizes.iter().any(|(got, want)| got != want) {
        return Err(format!(
            "ReLU material for {n} values of {bits} bits truncated by {shift}"
        ));
    }
    Ok(())
}

pub(crate) fn check_cmp(m: &CmpMat, n: usize, width: CmpWidth) -> Result<(), String> {
    if m.r.len() != n || m.b.len() != n || m.br.len() != n || m.keys.len() != n {
        return Err(format!("comparison material for {n} values"));
    }
    if m.width != width {
        return Err(format!("comparison material of width {width:?}"));
    }
    Ok(())
}

/// Generates the correction words of every comparison against the mask `r` (both
/// halves' keys, their roots drawn) and hands them to both keys; `f` gives the
/// comparison point and payload of one mask.
pub(crate) fn fill_keys<G: dcf::Group>(
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
pub fn fill_relu(m0: &mut ReluMat, m1: &mut ReluMat) {
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

/// A comparison's corrections (norms, splines, row maxima): shares of `b = msb(r)` and `b r`, and the keys.
pub fn fill_cmp(m0: &mut CmpMat, m1: &mut CmpMat) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arith::prg::Prg;
    use crate::transport::memory_pair;
    use cryptpeft_types::NetworkProfile;
    use std::time::Duration;

    fn shared(xs: &[u64], rng: &mut Prg) -> (Vec<u64>, Vec<u64>) {
        let s0 = rng.gen(xs.len());
        let s1 = ring::sub(xs, &s0);
        (s0, s1)
    }

    /// Both parties' outputs of `f` over a memory channel pair.
    fn both<T: Send>(f: impl Fn(Party, &mut dyn Channel) -> T + Sync) -> (T, T) {
        let (mut c0, mut c1) = memory_pair(NetworkProfile::none(), Duration::from_secs(5));
        std::thread::scope(|s| {
            let h = s.spawn(|| f(Party::Server, &mut c1));
            (f(Party::Client, &mut c0), h.join().unwrap())
        })
    }

    /// ReLU of `xs`, shared at random, with the client's and the server's material:
    /// the sum of the output shares.
    fn relu_shared(xs: &[u64], m: [&ReluMat; 2], rng: &mut Prg) -> Vec<u64> {
        let (s0, s1) = shared(xs, rng);
        let (y0, y1) = both(|p, c| match p {
            Party::Client => relu(p, c, &s0, m[0]).unwrap(),
            Party::Server => relu(p, c, &s1, m[1]).unwrap(),
        });
        ring::add(&y0, &y1)
    }

    /// ReLU on raw ring values, shared at random: exact everywhere within the width,
    /// including 0, +-1 ulp, the ends of the width's range and inputs in the leaf block
    /// of the mask (early termination).
    #[test]
    fn relu_is_exact_on_edge_values() {
        let mut rng = Prg::new(9);
        for bits in [32u32, 40, 64] {
            let half = 1u64 << (bits - 1);
            let mut xs: Vec<u64> = vec![0, 1, u64::MAX, 65536, 65536u64.wrapping_neg()];
            xs.extend([
                half - 1,
                half - 2,
                half.wrapping_neg(),
                half.wrapping_neg() + 1,
            ]);
            xs.extend((0..300).map(|_| {
                let v = rng.next_u64() >> (65 - bits);
                if rng.next_u64() & 1 == 1 {
                    v.wrapping_neg()
                } else {
                    v
                }
            }));
            let [m0, m1] = relu_material(xs.len(), bits, 0, &mut rng);
            // Inputs whose masked value lands next to the mask (the DCF's edge).
            let r: Vec<u64> = ring::add(&m0.r, &m1.r);
            for (i, x) in xs.iter_mut().enumerate().skip(300) {
                *x = (r[i] & 127).wrapping_neg().wrapping_add(i as u64 % 3);
            }
            let y = relu_shared(&xs, [&m0, &m1], &mut rng);
            for (i, &x) in xs.iter().enumerate() {
                let want = if (x as i64) >= 0 { x } else { 0 };
                assert_eq!(y[i], want, "ReLU of {x:#x} at {bits} bits");
            }
        }
    }

    /// ReLU truncating its input on the way: the share of `relu(u)` with `u` the
    /// faithful truncation `floor(v / 2^s)` or one more, for every `|v| < 2^62` whose
    /// truncation fits the width: around 0 and the truncation's step, at the ends of
    /// both bounds, and at random magnitudes (whose openings wrap around the ring half
    /// the time, which the dealer's `msb(r)` shares correct).
    #[test]
    fn relu_truncates_exactly_in_its_opening() {
        let mut rng = Prg::new(10);
        let s = 16u32;
        for bits in [18u32, 32, 48] {
            let step = 1i64 << s;
            let reach = (1i64 << (bits - 1 + s).min(62)) - step;
            let mut xs: Vec<i64> = vec![0, 1, -1, step - 1, step, -step, 1 - step, -step - 1];
            xs.extend([reach, reach - 1, -reach, 1 - reach]);
            xs.extend((0..2000).map(|_| {
                let mag = (rng.next_u64() % (bits + s - 2) as u64) as u32;
                let v = (rng.next_u64() >> (63 - mag)) as i64;
                if rng.next_u64() & 1 == 1 {
                    -v
                } else {
                    v
                }
            }));
            let xs: Vec<u64> = xs.into_iter().map(|v| v as u64).collect();
            let [m0, m1] = relu_material(xs.len(), bits, s, &mut rng);
            let y = relu_shared(&xs, [&m0, &m1], &mut rng);
            for (i, &x) in xs.iter().enumerate() {
                let fl = (x as i64) >> s;
                let got = y[i] as i64;
                assert!(
                    got == fl.max(0) || got == (fl + 1).max(0),
                    "ReLU of {x:#x} truncated by {s} at {bits} bits: {got}"
                );
            }
        }
    }

    /// The one-round comparison against several thresholds, on the whole ring
    /// (LayerNorm) and on narrow widths with and without dropped low bits (splines).
    #[test]
    fn threshold_comparison_is_exact_on_edge_values() {
        let mut rng = Prg::new(4);
        for width in [
            CmpWidth::FULL,
            CmpWidth { bits: 32, shift: 0 },
            CmpWidth { bits: 32, shift: 8 },
        ] {
            let span = 1u64 << (width.bits - 2);
            let ts = [0u64, 65536, (-3i64 << 16) as u64, 1 << 20];
            let mut xs: Vec<u64> = vec![0, 1, u64::MAX, 65536, 65535, 65536 - 256, 65536 - 257];
            xs.extend(ts.iter().flat_map(|&t| {
                [
                    t,
                    t.wrapping_sub(1),
                    t + 1,
                    t.wrapping_sub(1 << width.shift),
                ]
            }));
            if width == CmpWidth::FULL {
                xs.extend([(1 << 63) - 1, 1 << 63, 1 << 40]);
            }
            xs.extend(
                rng.gen(200)
                    .iter()
                    .map(|r| (r % span).wrapping_sub(span / 2)),
            );
            let [m0, m1] = cmp_material(xs.len(), width, &mut rng);
            let (s0, s1) = shared(&xs, &mut rng);
            let (y0, y1) = both(|p, c| {
                let (s, m) = if p == Party::Client {
                    (&s0, &m0)
                } else {
                    (&s1, &m1)
                };
                compare(p, c, s, &ts, m).unwrap()
            });
            for (i, &x) in xs.iter().enumerate() {
                for (k, &t) in ts.iter().enumerate() {
                    let ge = (x.wrapping_sub(t) as i64) >= 0;
                    let d = y0[i][k].0.wrapping_add(y1[i][k].0);
                    // Within 2^shift below a threshold the decision may go either way.
                    if ge || t.wrapping_sub(x) > 1 << width.shift {
                        assert_eq!(d, ge as u64, "{x:#x} >= {t:#x} at {width:?}");
                    } else {
                        assert!(d <= 1, "{x:#x} >= {t:#x} at {width:?}");
                    }
                    let dv = y0[i][k].1.wrapping_add(y1[i][k].1);
                    assert_eq!(dv, d.wrapping_mul(x), "d v for {x:#x}, {t:#x}");
                }
            }
        }
    }
}
