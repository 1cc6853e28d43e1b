//! `SecurePlan`: the secure computation of an adapter as plain data, a list of protocol
//! steps with their shapes. The executor runs it; the cost model prices the same plan.
//! The plan is public (it depends on the spec and shapes, never on weights); the
//! server's folded weights live beside it in [`PlanWeights`]. Beside the IR: shape
//! checks, lowering from a model, the wire layout of head outputs and the plaintext
//! interpreter that gives a plan its meaning.

pub mod layout;
pub mod lower;

mod params;
pub mod shapes;
mod truncation;

pub use params::*;

use serde::{Deserialize, Serialize};

use crate::arith::tensor::Mat;

pub type WireId = usize;
pub type OpenId = usize;
pub type WeightId = usize;

/// Who knows a wire's value in the clear at the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireKind {
    /// A backbone hidden state: the client's plaintext, shared as (x, 0).
    ClientInput { hidden: usize },
    /// Additively shared between client and server.
    Shared,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Wire {
    pub name: String,
    pub rows: usize,
    pub cols: usize,
    pub kind: WireKind,
}

/// Which rows of a wire a step reads: all, or only the CLS row (dead-token elimination).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Rows {
    All,
    Cls,
}

impl Rows {
    pub fn count(self, rows: usize) -> usize {
        match self {
            Rows::All => rows,
            Rows::Cls => 1,
        }
    }
}

/// A masked opening of (rows of) a wire to the server, reused by every server-weight
/// linear map applied to it. `wide`: the wire is opened still at `2f` bits (its
/// truncation deferred, see [`lower`]), so the maps applied to it give `3f`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Opening {
    pub wire: WireId,
    pub rows: Rows,
    #[serde(default)]
    pub wide: bool,
}

/// One summand of a linear step's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Term {
    /// `coef * wire[rows]`, computed locally on shares (public coefficient).
    Public { wire: WireId, rows: Rows, coef: f64 },
    /// `wire[rows] * W` with `W` the server's weight, from an opening of the wire;
    /// `cls` takes only row 0 of an all-rows opening.
    Private {
        open: OpenId,
        weight: WeightId,
        cls: bool,
    },
}

/// Shape of a server-private weight matrix `W` (`x * W`, `[inputs, outputs]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightShape {
    pub rows: usize,
    pub cols: usize,
}

/// How a head-wise secret-by-secret product gathers its operands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HeadProduct {
    /// `S_i = Q_i K_i^T` for head column blocks; output stacks heads by rows `[h*rq, N]`.
    Scores,
    /// `O_i = P_i V_i` for head row blocks of P and column blocks of V; output `[rq, r]`.
    Mix,
}

/// A row normalization of attention weights `x` (`[heads * rq, n]`, one row per head
/// and query) moved past their product with the values `v` (`[n, r]`): `out = (x_h v_h)
/// u_h^2` per head instead of `(x_h u_h^2) v_h`, the same numbers. The product's opening
/// rides in one of the norm's own exchanges and its output needs no truncation of its
/// own (the final scaling truncates it in its opening), so the two rounds a normalized
/// attention spent on truncating and multiplying its weights fall away. The step's `z`
/// is the product with heads stacked by rows (`[heads * rq, r / heads]`), and `shifts[1]`
/// the bits `x` carries into the product (truncated in the comparison's frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NormMix {
    pub v: WireId,
    pub heads: usize,
}

/// Version of what a plan's steps mean, bumped when the same plan would run differently
/// (2: norms without Newton take their guess as the answer; linear steps of whole
/// public coefficients keep scale `f`; 3: a ReLU truncates its input in its opening, and
/// an opening may carry `2f` bits; 4: a linear step of server weights has its weights
/// and coefficients encoded at its output scale, [`SecurePlan::linear_out_bits`]; 5: the
/// logits' map of a wide opening has its weights [`WIDE_LOGIT_BITS`] finer; 6: a fused
/// row normalization of a narrow range leaves its output at `2f`,
/// [`InvSqrtParams::row_split`]; 7: a fused row normalization takes Newton's step on
/// `1/v` itself, in two exchanges with its output at `2f`, [`shapes::Reciprocal`]). It
/// enters [`SecurePlan::digest`], so parties and a dealer of different versions refuse
/// each other's material, and client and server compare it in their handshake.
pub const PROTOCOL: u32 = 7;

/// Most values one wire or weight may hold: far above any ViT's (ViT-B/16's largest,
/// 12 x 197 x 197 scores, hold 2^19), low enough that sizes never overflow.
pub const MAX_ELEMENTS: usize = 1 << 36;

/// Bits finer than `f` that the logits' weights are encoded at where they map a wide
/// opening: the logits land at `3f + 1`, which the reveal takes (below `2^63`) for logits
/// below `2^(62 - 3f)`, the bound every `3f` wire already has. The bit halves the error
/// of the head's weights, which dominates there (`cryptpeft precision`).
pub const WIDE_LOGIT_BITS: u32 = 1;

/// Largest `f` at which a truncation may be deferred through an opening
/// ([`SecurePlan::wide_allowed`]).
pub const WIDE_MAX_FRAC_BITS: u32 = 16;

/// Largest whole coefficient a scale-keeping linear step multiplies by.
pub const WHOLE_COEF_MAX: f64 = 65536.0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Step {
    /// Client sends its share of `wire[rows]` minus a dealer mask (one one-way message).
    Open { open: OpenId },
    /// Local: `out = truncate(sum of terms) + bias`.
    Linear {
        out: WireId,
        terms: Vec<Term>,
        bias: Option<WeightId>,
        /// Bits a step of public terms reads above `f` (its output carries them, plus `f`
        /// unless it keeps scale): its coefficients work at any scale and its bias is
        /// scaled up to match, so a pending truncation passes through it ([`lower`]).
        /// For a step with server weights whose output only the reveal reads (the
        /// logits), `f`: its weights and coefficients are encoded at `2f` bits, so their
        /// rounding costs nothing measurable, and its output lands at `3f`, truncated in
        /// the clear.
        #[serde(default)]
        shift: u32,
    },
    /// Beaver products per head, both operands opened in one simultaneous exchange.
    HeadMatMul {
        out: WireId,
        a: WireId,
        b: WireId,
        heads: usize,
        kind: HeadProduct,
    },
    /// ReLU by a DCF key on the low `bits` bits of the masked input (exact for
    /// `|x| < 2^(bits-1)` in the ring, see [`crate::protocols::compare::relu`]): two simultaneous
    /// exchanges, the masked shares, then one masked bit per value. With `shift` > 0 the
    /// input is still at `f + shift` bits and the opening truncates it by `shift` on the
    /// way (exactly, see the same), so the truncation costs no exchange of its own.
    Relu {
        out: WireId,
        x: WireId,
        bits: u32,
        #[serde(default)]
        shift: u32,
    },
    /// Element-wise `x^2` with a dealer square pair `(a, a^2)`: one simultaneous
    /// exchange of `x - a`; the output is at `2f` bits like a product. With `shift` > 0
    /// the input carries `shift` bits above `f` and its opening truncates them
    /// ([`crate::protocols::fused`]).
    Square {
        out: WireId,
        x: WireId,
        #[serde(default)]
        shift: u32,
    },
    /// A spline ([`SplineFn`]) from one comparison opening (the DCF keys give
    /// `[x >= t]` and its product with `x` for every threshold) on `bits`-bit inputs
    /// ([`CmpWidth::spline`]); the output is at `2f` bits like a product.
    Spline {
        out: WireId,
        x: WireId,
        func: SplineFn,
        bits: u32,
    },
    /// The maximum of each row of `x` into a one-column `out`: a tree of
    /// `ceil(log2 cols)` levels, each one comparison opening of the pairs' differences
    /// `a - b` on `bits`-bit inputs, `max = b + [a - b >= 0] (a - b)` (exact).
    RowMax { out: WireId, x: WireId, bits: u32 },
    /// Local: `out = x - by`, `by` one column broadcast along each row.
    Shift { out: WireId, x: WireId, by: WireId },
    /// `out = z / sqrt(sum_j x_j^2 + eps)` per row, where `x` is the LayerNorm input
    /// centred and scaled by `1/sqrt(d)` (so the sum is the variance) and `z` the following
    /// linear map of the centred input (gamma folded into it).
    LayerNorm {
        out: WireId,
        x: WireId,
        z: WireId,
        eps: f64,
        inv_sqrt: InvSqrtParams,
        /// Bits `x` and `z` carry above `f` (0 or `f`): a fused norm
        /// ([`SecurePlan::fused_norm`]) truncates them in its own exchanges, and leaves
        /// its output at `2f` (a row normalization at `3f` unless
        /// [`InvSqrtParams::row_split`] or [`shapes::reciprocal`]).
        #[serde(default)]
        shifts: [u32; 2],
        /// Attention normalized after its product with the values ([`NormMix`]): `z`
        /// is then that product, made inside the step, and `out` the heads side by side.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mix: Option<NormMix>,
    },
    /// Local: columns `from..to` of `x`.
    Slice {
        out: WireId,
        x: WireId,
        from: usize,
        to: usize,
    },
    /// Exact truncation of wires at `2f` bits to `f` ([`crate::protocols::trunc`]), and of
    /// `wide` wires at `3f` (linear maps of a wide opening) by `2f`, all in one
    /// exchange; in place (under exact truncation, `Linear` and `HeadMatMul` leave
    /// their outputs at `2f` until a `Truncate` lists them).
    Truncate {
        wires: Vec<WireId>,
        #[serde(default)]
        wide: Vec<WireId>,
    },
    /// Server sends its share; only the client learns the value, and truncates it in
    /// the clear by `shift` bits (0, `f` or `2f`: the wire's scale above `f`).
    Reveal {
        wire: WireId,
        #[serde(default)]
        shift: u32,
    },
}

impl Step {
    /// Whether a `Linear` step keeps its inputs' scale of `f` bits: only public terms,
    /// with whole coefficients (a residual sum, a norm's output plus its bias), so its
    /// output needs no truncation.
    pub fn keeps_scale(&self) -> bool {
        let Step::Linear { terms, .. } = self else {
            return false;
        };
        terms.iter().all(|t| match t {
            Term::Public { coef, .. } => coef.fract() == 0.0 && coef.abs() <= WHOLE_COEF_MAX,
            Term::Private { .. } => false,
        })
    }

    /// The wires a step reads (a private term reads its opening's wire).
    pub fn reads(&self, openings: &[Opening]) -> Vec<WireId> {
        match self {
            Step::Open { open } => vec![openings[*open].wire],
            Step::Linear { terms, .. } => terms
                .iter()
                .map(|t| match t {
                    Term::Public { wire, .. } => *wire,
                    Term::Private { open, .. } => openings[*open].wire,
                })
                .collect(),
            Step::HeadMatMul { a, b, .. } => vec![*a, *b],
            Step::Relu { x, .. }
            | Step::Square { x, .. }
            | Step::Spline { x, .. }
            | Step::RowMax { x, .. }
            | Step::Slice { x, .. } => vec![*x],
            Step::Shift { x, by, .. } => vec![*x, *by],
            Step::LayerNorm {
                x, mix: Some(m), ..
            } => vec![*x, m.v],
            Step::LayerNorm { x, z, .. } => vec![*x, *z],
            Step::Truncate { wires, wide } => wires.iter().chain(wide).copied().collect(),
            Step::Reveal { wire, .. } => vec![*wire],
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Step::Open { .. } => "open",
            Step::Linear { .. } => "linear",
            Step::HeadMatMul {
                kind: HeadProduct::Scores,
                ..
            } => "matmul-scores",
            Step::HeadMatMul {
                kind: HeadProduct::Mix,
                ..
            } => "matmul-mix",
            Step::Relu { .. } => "relu",
            Step::Square { .. } => "square",
            Step::Spline { func, .. } => func.name(),
            Step::RowMax { .. } => "rowmax",
            Step::Shift { .. } => "shift",
            Step::LayerNorm { mix: Some(_), .. } => "rownorm-mix",
            Step::LayerNorm { .. } => "layernorm",
            Step::Slice { .. } => "slice",
            Step::Truncate { .. } => "truncate",
            Step::Reveal { .. } => "reveal",
        }
    }
}

/// The public plan: wires, openings, weight shapes and steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecurePlan {
    pub wires: Vec<Wire>,
    pub openings: Vec<Opening>,
    pub weights: Vec<WeightShape>,
    pub steps: Vec<Step>,
    /// Number of hidden states the client provides (`s + 1`), each `[N, d]`.
    pub inputs: usize,
    pub frac_bits: u32,
    /// Truncation with the dealer, exact ([`crate::protocols::trunc`]), instead of local (which
    /// fails with a small probability per value).
    #[serde(default)]
    pub exact_truncation: bool,
}

impl SecurePlan {
    /// Whether a norm's first guess is its answer, `v^(-power/2)` directly: without Newton,
    /// under exact truncation. Local truncation keeps the guess of `v^(-1/2)` at `f` bits
    /// and scales by it `power` times, since its failure chance grows with the scale of
    /// what it truncates.
    pub fn direct_guess(&self, p: &InvSqrtParams) -> bool {
        p.newton == 0 && self.exact_truncation
    }

    /// Whether a norm runs fused ([`crate::protocols::fused`]): under exact truncation with
    /// Newton, and a power of 1 or 2, its products truncate their operands in their own
    /// openings, so the norm takes one exchange per product and leaves its output at
    /// `2f` (a row normalization at `3f` unless [`InvSqrtParams::row_split`] or
    /// [`shapes::reciprocal`]).
    pub fn fused_norm(&self, p: &InvSqrtParams) -> bool {
        self.exact_truncation && p.fusable()
    }

    /// Fractional bits of the slopes of a norm's first guess, from the comparison's one
    /// opening: `f` for a guess of `v^(-1/2)`. A direct guess ([`direct_guess`](SecurePlan::direct_guess)) is kept at
    /// `f + slopes` bits through the one product with the numerator, whose scale
    /// `2f + slopes` leaves room for the output below the exact truncation's 2^62: 2^48 for
    /// LayerNorm (outputs below 2^14), 2^60 for a row normalization (weights at most 1),
    /// whose slopes `-1/v^2` need the extra bits.
    pub fn guess_slope_bits(&self, p: &InvSqrtParams) -> u32 {
        let f = self.frac_bits;
        match (self.direct_guess(p), p.power) {
            (true, 1) => 48u32.saturating_sub(2 * f),
            (true, _) => 60u32.saturating_sub(2 * f),
            (false, _) => f,
        }
    }

    /// Why a direct guess ([`direct_guess`](SecurePlan::direct_guess)) cannot run in `plan`, if it cannot: it needs
    /// `power` 1 or 2, slopes at least as fine as the input, and values below 2^62.
    pub fn direct_guess_problem(&self, p: &InvSqrtParams) -> Option<String> {
        if !self.direct_guess(p) {
            return None;
        }
        let (frac_bits, slopes) = (self.frac_bits, self.guess_slope_bits(p));
        let top = (frac_bits + slopes) as f64 - p.min_exp as f64 * p.power as f64 / 2.0;
        if p.power > 2 {
            Some(format!("power {} without Newton (1 or 2)", p.power))
        } else if slopes < frac_bits {
            Some(format!(
                "{frac_bits} fractional bits leave a guess without Newton {slopes}-bit slopes"
            ))
        } else if top > 62.0 {
            Some(format!(
                "a first threshold of 2^{} without Newton",
                p.min_exp
            ))
        } else {
            None
        }
    }

    /// Whether a truncation may be deferred through an opening, leaving linear maps at
    /// `3f`: exact truncation, and `f <= 16` so that reals below `2^(62 - 3f) >= 2^14`
    /// keep the exact truncation's bound of `2^62` ([`crate::protocols::trunc`]).
    pub fn wide_allowed(&self) -> bool {
        self.exact_truncation && self.frac_bits <= WIDE_MAX_FRAC_BITS
    }

    /// The scale (fractional bits) a linear step of server weights lands at: `3f` when a
    /// term maps a wide opening, else `2f`, and `shift` more (the logits, [`Step::Linear`]).
    /// Its weights and coefficients are encoded to land there directly, so a term of a
    /// `f`-bit opening keeps `2f`-bit weights rather than being scaled up.
    pub fn linear_out_bits(&self, terms: &[Term], shift: u32) -> u32 {
        let f = self.frac_bits;
        match self.wide_linear(terms) {
            true => 3 * f + shift,
            false => 2 * f + shift,
        }
    }

    /// Whether only reveals read wire `w`.
    pub fn only_revealed(&self, w: WireId) -> bool {
        self.steps
            .iter()
            .all(|s| matches!(s, Step::Reveal { .. }) || !s.reads(&self.openings).contains(&w))
    }

    pub fn wide_linear(&self, terms: &[Term]) -> bool {
        terms
            .iter()
            .any(|t| matches!(t, Term::Private { open, .. } if self.openings[*open].wide))
    }

    /// A `LayerNorm` step's `(rows, d, c)`: its input `x` is `rows x d`, its scaled
    /// `z` has `c` columns.
    pub fn norm_shape(&self, x: WireId, z: WireId) -> (usize, usize, usize) {
        (self.wires[x].rows, self.wires[x].cols, self.wires[z].cols)
    }

    pub fn opening_shape(&self, open: OpenId) -> (usize, usize) {
        let o = &self.openings[open];
        let w = &self.wires[o.wire];
        (o.rows.count(w.rows), w.cols)
    }

    /// Human-readable shape of a step, e.g. `197x768`.
    pub fn step_shape(&self, step: &Step) -> String {
        let wire = |w: WireId| format!("{}x{}", self.wires[w].rows, self.wires[w].cols);
        match step {
            Step::Open { open } => {
                let (r, c) = self.opening_shape(*open);
                format!("{r}x{c}")
            }
            Step::Linear { out, .. }
            | Step::Relu { out, .. }
            | Step::Square { out, .. }
            | Step::Spline { out, .. }
            | Step::Shift { out, .. }
            | Step::Slice { out, .. } => wire(*out),
            Step::RowMax { x, .. } => wire(*x),
            Step::HeadMatMul { a, b, heads, .. } => {
                format!("{}x({}*{})", heads, wire(*a), wire(*b))
            }
            Step::LayerNorm {
                x, mix: Some(m), ..
            } => {
                format!("{}x({}*{})", m.heads, wire(*x), wire(m.v))
            }
            Step::LayerNorm { z, .. } => wire(*z),
            Step::Truncate { wires, wide } => {
                let n = shapes::truncate_len(self, wires) + shapes::truncate_len(self, wide);
                format!("{n} values")
            }
            Step::Reveal { wire: w, .. } => wire(*w),
        }
    }

    /// SHA-256 of the protocol version and the plan, in hex: what `serve` prints and a
    /// client pins with `--expect-digest`. It names the function (architecture and
    /// protocol parameters), not the server's secret weights.
    pub fn sha256_hex(&self) -> String {
        let mut bytes = PROTOCOL.to_le_bytes().to_vec();
        bytes.extend(serde_json::to_vec(self).expect("plan serializes"));
        use sha2::Digest;
        sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Bytes of all wires together: no single exchange of the online phase is larger,
    /// so it bounds the frames a peer may send once a session runs.
    pub fn max_exchange_bytes(&self) -> u64 {
        self.wires
            .iter()
            .map(|w| (w.rows as u64).saturating_mul(w.cols as u64))
            .fold(0u64, u64::saturating_add)
            .saturating_mul(8)
            .max(crate::transport::PRE_AUTH_FRAME)
    }

    /// Comparisons in one session (each a DCF evaluation per party): ReLU inputs,
    /// spline inputs per threshold, the row maxima's pairs, and each norm row per
    /// threshold of its inverse square root's guess.
    pub fn comparisons(&self) -> u64 {
        let size = |w: WireId| {
            let w = &self.wires[w];
            (w.rows as u64).saturating_mul(w.cols as u64)
        };
        self.steps
            .iter()
            .map(|s| match s {
                Step::Relu { x, .. } | Step::RowMax { x, .. } => size(*x),
                Step::Spline { x, func, .. } => {
                    size(*x).saturating_mul(func.thresholds().len() as u64)
                }
                Step::LayerNorm { x, inv_sqrt, .. } => {
                    (self.wires[*x].rows as u64).saturating_mul(inv_sqrt.thresholds().len() as u64)
                }
                _ => 0,
            })
            .fold(0u64, u64::saturating_add)
    }

    /// A stable digest of the plan, so the parties and the dealer can check they agree.
    pub fn digest(&self) -> u64 {
        let mut json = PROTOCOL.to_le_bytes().to_vec();
        json.extend(serde_json::to_vec(self).expect("plan serializes"));
        // FNV-1a: not a security boundary, just an agreement check.
        json.iter().fold(0xcbf29ce484222325u64, |h, &b| {
            (h ^ b as u64).wrapping_mul(0x100000001b3)
        })
    }
}

/// The server's plaintext weights for a plan, indexed by `WeightId`; bias vectors are
/// `1 x cols` matrices.
#[derive(Debug, Clone)]
pub struct PlanWeights {
    pub mats: Vec<Mat>,
}
