//! Exact truncation with the dealer: a shared value `x` at `2f` fractional bits
//! becomes `floor(x / 2^f)` or one less (faithful), with no probability of failure,
//! for `|x| < 2^62` (at f = 16: reals of magnitude below 2^30). Below, `f` is the
//! shift, which the material carries ([`TruncMat::bits`]): a norm's direct guess
//! truncates by more than `f` at once.
//!
//! Local truncation goes wrong when the two shares wrap around the ring. Here the
//! client adds `2^62` to its share, so the value `x' = x + 2^62` has its top bit 0;
//! then the shares wrap exactly when either share has its top bit set:
//! `wrap = a OR b = a + b - ab`, with `a` the client's top bit and `b` the server's.
//! Each party removes its own bit locally; the cross term `ab` is a product of two
//! private bits, computed with the dealer's help in one simultaneous exchange of
//! `f`-bit values: the dealer gives the client `alpha`, the server `beta` and each a
//! share `gamma_i` of `alpha * beta` (mod `2^f`); the parties publish `a - alpha` and
//! `b - beta` (uniform, so they reveal nothing) and
//! `ab = a'b' + alpha b' + a' beta + alpha beta`. Only `ab mod 2^f` matters, since
//! the correction is `ab * 2^(64 - f)`.
//!
//! Cost per truncated value: `ceil(f / 8)` bytes each way online and one round per
//! exchange (a plan truncates every value of a layer in one exchange); the dealer
//! sends each party two ring elements.

use crate::party::Party;
use crate::transport::{Channel, MsgKind, TransportError};

/// Material for exact truncation by `bits`: this party's bit mask
/// (`alpha` or `beta`) and share of `alpha * beta`, all mod `2^bits`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TruncMat {
    pub mask: Vec<u64>,
    pub gamma: Vec<u64>,
    pub bits: u32,
}

/// The client's offset: `x + 2^62` has its top bit clear for `|x| < 2^62`.
const OFFSET: u64 = 1 << 62;

/// Bytes of one masked bit on the wire.
pub fn wire_bytes(bits: u32) -> usize {
    bits.div_ceil(8) as usize
}

fn low(v: u64, bits: u32) -> u64 {
    v & ((1u64 << bits) - 1)
}

/// A party's shifted share without the wrap's cross term, and its top bit.
fn local_part(share: u64, party: Party, bits: u32) -> (u64, u64) {
    let s = if party == Party::Client {
        share.wrapping_add(OFFSET)
    } else {
        share
    };
    let top = s >> 63;
    let mut t = (s >> bits).wrapping_sub(top << (64 - bits));
    if party == Party::Client {
        t = t.wrapping_sub(OFFSET >> bits);
    }
    (t, top)
}

/// The dealer's correction for drawn masks: the server's share of `alpha * beta` (mod
/// `2^bits`) given the client's mask and share and the server's mask.
pub fn fill(client: &TruncMat, server: &mut TruncMat) {
    let bits = client.bits;
    for i in 0..client.mask.len() {
        let ab = client.mask[i].wrapping_mul(server.mask[i]);
        server.gamma[i] = low(ab.wrapping_sub(client.gamma[i]), bits);
    }
}

fn pack(vals: &[u64], bits: u32) -> Vec<u8> {
    let w = wire_bytes(bits);
    let mut out = Vec::with_capacity(vals.len() * w);
    for v in vals {
        out.extend_from_slice(&v.to_le_bytes()[..w]);
    }
    out
}

fn unpack(bytes: &[u8], n: usize, bits: u32) -> Result<Vec<u64>, TransportError> {
    let w = wire_bytes(bits);
    if bytes.len() != n * w {
        return Err(TransportError::WrongLength {
            kind: MsgKind::Open,
            expected: n,
            got: bytes.len(),
        });
    }
    Ok(bytes
        .chunks_exact(w)
        .map(|c| {
            let mut b = [0u8; 8];
            b[..w].copy_from_slice(c);
            low(u64::from_le_bytes(b), bits)
        })
        .collect())
}

/// Truncates shares by the material's `bits` (at `2f`, by `f`) in one exchange (see
/// the module doc).
pub fn truncate(
    chan: &mut dyn Channel,
    party: Party,
    shares: &[u64],
    mat: &TruncMat,
) -> Result<Vec<u64>, TransportError> {
    Ok(truncate_groups(chan, party, &[(shares, mat)])?.remove(0))
}

/// Truncates each group of shares by its material's `bits`, all in one exchange: one
/// frame each way holds every group's masked bits, in order.
pub fn truncate_groups(
    chan: &mut dyn Channel,
    party: Party,
    groups: &[(&[u64], &TruncMat)],
) -> Result<Vec<Vec<u64>>, TransportError> {
    let (msg, parts) = prepare(party, groups);
    chan.send(MsgKind::Open, &msg)?;
    finish(party, groups, parts, &chan.recv(MsgKind::Open)?)
}

/// A truncation in progress: each group's local part and masked bits.
pub struct Pending(Vec<(Vec<u64>, Vec<u64>)>);

/// Bytes this party sends for `groups` (the same length as the peer's), and what
/// [`finish`] needs: for a truncation riding in another exchange's frame.
pub fn prepare(party: Party, groups: &[(&[u64], &TruncMat)]) -> (Vec<u8>, Pending) {
    let mut parts = Vec::with_capacity(groups.len());
    let mut msg = Vec::new();
    for (shares, mat) in groups {
        let (t, top): (Vec<u64>, Vec<u64>) = shares
            .iter()
            .map(|&s| local_part(s, party, mat.bits))
            .unzip();
        let mine: Vec<u64> = top
            .iter()
            .zip(&mat.mask)
            .map(|(b, m)| low(b.wrapping_sub(*m), mat.bits))
            .collect();
        msg.extend(pack(&mine, mat.bits));
        parts.push((t, mine));
    }
    (msg, Pending(parts))
}

/// The truncated shares, from the peer's masked bits.
pub fn finish(
    party: Party,
    groups: &[(&[u64], &TruncMat)],
    Pending(parts): Pending,
    all: &[u8],
) -> Result<Vec<Vec<u64>>, TransportError> {
    let want: usize = groups
        .iter()
        .map(|(s, m)| s.len() * wire_bytes(m.bits))
        .sum();
    if all.len() != want {
        return Err(TransportError::WrongLength {
            kind: MsgKind::Open,
            expected: want,
            got: all.len(),
        });
    }
    let mut at = 0;
    let mut out = Vec::with_capacity(groups.len());
    for ((shares, mat), (mut t, mine)) in groups.iter().zip(parts) {
        let (n, bits) = (shares.len(), mat.bits);
        let len = n * wire_bytes(bits);
        let theirs = unpack(&all[at..at + len], n, bits)?;
        at += len;
        for i in 0..n {
            // Client: a'b' + alpha b' + gamma0; server: a' beta + gamma1 (a' the client's).
            let ab = if party == Party::Client {
                mine[i]
                    .wrapping_mul(theirs[i])
                    .wrapping_add(mat.mask[i].wrapping_mul(theirs[i]))
                    .wrapping_add(mat.gamma[i])
            } else {
                theirs[i]
                    .wrapping_mul(mat.mask[i])
                    .wrapping_add(mat.gamma[i])
            };
            t[i] = t[i].wrapping_add(ab << (64 - bits));
        }
        out.push(t);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arith::fixed::{truncate_share_by, Fixed};
    use crate::arith::prg::Prg;
    use crate::transport::memory_pair;
    use cryptpeft_types::NetworkProfile;
    use std::time::Duration;

    /// Runs the exchange for `x` split as `(s0, x - s0)`, both parties in threads.
    fn run(shares0: Vec<u64>, shares1: Vec<u64>, bits: u32) -> Vec<u64> {
        let n = shares0.len();
        let mut prg = Prg::new(7);
        let mut draw = |gamma: bool| TruncMat {
            mask: prg.gen(n).iter().map(|v| low(*v, bits)).collect(),
            gamma: match gamma {
                true => prg.gen(n).iter().map(|v| low(*v, bits)).collect(),
                false => vec![0; n],
            },
            bits,
        };
        let m0 = draw(true);
        let mut m1 = draw(false);
        fill(&m0, &mut m1);
        let (mut c, mut s) = memory_pair(NetworkProfile::none(), Duration::from_secs(5));
        let h = std::thread::spawn(move || truncate(&mut s, Party::Server, &shares1, &m1).unwrap());
        let t0 = truncate(&mut c, Party::Client, &shares0, &m0).unwrap();
        let t1 = h.join().unwrap();
        t0.iter()
            .zip(&t1)
            .map(|(a, b)| a.wrapping_add(*b))
            .collect()
    }

    #[test]
    fn exact_where_local_truncation_wraps() {
        let fx = Fixed::default();
        let f = fx.frac_bits;
        let xs = [0.0, 1.0, -1.0, 3.75, -1234.5, 1e-4, -1e-4, 2e8, -2e8];
        // Shares chosen at the edges where the top bits decide the wrap.
        let edges = [
            0u64,
            1,
            u64::MAX,
            1 << 63,
            (1 << 63) - 1,
            (1 << 63) + 1,
            3 << 62,
            1 << 62,
            0x9e37_79b9_7f4a_7c15,
        ];
        let (mut s0, mut s1, mut want) = (Vec::new(), Vec::new(), Vec::new());
        for &x in &xs {
            for &e in &edges {
                let v = fx.encode2(x);
                s0.push(e);
                s1.push(v.wrapping_sub(e));
                want.push((v as i64 >> f) as u64);
            }
        }
        let got = run(s0.clone(), s1.clone(), f);
        let mut local_wrong = 0;
        for i in 0..want.len() {
            let d = got[i].wrapping_sub(want[i]) as i64;
            assert!(d == 0 || d == -1, "case {i}: off by {d}");
            let l = truncate_share_by(s0[i], Party::Client, f).wrapping_add(truncate_share_by(
                s1[i],
                Party::Server,
                f,
            ));
            local_wrong += usize::from((l.wrapping_sub(want[i]) as i64).abs() > 1);
        }
        // The edges do make local truncation fail: the test exercises the wrap.
        assert!(local_wrong > 0);
    }

    #[test]
    fn exact_on_random_shares_and_other_widths() {
        let mut rng = Prg::new(3);
        for bits in [8u32, 12, 16, 24] {
            let n = 4096;
            let xs: Vec<i64> = rng
                .gen(n)
                .into_iter()
                .map(|v| (v as i64) >> 3) // |x| < 2^60
                .collect();
            let s0 = rng.gen(n);
            let s1: Vec<u64> = xs
                .iter()
                .zip(&s0)
                .map(|(x, s)| (*x as u64).wrapping_sub(*s))
                .collect();
            let got = run(s0, s1, bits);
            for (x, g) in xs.iter().zip(&got) {
                let d = (*g as i64).wrapping_sub(x >> bits);
                assert!(d == 0 || d == -1, "bits {bits}: x={x} off by {d}");
            }
        }
    }
}
