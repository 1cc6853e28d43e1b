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

/// What CrypTen 0.4.1 took for the same model, measured on this machine (the paper's
/// MPC framework): online bytes (both directions), rounds, and `wan` seconds modelled
/// as compute plus bytes at 400 Mbit/s plus 8 ms per round.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CryptenReference {
    pub online_bytes: u64,
    pub rounds: u64,
    pub wan_s: f64,
}

/// CrypTen's figures for a model by its label (an adapter's `h1-r300-s1`, `sft-1`), where
/// they were measured.
pub fn crypten_reference(label: &str) -> Option<CryptenReference> {
    let (online_bytes, rounds, wan_s) = match label {
        "h1-r300-s1" => (56_500_000, 19, 1.51),
        "h2-r120-s2" => (48_900_000, 37, 1.52),
        "sft-1" => (1_260_000_000, 168, 30.0),
        "sft-2" => (2_530_000_000, 335, 60.0),
        _ => return None,
    };
    Some(CryptenReference {
        online_bytes,
        rounds,
        wan_s,
    })
}
