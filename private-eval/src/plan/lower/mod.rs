//! Lowering `AdapterSpec` + weights to a `SecurePlan` (docs/DESIGN.md section 3):
//! every linear piece is kept symbolic as an affine `Form` over wires and folded
//! offline; a form is materialized only where a nonlinear step needs its value. Openings
//! of a wire are shared by every server-weight map applied to it; the client's hidden
//! states are opened first so they travel before any round; only what reaches the CLS
//! logits is computed in the last adapter.

use std::collections::HashMap;

use cryptpeft_types::{Activation, AttentionKind};

use crate::arith::tensor::Mat;
use crate::model::{Block, Linear, Norm, OwcModel};
use crate::plan::truncation;
use crate::plan::*;

mod form;
use form::{diag, row, FTerm, Form, Map};

#[derive(Debug, thiserror::Error)]
pub enum LowerError {
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
        self.openings.push(Opening {
            wire,
            rows,
            wide: false,
        });
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
        self.body.push(Step::Linear {
            out,
            terms,
            bias,
            shift: 0,
        });
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
    /// weights: softmax `w = exp(s - max_row s)` (a max tree, a local shift and the exp
    /// spline); 2Quad (MPCFormer) `w = (s + 5)^2`, a public shift and a square;
    /// ReLU-softmax (MPCViT) `w = relu(s)`, with [`cryptpeft_types::RELU_SOFTMAX_EPS`]
    /// added to the sum. The division is LayerNorm's protocol on the row sums with power
    /// 2 (`w u^2`, `u = (sum w)^(-1/2)`, or Newton on `1/v` where
    /// [`crate::plan::shapes::reciprocal`] applies), after the product with the values `v`
    /// where the norm is fused ([`NormMix`]), else before. Returns the attention's output,
    /// heads side by side.
    fn attend(
        &mut self,
        s: WireId,
        v: WireId,
        (kind, heads): (AttentionKind, usize),
        bp: &str,
    ) -> WireId {
        let (rows, n) = (self.wires[s].rows, self.wires[s].cols);
        let bits = self.opts.relu_bits;
        let w = self.wire(&format!("{bp}.unnormalized"), rows, n, WireKind::Shared);
        let mut inv_sqrt = InvSqrtParams {
            power: 2,
            squares: false,
            ..self.opts.inv_sqrt
        };
        let eps = match kind {
            AttentionKind::Softmax => {
                let m = self.wire(&format!("{bp}.max"), rows, 1, WireKind::Shared);
                self.body.push(Step::RowMax { out: m, x: s, bits });
                let x = self.wire(&format!("{bp}.centred"), rows, n, WireKind::Shared);
                self.body.push(Step::Shift {
                    out: x,
                    x: s,
                    by: m,
                });
                self.body.push(Step::Spline {
                    out: w,
                    x,
                    func: SplineFn::Exp,
                    bits,
                });
                // The row's max contributes exp(0) = 1: sums lie in [1, n].
                inv_sqrt.min_exp = -1;
                inv_sqrt.max_exp = (n as f64).log2().ceil() as i32 + 1;
                0.0
            }
            AttentionKind::TwoQuad => {
                let shifted =
                    self.form(s, Rows::All)
                        .plus_bias(Mat::new(1, n, vec![TWO_QUAD_SHIFT; n]));
                let t = self.materialize(&shifted, &format!("{bp}.shifted"));
                self.body.push(Step::Square {
                    out: w,
                    x: t,
                    shift: 0,
                });
                0.0
            }
            _ => {
                self.body.push(Step::Relu {
                    out: w,
                    x: s,
                    bits,
                    shift: 0,
                });
                cryptpeft_types::RELU_SOFTMAX_EPS
            }
        };
        let (r, rq) = (self.wires[v].cols, rows / heads);
        let out = format!("{bp}.attn_out");
        if self.opts.exact_truncation && inv_sqrt.fusable() {
            let o = self.wire(&out, rq, r, WireKind::Shared);
            let z = self.wire(&format!("{bp}.mixed"), rows, r / heads, WireKind::Shared);
            self.body.push(Step::LayerNorm {
                out: o,
                x: w,
                z,
                eps,
                inv_sqrt,
                shifts: [0, 0],
                mix: Some(NormMix { v, heads }),
            });
            return o;
        }
        let p = self.wire(&format!("{bp}.weights"), rows, n, WireKind::Shared);
        self.body.push(Step::LayerNorm {
            out: p,
            x: w,
            z: w,
            eps,
            inv_sqrt,
            shifts: [0, 0],
            mix: None,
        });
        let o = self.wire(&out, rq, r, WireKind::Shared);
        self.body.push(Step::HeadMatMul {
            out: o,
            a: p,
            b: v,
            heads,
            kind: HeadProduct::Mix,
        });
        o
    }

    /// A transformer block on the form `y` (`[rows, r]`): attention with `heads` heads
    /// (pre-norm, residual), then the MLP (pre-norm, residual) and, for AdaptFormer, the
    /// parallel bottleneck on `y`. With `cls_only`, only what reaches the CLS row of the
    /// output is computed (dead-token elimination): one query row, a one-row MLP.
    fn block(
        &mut self,
        mut y: Form,
        blk: &Block,
        (attention, activation): (AttentionKind, Activation),
        h: usize,
        cls_only: bool,
        bp: &str,
    ) -> Form {
        let (n, r) = (y.rows, y.cols);
        let dh = r / h;
        if let Some(at) = &blk.attn {
            let qkv = self.norm_linear(
                &y,
                &blk.norm1,
                &at.qkv.transpose(),
                at.qkv_bias.as_deref(),
                &format!("{bp}.attn"),
            );
            // The scores' `1/sqrt(dh)`: LinAtten's token-mixing map (a server weight)
            // takes it, so the query maps keep their weights' size and their
            // precision at `f` fractional bits; before a softmax the query takes it.
            let inv_sqrt_dh = 1.0 / (dh as f64).sqrt();
            let linatten = attention == AttentionKind::LinAtten;
            let mut q = qkv
                .cols(0, r)
                .scale(if linatten { 1.0 } else { inv_sqrt_dh });
            if cls_only {
                q = q.cls();
            }
            // Keys and values need every row: materialized first, so the CLS query
            // reuses their all-rows openings.
            let k = self.materialize(&qkv.cols(r, 2 * r), &format!("{bp}.k"));
            let v = self.materialize(&qkv.cols(2 * r, 3 * r), &format!("{bp}.v"));
            let q = self.materialize(&q, &format!("{bp}.q"));
            let rq = self.wires[q].rows;
            let s = self.wire(&format!("{bp}.scores"), h * rq, n, WireKind::Shared);
            self.body.push(Step::HeadMatMul {
                out: s,
                a: q,
                b: k,
                heads: h,
                kind: HeadProduct::Scores,
            });
            let o = match attention {
                AttentionKind::Softmax | AttentionKind::TwoQuad | AttentionKind::ReluSoftmax => {
                    self.attend(s, v, (attention, h), bp)
                }
                _ => {
                    let tm = at
                        .token_mix
                        .as_ref()
                        .expect("LinAtten has a token-mixing map");
                    let pf = self
                        .form(s, Rows::All)
                        .right_mul(&tm.weight.transpose().map(|w| w * inv_sqrt_dh), &self.wires)
                        .plus_bias(row(&tm.bias, n));
                    let pw = self.materialize(&pf, &format!("{bp}.mixed"));
                    let o = self.wire(&format!("{bp}.attn_out"), rq, r, WireKind::Shared);
                    self.body.push(Step::HeadMatMul {
                        out: o,
                        a: pw,
                        b: v,
                        heads: h,
                        kind: HeadProduct::Mix,
                    });
                    o
                }
            };
            if cls_only {
                y = y.cls();
            }
            let proj = self
                .form(o, Rows::All)
                .right_mul(&at.proj.weight.transpose(), &self.wires)
                .plus_bias(row(&at.proj.bias, r));
            y = y.add(&proj);
        } else if cls_only {
            y = y.cls();
        }
        let hf = self.norm_linear(
            &y,
            &blk.norm2,
            &blk.fc1.weight.transpose(),
            Some(&blk.fc1.bias),
            &format!("{bp}.mlp"),
        );
        let hw = self.materialize(&hf, &format!("{bp}.fc1"));
        let g = self.activation(hw, activation, &format!("{bp}.act"));
        let fc2 = self
            .form(g, Rows::All)
            .right_mul(&blk.fc2.weight.transpose(), &self.wires)
            .plus_bias(row(&blk.fc2.bias, r));
        let mut out = y.add(&fc2);
        if let Some(pa) = &blk.parallel {
            let df = y
                .right_mul(&pa.down.weight.transpose(), &self.wires)
                .plus_bias(row(&pa.down.bias, pa.down.weight.rows));
            let dw = self.materialize(&df, &format!("{bp}.down"));
            let dg = self.activation(dw, Activation::Relu, &format!("{bp}.down_act"));
            let up = self
                .form(dg, Rows::All)
                .right_mul(&pa.up.weight.transpose(), &self.wires)
                .plus_bias(row(&pa.up.bias, r))
                .scale(pa.scale);
            out = out.add(&up);
        }
        out
    }

    /// An element-wise activation of wire `x` into a new wire.
    fn activation(&mut self, x: WireId, act: Activation, name: &str) -> WireId {
        let (rows, cols) = (self.wires[x].rows, self.wires[x].cols);
        let out = self.wire(name, rows, cols, WireKind::Shared);
        let bits = self.opts.relu_bits;
        self.body.push(match act {
            Activation::Square => Step::Square { out, x, shift: 0 },
            Activation::Gelu => Step::Spline {
                out,
                x,
                func: SplineFn::Gelu,
                bits,
            },
            _ => Step::Relu {
                out,
                x,
                bits,
                shift: 0,
            },
        });
        out
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
                    shifts: [0, 0],
                    mix: None,
                });
                with_b(self.form(out, Rows::All).plus_bias(row(beta, n).matmul(w)))
            }
        }
    }
}

impl Lowering {
    fn new(opts: LowerOptions, symbolic: bool) -> Result<Self, LowerError> {
        let min = opts.frac_bits + 2;
        if !(min..=64).contains(&opts.relu_bits) {
            return Err(LowerError::ReluBits {
                bits: opts.relu_bits,
                min,
            });
        }
        Ok(Lowering {
            opts,
            symbolic,
            wires: Vec::new(),
            openings: Vec::new(),
            opened: HashMap::new(),
            weights: Vec::new(),
            prologue: Vec::new(),
            body: Vec::new(),
        })
    }

    /// The client's hidden states `0..count`, each `[n, d]`.
    fn inputs(&mut self, count: usize, n: usize, d: usize) -> Vec<WireId> {
        (0..count)
            .map(|i| {
                self.wire(
                    &format!("hidden.{i}"),
                    n,
                    d,
                    WireKind::ClientInput { hidden: i },
                )
            })
            .collect()
    }

    /// The final norm and head on the CLS form `z`, revealed to the client: the plan.
    fn finish(mut self, z: &Form, final_norm: &Norm, head: &Linear) -> (SecurePlan, PlanWeights) {
        let logits = self.norm_linear(
            z,
            final_norm,
            &head.weight.transpose(),
            Some(&head.bias),
            "head",
        );
        let lwire = self.materialize(&logits, "logits");
        self.body.push(Step::Reveal {
            wire: lwire,
            shift: 0,
        });
        let weights = self
            .weights
            .iter()
            .map(|m| WeightShape {
                rows: m.rows,
                cols: m.cols,
            })
            .collect();
        let inputs = self
            .wires
            .iter()
            .filter(|w| matches!(w.kind, WireKind::ClientInput { .. }))
            .count();
        let mut steps = self.prologue;
        steps.extend(self.body);
        if self.opts.exact_truncation {
            let wide = self.opts.frac_bits <= WIDE_MAX_FRAC_BITS;
            steps = truncation::insert_truncations(
                steps,
                &mut self.openings,
                self.opts.frac_bits,
                wide,
            );
        }
        (
            SecurePlan {
                wires: self.wires,
                openings: self.openings,
                weights,
                steps,
                inputs,
                frac_bits: self.opts.frac_bits,
                exact_truncation: self.opts.exact_truncation,
            },
            PlanWeights { mats: self.weights },
        )
    }
}

/// Lowers a model to its plan and the server's folded weights.
pub fn lower(
    model: &OwcModel,
    opts: LowerOptions,
) -> Result<(SecurePlan, PlanWeights), LowerError> {
    let spec = &model.spec;
    let (n, d, r, h) = (
        model.backbone.tokens(),
        model.backbone.hidden_dim,
        spec.rank,
        spec.heads,
    );
    let mut lw = Lowering::new(opts, model.head.weight.is_symbolic())?;
    let hidden = lw.inputs(spec.scope + 1, n, d);
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
            let kinds = (spec.attention, spec.activation);
            y = lw.block(y, blk, kinds, h, cls_only, &format!("{p}.block.{bi}"));
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
    Ok(lw.finish(&z, &model.final_norm, &model.head))
}

/// Most terms the residual stream of [`lower_layers`] keeps before it is materialized:
/// the input and one block's attention and MLP outputs.
const STREAM_TERMS: usize = 3;

/// Lowers backbone layers run on shared data (the baselines, [`crate::baseline`]): the
/// client's hidden state `[n, d]` enters the first layer; softmax attention with the
/// backbone's heads and GELU MLPs; the last layer computes only the CLS row; then the
/// final norm and head.
pub fn lower_layers(
    layers: &[Block],
    backbone: &cryptpeft_types::BackboneSpec,
    final_norm: &Norm,
    head: &Linear,
    opts: LowerOptions,
) -> Result<(SecurePlan, PlanWeights), LowerError> {
    let (n, d) = (backbone.tokens(), backbone.hidden_dim);
    let mut lw = Lowering::new(opts, head.weight.is_symbolic())?;
    let x = lw.inputs(1, n, d)[0];
    let mut y = lw.form(x, Rows::All);
    for (i, blk) in layers.iter().enumerate() {
        let kinds = (AttentionKind::Softmax, Activation::Gelu);
        let last = i + 1 == layers.len();
        // Kept as a sum of opened terms, the residual stream would grow a term per
        // product and compose every earlier layer's weights into each norm's: weights,
        // the setup `E` and local products grow with the square of the depth. Past a
        // few terms it becomes a wire (one more opening).
        if y.terms.len() > STREAM_TERMS {
            let w = lw.materialize(&y, &format!("layer.{i}.in"));
            y = lw.form(w, Rows::All);
        }
        y = lw.block(y, blk, kinds, backbone.heads, last, &format!("layer.{i}"));
    }
    Ok(lw.finish(&y, final_norm, head))
}
