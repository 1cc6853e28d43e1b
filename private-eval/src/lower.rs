//! Lowering `AdapterSpec` + weights to a `SecurePlan` (DESIGN.md section 3):
//! every linear piece is kept symbolic as an affine [`Form`] over wires and folded
//! offline; a form is materialized only where a nonlinear step needs its value. Openings
//! of a wire are shared by every server-weight map applied to it; the client's hidden
//! states are opened first so they travel before any round; only what reaches the CLS
//! logits is computed in the last adapter.

use std::collections::HashMap;

use cryptpeft_types::{Activation, AttentionKind, NormKind};

use crate::model::{Norm, OwcModel};
use crate::plan::*;
use crate::tensor::Mat;

#[derive(Debug, thiserror::Error)]
pub enum LowerError {
    #[error("{what} is not supported under MPC yet (supported: LinAtten or no attention, ReLU MLP, affine/LayerNorm/no norm)")]
    Unsupported { what: String },
}

/// Options of the lowering.
#[derive(Debug, Clone, Copy)]
pub struct LowerOptions {
    pub frac_bits: u32,
    pub inv_sqrt: InvSqrtParams,
}

impl Default for LowerOptions {
    fn default() -> Self {
        Self {
            frac_bits: 16,
            inv_sqrt: InvSqrtParams::default(),
        }
    }
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

/// An affine function of wires: `sum_t map_t(wire_t[rows_t]) + bias` (bias per column).
#[derive(Debug, Clone)]
struct Form {
    rows: usize,
    cols: usize,
    terms: Vec<FTerm>,
    bias: Vec<f64>,
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
            bias: vec![0.0; w.cols],
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
        let bias = Mat::new(1, self.cols, self.bias.clone()).matmul(m).data;
        Form {
            rows: self.rows,
            cols: m.cols,
            terms,
            bias,
        }
    }

    fn plus_bias(mut self, b: &[f64]) -> Form {
        for (x, y) in self.bias.iter_mut().zip(b) {
            *x += y;
        }
        self
    }

    fn scale(mut self, c: f64) -> Form {
        for t in self.terms.iter_mut() {
            match &mut t.map {
                Map::Scalar { coef, .. } => *coef *= c,
                Map::Matrix(m) => *m = m.map(|v| v * c),
            }
        }
        self.bias.iter_mut().for_each(|b| *b *= c);
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
            bias: self.bias[from..to].to_vec(),
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
        let bias = self
            .bias
            .iter()
            .zip(&other.bias)
            .map(|(a, b)| a + b)
            .collect();
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
            if *coef == 1.0 && rows.count(w.rows) == f.rows && f.bias.iter().all(|&b| b == 0.0) {
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
        let bias = f
            .bias
            .iter()
            .any(|&b| b != 0.0)
            .then(|| self.weight(Mat::new(1, f.cols, f.bias.clone())));
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

    /// `Norm(x) * W + b` with `W` = `[in, out]`.
    fn norm_linear(&mut self, x: &Form, norm: &Norm, w: &Mat, b: &[f64], name: &str) -> Form {
        match norm.as_affine(x.cols) {
            Some((a, c)) => x
                .right_mul(&Mat::diag(&a).matmul(w), &self.wires)
                .plus_bias(&Mat::new(1, c.len(), c).matmul(w).data)
                .plus_bias(b),
            None => {
                let Norm::LayerNorm { gamma, beta, eps } = norm else {
                    unreachable!()
                };
                // The centred input scaled by 1/sqrt(d), folded exactly into the weights, so
                // the variance is a plain sum of squares (no fixed-point 1/d).
                let centre = Mat::centering(x.cols).map(|v| v / (x.cols as f64).sqrt());
                let xs = x.right_mul(&centre, &self.wires);
                let xw = self.materialize(&xs, &format!("{name}.ln_in"));
                let fold = Mat::centering(x.cols).matmul(&Mat::diag(gamma)).matmul(w);
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
                let beta_w = Mat::new(1, beta.len(), beta.clone()).matmul(w).data;
                self.form(out, Rows::All).plus_bias(&beta_w).plus_bias(b)
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
    match spec.attention {
        AttentionKind::LinAtten | AttentionKind::None => {}
        other => {
            return Err(LowerError::Unsupported {
                what: format!("attention `{other}`"),
            })
        }
    }
    if spec.activation != Activation::Relu {
        return Err(LowerError::Unsupported {
            what: format!("activation `{}`", spec.activation),
        });
    }
    let _ = NormKind::LayerNorm; // every norm kind is supported
    let (n, d, r, h) = (
        model.backbone.tokens(),
        model.backbone.hidden_dim,
        spec.rank,
        spec.heads,
    );
    let dh = r / h;
    let mut lw = Lowering {
        opts,
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
            .plus_bias(&ad.down.bias);
        for (bi, blk) in ad.blocks.iter().enumerate() {
            let cls_only = last && bi + 1 == ad.blocks.len();
            let bp = format!("{p}.block.{bi}");
            if let Some(at) = &blk.attn {
                let qkv = lw.norm_linear(
                    &y,
                    &blk.norm1,
                    &at.qkv.transpose(),
                    &vec![0.0; 3 * r],
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
                let tm = at
                    .token_mix
                    .as_ref()
                    .expect("LinAtten has a token-mixing map");
                let pf = lw
                    .form(s, Rows::All)
                    .right_mul(&tm.weight.transpose(), &lw.wires)
                    .plus_bias(&tm.bias);
                let pw = lw.materialize(&pf, &format!("{bp}.mixed"));
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
                    .plus_bias(&at.proj.bias);
                y = y.add(&proj);
            } else if cls_only {
                y = y.cls();
            }
            let hf = lw.norm_linear(
                &y,
                &blk.norm2,
                &blk.fc1.weight.transpose(),
                &blk.fc1.bias,
                &format!("{bp}.mlp"),
            );
            let hw = lw.materialize(&hf, &format!("{bp}.fc1"));
            let g = lw.wire(
                &format!("{bp}.relu"),
                lw.wires[hw].rows,
                r,
                WireKind::Shared,
            );
            lw.body.push(Step::Relu { out: g, x: hw });
            let fc2 = lw
                .form(g, Rows::All)
                .right_mul(&blk.fc2.weight.transpose(), &lw.wires)
                .plus_bias(&blk.fc2.bias);
            y = y.add(&fc2);
        }
        let out = y
            .right_mul(&ad.up.weight.transpose(), &lw.wires)
            .plus_bias(&ad.up.bias)
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
        &model.head.bias,
        "head",
    );
    let lwire = lw.materialize(&logits, "logits");
    lw.body.push(Step::Reveal { wire: lwire });
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
    Ok((
        SecurePlan {
            wires: lw.wires,
            openings: lw.openings,
            weights,
            steps,
            inputs: spec.scope + 1,
            frac_bits: opts.frac_bits,
        },
        PlanWeights { mats: lw.weights },
    ))
}
