//! Runs a `SecurePlan` on plaintext f64 values: checks the lowering (folding,
//! dead-token elimination) against the reference independently of the cryptography.

use crate::arith::tensor::Mat;
use crate::plan::*;

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

/// The interpreter's state: every wire's value so far, and the revealed output.
pub(crate) struct Values<'a> {
    pub plan: &'a SecurePlan,
    pub weights: &'a PlanWeights,
    vals: Vec<Option<Mat>>,
    /// Whether truncated wires are floored to the fixed-point grid ([`Rounding`]).
    pub floor_truncated: bool,
    pub out: Vec<f64>,
}

impl Values<'_> {
    pub fn get(&self, w: WireId) -> Mat {
        self.vals[w].clone().expect("wire computed before use")
    }

    pub fn set(&mut self, w: WireId, m: Mat) {
        self.vals[w] = Some(m);
    }

    /// Floors wire `w` to the grid of `f` fractional bits, as an exact truncation
    /// leaves it.
    pub fn floor(&mut self, w: WireId) {
        let grid = (1u64 << self.plan.frac_bits) as f64;
        if let Some(m) = self.vals[w].as_mut() {
            m.data
                .iter_mut()
                .for_each(|v| *v = (*v * grid).floor() / grid);
        }
    }
}

fn eval_wires(
    plan: &SecurePlan,
    weights: &PlanWeights,
    hidden: &[Mat],
    floor_truncated: bool,
) -> (Vec<f64>, Vec<Option<Mat>>) {
    let mut ev = Values {
        plan,
        weights,
        vals: vec![None; plan.wires.len()],
        floor_truncated,
        out: Vec::new(),
    };
    for (i, w) in plan.wires.iter().enumerate() {
        if let WireKind::ClientInput { hidden: k } = w.kind {
            ev.vals[i] = Some(hidden[k].clone());
        }
    }
    for step in &plan.steps {
        super::gate(step).plain(&mut ev);
    }
    (ev.out, ev.vals)
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
