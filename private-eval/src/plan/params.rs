//! The parameters steps carry: a norm's inverse square root, a comparison's width, and
//! the splines (GELU, a softmax's exponential) with their thresholds and segments.

use serde::{Deserialize, Serialize};

/// A row normalization's output error bound, in bits below 1, under which it may leave
/// its output at `2f` ([`InvSqrtParams::row_split`]): `2^-11`, five times below the
/// logits' budget of `1e-2` per layer it passes.
pub const ROW_SPLIT_ERROR_BITS: u32 = 11;

/// LayerNorm's inverse square root: comparison thresholds and Newton iterations.
/// Without Newton, under exact truncation, the comparison's piecewise guess is the
/// answer, `v^(-power/2)` ([`super::SecurePlan::direct_guess`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct InvSqrtParams {
    /// Thresholds are `2^(min_exp + k / per_octave)`, for `k` in `0..(max_exp-min_exp)*per_octave`.
    pub min_exp: i32,
    pub max_exp: i32,
    pub per_octave: u32,
    pub newton: u32,
    /// The output is `z * u^power` with `u = (sum x^2 + eps)^(-1/2)`: 1 for LayerNorm,
    /// 2 for a row normalization `z / sum x^2` (2Quad attention).
    #[serde(default = "one")]
    pub power: u32,
    /// The row total is `sum x^2` (LayerNorm) or, for a row normalization of
    /// non-negative weights, `sum x` (no square exchange).
    #[serde(default = "yes")]
    pub squares: bool,
}

fn one() -> u32 {
    1
}

fn yes() -> bool {
    true
}

impl Default for InvSqrtParams {
    fn default() -> Self {
        Self {
            min_exp: -8,
            max_exp: 20,
            per_octave: 8,
            newton: 1,
            power: 1,
            squares: true,
        }
    }
}

/// A comparison's width ([`crate::protocols::compare::compare`]): inputs are compared as `bits`-bit
/// two's complement values (exact for `|x| < 2^(bits-1)` in the ring) after dropping
/// their `shift` low bits, so the DCF tree has `bits - shift - 1` levels. Dropping bits
/// decides on `floor(x / 2^shift) + e`, `e` in {0, 1}: an input less than `2^shift`
/// below a threshold may count as at or above it (thresholds are multiples of `2^shift`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CmpWidth {
    pub bits: u32,
    pub shift: u32,
}

impl CmpWidth {
    /// LayerNorm's: the whole ring, every bit.
    pub const FULL: CmpWidth = CmpWidth { bits: 64, shift: 0 };

    /// Every bit of `bits`-bit inputs (a row maximum's comparisons: exact).
    pub fn exact(bits: u32) -> Self {
        CmpWidth { bits, shift: 0 }
    }

    /// A spline's comparisons of `bits`-bit inputs: decisions at `2^-DECISION_FRAC_BITS`.
    pub fn spline(bits: u32, frac_bits: u32) -> Self {
        CmpWidth {
            bits,
            shift: frac_bits.saturating_sub(DECISION_FRAC_BITS),
        }
    }

    /// Levels of the DCF tree (the sign bit is not one).
    pub fn domain(self) -> usize {
        (self.bits - self.shift - 1) as usize
    }
}

/// Fractional bits a spline's decisions keep: its thresholds lie on a `2^-8` grid, and
/// an input less than `2^-8` below one may take the segment above it (the segments are
/// continuous, so this moves the output by at most `2^-8` times the change of slope).
pub const DECISION_FRAC_BITS: u32 = 8;

/// A function evaluated as a piecewise-linear spline from one comparison opening.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SplineFn {
    /// GELU (the exact erf form): 27 chords between 28 knots on `[-4, 4]` placed where
    /// `|GELU''|` is large; 0 below, `x` above. At most 1.6e-3 from GELU.
    Gelu,
    /// `exp` on `x <= 0` (softmax after subtracting the row's max): chords between
    /// knots every 1 on `[-16, -8]`, every 1/4 on `[-8, -4]`, every 1/8 on `[-4, 0]`,
    /// 0 below, the last chord above. Relative error at most `h^2 / 8` (0.2% near 0).
    Exp,
}

/// GELU's knots, in 64ths: equidistributed in `sqrt|GELU''|` on `[-4, 4]`.
const GELU_KNOTS: [i32; 28] = [
    -256, -191, -161, -139, -119, -92, -68, -55, -44, -35, -27, -19, -11, -4, 4, 11, 19, 27, 35,
    44, 55, 68, 92, 119, 139, 161, 191, 256,
];

impl SplineFn {
    pub fn name(self) -> &'static str {
        match self {
            SplineFn::Gelu => "gelu",
            SplineFn::Exp => "exp",
        }
    }

    /// The function the spline approximates.
    pub fn exact(self, x: f64) -> f64 {
        match self {
            SplineFn::Gelu => crate::arith::real::gelu(x),
            SplineFn::Exp => x.exp(),
        }
    }

    /// Where the chords meet.
    fn knots(self) -> Vec<f64> {
        match self {
            SplineFn::Gelu => GELU_KNOTS.iter().map(|&k| k as f64 / 64.0).collect(),
            SplineFn::Exp => (-16..-8)
                .map(|k| k as f64)
                .chain((-32..-16).map(|k| k as f64 / 4.0))
                .chain((-32..=0).map(|k| k as f64 / 8.0))
                .collect(),
        }
    }

    /// The thresholds, ascending, multiples of `2^-DECISION_FRAC_BITS`.
    pub fn thresholds(self) -> Vec<f64> {
        let mut k = self.knots();
        if self == SplineFn::Exp {
            k.pop(); // the last chord continues above 0
        }
        k
    }

    /// The segments `(intercept, slope)`: index 0 below the first threshold, index
    /// `k + 1` from threshold `k`.
    pub fn segments(self) -> Vec<(f64, f64)> {
        let ks = self.knots();
        let f = |x| self.exact(x);
        let mut segs = vec![(0.0, 0.0)];
        for w in ks.windows(2) {
            let s = (f(w[1]) - f(w[0])) / (w[1] - w[0]);
            segs.push((f(w[0]) - s * w[0], s));
        }
        if self == SplineFn::Gelu {
            segs.push((0.0, 1.0));
        }
        segs
    }
}

impl InvSqrtParams {
    /// Whether a norm of these parameters is fused under exact truncation
    /// ([`super::SecurePlan::fused_norm`]): Newton's step and at most a square of the root.
    pub fn fusable(&self) -> bool {
        self.newton > 0 && self.power <= 2
    }

    /// A fused row normalization's split (power 2): the bits `k` its `1/sum` keeps beyond
    /// `f` in its last product while its numerator keeps `k` fewer, so that its output
    /// lands at `2f` and the opening after it can carry it without a truncation exchange.
    /// With sums in `[2^min_exp, 2^max_exp]` the output's error from either part is at
    /// most `2^((max_exp - min_exp) / 2 - f)` at `k = (min_exp + max_exp) / 2`; a split is
    /// taken only where that is at most `2^-ROW_SPLIT_ERROR_BITS` (a softmax's sums, in
    /// `[1, n]`; not the default range of 28 octaves). `None`: the output stays at `3f`.
    pub fn row_split(&self, f: u32) -> Option<u32> {
        let (a, b) = (self.min_exp as i64, self.max_exp as i64);
        let worst = (b - a + 1) / 2 - f as i64;
        (self.power == 2 && worst <= -(ROW_SPLIT_ERROR_BITS as i64))
            .then(|| ((a + b) / 2).clamp(0, f as i64) as u32)
    }

    pub fn thresholds(&self) -> Vec<f64> {
        let k = ((self.max_exp - self.min_exp) as u32 * self.per_octave) as usize;
        (0..k)
            .map(|i| 2f64.powf(self.min_exp as f64 + i as f64 / self.per_octave as f64))
            .collect()
    }
}
