//! Sizes a plan implies, stated once for the dealer, the material's layout, the
//! executor, `comm` and the cost model: per-step operand shapes, LayerNorm's exchange
//! order, the row maximum's tree, the private terms and the truncations.

use crate::plan::*;

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

/// The fractional bits the server encodes each weight at. A step of public terms: its
/// bias at `2f` (scaled by its `shift` when it runs), or `f` if it keeps scale
/// ([`Step::keeps_scale`]). A step of server weights lands at
/// [`SecurePlan::linear_out_bits`]: each weight at that less its opening's scale (`f`,
/// or `2f` for a wide opening), its bias at that.
pub fn weight_bits(plan: &SecurePlan) -> Vec<u32> {
    let f = plan.frac_bits;
    let mut bits = vec![2 * f; plan.weights.len()];
    for step in &plan.steps {
        let Step::Linear {
            terms, bias, shift, ..
        } = step
        else {
            continue;
        };
        let private = terms.iter().any(|t| matches!(t, Term::Private { .. }));
        let out = plan.linear_out_bits(terms, *shift);
        for t in terms {
            if let Term::Private { open, weight, .. } = t {
                let opened = if plan.openings[*open].wide { 2 * f } else { f };
                bits[*weight] = out - opened;
            }
        }
        if let Some(b) = bias {
            bits[*b] = match (step.keeps_scale(), private) {
                (true, _) => f,
                (false, true) => out,
                (false, false) => 2 * f,
            };
        }
    }
    bits
}

/// Output lengths of a linear step's private terms, in term order.
pub fn private_terms<'a>(
    plan: &'a SecurePlan,
    terms: &'a [Term],
) -> impl Iterator<Item = usize> + 'a {
    terms.iter().filter_map(move |t| match t {
        Term::Private { open, weight, cls } => {
            let rows = if *cls { 1 } else { plan.opening_shape(*open).0 };
            Some(rows * plan.weights[*weight].cols)
        }
        Term::Public { .. } => None,
    })
}

/// Values compared at each level of a row maximum's tree over `x`: `rows * floor(w / 2)`
/// for the level's width `w` (an odd column passes to the next level unchanged).
pub fn rowmax_pairs(x: &Wire) -> impl Iterator<Item = usize> {
    let rows = x.rows;
    std::iter::successors(Some(x.cols), |&w| (w > 1).then_some(w.div_ceil(2)))
        .take_while(|&w| w > 1)
        .map(move |w| rows * (w / 2))
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

/// Number of element-wise products a norm runs after the comparison: three per Newton
/// iteration, then `power` scalings of the output by `u` (scaling twice keeps `z u^2`
/// precise where `u^2` alone would lose bits); for a direct guess, the one scaling.
pub fn layernorm_mults(plan: &SecurePlan, p: &InvSqrtParams) -> usize {
    match plan.direct_guess(p) {
        true => 1,
        false => 3 * p.newton as usize + p.power as usize,
    }
}

/// Whether LayerNorm's product `i` scales the `c`-column output (else a per-row value).
pub fn layernorm_scales_output(p: &InvSqrtParams, i: usize) -> bool {
    i >= 3 * p.newton as usize
}

/// One exchange of a LayerNorm, in the executor's order ([`layernorm_waves`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LnWave {
    /// The square's opening of `rows * d` values.
    Square(usize),
    /// The opening of `var + r`, then `values * thresholds` DCF evaluations; its frame
    /// may carry a truncation's masked bits ([`LnTrunc`], fused norms) or `rides` ring
    /// elements of a [`NormMix`]'s opening.
    Compare {
        values: usize,
        thresholds: usize,
        carries: Option<LnTrunc>,
        rides: usize,
    },
    /// A Beaver product opening `elems` values, with `out` outputs; its frame may
    /// carry `rides` ring elements of a [`NormMix`]'s opening.
    Product {
        elems: usize,
        out: usize,
        rides: usize,
    },
    /// Exact truncations ([`LnTrunc`]) in one exchange (the second group may be empty).
    Truncate([LnTrunc; 2]),
}

/// A [`NormMix`]'s product: `heads` products of `[m, k]` by `[k, n]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MixShape {
    pub heads: usize,
    pub m: usize,
    pub k: usize,
    pub n: usize,
}

impl MixShape {
    /// The product of a norm over `x` that mixes, if it does.
    pub fn of(plan: &SecurePlan, x: WireId, mix: &Option<NormMix>) -> Option<Self> {
        mix.map(|mx| {
            let (m, k, n) = head_shapes(plan, x, mx.v, mx.heads, HeadProduct::Mix);
            MixShape {
                heads: mx.heads,
                m,
                k,
                n,
            }
        })
    }

    /// Ring elements its opening sends: both masked operands of every head.
    pub fn opened(&self) -> usize {
        self.heads * (self.m * self.k + self.k * self.n)
    }

    /// Whether its opening rides in the comparison's frame: its weights are at `f`
    /// already; else they are truncated in that frame and it rides in the next.
    pub fn rides_compare(shifts: [u32; 2]) -> bool {
        shifts[1] == 0
    }
}

/// Values a fused norm truncates in its comparison's frame: the numerator (`rows * c`),
/// or for a [`NormMix`] the weights (`rows * d`) before their product.
pub fn numerator_len(rows: usize, d: usize, c: usize, mix: Option<MixShape>) -> usize {
    match mix {
        Some(_) => rows * d,
        None => rows * c,
    }
}

/// One exact truncation inside a norm: `values` values shifted right by `shift` bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LnTrunc {
    pub values: usize,
    pub shift: u32,
}

/// Every exchange of a LayerNorm of `rows x d` input and `c` output columns in the
/// executor's order. Unfused: the square, the comparison, three products per Newton
/// iteration, the final scaling; under exact truncation one truncation follows each
/// but the comparison, and two follow Newton's second product (`q`, then
/// `w = 1.5 - q / 2`); a direct guess is not truncated: square, comparison, one
/// product. Fused ([`SecurePlan::fused_norm`], inputs carrying `shifts` bits above `f`):
/// the square, the comparison of the variances as they are (at `2f` after the square)
/// carrying the numerator's truncation when it has one, then the products
/// ([`norm_products`]) with no truncation; a [`NormMix`]'s opening rides in the
/// comparison's frame or, when that frame truncates its weights, in the first product's.
/// The one statement of this order for `comm` and the cost model.
pub fn layernorm_waves(
    plan: &SecurePlan,
    (rows, d, c): (usize, usize, usize),
    p: &InvSqrtParams,
    shifts: [u32; 2],
    mix: Option<MixShape>,
) -> Vec<LnWave> {
    let mut out = Vec::new();
    if plan.fused_norm(p) {
        if p.squares {
            out.push(LnWave::Square(rows * d));
        }
        let (early, late) = match mix {
            Some(m) if MixShape::rides_compare(shifts) => (m.opened(), 0),
            Some(m) => (0, m.opened()),
            None => (0, 0),
        };
        out.push(LnWave::Compare {
            values: rows,
            thresholds: p.thresholds().len(),
            carries: (shifts[1] > 0).then_some(LnTrunc {
                values: numerator_len(rows, d, c, mix),
                shift: shifts[1],
            }),
            rides: early,
        });
        let products = norm_products(plan, rows, c, p, shifts, mix.is_some());
        if reciprocal(plan.frac_bits, p, shifts, mix.is_some()).is_some() {
            // `m g` with `y z` in one exchange, then their product.
            let wave = |ms: &[NormProduct]| LnWave::Product {
                elems: ms.iter().map(|m| m.a.0 + m.b.0).sum(),
                out: ms.iter().map(|m| m.out).sum(),
                rides: 0,
            };
            out.extend([wave(&products[..2]), wave(&products[2..])]);
            return out;
        }
        out.extend(products.iter().enumerate().map(|(i, m)| LnWave::Product {
            elems: m.a.0 + m.b.0,
            out: m.out * (1 + m.pair as usize),
            rides: if i == 0 { late } else { 0 },
        }));
        return out;
    }
    let none = LnTrunc {
        values: 0,
        shift: plan.frac_bits,
    };
    let mut truncs = layernorm_truncs(plan, rows, c, p)
        .into_iter()
        .map(|t| LnWave::Truncate([t, none]));
    if p.squares {
        out.push(LnWave::Square(rows * d));
        out.extend(truncs.next());
    }
    out.push(LnWave::Compare {
        values: rows,
        thresholds: p.thresholds().len(),
        carries: None,
        rides: 0,
    });
    if !plan.direct_guess(p) {
        out.extend(truncs.next());
    }
    for i in 0..layernorm_mults(plan, p) {
        let scales = layernorm_scales_output(p, i);
        out.push(match scales {
            true => LnWave::Product {
                elems: rows + rows * c,
                out: rows * c,
                rides: 0,
            },
            false => LnWave::Product {
                elems: 2 * rows,
                out: rows,
                rides: 0,
            },
        });
        let after = if i % 3 == 1 && !scales { 2 } else { 1 };
        out.extend(truncs.by_ref().take(after));
    }
    out
}

/// Each exact truncation inside a LayerNorm of `rows` rows and `c` output columns, in
/// order: the variances, the initial inverse square roots, four per Newton iteration,
/// one per output scaling, all by `f` bits; for a direct guess, the variances and the
/// one scaled output, by `f` plus the guess's slope bits. None under local truncation.
pub fn layernorm_truncs(
    plan: &SecurePlan,
    rows: usize,
    c: usize,
    p: &InvSqrtParams,
) -> Vec<LnTrunc> {
    if !plan.exact_truncation {
        return Vec::new();
    }
    let f = plan.frac_bits;
    let by = |values: usize| LnTrunc { values, shift: f };
    let mut v = Vec::new();
    if p.squares {
        v.push(by(rows));
    }
    if plan.direct_guess(p) {
        v.push(LnTrunc {
            values: rows * c,
            shift: f + plan.guess_slope_bits(p),
        });
        return v;
    }
    v.push(by(rows));
    v.extend(std::iter::repeat_n(by(rows), 4 * p.newton as usize));
    v.extend(std::iter::repeat_n(by(rows * c), p.power as usize));
    v
}

/// One element-wise product of a fused norm: each operand's `(values, shift)` and the
/// outputs (an operand of `rows` values is broadcast along its row); `pair`: the same
/// exchange also squares `b` ([`crate::protocols::fused::pair`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NormProduct {
    pub a: (usize, u32),
    pub b: (usize, u32),
    pub out: usize,
    pub pair: bool,
}

/// A fused norm's products in order: per Newton iteration two exchanges, `p = v y` with
/// `y^2` (a pair: both see one truncation `u` of `y`), then `t = (p / 2) y^2` at `3f`,
/// so that `y' = 1.5 u - t / 2 = u (1.5 - v u^2 / 2)` is Newton's step, at `3f`; then
/// the numerator (at `f`) scaled by `y'` (LayerNorm, output at `2f`) or by `y'^2` (a row
/// normalization, output at `2f` or `3f`, [`InvSqrtParams::row_split`]). The variances `v`
/// carry `sv` bits above `f` ([`variance_shift`]), and so the first guess `y` `f + sv`;
/// the numerator carries `zs` bits above `f`, truncated in the last product's opening.
pub fn norm_products(
    plan: &SecurePlan,
    rows: usize,
    c: usize,
    p: &InvSqrtParams,
    shifts: [u32; 2],
    mix: bool,
) -> Vec<NormProduct> {
    let f = plan.frac_bits;
    let sv = variance_shift(plan, p, shifts);
    let zs = if mix { f } else { 0 };
    let row = |a: u32, b: u32, pair: bool| NormProduct {
        a: (rows, a),
        b: (rows, b),
        out: rows,
        pair,
    };
    if let Some(r) = reciprocal(f, p, shifts, mix) {
        let scale = |a: u32, b: u32| NormProduct {
            a: (rows, a),
            b: (rows * c, b),
            out: rows * c,
            pair: false,
        };
        // `q = v y` (`m` and `g` at `3f`, both to `f`), `r = y z` (`y` to `2f`, `z` to
        // `f`: at `3f`), then `r (2 - q)` (`r` to `f`, `2 - q` at `2f` to `f`).
        return vec![
            row(2 * f, 2 * f, false),
            scale(r.y_bits - 2 * f, zs),
            scale(f, 2 * f),
        ];
    }
    let mut v = Vec::new();
    for i in 0..p.newton {
        let sy = if i == 0 { f + sv } else { 2 * f };
        v.extend([row(sv, sy, true), row(f + 1, 0, false)]);
    }
    let scale = |a: u32, b: u32| NormProduct {
        a: (rows, a),
        b: (rows * c, zs + b),
        out: rows * c,
        pair: false,
    };
    match p.power {
        // `u^2` at `2f` from one product of two openings of `y'`, then `z u^2`: one
        // product of the numerator's size instead of two. Where the sums' range allows
        // ([`InvSqrtParams::row_split`]), `u^2` keeps `k` bits more than `f` and `z` as
        // many fewer, so the output lands at `2f`; else `u^2` stays at `2f`, output `3f`.
        2 => {
            let last = match p.row_split(f) {
                Some(k) => scale(f - k, k),
                None => scale(0, 0),
            };
            v.extend([row(2 * f, 2 * f, false), last])
        }
        _ => v.push(scale(2 * f, 0)),
    }
    v
}

/// A row normalization's one Newton step taken on `1/v` itself (protocol 7): where it
/// applies ([`reciprocal`]), the scales of the values the comparison leaves locally.
/// The first guess `y` of `1/v` is piecewise linear between the thresholds; on the
/// segment starting in octave `e` (`2^e <= t < 2^(e+1)`) the parties also take
/// `m = v 2^-e` and `g = y 2^e`, both near 1, with each segment's coefficients whole
/// shifts of `y`'s, so `m g = v y` exactly while neither spans the sums' range. Then
/// one exchange makes `q = m g` and `r = y z`, and the next `out = r (2 - q)`: Newton's
/// `y (2 - v y)` times `z`, in two exchanges where the inverse square root took four
/// and a truncation, and the output at `2f`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reciprocal {
    /// Fractional bits of the row totals `v` as compared, and of `m`'s `v`.
    pub v_bits: u32,
    /// Fractional bits of `y` (its slopes at `y_bits - v_bits`); `g` and `m` are at `3f`.
    pub y_bits: u32,
}

impl Reciprocal {
    /// Bits `g` carries beyond `y`: `2^e` is a whole shift for every octave `e`.
    pub fn gx(&self, f: u32) -> u32 {
        3 * f - self.y_bits
    }

    /// The octave of segment `k` ([`InvSqrtParams::thresholds`]: index 0 lies below
    /// the first threshold, index `k + 1` starts at threshold `k`).
    pub fn octave(p: &InvSqrtParams, k: usize) -> i32 {
        p.min_exp + (k.saturating_sub(1) as u32 / p.per_octave) as i32
    }
}

/// Whether a fused norm takes Newton's step on `1/v` itself ([`Reciprocal`]): a row
/// normalization (power 2) with one Newton iteration whose numerator is ready after the
/// comparison, where the scales fit the ring: `m` at `3f` holds the widest octave's
/// `2^-e`, `g` at `3f` every `2^e` as a shift of `y`, `y` keeps at least `f` bits of
/// slope and `2f` of value, and the product `q` of two operands truncated by `2f` needs
/// `4f <= 64`. Elsewhere the inverse square root's steps run ([`norm_products`]).
/// The caller knows the norm is fused (exact truncation, [`InvSqrtParams::fusable`]).
pub fn reciprocal(f: u32, p: &InvSqrtParams, shifts: [u32; 2], mix: bool) -> Option<Reciprocal> {
    let ready = !mix || MixShape::rides_compare(shifts);
    if !(p.fusable() && p.power == 2 && p.newton == 1 && ready && 4 * f <= 64) {
        return None;
    }
    let v_bits = f + if p.squares { f } else { shifts[0] };
    let widest = (p.max_exp - 1).max(0) as u32;
    let y_bits = (3 * f).checked_sub((-p.min_exp).max(0) as u32)?;
    let fits = v_bits + widest <= 3 * f && y_bits >= 2 * f && y_bits >= v_bits + f;
    fits.then_some(Reciprocal { v_bits, y_bits })
}

/// Bits a fused norm's variances carry above `f` when compared: `f` after the square,
/// else those of its input's row totals.
pub fn variance_shift(plan: &SecurePlan, p: &InvSqrtParams, shifts: [u32; 2]) -> u32 {
    match p.squares {
        true => plan.frac_bits,
        false => shifts[0],
    }
}

/// Values a `Truncate` step truncates.
pub fn truncate_len(plan: &SecurePlan, wires: &[WireId]) -> usize {
    wires
        .iter()
        .map(|w| plan.wires[*w].rows * plan.wires[*w].cols)
        .sum()
}
