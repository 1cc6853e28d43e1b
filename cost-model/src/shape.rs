//! The plan of a spec without weights, for pricing the candidates of a search.
//!
//! `private_eval::lower::lower` needs weights because it folds them (f64 matrix
//! products, about 0.1 s at ViT-B/16 scale). The plan itself depends only on shapes,
//! so this module replays the same lowering symbolically: every server matrix is just
//! its shape and every bias just "zero or not". For generic weights (nonzero biases,
//! as any trained or randomly initialised model has) the result equals `lower`'s plan
//! step for step, wire for wire; `tests/exact.rs` asserts it on random specs. (A
//! model whose folded biases are exactly zero where a generic one's are not can lower
//! to a plan with fewer bias weights; its communication is the same.)
//! Keep this in step with `private-eval/src/lower.rs`.

use std::collections::HashMap;

use cryptpeft_types::{Activation, AdapterSpec, AttentionKind, BackboneSpec, NormKind};
use private_eval::lower::{LowerError, LowerOptions};
use private_eval::plan::*;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Map {
    Scalar {
        coef: f64,
        from: usize,
        to: usize,
    },
    /// A server matrix of this shape.
    Matrix {
        rows: usize,
        cols: usize,
    },
}

#[derive(Debug, Clone)]
struct FTerm {
    wire: WireId,
    rows: Rows,
    map: Map,
}

#[derive(Debug, Clone)]
struct Form {
    rows: usize,
    cols: usize,
    terms: Vec<FTerm>,
    bias: bool,
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
            bias: false,
        }
    }

    /// `self * M` with `M` of shape `[self.cols, out]`.
    fn right_mul(&self, out: usize, wires: &[Wire]) -> Form {
        let terms = self
            .terms
            .iter()
            .map(|t| FTerm {
                wire: t.wire,
                rows: t.rows,
                map: match t.map {
                    Map::Scalar { .. } => Map::Matrix {
                        rows: wires[t.wire].cols,
                        cols: out,
                    },
                    Map::Matrix { rows, .. } => Map::Matrix { rows, cols: out },
                },
            })
            .collect();
        Form {
            rows: self.rows,
            cols: out,
            terms,
            bias: self.bias,
        }
    }

    fn plus_bias(mut self, nonzero: bool) -> Form {
        self.bias |= nonzero;
        self
    }

    fn scale(mut self, c: f64) -> Form {
        for t in self.terms.iter_mut() {
            if let Map::Scalar { coef, .. } = &mut t.map {
                *coef *= c;
            }
        }
        self
    }

    fn cols(&self, from: usize, to: usize) -> Form {
        let terms = self
            .terms
            .iter()
            .map(|t| FTerm {
                wire: t.wire,
                rows: t.rows,
                map: match t.map {
                    Map::Scalar { coef, from: f, .. } => Map::Scalar {
                        coef,
                        from: f + from,
                        to: f + to,
                    },
                    Map::Matrix { rows, .. } => Map::Matrix {
                        rows,
                        cols: to - from,
                    },
                },
            })
            .collect();
        Form {
            rows: self.rows,
            cols: to - from,
            terms,
            bias: self.bias,
        }
    }

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
                        (Map::Matrix { .. }, Map::Matrix { .. }) => true,
                        (
                            Map::Scalar { from: a, to: b, .. },
                            Map::Scalar { from: c, to: d, .. },
                        ) => (a, b) == (c, d),
                        _ => false,
                    }
            });
            match same {
                Some(u) => {
                    if let (Map::Scalar { coef: a, .. }, Map::Scalar { coef: b, .. }) =
                        (&mut u.map, &t.map)
                    {
                        *a += b;
                    }
                }
                None => terms.push(t.clone()),
            }
        }
        Form {
            rows: self.rows,
            cols: self.cols,
            terms,
            bias: self.bias || other.bias,
        }
    }
}

struct Lowering {
    opts: LowerOptions,
    wires: Vec<Wire>,
    openings: Vec<Opening>,
    opened: HashMap<(WireId, Rows), OpenId>,
    weights: Vec<WeightShape>,
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

    fn weight(&mut self, rows: usize, cols: usize) -> WeightId {
        self.weights.push(WeightShape { rows, cols });
        self.weights.len() - 1
    }

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

    fn materialize(&mut self, f: &Form, name: &str) -> WireId {
        let f = self.lift_scalar_slices(f);
        if let [FTerm {
            wire,
            rows,
            map: Map::Scalar { coef, .. },
        }] = f.terms.as_slice()
        {
            let w = &self.wires[*wire];
            if *coef == 1.0 && rows.count(w.rows) == f.rows && !f.bias {
                return *wire;
            }
        }
        let mut terms = Vec::new();
        for t in &f.terms {
            match t.map {
                Map::Scalar { coef, .. } => terms.push(Term::Public {
                    wire: t.wire,
                    rows: t.rows,
                    coef,
                }),
                Map::Matrix { rows, cols } => {
                    let (open, cls) = self.open(t.wire, t.rows);
                    let weight = self.weight(rows, cols);
                    terms.push(Term::Private { open, weight, cls });
                }
            }
        }
        let bias = f.bias.then(|| self.weight(1, f.cols));
        let out = self.wire(name, f.rows, f.cols, WireKind::Shared);
        self.body.push(Step::Linear { out, terms, bias });
        out
    }

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

    /// `Norm(x) * W + b`, `W` with `out` columns; `norm_bias`: the affine norm's shift
    /// is nonzero (BatchNorm-style), `b`: the layer's bias is nonzero.
    fn norm_linear(
        &mut self,
        x: &Form,
        norm: NormKind,
        eps: f64,
        out: usize,
        b: bool,
        name: &str,
    ) -> Form {
        match norm {
            NormKind::Affine => x.right_mul(out, &self.wires).plus_bias(true).plus_bias(b),
            NormKind::None => x.right_mul(out, &self.wires).plus_bias(false).plus_bias(b),
            NormKind::LayerNorm => {
                // Centring removes a bias exactly when it is constant: always at width 1.
                let centred = |f: Form| Form {
                    bias: f.bias && x.cols > 1,
                    ..f
                };
                let xs = centred(x.right_mul(x.cols, &self.wires));
                let xw = self.materialize(&xs, &format!("{name}.ln_in"));
                let z = centred(x.right_mul(out, &self.wires));
                let zw = self.materialize(&z, &format!("{name}.ln_z"));
                let o = self.wire(&format!("{name}.ln_out"), x.rows, out, WireKind::Shared);
                self.body.push(Step::LayerNorm {
                    out: o,
                    x: xw,
                    z: zw,
                    eps,
                    inv_sqrt: self.opts.inv_sqrt,
                });
                self.form(o, Rows::All).plus_bias(true).plus_bias(b)
            }
        }
    }
}

/// The plan `lower::lower` produces for `spec` on `backbone` with `classes` outputs and
/// default options, without weights (see the module doc). Microseconds at ViT-B/16.
pub fn plan_shape_only(
    spec: &AdapterSpec,
    backbone: &BackboneSpec,
    classes: usize,
) -> Result<SecurePlan, LowerError> {
    plan_shape_only_with(spec, backbone, classes, LowerOptions::default())
}

pub fn plan_shape_only_with(
    spec: &AdapterSpec,
    backbone: &BackboneSpec,
    classes: usize,
    opts: LowerOptions,
) -> Result<SecurePlan, LowerError> {
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
    let (n, d, r, h) = (
        backbone.tokens(),
        backbone.hidden_dim,
        spec.rank,
        spec.heads,
    );
    let eps = backbone.norm_eps;
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
    let dh = r / h;
    let mut a: Option<Form> = None;
    for (j, &hj) in hidden[..spec.scope].iter().enumerate() {
        let last = j + 1 == spec.scope;
        let x = lw.form(hj, Rows::All);
        let u = match &a {
            Some(a) => x.add(a),
            None => x,
        };
        let p = format!("adapter.{j}");
        let mut y = u.right_mul(r, &lw.wires).plus_bias(true);
        for bi in 0..spec.blocks {
            let cls_only = last && bi + 1 == spec.blocks;
            let bp = format!("{p}.block.{bi}");
            let has_attn = spec.attention != AttentionKind::None;
            if has_attn {
                let qkv = lw.norm_linear(&y, spec.norm, eps, 3 * r, false, &format!("{bp}.attn"));
                let mut q = qkv.cols(0, r).scale(1.0 / (dh as f64).sqrt());
                if cls_only {
                    q = q.cls();
                }
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
                let pf = lw
                    .form(s, Rows::All)
                    .right_mul(n, &lw.wires)
                    .plus_bias(true);
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
                    .right_mul(r, &lw.wires)
                    .plus_bias(true);
                y = y.add(&proj);
            } else if cls_only {
                y = y.cls();
            }
            // Without attention the first norm is absent; the second is the spec's.
            let hf = lw.norm_linear(&y, spec.norm, eps, r, true, &format!("{bp}.mlp"));
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
                .right_mul(r, &lw.wires)
                .plus_bias(true);
            y = y.add(&fc2);
        }
        let out = y.right_mul(d, &lw.wires).plus_bias(true).scale(spec.scale);
        a = Some(out.add(&if last { u.cls() } else { u }));
    }
    let z = lw
        .form(hidden[spec.scope], Rows::Cls)
        .add(a.as_ref().expect("scope >= 1"));
    let logits = lw.norm_linear(&z, spec.norm, eps, classes, true, "head");
    let lwire = lw.materialize(&logits, "logits");
    lw.body.push(Step::Reveal { wire: lwire });
    let mut steps = lw.prologue;
    steps.extend(lw.body);
    Ok(SecurePlan {
        wires: lw.wires,
        openings: lw.openings,
        weights: lw.weights,
        steps,
        inputs: spec.scope + 1,
        frac_bits: opts.frac_bits,
    })
}
