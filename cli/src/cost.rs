//! `cost` and `calibrate`: the cost model's price of the plan the evaluator runs.

use crate::say::say;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use cryptpeft_cost_model::{
    baselines, calibrate_to, cost, format_table, paper_linear, plan_shape_only_with, Constants,
    PaperNetwork,
};
use cryptpeft_types::NetworkProfile;

use cryptpeft_private_eval::baseline::BaselineModel;

use crate::secure::ModelArgs;

#[derive(Clone, Copy, ValueEnum)]
pub enum Model {
    /// This project's model: exact bytes and rounds, simulated time.
    Plan,
    /// The paper's fitted linear surrogate (lan and wan only).
    PaperLinear,
}

#[derive(Args)]
pub struct CostArgs {
    #[command(flatten)]
    model_args: ModelArgs,
    #[arg(long, default_value = "wan")]
    network: NetworkProfile,
    #[arg(long, value_enum, default_value = "plan")]
    model: Model,
    /// Constants from `cryptpeft calibrate` (default: the shipped file).
    #[arg(long)]
    constants: Option<PathBuf>,
    /// Also price the baselines (SFT last 1/2 layers, LoRA, AdaptFormer) on this backbone.
    #[arg(long)]
    baselines: bool,
    #[arg(long)]
    json: bool,
}

pub fn run(a: CostArgs) -> Result<(), String> {
    let (spec, bb) = a.model_args.spec()?;
    if let Model::PaperLinear = a.model {
        let net = PaperNetwork::from_profile(&a.network)
            .ok_or("the paper's surrogate exists for lan and wan only")?;
        let s = paper_linear(spec.heads, spec.rank, spec.scope, net);
        if a.json {
            say!(
                "{}",
                serde_json::json!({ "model": "paper-linear", "predicted_online_s": s })
            );
        } else {
            say!("paper-linear {} {}: {s:.4} s", spec.label(), a.network);
        }
        return Ok(());
    }
    let constants = match &a.constants {
        Some(p) => Constants::load(p).map_err(|e| e.to_string())?,
        None => Constants::shipped(),
    };
    let plan = match a.model_args.baseline {
        Some(kind) => {
            BaselineModel::symbolic(kind, bb.clone(), a.model_args.classes)?
                .lower(a.model_args.lower())
                .map_err(|e| e.to_string())?
                .0
        }
        None => plan_shape_only_with(&spec, &bb, a.model_args.classes, a.model_args.lower())
            .map_err(|e| e.to_string())?,
    };
    let report = cost(&plan, &a.network, &constants);
    let base = match a.baselines {
        true => Some(baselines::all(
            &bb,
            a.model_args.classes,
            &a.network,
            &constants,
        )?),
        false => None,
    };
    if a.json {
        // The report's fields at the top level; baselines beside them when asked for.
        let mut v = serde_json::to_value(&report).unwrap();
        if let Some(b) = base {
            v["baselines"] = serde_json::to_value(b).unwrap();
        }
        say!("{}", serde_json::to_string_pretty(&v).unwrap());
    } else {
        print!("{}", format_table(&report));
        for b in base.unwrap_or_default() {
            say!(
                "{:<28} {:>14} B {:>5} rounds ({}) {:>9.3} s",
                b.name,
                b.online_bytes,
                b.rounds,
                cryptpeft_cost_model::depth_note(b.rounds, b.depth_bound),
                b.predicted_online_s
            );
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct CalibrateArgs {
    #[arg(long, default_value = "cost-constants.yaml")]
    out: PathBuf,
}

pub fn calibrate(a: CalibrateArgs) -> Result<(), String> {
    let c = calibrate_to(&a.out).map_err(|e| e.to_string())?;
    print!("{}", c.to_yaml());
    eprintln!("wrote {}", a.out.display());
    Ok(())
}
