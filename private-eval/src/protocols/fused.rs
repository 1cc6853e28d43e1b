//! Element-wise Beaver products and squares whose operands are truncated in their own
//! opening, so a chain of products (a norm's Newton step, its scaling) pays one
//! exchange per product instead of two.
//!
//! An operand `x` at `f + s` bits (`s > 0`) is opened as `c = x + 2^62 + r` (the client
//! adds `2^62`): for `|x| < 2^62`, `c` wrapped around the ring exactly when `msb(c) = 0`
//! and `t = msb(r) = 1`, so `u = (c >> s) - 2^(62-s) - (r >> s) + (1 - msb(c)) t 2^(64-s)`
//! is `floor(x / 2^s)` or one more, as in [`crate::protocols::compare::relu`]. The parties
//! hold no shares of `r >> s` from the dealer: each takes `r_i >> s` of its own share
//! `r_i` and subtracts `2^(64-s)` times its share of `omega = [r_0 + r_1 wraps]`, which
//! sums to `base = (r >> s) - kappa` (`kappa` in {0, 1}, the low halves' carry), so the
//! operand is `u + kappa`, one more at most again. With `w = 1 - msb(c)` public, the
//! operand is `C - A` for the public `C = (c >> s) - 2^(62-s)` and the mask
//! `A = base - w t 2^(64-s)`, whose shares are local. The product of two such operands
//!
//! `(C_a - A_a)(C_b - A_b) = C_a C_b - C_a A_b - C_b A_a + A_a A_b`,
//!
//! `A_a A_b = base_a base_b - w_b 2^(64-s_b) (t_b base_a) - w_a 2^(64-s_a) (t_a base_b)`
//!
//! (the `t_a t_b` term vanishes for `s_a + s_b <= 64`) needs the dealer's shares of
//! `base_a base_b` in the ring and of `t_b base_a`, `t_a base_b` mod `2^s`: two bytes
//! each at `s = 16`. An operand at shift 0 is an ordinary Beaver operand (`A = r`).
//! Exact (no failure probability) for `|x| < 2^62`; each truncated operand is
//! `floor(x / 2^s)` plus 0, 1 or 2.

use crate::party::Party;

/// One operand's material: this party's share of the opening mask `r` (from its
/// seed) and, when the operand is truncated by `shift`, its shares mod `2^shift` of
/// `omega` and `t = msb(r)`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Operand {
    pub shift: u32,
    pub r: Vec<u64>,
    pub omega: Vec<u64>,
    pub top: Vec<u64>,
}

/// An element-wise product's material: the operands, then shares of `base_a base_b`
/// (ring, one per output) and mod `2^s` of `t_b base_a` (`cross_a`) and `t_a base_b`
/// (`cross_b`), each empty where its `t` is absent (shift 0).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProductMat {
    pub a: Operand,
    pub b: Operand,
    pub c: Vec<u64>,
    pub cross_a: Vec<u64>,
    pub cross_b: Vec<u64>,
}

/// The material of the squares' row sums (`sum_j x_j^2` over rows of `d` values): the
/// operand, shares of each row's `sum_j base_j^2` (ring) and, per value, mod `2^s` of
/// `t base`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SquareMat {
    pub x: Operand,
    pub c: Vec<u64>,
    pub cross: Vec<u64>,
}

/// A product `a b` and the square `b^2` from one opening of each operand (a Newton
/// step's `v y` and `y^2`, which must see the same truncation of `y`): the product's
/// material, and shares of `base_b^2` (ring) and mod `2^s` of `t_b base_b`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PairMat {
    pub product: ProductMat,
    pub square_c: Vec<u64>,
    pub square_cross: Vec<u64>,
}

const OFFSET: u64 = 1 << 62;

fn low(v: u64, bits: u32) -> u64 {
    if bits >= 64 {
        v
    } else {
        v & ((1u64 << bits) - 1)
    }
}

/// Output `k` of a `rows x cols` broadcast product reads element `(k / cols, k % cols)`
/// of an operand of `cols_x` columns (1: broadcast along the row).
fn at(k: usize, cols: usize, cols_x: usize) -> usize {
    match cols_x {
        1 => k / cols,
        _ => k,
    }
}

impl Operand {
    /// Whether this is the material of `n` values truncated by `shift`: what a party
    /// checks before it runs a product on a half it did not draw itself.
    pub fn fits(&self, n: usize, shift: u32) -> bool {
        let truncated = if shift > 0 { n } else { 0 };
        self.r.len() == n
            && self.shift == shift
            && self.omega.len() == truncated
            && self.top.len() == truncated
    }

    /// This party's half of the opening `x + r` (`+ 2^62` from the client when truncating).
    pub fn masked(&self, x: &[u64], party: Party) -> Vec<u64> {
        let off = if self.shift > 0 && party == Party::Client {
            OFFSET
        } else {
            0
        };
        x.iter()
            .zip(&self.r)
            .map(|(x, r)| x.wrapping_add(*r).wrapping_add(off))
            .collect()
    }

    /// The public part `C` of each opened value and whether its mask carries `t`'s
    /// term (`w = 1 - msb(c)`).
    fn public(&self, opened: &[u64]) -> Vec<(u64, bool)> {
        let s = self.shift;
        opened
            .iter()
            .map(|&c| match s {
                0 => (c, false),
                _ => ((c >> s).wrapping_sub(OFFSET >> s), c >> 63 == 0),
            })
            .collect()
    }

    /// This party's share of `base`.
    fn base(&self, i: usize) -> u64 {
        match self.shift {
            0 => self.r[i],
            s => (self.r[i] >> s).wrapping_sub(self.omega[i] << (64 - s)),
        }
    }

    /// This party's share of the mask `A = base - w t 2^(64-s)`.
    fn mask(&self, i: usize, w: bool) -> u64 {
        let b = self.base(i);
        match w {
            true => b.wrapping_sub(self.top[i] << (64 - self.shift)),
            false => b,
        }
    }

    /// The dealer's view: the operand's `base` and `t` from both halves.
    fn join(o0: &Operand, o1: &Operand) -> (Vec<u64>, Vec<u64>) {
        let s = o0.shift;
        (0..o0.r.len())
            .map(|i| {
                let r = o0.r[i].wrapping_add(o1.r[i]);
                match s {
                    0 => (r, 0),
                    // (r0 >> s) + (r1 >> s) - 2^(64-s) omega, omega the sum's wrap.
                    _ => (
                        (o0.r[i] >> s).wrapping_add(o1.r[i] >> s).wrapping_sub(
                            (o0.r[i].checked_add(o1.r[i]).is_none() as u64) << (64 - s),
                        ),
                        r >> 63,
                    ),
                }
            })
            .unzip()
    }

    /// The server's corrections of `omega` and `t`.
    fn fill(o0: &Operand, o1: &mut Operand) {
        let s = o1.shift;
        if s == 0 {
            return;
        }
        for i in 0..o0.r.len() {
            let omega = o0.r[i].checked_add(o1.r[i]).is_none() as u64;
            let t = o0.r[i].wrapping_add(o1.r[i]) >> 63;
            o1.omega[i] = low(omega.wrapping_sub(o0.omega[i]), s);
            o1.top[i] = low(t.wrapping_sub(o0.top[i]), s);
        }
    }
}

/// The server's corrections of a product of `rows` rows with `cols_a` and `cols_b`
/// columns (one of them 1, or both equal) given the client's half.
pub fn fill_product(m0: &ProductMat, m1: &mut ProductMat, rows: usize) {
    Operand::fill(&m0.a, &mut m1.a);
    Operand::fill(&m0.b, &mut m1.b);
    let (ba, ta) = Operand::join(&m0.a, &m1.a);
    let (bb, tb) = Operand::join(&m0.b, &m1.b);
    let (ca, cb) = (ba.len() / rows, bb.len() / rows);
    let cols = ca.max(cb);
    for k in 0..rows * cols {
        let (i, j) = (at(k, cols, ca), at(k, cols, cb));
        m1.c[k] = ba[i].wrapping_mul(bb[j]).wrapping_sub(m0.c[k]);
        if m1.b.shift > 0 {
            let v = tb[j].wrapping_mul(ba[i]).wrapping_sub(m0.cross_a[k]);
            m1.cross_a[k] = low(v, m1.b.shift);
        }
        if m1.a.shift > 0 {
            let v = ta[i].wrapping_mul(bb[j]).wrapping_sub(m0.cross_b[k]);
            m1.cross_b[k] = low(v, m1.a.shift);
        }
    }
}

/// The server's corrections of the squares' row sums over rows of `d` values.
pub fn fill_square(m0: &SquareMat, m1: &mut SquareMat, d: usize) {
    Operand::fill(&m0.x, &mut m1.x);
    let (b, t) = Operand::join(&m0.x, &m1.x);
    for (row, c) in m1.c.iter_mut().enumerate() {
        let sum = b[row * d..(row + 1) * d]
            .iter()
            .fold(0u64, |acc, b| acc.wrapping_add(b.wrapping_mul(*b)));
        *c = sum.wrapping_sub(m0.c[row]);
    }
    for k in 0..b.len() {
        if m1.x.shift > 0 {
            m1.cross[k] = low(
                t[k].wrapping_mul(b[k]).wrapping_sub(m0.cross[k]),
                m1.x.shift,
            );
        }
    }
}

/// This party's share of the product, from both operands' openings (`rows` rows; an
/// operand of one column is broadcast along its row).
pub fn product(
    party: Party,
    m: &ProductMat,
    open_a: &[u64],
    open_b: &[u64],
    rows: usize,
) -> Vec<u64> {
    let (pa, pb) = (m.a.public(open_a), m.b.public(open_b));
    let (ca, cb) = (pa.len() / rows, pb.len() / rows);
    let cols = ca.max(cb);
    (0..rows * cols)
        .map(|k| {
            let (i, j) = (at(k, cols, ca), at(k, cols, cb));
            let ((xa, wa), (xb, wb)) = (pa[i], pb[j]);
            let mut z = m.c[k]
                .wrapping_sub(xa.wrapping_mul(m.b.mask(j, wb)))
                .wrapping_sub(xb.wrapping_mul(m.a.mask(i, wa)));
            if wb {
                z = z.wrapping_sub(m.cross_a[k] << (64 - m.b.shift));
            }
            if wa {
                z = z.wrapping_sub(m.cross_b[k] << (64 - m.a.shift));
            }
            if party == Party::Client {
                z = z.wrapping_add(xa.wrapping_mul(xb));
            }
            z
        })
        .collect()
}

/// The server's corrections of a pair (`rows` rows; `b` one column).
pub fn fill_pair(m0: &PairMat, m1: &mut PairMat, rows: usize) {
    fill_product(&m0.product, &mut m1.product, rows);
    if m0.square_c.is_empty() {
        return;
    }
    let (b, t) = Operand::join(&m0.product.b, &m1.product.b);
    let s = m1.product.b.shift;
    for k in 0..b.len() {
        m1.square_c[k] = b[k].wrapping_mul(b[k]).wrapping_sub(m0.square_c[k]);
        if s > 0 {
            m1.square_cross[k] = low(t[k].wrapping_mul(b[k]).wrapping_sub(m0.square_cross[k]), s);
        }
    }
}

/// This party's shares of `a b`, of `b^2` and of `b` itself as truncated (the value
/// both products saw), from both operands' openings.
pub fn pair(
    party: Party,
    m: &PairMat,
    open_a: &[u64],
    open_b: &[u64],
    rows: usize,
) -> [Vec<u64>; 3] {
    let ab = product(party, &m.product, open_a, open_b, rows);
    let square = SquareMat {
        x: m.product.b.clone(),
        c: m.square_c.clone(),
        cross: m.square_cross.clone(),
    };
    let bb = square_sums(party, &square, open_b, 1);
    let b = m
        .product
        .b
        .public(open_b)
        .into_iter()
        .enumerate()
        .map(|(k, (x, w))| {
            let own = if party == Party::Client { x } else { 0 };
            own.wrapping_sub(m.product.b.mask(k, w))
        })
        .collect();
    [ab, bb, b]
}

/// This party's share of each row's sum of squares (rows of `d` values), from the
/// operand's opening.
pub fn square_sums(party: Party, m: &SquareMat, opened: &[u64], d: usize) -> Vec<u64> {
    let squares: Vec<u64> =
        m.x.public(opened)
            .into_iter()
            .enumerate()
            .map(|(k, (x, w))| {
                let mut z = 0u64.wrapping_sub(2u64.wrapping_mul(x).wrapping_mul(m.x.mask(k, w)));
                if w {
                    z = z.wrapping_sub(m.cross[k] << (65 - m.x.shift));
                }
                if party == Party::Client {
                    z = z.wrapping_add(x.wrapping_mul(x));
                }
                z
            })
            .collect();
    squares
        .chunks(d.max(1))
        .zip(&m.c)
        .map(|(row, c)| row.iter().fold(*c, |acc, z| acc.wrapping_add(*z)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arith::prg::Prg;

    fn operand(prg: &mut Prg, party: Party, n: usize, shift: u32) -> Operand {
        let mut lows = |on: bool| match (on, party) {
            (false, _) => Vec::new(),
            (true, Party::Client) => prg.gen(n).into_iter().map(|v| low(v, shift)).collect(),
            (true, Party::Server) => vec![0; n],
        };
        let (omega, top) = (lows(shift > 0), lows(shift > 0));
        Operand {
            shift,
            r: prg.gen(n),
            omega,
            top,
        }
    }

    /// Values of `bits` magnitude bits at random, both signs, and their shares.
    fn values(prg: &mut Prg, n: usize, bits: u32) -> (Vec<i64>, Vec<u64>, Vec<u64>) {
        let x: Vec<i64> = (0..n)
            .map(|_| {
                let v = (prg.next_u64() >> (64 - bits)) as i64;
                if prg.next_u64() & 1 == 1 {
                    -v
                } else {
                    v
                }
            })
            .collect();
        let s0 = prg.gen(n);
        let s1 = x
            .iter()
            .zip(&s0)
            .map(|(x, s)| (*x as u64).wrapping_sub(*s))
            .collect();
        (x, s0, s1)
    }

    fn opened(m: [&Operand; 2], x: [&[u64]; 2]) -> Vec<u64> {
        let h0 = m[0].masked(x[0], Party::Client);
        let h1 = m[1].masked(x[1], Party::Server);
        h0.iter()
            .zip(&h1)
            .map(|(a, b)| a.wrapping_add(*b))
            .collect()
    }

    /// Truncated operands are `floor(x / 2^s) + e`, `e` in {0, 1, 2}: every output is
    /// such a product exactly, over magnitudes up to `2^62` at 2f (openings wrap half the
    /// time) and with a broadcast column.
    #[test]
    fn products_of_truncated_operands_are_exact() {
        let mut prg = Prg::new(11);
        let (rows, cols) = (50, 7);
        for (sa, sb, wide_a) in [
            (16u32, 16u32, false),
            (16, 0, true),
            (0, 17, false),
            (0, 0, true),
        ] {
            let na = if wide_a { rows * cols } else { rows };
            let nb = rows * cols;
            let bits_a = if sa > 0 { 40 } else { 24 };
            let bits_b = if sb > 0 { 41 } else { 24 };
            let (xa, a0, a1) = values(&mut prg, na, bits_a);
            let (xb, b0, b1) = values(&mut prg, nb, bits_b);
            let mut m = [Party::Client, Party::Server].map(|p| {
                let c = if p == Party::Client {
                    prg.gen(nb)
                } else {
                    vec![0; nb]
                };
                let mut cross = |s: u32| match (s, p) {
                    (0, _) => Vec::new(),
                    (_, Party::Client) => prg.gen(nb).into_iter().map(|v| low(v, s)).collect(),
                    _ => vec![0; nb],
                };
                let (cross_a, cross_b) = (cross(sb), cross(sa));
                ProductMat {
                    a: operand(&mut prg, p, na, sa),
                    b: operand(&mut prg, p, nb, sb),
                    c,
                    cross_a,
                    cross_b,
                }
            });
            let [m0, m1] = &mut m;
            fill_product(m0, m1, rows);
            let oa = opened([&m0.a, &m1.a], [&a0, &a1]);
            let ob = opened([&m0.b, &m1.b], [&b0, &b1]);
            let z0 = product(Party::Client, m0, &oa, &ob, rows);
            let z1 = product(Party::Server, m1, &oa, &ob, rows);
            let ca = na / rows;
            for k in 0..nb {
                let i = at(k, cols, ca);
                let got = z0[k].wrapping_add(z1[k]) as i64;
                let (ta, tb) = (xa[i] >> sa, xb[k] >> sb);
                let ea = if sa > 0 { 0..=2 } else { 0..=0 };
                let ok = ea.clone().any(|e| {
                    let eb = if sb > 0 { 0..=2 } else { 0..=0 };
                    eb.into_iter().any(|f| (ta + e).wrapping_mul(tb + f) == got)
                });
                assert!(ok, "{sa} {sb}: {} * {} gave {got}", xa[i], xb[k]);
            }
        }
    }

    /// A pair's three outputs see one truncation of `b`: `a b = (floor(a / 2^sa) + e_a)
    /// u`, `b^2 = u^2` and the share of `b` sums to `u`, for one `u = floor(b / 2^sb) + e`.
    #[test]
    fn a_pair_sees_one_truncation_of_its_shared_operand() {
        let mut prg = Prg::new(13);
        let (rows, sa, sb) = (300, 0u32, 16u32);
        let (xa, a0, a1) = values(&mut prg, rows, 24);
        let (xb, b0, b1) = values(&mut prg, rows, 40);
        let mut m = [Party::Client, Party::Server].map(|p| {
            let mut draw = |bits: u32| match p {
                Party::Client => prg.gen(rows).into_iter().map(|v| low(v, bits)).collect(),
                Party::Server => vec![0; rows],
            };
            let (c, cross_a, square_c, square_cross) = (draw(64), draw(sb), draw(64), draw(sb));
            PairMat {
                product: ProductMat {
                    a: operand(&mut prg, p, rows, sa),
                    b: operand(&mut prg, p, rows, sb),
                    c,
                    cross_a,
                    cross_b: Vec::new(),
                },
                square_c,
                square_cross,
            }
        });
        let [m0, m1] = &mut m;
        fill_pair(m0, m1, rows);
        let oa = opened([&m0.product.a, &m1.product.a], [&a0, &a1]);
        let ob = opened([&m0.product.b, &m1.product.b], [&b0, &b1]);
        let [ab0, bb0, u0] = pair(Party::Client, m0, &oa, &ob, rows);
        let [ab1, bb1, u1] = pair(Party::Server, m1, &oa, &ob, rows);
        for k in 0..rows {
            let u = u0[k].wrapping_add(u1[k]) as i64;
            assert!((0..=2).contains(&(u - (xb[k] >> sb))), "{} gave {u}", xb[k]);
            assert_eq!(ab0[k].wrapping_add(ab1[k]) as i64, xa[k] * u);
            assert_eq!(bb0[k].wrapping_add(bb1[k]) as i64, u * u);
        }
    }

    /// Each row's sum of squares is exactly the sum of `(floor(x / 2^s) + e)^2` for some
    /// `e` in {0, 1, 2} per value (checked on rows of one value, and summed on rows of 8).
    #[test]
    fn squares_of_truncated_operands_are_exact() {
        let mut prg = Prg::new(12);
        for (s, d) in [(0u32, 1usize), (16, 1), (20, 1), (16, 8)] {
            let n = 400;
            let (x, x0, x1) = values(&mut prg, n, if s > 0 { 44 } else { 28 });
            let mut m = [Party::Client, Party::Server].map(|p| {
                let mut draw = |on: bool, bits: u32| match (on, p) {
                    (false, _) => Vec::new(),
                    (true, Party::Client) => prg.gen(n).into_iter().map(|v| low(v, bits)).collect(),
                    (true, Party::Server) => vec![0; n],
                };
                let c = draw(true, 64)[..n / d].to_vec();
                let cross = draw(s > 0, s);
                SquareMat {
                    x: operand(&mut prg, p, n, s),
                    c,
                    cross,
                }
            });
            let [m0, m1] = &mut m;
            fill_square(m0, m1, d);
            let o = opened([&m0.x, &m1.x], [&x0, &x1]);
            let z0 = square_sums(Party::Client, m0, &o, d);
            let z1 = square_sums(Party::Server, m1, &o, d);
            for row in 0..n / d {
                let got = z0[row].wrapping_add(z1[row]) as i64;
                let xs = &x[row * d..(row + 1) * d];
                let e = if s > 0 { 2 } else { 0 };
                let sq = |x: &i64| {
                    let t = x >> s;
                    (0..=e).map(move |e| (t + e) * (t + e))
                };
                let lo: i64 = xs.iter().map(|x| sq(x).min().unwrap()).sum();
                let hi: i64 = xs.iter().map(|x| sq(x).max().unwrap()).sum();
                assert!(lo <= got && got <= hi, "{s}: squares of {xs:?} gave {got}");
                if d == 1 {
                    let t = xs[0] >> s;
                    assert!((0..=e).any(|e| (t + e) * (t + e) == got), "{s}: {t}");
                }
            }
        }
    }
}
