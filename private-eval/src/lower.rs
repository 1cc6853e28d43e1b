//! Lowering `AdapterSpec` + weights to a `SecurePlan` (DESIGN.md section 3):
//! every linear piece is kept symbolic as an affine [`Form`] over wires and folded
//! offline; a form is materialized only where a nonlinear step needs its value. Openings
//! of a wire are shared by every server-weight map applied to it; the client's hidden
//! states are opened first so they travel before any round; only what reaches the CLS
//! logits is computed in the last adapter.

use std::collections::HashMap;

use cryptpeft_types::{Activation, AttentionKind};

use crate::model::{Norm, OwcModel};
use crate::plan::*;
use crate::tensor::Mat;

#[derive(Debug, thiserror::Error)]
pub enum LowerError {
    #[error("{what} is not supported under MPC yet (supported: LinAtten, 2Quad, ReLU-softmax or no attention, ReLU, GELU or square MLP, affine/LayerNorm/no norm)")]
    Unsupported { what: String },
    #[error("ReLU width {bits} bits: must be between {min} (f + 2) and 64")]
    ReluBits { bits: u32, min: u32 },
}

/// Options of the lowering.
#[derive(Debug, Clone, Copy)]
pub struct LowerOptions {
    pub frac_bits: u32,
    pub inv_sqrt: InvSqrtParams,
    /// Exact truncation with the dealer (the default); false: local truncation, one
    /// round per layer cheaper but wrong with a small probability per value.
    pub exact_truncation: bool,
    /// Width of ReLU's comparison: exact for inputs below `2^(relu_bits - 1 - frac_bits)`
    /// in magnitude; each bit costs 2 bytes of dealer keys per value per party.
    pub relu_bits: u32,
}

/// The trainer's 2Quad shift and ReLU-softmax epsilon (`cryptpeft_train::owc`).
const TWO_QUAD_SHIFT: f64 = 5.0;
const RELU_SOFTMAX_EPS: f64 = 1e-6;

/// Default ReLU width at `f = 16`: inputs below `2^15` in magnitude.
pub const RELU_BITS: u32 = 32;

impl Default for LowerOptions {
    fn default() -> Self {
        Self {
            frac_bits: 16,
            inv_sqrt: InvSqrtParams::default(),
            exact_truncation: true,
            relu_bits: RELU_BITS,
        }
    }
}

/// Under exact truncation: `Linear`, `HeadMatMul` and `Square` outputs stay at `2f` bits, and
/// every such wire is truncated, together with all others pending, just before the
/// first step that reads it, so independent layers share one exchange. A revealed
/// wire is truncated by the client in the clear instead.
fn insert_truncations(steps: Vec<Step>, openings: &[Opening]) -> Vec<Step> {
    let mut pending: Vec<WireId> = Vec::new();
    let mut out = Vec::with_capacity(steps.len());
    for mut step in steps {
        let reads: Vec<WireId> = match &mut step {
            Step::Open { open } => vec![openings[*open].wire],
            Step::Linear { terms, .. } => terms
                .iter()
                .filter_map(|t| match t {
                    Term::Public { wire, .. } => Some(*wire),
                    Term::Private { .. } => None,
                })
                .collect(),
            Step::HeadMatMul { a, b, .. } => vec![*a, *b],
            Step::Relu { x, .. }
            | Step::Square { x, .. }
            | Step::Gelu { x, .. }
            | Step::Slice { x, .. } => vec![*x],
            Step::LayerNorm { x, z, .. } => vec![*x, *z],
            Step::Truncate { .. } => Vec::new(),
            Step::Reveal { wire, raw } => {
                *raw = pending.contains(wire);
                pending.retain(|w| w != &*wire);
                Vec::new()
            }
        };
        if reads.iter().any(|w| pending.contains(w)) {
            out.push(Step::Truncate {
                wires: std::mem::take(&mut pending),
            });
        }
        match &step {
            Step::Linear { out: o, .. }
            | Step::HeadMatMul { out: o, .. }
            | Step::Square { out: o, .. }
            | Step::Gelu { out: o, .. } => pending.push(*o),
            _ => {}
        }
        out.push(step);
    }
    out
}

#[derive(Debug, Clone)]
enum Map {
    /// Public `coef * x[:, from..to]`.
    Scalar { coef: f64, from: usize, to: usize },
    /// Server-private `x * M`, `M` spanning the wire's full width.
    Matrix(Mat),
}

#[derive(Debug, Clone)]
struct FTerm {
    wire: WireId,
    rows: Rows,
    map: Map,
}

/// An affine function of wires: `sum_t map_t(wire_t[rows_t]) + bias`; the bias is a
/// `1 x cols` row, `None` where no bias reaches the form (decided by structure, not by
/// value, so that lowering shapes alone gives the same plan).
#[derive(Debug, Clone)]
struct Form {
    rows: usize,
    cols: usize,
    terms: Vec<FTerm>,
    bias: Option<Mat>,
}

/// A vector as a `1 x n` row; an empty vector is a symbolic one (a weightless model).
fn row(v: &[f64], n: usize) -> Mat {
    if v.is_empty() {
        Mat::symbolic(1, n)
    } else {
        Mat::new(1, n, v.to_vec())
    }
}

/// `diag(v)`, symbolic for an empty `v`.
fn diag(v: &[f64], n: usize) -> Mat {
    if v.is_empty() {
        Mat::symbolic(n, n)
    } else {
        Mat::diag(v)
    }
}

impl Form {
    fn wire(w: &Wire, id: WireId, rows: Rows) -> Form {
        Form {
            rows: rows.count(w.rows),
            cols: w.cols,
            terms: vec![FTerm {
                wire: id,
                rows,
                map: Map::Scalar {
                    coef: 1.0,
                    from: 0,
                    to: w.cols,
                },
            }],
            bias: None,
        }
    }

    /// `self * m`, with `m` = `[cols, out]`.
    fn right_mul(&self, m: &Mat, wires: &[Wire]) -> Form {
        assert_eq!(m.rows, self.cols, "form width mismatch");
        let terms = self
            .terms
            .iter()
            .map(|t| FTerm {
                wire: t.wire,
                rows: t.rows,
                map: Map::Matrix(match &t.map {
                    Map::Scalar { coef, from, .. } => {
                        m.map(|v| v * coef).pad_rows(*from, wires[t.wire].cols)
                    }
                    Map::Matrix(a) => a.matmul(m),
                }),
            })
            .collect();
        let bias = self.bias.as_ref().map(|b| b.matmul(m));
        Form {
            rows: self.rows,
            cols: m.cols,
            terms,
            bias,
        }
    }

    fn plus_bias(mut self, b: Mat) -> Form {
        self.bias = Some(match self.bias {
            Some(a) => a.add(&b),
            None => b,
        });
        self
    }

    fn scale(mut self, c: f64) -> Form {
        for t in self.terms.iter_mut() {
            match &mut t.map {
                Map::Scalar { coef, .. } => *coef *= c,
                Map::Matrix(m) => *m = m.map(|v| v * c),
            }
        }
        self.bias = self.bias.map(|b| b.map(|v| v * c));
        self
    }

    /// Public column slice `from..to`.
    fn cols(&self, from: usize, to: usize) -> Form {
        let terms = self
            .terms
            .iter()
            .map(|t| FTerm {
                wire: t.wire,
                rows: t.rows,
                map: match &t.map {
                    Map::Scalar { coef, from: f, .. } => Map::Scalar {
                        coef: *coef,
                        from: f + from,
                        to: f + to,
                    },
                    Map::Matrix(m) => Map::Matrix(m.cols_range(from, to)),
                },
            })
            .collect();
        Form {
            rows: self.rows,
            cols: to - from,
            terms,
            bias: self.bias.as_ref().map(|b| b.cols_range(from, to)),
        }
    }

    /// Only the CLS row.
    fn cls(&self) -> Form {
        let mut f = self.clone();
        f.rows = 1;
        f.terms.iter_mut().for_each(|t| t.rows = Rows::Cls);
        f
    }

    fn add(&self, other: &Form) -> Form {
        assert_eq!(
            (self.rows, self.cols),
            (other.rows, other.cols),
            "form shape mismatch"
        );
        let mut terms = self.terms.clone();
        for t in &other.terms {
            let same = terms.iter_mut().find(|u| {
                u.wire == t.wire
                    && u.rows == t.rows
                    && match (&u.map, &t.map) {
                        (Map::Matrix(_), Map::Matrix(_)) => true,
                        (
                            Map::Scalar { from: a, to: b, .. },
                            Map::Scalar { from: c, to: d, .. },
                        ) => (a, b) == (c, d),
                        _ => false,
                    }
            });
            match same {
                Some(u) => match (&mut u.map, &t.map) {
                    (Map::Matrix(a), Map::Matrix(b)) => *a = a.add(b),
                    (Map::Scalar { coef: a, .. }, Map::Scalar { coef: b, .. }) => *a += b,
                    _ => unreachable!(),
                },
                None => terms.push(t.clone()),
            }
        }
        let bias = match (&self.bias, &other.bias) {
            (Some(a), Some(b)) => Some(a.add(b)),
            (a, b) => a.clone().or(b.clone()),
        };
        Form {
            rows: self.rows,
            cols: self.cols,
            terms,
            bias,
        }
    }
}

struct Lowering {
    opts: LowerOptions,
    /// Lowering shapes alone (a weightless model, see `OwcModel::symbolic`).
    symbolic: bool,
    wires: Vec<Wire>,
    openings: Vec<Opening>,
    opened: HashMap<(WireId, Rows), OpenId>,
    weights: Vec<Mat>,
    prologue: Vec<Step>,
    body: Vec<Step>,
}

impl Lowering {
    fn wire(&mut self, name: &str, rows: usize, cols: usize, kind: WireKind) -> WireId {
        self.wires.push(Wire {
            name: name.into(),
            rows,
            cols,
            kind,
        });
        self.wires.len() - 1
    }

    fn form(&self, id: WireId, rows: Rows) -> Form {
        Form::wire(&self.wires[id], id, rows)
    }

    fn weight(&mut self, m: Mat) -> WeightId {
        self.weights.push(m);
        self.weights.len() - 1
    }

    /// The opening covering `wire[rows]`, created on first use.
    fn open(&mut self, wire: WireId, rows: Rows) -> (OpenId, bool) {
        if rows == Rows::Cls {
            if let Some(&o) = self.opened.get(&(wire, Rows::All)) {
                return (o, true);
            }
        }
        if let Some(&o) = self.opened.get(&(wire, rows)) {
            return (o, false);
        }
        self.openings.push(Opening { wire, rows });
        let id = self.openings.len() - 1;
        self.opened.insert((wire, rows), id);
        let step = Step::Open { open: id };
        match self.wires[wire].kind {
            WireKind::ClientInput { .. } => self.prologue.push(step),
            WireKind::Shared => self.body.push(step),
        }
        (id, false)
    }

    /// Computes a form's value as a new shared wire (or returns the wire it already is).
    fn materialize(&mut self, f: &Form, name: &str) -> WireId {
        let f = self.lift_scalar_slices(f);
        if let [FTerm {
            wire,
            rows,
            map: Map::Scalar { coef, .. },
        }] = f.terms.as_slice()
        {
            let w = &self.wires[*wire];
            if *coef == 1.0 && rows.count(w.rows) == f.rows && f.bias.is_none() {
                return *wire;
            }
        }
        let mut terms = Vec::new();
        for t in &f.terms {
            match &t.map {
                Map::Scalar { coef, .. } => terms.push(Term::Public {
                    wire: t.wire,
                    rows: t.rows,
                    coef: *coef,
                }),
                Map::Matrix(m) => {
                    let (open, cls) = self.open(t.wire, t.rows);
                    let weight = self.weight(m.clone());
                    terms.push(Term::Private { open, weight, cls });
                }
            }
        }
        let bias = f.bias.clone().map(|b| self.weight(b));
        let out = self.wire(name, f.rows, f.cols, WireKind::Shared);
        self.body.push(Step::Linear { out, terms, bias });
        out
    }

    /// Rewrites public column slices of wires as local slice steps, so that every public
    /// term spans its whole wire.
    fn lift_scalar_slices(&mut self, f: &Form) -> Form {
        let mut out = f.clone();
        for t in out.terms.iter_mut() {
            if let Map::Scalar { coef, from, to } = t.map {
                let w = self.wires[t.wire].clone();
                if (from, to) != (0, w.cols) {
                    let id = self.wire(
                        &format!("{}[{from}..{to}]", w.name),
                        w.rows,
                        to - from,
                        WireKind::Shared,
                    );
                    self.body.push(Step::Slice {
                        out: id,
                        x: t.wire,
                        from,
                        to,
                    });
                    t.wire = id;
                    t.map = Map::Scalar {
                        coef,
                        from: 0,
                        to: to - from,
                    };
                }
            }
        }
        out
    }

    /// `I - 11^T / n`, symbolic when lowering shapes alone.
    fn centering(&self, n: usize) -> Mat {
        if self.symbolic {
            Mat::symbolic(n, n)
        } else {
            Mat::centering(n)
        }
    }

    /// `Norm(x) * W + b` with `W` = `[in, out]`.
    /// Attention weights by a row normalization `w / sum_row w` of non-negative
    /// weights: 2Quad (MPCFormer) `w = (s + 5)^2`, a public shift and a square;
    /// ReLU-softmax (MPCViT) `w = relu(s)`, with `1e-6` added to the sum. The division
    /// is LayerNorm's protocol on the row sums with power 2: `w u^2`, `u = (sum w)^(-1/2)`.
    fn row_normalized(&mut self, s: WireId, kind: AttentionKind, bp: &str) -> WireId {
        let (rows, n) = (self.wires[s].rows, self.wires[s].cols);
        let w = self.wire(&format!("{bp}.unnormalized"), rows, n, WireKind::Shared);
        let eps = match kind {
            AttentionKind::TwoQuad => {
                let shifted =
                    self.form(s, Rows::All)
                        .plus_bias(Mat::new(1, n, vec![TWO_QUAD_SHIFT; n]));
                let t = self.materialize(&shifted, &format!("{bp}.shifted"));
                self.body.push(Step::Square { out: w, x: t });
                0.0
            }
            _ => {
                self.body.push(Step::Relu {
                    out: w,
                    x: s,
                    bits: self.opts.relu_bits,
                });
                RELU_SOFTMAX_EPS
            }
        };
        let p = self.wire(&format!("{bp}.weights"), rows, n, WireKind::Shared);
        self.body.push(Step::LayerNorm {
            out: p,
            x: w,
            z: w,
            eps,
            inv_sqrt: InvSqrtParams {
                power: 2,
                squares: false,
                ..self.opts.inv_sqrt
            },
        });
        p
    }

    fn norm_linear(
        &mut self,
        x: &Form,
        norm: &Norm,
        w: &Mat,
        b: Option<&[f64]>,
        name: &str,
    ) -> Form {
        let n = x.cols;
        let with_b = |f: Form| match b {
            Some(b) => f.plus_bias(row(b, w.cols)),
            None => f,
        };
        match norm {
            Norm::None => with_b(x.right_mul(w, &self.wires)),
            Norm::Affine { .. } => {
                let (a, c) = norm.as_affine(n).expect("affine norm");
                with_b(
                    x.right_mul(&diag(&a, n).matmul(w), &self.wires)
                        .plus_bias(row(&c, n).matmul(w)),
                )
            }
            Norm::LayerNorm { gamma, beta, eps } => {
                // The centred input scaled by 1/sqrt(d), folded exactly into the weights, so
                // the variance is a plain sum of squares (no fixed-point 1/d).
                let centre = self.centering(n).map(|v| v / (n as f64).sqrt());
                let xs = x.right_mul(&centre, &self.wires);
                let xw = self.materialize(&xs, &format!("{name}.ln_in"));
                let fold = self.centering(n).matmul(&diag(gamma, n)).matmul(w);
                let z = x.right_mul(&fold, &self.wires);
                let zw = self.materialize(&z, &format!("{name}.ln_z"));
                let out = self.wire(&format!("{name}.ln_out"), x.rows, w.cols, WireKind::Shared);
                self.body.push(Step::LayerNorm {
                    out,
                    x: xw,
                    z: zw,
                    eps: *eps,
                    inv_sqrt: self.opts.inv_sqrt,
                });
                with_b(self.form(out, Rows::All).plus_bias(row(beta, n).matmul(w)))
            }
        }
    }
}

/// Lowers a model to its plan and the server's folded weights.
pub fn lower(
    model: &OwcModel,
    opts: LowerOptions,
) -> Result<(SecurePlan, PlanWeights), LowerError> {
    let spec = &model.spec;
    let min = opts.frac_bits + 2;
    if !(min..=64).contains(&opts.relu_bits) {
        return Err(LowerError::ReluBits {
            bits: opts.relu_bits,
            min,
        });
    }
    match spec.attention {
        AttentionKind::LinAtten
        | AttentionKind::TwoQuad
        | AttentionKind::ReluSoftmax
        | AttentionKind::None => {}
        other => {
            return Err(LowerError::Unsupported {
                what: format!("attention `{other}`"),
            })
        }
    }
    let (n, d, r, h) = (
        model.backbone.tokens(),
        model.backbone.hidden_dim,
        spec.rank,
        spec.heads,
    );
    let dh = r / h;
    let mut lw = Lowering {
        opts,
        symbolic: model.head.weight.is_symbolic(),
        wires: Vec::new(),
        openings: Vec::new(),
        opened: HashMap::new(),
        weights: Vec::new(),
        prologue: Vec::new(),
        body: Vec::new(),
    };
    let hidden: Vec<WireId> = (0..=spec.scope)
        .map(|i| {
            lw.wire(
                &format!("hidden.{i}"),
                n,
                d,
                WireKind::ClientInput { hidden: i },
            )
        })
        .collect();
    let mut a: Option<Form> = None;
    for (j, ad) in model.adapters.iter().enumerate() {
        let last = j + 1 == spec.scope;
        let x = lw.form(hidden[j], Rows::All);
        let u = match &a {
            Some(a) => x.add(a),
            None => x,
        };
        let p = format!("adapter.{j}");
        let mut y = u
            .right_mul(&ad.down.weight.transpose(), &lw.wires)
            .plus_bias(row(&ad.down.bias, r));
        for (bi, blk) in ad.blocks.iter().enumerate() {
            let cls_only = last && bi + 1 == ad.blocks.len();
            let bp = format!("{p}.block.{bi}");
            if let Some(at) = &blk.attn {
                let qkv = lw.norm_linear(
                    &y,
                    &blk.norm1,
                    &at.qkv.transpose(),
                    None,
                    &format!("{bp}.attn"),
                );
                let mut q = qkv.cols(0, r).scale(1.0 / (dh as f64).sqrt());
                if cls_only {
                    q = q.cls();
                }
                // Keys and values need every row: materialized first, so the CLS query
                // reuses their all-rows openings.
                let k = lw.materialize(&qkv.cols(r, 2 * r), &format!("{bp}.k"));
                let v = lw.materialize(&qkv.cols(2 * r, 3 * r), &format!("{bp}.v"));
                let q = lw.materialize(&q, &format!("{bp}.q"));
                let rq = lw.wires[q].rows;
                let s = lw.wire(&format!("{bp}.scores"), h * rq, n, WireKind::Shared);
                lw.body.push(Step::HeadMatMul {
                    out: s,
                    a: q,
                    b: k,
                    heads: h,
                    kind: HeadProduct::Scores,
                });
                let pw = match spec.attention {
                    AttentionKind::TwoQuad | AttentionKind::ReluSoftmax => {
                        lw.row_normalized(s, spec.attention, &bp)
                    }
                    _ => {
                        let tm = at
                            .token_mix
                            .as_ref()
                            .expect("LinAtten has a token-mixing map");
                        let pf = lw
                            .form(s, Rows::All)
                            .right_mul(&tm.weight.transpose(), &lw.wires)
                            .plus_bias(row(&tm.bias, n));
                        lw.materialize(&pf, &format!("{bp}.mixed"))
                    }
                };
                let o = lw.wire(&format!("{bp}.attn_out"), rq, r, WireKind::Shared);
                lw.body.push(Step::HeadMatMul {
                    out: o,
                    a: pw,
                    b: v,
                    heads: h,
                    kind: HeadProduct::Mix,
                });
                if cls_only {
                    y = y.cls();
                }
                let proj = lw
                    .form(o, Rows::All)
                    .right_mul(&at.proj.weight.transpose(), &lw.wires)
                    .plus_bias(row(&at.proj.bias, r));
                y = y.add(&proj);
            } else if cls_only {
                y = y.cls();
            }
            let hf = lw.norm_linear(
                &y,
                &blk.norm2,
                &blk.fc1.weight.transpose(),
                Some(&blk.fc1.bias),
                &format!("{bp}.mlp"),
            );
            let hw = lw.materialize(&hf, &format!("{bp}.fc1"));
            let g = lw.wire(
                &format!("{bp}.relu"),
                lw.wires[hw].rows,
                r,
                WireKind::Shared,
            );
            lw.body.push(match spec.activation {
                Activation::Square => Step::Square { out: g, x: hw },
                Activation::Gelu => Step::Gelu { out: g, x: hw },
                _ => Step::Relu {
                    out: g,
                    x: hw,
                    bits: lw.opts.relu_bits,
                },
            });
            let fc2 = lw
                .form(g, Rows::All)
                .right_mul(&blk.fc2.weight.transpose(), &lw.wires)
                .plus_bias(row(&blk.fc2.bias, r));
            y = y.add(&fc2);
        }
        let out = y
            .right_mul(&ad.up.weight.transpose(), &lw.wires)
            .plus_bias(row(&ad.up.bias, d))
            .scale(spec.scale);
        a = Some(out.add(&if last { u.cls() } else { u }));
    }
    let z = lw
        .form(hidden[spec.scope], Rows::Cls)
        .add(a.as_ref().expect("scope >= 1"));
    let logits = lw.norm_linear(
        &z,
        &model.final_norm,
        &model.head.weight.transpose(),
        Some(&model.head.bias),
        "head",
    );
    let lwire = lw.materialize(&logits, "logits");
    lw.body.push(Step::Reveal {
        wire: lwire,
        raw: false,
    });
    let weights = lw
        .weights
        .iter()
        .map(|m| WeightShape {
            rows: m.rows,
            cols: m.cols,
        })
        .collect();
    let mut steps = lw.prologue;
    steps.extend(lw.body);
    if opts.exact_truncation {
        steps = insert_truncations(steps, &lw.openings);
    }
    Ok((
        SecurePlan {
            wires: lw.wires,
            openings: lw.openings,
            weights,
            steps,
            inputs: spec.scope + 1,
            frac_bits: opts.frac_bits,
            exact_truncation: opts.exact_truncation,
        },
        PlanWeights { mats: lw.weights },
    ))
}
