//! `precision`: where a checkpoint's fixed-point error comes from. The plan runs in
//! f64 with one source of error at a time put on the fixed-point grid (the server's
//! weights, the client's hidden states, the truncated wires), each against the f64
//! reference, and the weights whose rounding alone costs the most are named. No
//! protocol runs: this is the error the encoding causes before any cryptography.

use crate::say::say;
use std::path::PathBuf;

use clap::Args;
use cryptpeft_private_eval::arith::tensor::Mat;
use cryptpeft_private_eval::gates::plain::{eval_rounded, Rounding};
use cryptpeft_private_eval::model::OwcModel;
use cryptpeft_private_eval::plan::{lower, PlanWeights, SecurePlan, Step, Term};
use cryptpeft_private_eval::reference;
use rayon::prelude::*;

#[derive(Args)]
pub struct PrecisionArgs {
    /// The adapter checkpoint.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Client inputs from this many digits test images through the shipped backbone
    /// (the checkpoint must be an adapter over it); without it, random hidden states.
    #[arg(long)]
    digits: Option<usize>,
    /// Random hidden states when `--digits` is not given.
    #[arg(long, default_value_t = 8)]
    inputs: usize,
    /// Weights to name, the costliest first.
    #[arg(long, default_value_t = 5)]
    top: usize,
}

pub fn precision(a: PrecisionArgs) -> Result<(), String> {
    let model = OwcModel::load(&a.checkpoint).map_err(|e| e.to_string())?;
    let inputs = crate::load::hidden_inputs(&model, a.digits, a.inputs)?;
    let want: Vec<Vec<f64>> = inputs
        .iter()
        .map(|x| reference::forward(&model, x))
        .collect();
    let (plan, w) = lower::lower(&model, Default::default()).map_err(|e| e.to_string())?;
    let err = |r: Rounding| max_error(&plan, &w, &inputs, &want, r);
    let none = Rounding {
        weights: None,
        inputs: false,
        truncations: false,
    };
    let largest = want.iter().flatten().fold(0.0f64, |m, v| m.max(v.abs()));
    say!(
        "{}: {} inputs, largest |logit| {largest:.3}, {} fractional bits",
        model.spec.label(),
        inputs.len(),
        plan.frac_bits
    );
    say!("{:<44} {:>12}", "rounded to the grid", "max |err|");
    let rows = [
        (
            "weights, hidden states and truncations",
            Rounding {
                weights: Some(None),
                inputs: true,
                truncations: true,
            },
        ),
        (
            "the server's weights",
            Rounding {
                weights: Some(None),
                ..none
            },
        ),
        (
            "the client's hidden states",
            Rounding {
                inputs: true,
                ..none
            },
        ),
        (
            "the wires `Truncate` steps truncate",
            Rounding {
                truncations: true,
                ..none
            },
        ),
    ];
    for (name, r) in rows {
        say!("{name:<44} {:>12.3e}", err(r));
    }
    // One plaintext run per weight and input: a bar, and both cores.
    let bar = indicatif::ProgressBar::new(w.mats.len() as u64).with_message("weights");
    let mut each: Vec<(usize, f64)> = (0..w.mats.len())
        .into_par_iter()
        .map(|i| {
            let r = Rounding {
                weights: Some(Some(i)),
                ..none
            };
            let e = err(r);
            bar.inc(1);
            (i, e)
        })
        .collect();
    bar.finish_and_clear();
    each.sort_by(|a, b| b.1.total_cmp(&a.1));
    say!("weights whose rounding alone costs the most:");
    for (i, e) in each.into_iter().take(a.top) {
        let m = &w.mats[i];
        let max = m.data.iter().fold(0.0f64, |acc, v| acc.max(v.abs()));
        say!(
            "  {:<40} {:>4}x{:<4} largest |w| {max:.2e}  {e:.3e}",
            weight_name(&plan, i),
            m.rows,
            m.cols
        );
    }
    Ok(())
}

/// The largest logit error over the inputs with `r`'s values rounded.
fn max_error(
    plan: &SecurePlan,
    w: &PlanWeights,
    inputs: &[Vec<Mat>],
    want: &[Vec<f64>],
    r: Rounding,
) -> f64 {
    inputs
        .iter()
        .zip(want)
        .flat_map(|(x, want)| {
            eval_rounded(plan, w, x, r)
                .into_iter()
                .zip(want)
                .map(|(g, w)| (g - w).abs())
                .collect::<Vec<_>>()
        })
        .fold(0.0, f64::max)
}

/// A weight's name: the wire its linear step writes (a bias: that wire's, with `+ b`).
fn weight_name(plan: &SecurePlan, id: usize) -> String {
    for step in &plan.steps {
        if let Step::Linear {
            out, terms, bias, ..
        } = step
        {
            let name = &plan.wires[*out].name;
            if terms
                .iter()
                .any(|t| matches!(t, Term::Private { weight, .. } if *weight == id))
            {
                return name.clone();
            }
            if *bias == Some(id) {
                return format!("{name} + b");
            }
        }
    }
    format!("weight {id}")
}
