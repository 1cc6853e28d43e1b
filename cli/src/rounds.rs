//! `rounds`: every plan's rounds beside its dependency-depth bound (the openings on its
//! critical path with truncations, selects and reveals fused into neighbours), from
//! the plans alone: the paper's 20 configurations (affine and LayerNorm), the search
//! space's kinds and the baselines, at ViT-B/16.

use crate::say::say;
use std::path::PathBuf;

use clap::Args;
use cryptpeft_cost_model::plan_shape_only;
use cryptpeft_private_eval::baseline::{Baseline, BaselineModel};
use cryptpeft_private_eval::online::comm::simulate;
use cryptpeft_private_eval::plan::SecurePlan;
use cryptpeft_types::{Activation, AdapterSpec, AttentionKind, BackboneSpec, NormKind};

use crate::experiments::paper_specs;

#[derive(Args)]
pub struct RoundsArgs {
    #[arg(long, default_value = "experiments/paper_configs.yaml")]
    configs: PathBuf,
    #[arg(long, default_value = "results/rounds.csv")]
    out: PathBuf,
}

/// One plan's row.
struct Row {
    group: &'static str,
    plan: String,
    rounds: u64,
    bound: u64,
}

impl Row {
    fn of(group: &'static str, plan: String, p: &SecurePlan) -> Self {
        Row {
            group,
            plan,
            rounds: simulate(p).rounds,
            bound: p.depth_bound(),
        }
    }

    fn ratio(&self) -> f64 {
        self.rounds as f64 / self.bound.max(1) as f64
    }
}

/// The search space's kinds: every attention, norm and activation on one shape.
fn kinds() -> Vec<AdapterSpec> {
    let mut out = Vec::new();
    for attention in AttentionKind::ALL {
        for norm in NormKind::ALL {
            for activation in Activation::ALL {
                out.push(AdapterSpec {
                    attention,
                    norm,
                    activation,
                    ..AdapterSpec::paper(2, 64, 2)
                });
            }
        }
    }
    out
}

pub fn rounds(a: RoundsArgs) -> Result<(), String> {
    let bb = BackboneSpec::vit_b16();
    let lower = |spec: &AdapterSpec| {
        spec.validate(bb.layers).map_err(|e| e.to_string())?;
        plan_shape_only(spec, &bb, 100).map_err(|e| format!("{}: {e}", spec.label()))
    };
    let mut rows = Vec::new();
    for spec in paper_specs(&a.configs)? {
        for norm in [NormKind::Affine, NormKind::LayerNorm] {
            let spec = AdapterSpec {
                norm,
                ..spec.clone()
            };
            rows.push(Row::of("paper", spec.label(), &lower(&spec)?));
        }
    }
    for spec in kinds() {
        rows.push(Row::of("kinds", spec.label(), &lower(&spec)?));
    }
    for kind in Baseline::PAPER {
        let model = BaselineModel::symbolic(kind, bb.clone(), 100)?;
        let (plan, _) = model.lower(Default::default()).map_err(|e| e.to_string())?;
        rows.push(Row::of("baseline", kind.to_string(), &plan));
    }
    let mut csv = String::from("group,plan,rounds,depth_bound,ratio\n");
    say!(
        "{:<9} {:<40} {:>6} {:>6} {:>6}",
        "group",
        "plan",
        "rounds",
        "bound",
        "ratio"
    );
    for r in &rows {
        csv += &format!(
            "{},{},{},{},{:.3}\n",
            r.group,
            r.plan,
            r.rounds,
            r.bound,
            r.ratio()
        );
        say!(
            "{:<9} {:<40} {:>6} {:>6} {:>6.2}",
            r.group,
            r.plan,
            r.rounds,
            r.bound,
            r.ratio()
        );
    }
    let mut ratios: Vec<f64> = rows.iter().map(Row::ratio).collect();
    ratios.sort_by(f64::total_cmp);
    say!(
        "{} plans: rounds / bound median {:.2}, largest {:.2}",
        ratios.len(),
        ratios[ratios.len() / 2],
        ratios[ratios.len() - 1]
    );
    std::fs::write(&a.out, csv).map_err(|e| format!("{}: {e}", a.out.display()))?;
    eprintln!("wrote {}", a.out.display());
    Ok(())
}
