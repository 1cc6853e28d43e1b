//! The tabulated benchmark, the way NAS-Bench does it: a grid study holds every valid
//! configuration evaluated once; each strategy replays on that table (no training) with
//! many seeds. At each budget it reports, against the table's true front
//! ([`crate::metrics`]): the hypervolume with the reference at the front's nadir, the
//! share of front members found, IGD+, and the lenient hypervolume of earlier releases.
//! Every run's proposals are written in order, so anyone can compute their own metric.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use polars::prelude::*;

use crate::error::{Error, Result};
use crate::genes::Genome;
use crate::metrics::{Scores, Truth};
use crate::pareto::Point;
use crate::plot;
use crate::space::StrategyKind;
use crate::strategy::{propose, Objectives, Outcome, Record, Step};
use crate::study::State;
use crate::study::{write_atomic, View};

/// One replay at one budget.
#[derive(Debug, Clone)]
pub struct Row {
    pub strategy: StrategyKind,
    pub seed: u64,
    pub budget: usize,
    /// Trainings used (less than the budget when the strategy stops early).
    pub evaluations: usize,
    pub scores: Scores,
}

/// One proposal of one run, in order.
#[derive(Debug, Clone)]
pub struct Proposed {
    pub strategy: StrategyKind,
    pub seed: u64,
    pub step: usize,
    pub config: String,
    /// Trained (`true`) or recorded without training (the paper's controller).
    pub trained: bool,
    /// The proposal's own time: surrogate fit and acquisition included.
    pub seconds: f64,
}

/// What a replay produced.
pub struct Replay {
    pub rows: Vec<Row>,
    pub proposals: Vec<Proposed>,
    pub configurations: usize,
    pub front: usize,
    /// `(margin, members, non-members)` within each close-call margin (0.5, 1 and 2 points of accuracy) of the front.
    pub close_calls: Vec<(f64, usize, usize)>,
}

/// Accuracy margins at which the replay counts close calls on the true front.
const CLOSE_CALLS: [f64; 3] = [0.005, 0.01, 0.02];

pub const STRATEGIES: [StrategyKind; 6] = [
    StrategyKind::Ehvi,
    StrategyKind::EhviFront,
    StrategyKind::Nsga2,
    StrategyKind::Reinforce,
    StrategyKind::ReinforcePaper,
    StrategyKind::Random,
];

/// Validation accuracy at the first rung of every valid configuration of a finished
/// grid study.
pub fn table(study: &View) -> Result<HashMap<Genome, f64>> {
    let first = study.space.fidelity.rungs()[0];
    let table: HashMap<Genome, f64> = study
        .store
        .trials()?
        .into_iter()
        .filter(|t| t.state == State::Complete && t.epochs == first)
        .map(|t| (t.genome, t.val_accuracy.unwrap_or(0.0)))
        .collect();
    let valid = study.genomes.valid();
    let missing = valid.iter().filter(|g| !table.contains_key(*g)).count();
    if missing > 0 {
        return Err(Error::Other(format!(
            "the table lacks {missing} of {} valid configurations; run the grid to the end first",
            valid.len()
        )));
    }
    Ok(table)
}

/// Replays `strategies` on the table of `study` (which must hold every valid
/// configuration), seeds `0..seeds` each, scoring at `budgets`.
pub fn replay(
    study: &View,
    strategies: &[StrategyKind],
    seeds: u64,
    budgets: &[usize],
) -> Result<Replay> {
    let table = table(study)?;
    let valid = study.genomes.valid();
    // Points priced by this study's cost model (the same the strategies see).
    let point = |g: &Genome| (*g, study.point(g, Some(table[g])));
    let all: Vec<(Genome, Point)> = valid.iter().map(point).collect();
    let truth = Truth::new(&all);
    let max_budget = budgets.iter().copied().max().unwrap_or(0);
    let reinforce = study.reinforce();
    let (mut rows, mut proposals) = (Vec::new(), Vec::new());
    for &kind in strategies {
        for seed in 0..seeds {
            let ctx = study.ctx(seed, &reinforce);
            let mut history: Vec<Record> = Vec::new();
            let mut evaluated: Vec<(Genome, Point)> = Vec::new();
            while evaluated.len() < max_budget {
                let start = Instant::now();
                let step = propose(kind, &ctx, &history);
                let seconds = start.elapsed().as_secs_f64();
                let (g, outcome) = match step {
                    Step::Evaluate(g) => (g, Outcome::Accuracy(table[&g])),
                    Step::Skip(g) => (g, Outcome::Skipped),
                    Step::Wait | Step::Done => break,
                };
                proposals.push(Proposed {
                    strategy: kind,
                    seed,
                    step: history.len(),
                    config: study.genomes.spec(&g).label(),
                    trained: matches!(step, Step::Evaluate(_)),
                    seconds,
                });
                history.push(Record { genome: g, outcome });
                if matches!(step, Step::Evaluate(_)) {
                    evaluated.push(point(&g));
                }
            }
            for &b in budgets {
                let used = b.min(evaluated.len());
                rows.push(Row {
                    strategy: kind,
                    seed,
                    budget: b,
                    evaluations: used,
                    scores: truth.score(&evaluated[..used]),
                });
            }
        }
    }
    Ok(Replay {
        rows,
        proposals,
        configurations: valid.len(),
        front: truth.front_len(),
        close_calls: CLOSE_CALLS
            .iter()
            .map(|&m| {
                let (a, b) = truth.close_calls(m);
                (m, a, b)
            })
            .collect(),
    })
}

/// Mean, minimum and maximum.
pub(crate) fn stats(xs: &[f64]) -> (f64, f64, f64) {
    let n = xs.len().max(1) as f64;
    let min = xs.iter().copied().fold(f64::INFINITY, f64::min);
    let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (xs.iter().sum::<f64>() / n, min, max)
}

pub(crate) fn frame(cols: Vec<Column>) -> Result<DataFrame> {
    DataFrame::new_infer_height(cols).map_err(|e| Error::Other(e.to_string()))
}

pub(crate) fn write_csv(df: &mut DataFrame, path: &Path) -> Result<()> {
    let mut buf = Vec::new();
    CsvWriter::new(&mut buf)
        .finish(df)
        .map_err(|e| Error::Other(format!("{}: {e}", path.display())))?;
    write_atomic(path, &buf)
}

/// Writes `replay.csv` (every run and budget), `proposals.csv` (every proposal in
/// order), `replay_summary.csv`, `replay.md` and the plots into `out`; returns the
/// summary as markdown.
pub fn write(r: &Replay, budgets: &[usize], out: &Path, title: &str) -> Result<String> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let rows = &r.rows;
    let f64s = |f: &dyn Fn(&Row) -> f64| rows.iter().map(f).collect::<Vec<_>>();
    let mut raw = frame(vec![
        Column::new(
            "strategy".into(),
            rows.iter()
                .map(|r| r.strategy.to_string())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "seed".into(),
            rows.iter().map(|r| r.seed).collect::<Vec<_>>(),
        ),
        Column::new(
            "budget".into(),
            rows.iter().map(|r| r.budget as u64).collect::<Vec<_>>(),
        ),
        Column::new(
            "evaluations".into(),
            rows.iter()
                .map(|r| r.evaluations as u64)
                .collect::<Vec<_>>(),
        ),
        Column::new("nadir_hv_fraction".into(), f64s(&|r| r.scores.nadir_hv)),
        Column::new("front_share".into(), f64s(&|r| r.scores.front_share)),
        Column::new("igd_plus".into(), f64s(&|r| r.scores.igd_plus)),
        Column::new("lenient_hv_fraction".into(), f64s(&|r| r.scores.lenient_hv)),
    ])?;
    write_csv(&mut raw, &out.join("replay.csv"))?;
    let p = &r.proposals;
    let mut props = frame(vec![
        Column::new(
            "strategy".into(),
            p.iter().map(|x| x.strategy.to_string()).collect::<Vec<_>>(),
        ),
        Column::new("seed".into(), p.iter().map(|x| x.seed).collect::<Vec<_>>()),
        Column::new(
            "step".into(),
            p.iter().map(|x| x.step as u64).collect::<Vec<_>>(),
        ),
        Column::new(
            "config".into(),
            p.iter().map(|x| x.config.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "trained".into(),
            p.iter().map(|x| x.trained).collect::<Vec<_>>(),
        ),
        Column::new(
            "propose_ms".into(),
            p.iter().map(|x| 1e3 * x.seconds).collect::<Vec<_>>(),
        ),
    ])?;
    write_csv(&mut props, &out.join("proposals.csv"))?;

    let list = |f: &dyn Fn(&(f64, usize, usize)) -> String| {
        r.close_calls.iter().map(f).collect::<Vec<_>>().join(" / ")
    };
    let mut md = format!(
        "{} valid configurations, {} on the true front; random search's expected share of \
         the front at budget b is b / {}.\n\n\
         Close calls: {} front members beat every configuration at most as slow by at most \
         {} in accuracy, and {} other configurations miss the front by at most as much. \
         Where margins are of the order of the training noise, which of these \
         configurations the table calls front is decided by that noise, and no strategy \
         can predict it.\n\n\
         | strategy | budget | nadir HV mean | nadir HV min | front share mean | front share min | IGD+ mean | lenient HV mean | evaluations used | ms per proposal |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
        r.configurations,
        r.front,
        r.configurations,
        list(&|c| c.1.to_string()),
        list(&|c| c.0.to_string()),
        list(&|c| c.2.to_string()),
    );
    let mut summary: Vec<(String, u64, [f64; 8])> = Vec::new();
    let (mut hv_curves, mut share_curves, mut names) = (Vec::new(), Vec::new(), Vec::new());
    for kind in STRATEGIES {
        let (mut hv_curve, mut share_curve) = (Vec::new(), Vec::new());
        let times: Vec<f64> = p
            .iter()
            .filter(|x| x.strategy == kind)
            .map(|x| 1e3 * x.seconds)
            .collect();
        let ms = stats(&times).0;
        for &b in budgets {
            let sel: Vec<&Row> = rows
                .iter()
                .filter(|r| r.strategy == kind && r.budget == b)
                .collect();
            if sel.is_empty() {
                continue;
            }
            let of = |f: &dyn Fn(&Scores) -> f64| {
                stats(&sel.iter().map(|r| f(&r.scores)).collect::<Vec<_>>())
            };
            let (hv, hv_min, _) = of(&|s| s.nadir_hv);
            let (share, share_min, _) = of(&|s| s.front_share);
            let (igd, _, _) = of(&|s| s.igd_plus);
            let (lenient, _, _) = of(&|s| s.lenient_hv);
            let used = sel.iter().map(|r| r.evaluations as f64).sum::<f64>() / sel.len() as f64;
            md += &format!(
                "| {kind} | {b} | {hv:.3} | {hv_min:.3} | {share:.3} | {share_min:.3} | {igd:.4} | {lenient:.3} | {used:.1} | {ms:.2} |\n"
            );
            summary.push((
                kind.to_string(),
                b as u64,
                [hv, hv_min, share, share_min, igd, lenient, used, ms],
            ));
            hv_curve.push((b as f64, hv));
            share_curve.push((b as f64, share));
        }
        if !hv_curve.is_empty() {
            hv_curves.push(hv_curve);
            share_curves.push(share_curve);
            names.push(kind.to_string());
        }
    }
    let col = |k: usize| summary.iter().map(|s| s.2[k]).collect::<Vec<_>>();
    let mut sum = frame(vec![
        Column::new(
            "strategy".into(),
            summary.iter().map(|s| s.0.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "budget".into(),
            summary.iter().map(|s| s.1).collect::<Vec<_>>(),
        ),
        Column::new("nadir_hv_mean".into(), col(0)),
        Column::new("nadir_hv_min".into(), col(1)),
        Column::new("front_share_mean".into(), col(2)),
        Column::new("front_share_min".into(), col(3)),
        Column::new("igd_plus_mean".into(), col(4)),
        Column::new("lenient_hv_mean".into(), col(5)),
        Column::new("mean_evaluations".into(), col(6)),
        Column::new("ms_per_proposal".into(), col(7)),
    ])?;
    write_csv(&mut sum, &out.join("replay_summary.csv"))?;
    write_atomic(&out.join("replay.md"), md.as_bytes())?;
    plot::lines(
        &out.join("replay"),
        title,
        "budget (evaluations)",
        "hypervolume at the true front's nadir / true front's (mean)",
        &hv_curves,
        &names,
    )
    .map_err(Error::Other)?;
    plot::lines(
        &out.join("replay_front"),
        title,
        "budget (evaluations)",
        "share of the true front found (mean)",
        &share_curves,
        &names,
    )
    .map_err(Error::Other)?;
    Ok(md)
}
