//! What the dashboard shows, computed from the study alone, as the JSON the page
//! draws: every trial with its genes, state, worker and prices, the front per profile
//! (the same trials `report` writes to `pareto_<profile>.csv`), the hypervolume over
//! evaluations and the constraints.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use cryptpeft_cost_model::{cost, plan_shape_only, CostReport};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::genes::GENES;
use crate::pareto::front;
use crate::report::{finalists, hypervolume_curves, points};
use crate::study::{Epoch, State, View, STALE_AFTER};

#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub name: String,
    pub strategy: String,
    pub backbone: String,
    pub dataset: String,
    /// The study's location, a database's without its password.
    pub location: String,
    /// The run directory as given, for the commands the page shows.
    pub dir: String,
    pub valid: usize,
    pub budget: Option<usize>,
    pub networks: Vec<String>,
    /// The profile the strategy minimises.
    pub select: usize,
    pub genes: Vec<Gene>,
    pub constraints: Constraints,
    /// Each profile's hypervolume reference: the slowest valid configuration.
    pub reference_s: Vec<f64>,
    pub trials: Vec<TrialRow>,
    /// Front members per profile, trial numbers by latency.
    pub fronts: Vec<Vec<u64>>,
    /// Hypervolume per profile after each completed first-rung trial.
    pub hypervolume: Vec<Vec<f64>>,
    pub machine: String,
    pub cost_model: String,
    pub stale_after_s: f64,
    /// The front members' details, for a page without a server (`report --html`);
    /// the server answers `/api/trial/N` instead.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<u64, Details>,
}

/// What the page shows of a selected trial beyond its row.
#[derive(Debug, Clone, Serialize)]
pub struct Details {
    /// The cost model's breakdown per profile.
    pub costs: Vec<StepTable>,
    /// Its training curve, where recorded.
    pub curve: Option<Vec<Epoch>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Gene {
    pub name: &'static str,
    pub choices: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Constraints {
    /// Latency budget per profile, in the profiles' order.
    pub latency_s: Vec<Option<f64>>,
    pub min_accuracy: Option<f64>,
    pub offline_mb: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrialRow {
    pub number: u64,
    pub config: String,
    /// The choice of each gene, as the space names it.
    pub genes: Vec<String>,
    pub epochs: usize,
    pub state: &'static str,
    pub worker: String,
    /// Seconds since the worker's last heartbeat (running trials).
    pub heartbeat_s: Option<f64>,
    pub val_accuracy: Option<f64>,
    pub test_accuracy: Option<f64>,
    pub train_s: Option<f64>,
    pub propose_s: Option<f64>,
    pub message: Option<String>,
    pub online_bytes: u64,
    pub rounds: u64,
    /// The plan's dependency-depth bound (rounds with truncations, selects and reveals
    /// fused into neighbours).
    pub depth_bound: u64,
    pub offline_bytes: u64,
    /// Predicted online seconds per profile.
    pub seconds: Vec<f64>,
    /// Whether the trial is at the top rung, where fronts are drawn from.
    pub finalist: bool,
    /// `adapters/CONFIG.safetensors` where `report` exported it.
    pub checkpoint: Option<String>,
}

/// The cost model's explanation of one adapter's latency on one profile.
#[derive(Debug, Clone, Serialize)]
pub struct StepTable {
    pub network: String,
    pub predicted_s: f64,
    pub compute_s: f64,
    pub transfer_s: f64,
    pub latency_s: f64,
    pub rounds: u64,
    pub online_bytes: u64,
    pub offline_bytes: u64,
    pub steps: Vec<StepRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepRow {
    pub name: &'static str,
    pub shape: String,
    pub bytes: u64,
    pub rounds: u64,
    pub seconds: f64,
}

/// The choices of each gene as text, in genome order.
fn genes(view: &View) -> Vec<Gene> {
    let g = &view.space.genes;
    let all: [Vec<String>; 8] = [
        g.heads.iter().map(ToString::to_string).collect(),
        g.rank.iter().map(ToString::to_string).collect(),
        g.scope.iter().map(ToString::to_string).collect(),
        g.blocks.iter().map(ToString::to_string).collect(),
        g.attention.iter().map(ToString::to_string).collect(),
        g.norm.iter().map(ToString::to_string).collect(),
        g.activation.iter().map(ToString::to_string).collect(),
        g.scale.iter().map(ToString::to_string).collect(),
    ];
    GENES
        .iter()
        .zip(all)
        .map(|(name, choices)| Gene { name, choices })
        .collect()
}

/// Everything the page shows, read from the study now; `references` are the profiles'
/// slowest valid configurations (priced once, when the dashboard starts).
pub fn take(view: &View, references: &[f64]) -> Result<Snapshot> {
    let aged = view.aged_trials()?;
    let trials: Vec<_> = aged.iter().map(|(t, _)| t.clone()).collect();
    let finals = finalists(&trials);
    let final_numbers: HashSet<u64> = finals.iter().map(|f| f.number).collect();
    let fronts = (0..view.space.networks.len())
        .map(|p| {
            let pts = points(&view.space, &finals, p);
            let mut members: Vec<usize> = front(&pts);
            members.sort_by(|&a, &b| pts[a].seconds.total_cmp(&pts[b].seconds));
            members.iter().map(|&i| finals[i].number).collect()
        })
        .collect();
    let gene_names = genes(view);
    let rows = aged
        .iter()
        .map(|(t, age)| {
            let checkpoint = Path::new("adapters").join(format!("{}.safetensors", t.config));
            TrialRow {
                number: t.number,
                config: t.config.clone(),
                genes: t
                    .genome
                    .iter()
                    .zip(&gene_names)
                    .map(|(&c, g)| g.choices.get(c as usize).cloned().unwrap_or_default())
                    .collect(),
                epochs: t.epochs,
                state: t.state.as_str(),
                worker: t.worker.clone(),
                heartbeat_s: (t.state == State::Running).then_some(*age),
                val_accuracy: t.val_accuracy,
                test_accuracy: t.test_accuracy,
                train_s: t.train_seconds,
                propose_s: t.propose_seconds,
                message: t.message.clone(),
                online_bytes: t.price.online_bytes,
                rounds: t.price.rounds,
                depth_bound: view.pricer.price(&view.genomes.spec(&t.genome)).depth_bound,
                offline_bytes: t.price.offline_bytes,
                seconds: t.price.seconds.clone(),
                finalist: final_numbers.contains(&t.number),
                checkpoint: view
                    .dir
                    .join(&checkpoint)
                    .is_file()
                    .then(|| checkpoint.display().to_string()),
            }
        })
        .collect();
    let s = &view.space;
    Ok(Snapshot {
        name: s.name.clone(),
        strategy: s.strategy.to_string(),
        backbone: s.backbone.clone(),
        dataset: format!("{:?}", s.data.dataset),
        location: view.location.to_string(),
        dir: view.dir.display().to_string(),
        valid: view.genomes.valid().len(),
        budget: s.budget.evaluations,
        networks: s.networks.clone(),
        select: s.select_index(),
        genes: gene_names,
        constraints: Constraints {
            latency_s: s
                .networks
                .iter()
                .map(|n| s.constraints.latency_s.get(n).copied())
                .collect(),
            min_accuracy: s.constraints.min_accuracy,
            offline_mb: s.constraints.offline_mb,
        },
        reference_s: references.to_vec(),
        hypervolume: hypervolume_curves(s, references, &trials),
        trials: rows,
        fronts,
        machine: view.pricer.constants().machine.clone(),
        cost_model: cryptpeft_cost_model::version(),
        stale_after_s: STALE_AFTER.as_secs_f64(),
        details: BTreeMap::new(),
    })
}

/// Trial `number`'s breakdown on every profile and its training curve.
pub fn details(view: &View, number: u64) -> Result<Details> {
    let trial = view
        .store
        .trials()?
        .into_iter()
        .find(|t| t.number == number)
        .ok_or_else(|| Error::Other(format!("no trial {number}")))?;
    let spec = view.genomes.spec(&trial.genome);
    let plan = plan_shape_only(&spec, view.pricer.backbone(), view.pricer.classes())
        .map_err(|e| Error::Other(format!("trial {number}: {e}")))?;
    let costs = view
        .pricer
        .profiles()
        .iter()
        .map(|p| table(&cost(&plan, p, view.pricer.constants())))
        .collect();
    Ok(Details {
        costs,
        curve: view.store.curve(number)?,
    })
}

fn table(r: &CostReport) -> StepTable {
    StepTable {
        network: r.network.clone(),
        predicted_s: r.predicted_online_s,
        compute_s: r.compute_s,
        transfer_s: r.transfer_s,
        latency_s: r.latency_s,
        rounds: r.rounds,
        online_bytes: r.online_bytes,
        offline_bytes: r.offline_bytes,
        steps: r
            .steps
            .iter()
            .map(|s| StepRow {
                name: s.name,
                shape: s.shape.clone(),
                bytes: s.bytes,
                rounds: s.rounds,
                seconds: s.seconds,
            })
            .collect(),
    }
}
