//! Runs a `SecurePlan` on plaintext f64 values: checks the lowering (folding,
//! dead-token elimination) against the reference independently of the cryptography.

use crate::arith::tensor::Mat;
use crate::plan::layout::{head_assemble, head_operands, select_rows, Grid};
use crate::plan::*;

fn to_grid(m: &Mat) -> Grid<f64> {
    Grid {
        rows: m.rows,
        cols: m.cols,
        data: m.data.clone(),
    }
}
fn to_mat(g: Grid<f64>) -> Mat {
    Mat::new(g.rows, g.cols, g.data)
}

/// Evaluates the plan in f64 and returns the revealed logits.
pub fn eval(plan: &SecurePlan, weights: &PlanWeights, hidden: &[Mat]) -> Vec<f64> {
    eval_wires(plan, weights, hidden, false).0
}

/// Which of a plan's values [`eval_rounded`] puts on the fixed-point grid of `f`
/// fractional bits, so that each source of fixed-point error is measured on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rounding {
    /// The server's weights (`Some(None)`: all of them, `Some(Some(w))`: weight `w`).
    pub weights: Option<Option<WeightId>>,
    /// The client's hidden states.
    pub inputs: bool,
    /// Every wire a `Truncate` step truncates, floored as an exact truncation leaves it
    /// (to within the one unit a faithful truncation may add); truncations fused into a
    /// gate's opening are not modelled.
    pub truncations: bool,
}

/// [`eval`] with the values `r` names rounded to the fixed-point grid (weights at the
/// bits the server encodes them with, [`crate::plan::shapes::weight_bits`], the rest at
/// `f`): the logit error each part of the encoding causes, apart from the protocols.
pub fn eval_rounded(
    plan: &SecurePlan,
    weights: &PlanWeights,
    hidden: &[Mat],
    r: Rounding,
) -> Vec<f64> {
    let round = |m: &Mat, bits: u32| {
        let grid = (1u64 << bits) as f64;
        m.map(|v| (v * grid).round() / grid)
    };
    // Each weight at the bits the server encodes it with.
    let bits = crate::plan::shapes::weight_bits(plan);
    let weights = PlanWeights {
        mats: weights
            .mats
            .iter()
            .enumerate()
            .map(|(i, m)| match r.weights {
                Some(w) if w.is_none_or(|w| w == i) => round(m, bits[i]),
                _ => m.clone(),
            })
            .collect(),
    };
    let hidden: Vec<Mat> = match r.inputs {
        true => hidden.iter().map(|x| round(x, plan.frac_bits)).collect(),
        false => hidden.to_vec(),
    };
    eval_wires(plan, &weights, &hidden, r.truncations).0
}

/// Each wire's name and largest absolute value in a plaintext run.
pub fn wire_magnitudes(
    plan: &SecurePlan,
    weights: &PlanWeights,
    hidden: &[Mat],
) -> Vec<(String, f64)> {
    let (_, vals) = eval_wires(plan, weights, hidden, false);
    plan.wires
        .iter()
        .zip(vals)
        .map(|(w, v)| {
            (
                w.name.clone(),
                v.map_or(0.0, |m| m.data.iter().fold(0.0, |a: f64, b| a.max(b.abs()))),
            )
        })
        .collect()
}

fn eval_wires(
    plan: &SecurePlan,
    weights: &PlanWeights,
    hidden: &[Mat],
    floor_truncated: bool,
) -> (Vec<f64>, Vec<Option<Mat>>) {
    let grid = (1u64 << plan.frac_bits) as f64;
    let mut vals: Vec<Option<Mat>> = vec![None; plan.wires.len()];
    for (i, w) in plan.wires.iter().enumerate() {
        if let WireKind::ClientInput { hidden: k } = w.kind {
            vals[i] = Some(hidden[k].clone());
        }
    }
    let get =
        |vals: &Vec<Option<Mat>>, w: WireId| vals[w].clone().expect("wire computed before use");
    let mut out = Vec::new();
    for step in &plan.steps {
        match step {
            Step::Open { .. } => {}
            Step::Linear {
                out: o,
                terms,
                bias,
                ..
            } => {
                let w = &plan.wires[*o];
                let mut acc = Mat::zeros(w.rows, w.cols);
                for t in terms {
                    let part = match t {
                        Term::Public { wire, rows, coef } => {
                            select_rows(&get(&vals, *wire), *rows).map(|v| v * coef)
                        }
                        Term::Private { open, weight, cls } => {
                            let op = &plan.openings[*open];
                            let mut x = select_rows(&get(&vals, op.wire), op.rows);
                            if *cls {
                                x = x.rows_range(0, 1);
                            }
                            x.matmul(&weights.mats[*weight])
                        }
                    };
                    acc = acc.add(&part);
                }
                if let Some(b) = bias {
                    acc = acc.add_row(&weights.mats[*b].data);
                }
                vals[*o] = Some(acc);
            }
            Step::Slice {
                out: o,
                x,
                from,
                to,
            } => vals[*o] = Some(get(&vals, *x).cols_range(*from, *to)),
            Step::HeadMatMul {
                out: o,
                a,
                b,
                heads,
                kind,
            } => {
                let parts = head_operands(
                    *kind,
                    *heads,
                    &to_grid(&get(&vals, *a)),
                    &to_grid(&get(&vals, *b)),
                )
                .into_iter()
                .map(|(x, y)| to_grid(&to_mat(x).matmul(&to_mat(y))))
                .collect();
                vals[*o] = Some(to_mat(head_assemble(*kind, parts)));
            }
            Step::Relu { out: o, x, .. } => vals[*o] = Some(get(&vals, *x).map(|v| v.max(0.0))),
            Step::Square { out: o, x, .. } => vals[*o] = Some(get(&vals, *x).map(|v| v * v)),
            Step::Spline {
                out: o, x, func, ..
            } => vals[*o] = Some(get(&vals, *x).map(|v| func.exact(v))),
            Step::RowMax { out: o, x, .. } => {
                let x = get(&vals, *x);
                let m = (0..x.rows)
                    .map(|r| x.row(r).iter().copied().fold(f64::NEG_INFINITY, f64::max))
                    .collect();
                vals[*o] = Some(Mat::new(x.rows, 1, m));
            }
            Step::Shift { out: o, x, by } => {
                let (mut x, by) = (get(&vals, *x), get(&vals, *by));
                let c = x.cols;
                x.data
                    .iter_mut()
                    .enumerate()
                    .for_each(|(i, v)| *v -= by.data[i / c]);
                vals[*o] = Some(x);
            }
            Step::LayerNorm {
                out: o,
                x,
                z,
                eps,
                inv_sqrt,
                mix,
                ..
            } => {
                let x = get(&vals, *x);
                let mut zv = match mix {
                    Some(m) => {
                        let parts = head_operands(
                            HeadProduct::Mix,
                            m.heads,
                            &to_grid(&x),
                            &to_grid(&get(&vals, m.v)),
                        );
                        let stacked: Vec<f64> = parts
                            .into_iter()
                            .flat_map(|(a, b)| to_mat(a).matmul(&to_mat(b)).data)
                            .collect();
                        let w = &plan.wires[*z];
                        Mat::new(w.rows, w.cols, stacked)
                    }
                    None => get(&vals, *z),
                };
                if mix.is_some() {
                    vals[*z] = Some(zv.clone());
                }
                for r in 0..x.rows {
                    let var = match inv_sqrt.squares {
                        true => x.row(r).iter().map(|v| v * v).sum::<f64>(),
                        false => x.row(r).iter().sum::<f64>(),
                    };
                    let inv = (var + eps).powf(-(inv_sqrt.power as f64) / 2.0);
                    zv.data[r * zv.cols..(r + 1) * zv.cols]
                        .iter_mut()
                        .for_each(|v| *v *= inv);
                }
                vals[*o] = Some(match mix {
                    Some(m) => {
                        let parts = zv
                            .data
                            .chunks(zv.data.len() / m.heads)
                            .map(|h| Grid {
                                rows: zv.rows / m.heads,
                                cols: zv.cols,
                                data: h.to_vec(),
                            })
                            .collect();
                        to_mat(head_assemble(HeadProduct::Mix, parts))
                    }
                    None => zv,
                });
            }
            // Exact in the clear: truncation only changes the fixed-point scale.
            Step::Truncate { wires, wide } => {
                for w in wires.iter().chain(wide).filter(|_| floor_truncated) {
                    if let Some(m) = vals[*w].as_mut() {
                        m.data
                            .iter_mut()
                            .for_each(|v| *v = (*v * grid).floor() / grid);
                    }
                }
            }
            Step::Reveal { wire, .. } => out = get(&vals, *wire).data,
        }
    }
    (out, vals)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::OwcModel;
    use crate::plan::lower::{lower, LowerOptions};
    use cryptpeft_types::{AdapterSpec, BackboneSpec};

    /// Rounding nothing is the f64 run; rounding the weights moves the logits by about
    /// what 16 fractional bits allow, and each source is measured apart.
    #[test]
    fn rounding_measures_each_source_of_fixed_point_error() {
        let spec: AdapterSpec = "h=2,r=32,s=2".parse().unwrap();
        let bb = BackboneSpec::vit_mini();
        let model = OwcModel::random(spec.clone(), bb.clone(), 10, 3);
        let (plan, w) = lower(&model, LowerOptions::default()).unwrap();
        let x = crate::hidden::random(spec.scope + 1, bb.tokens(), bb.hidden_dim, 5);
        let exact = eval(&plan, &w, &x);
        let err = |r: Rounding| {
            eval_rounded(&plan, &w, &x, r)
                .iter()
                .zip(&exact)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max)
        };
        let none = Rounding {
            weights: None,
            inputs: false,
            truncations: false,
        };
        assert_eq!(err(none), 0.0);
        for r in [
            Rounding {
                weights: Some(None),
                ..none
            },
            Rounding {
                inputs: true,
                ..none
            },
            Rounding {
                truncations: true,
                ..none
            },
        ] {
            let e = err(r);
            assert!(e > 0.0 && e < 1e-2, "{r:?}: {e}");
        }
        // One weight rounded moves the logits no more than all of them.
        let all = err(Rounding {
            weights: Some(None),
            ..none
        });
        let one = err(Rounding {
            weights: Some(Some(0)),
            ..none
        });
        assert!(one <= all * 1.5, "{one} against {all}");
    }
}
