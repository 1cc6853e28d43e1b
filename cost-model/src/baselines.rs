//! Prices of the paper's baselines (SFT of the last 1 or 2 layers, PEFT-LoRA,
//! PEFT-AdaptFormer): the plans [`cryptpeft_private_eval::baseline`] lowers and the executor runs,
//! priced like any plan, so `cost --baselines` and `bench-secure --baseline` agree on
//! bytes and rounds exactly.

use cryptpeft_private_eval::baseline::{Baseline, BaselineModel};
use cryptpeft_private_eval::plan::lower::LowerOptions;
use cryptpeft_types::{BackboneSpec, NetworkProfile};
use serde::Serialize;

use crate::constants::Constants;
use crate::price::cost;

/// Price of one baseline.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BaselineCost {
    pub name: String,
    pub online_bytes: u64,
    pub rounds: u64,
    /// The plan's dependency-depth bound ([`crate::CostReport::depth_bound`]).
    pub depth_bound: u64,
    /// Both parties' compute, seconds.
    pub compute_s: f64,
    pub predicted_online_s: f64,
    pub offline_bytes: u64,
}

/// Prices `kind` on `bb` with `classes` classes.
pub fn price(
    kind: Baseline,
    bb: &BackboneSpec,
    classes: usize,
    profile: &NetworkProfile,
    c: &Constants,
    opts: LowerOptions,
) -> Result<BaselineCost, String> {
    let model = BaselineModel::symbolic(kind, bb.clone(), classes)?;
    let (plan, _) = model.lower(opts).map_err(|e| e.to_string())?;
    let r = cost(&plan, profile, c);
    Ok(BaselineCost {
        name: kind.to_string(),
        online_bytes: r.online_bytes,
        rounds: r.rounds,
        depth_bound: r.depth_bound,
        compute_s: r.compute_s,
        predicted_online_s: r.predicted_online_s,
        offline_bytes: r.offline_bytes,
    })
}

/// The paper's four baselines, default lowering.
pub fn all(
    bb: &BackboneSpec,
    classes: usize,
    profile: &NetworkProfile,
    c: &Constants,
) -> Result<Vec<BaselineCost>, String> {
    Baseline::PAPER
        .iter()
        .map(|&k| price(k, bb, classes, profile, c, LowerOptions::default()))
        .collect()
}
