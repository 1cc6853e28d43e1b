//! The tabulated benchmark, the way NAS-Bench does it: a grid study holds every valid
//! configuration evaluated once; each strategy replays on that table (no training) with
//! many seeds, and the hypervolume it reaches at each budget is reported as a fraction of
//! the true front's.

use std::collections::HashMap;
use std::path::Path;

use polars::prelude::*;

use crate::error::{Error, Result};
use crate::genes::Genome;
use crate::pareto::{hypervolume, Point};
use crate::plot;
use crate::report::reference_seconds;
use crate::space::StrategyKind;
use crate::strategy::{propose, Objectives, Outcome, Record, Step};
use crate::study::State;
use crate::study::{write_atomic, Study};

/// One replay: strategy, seed, budget, evaluations used, hypervolume fraction.
#[derive(Debug, Clone)]
pub struct Row {
    pub strategy: StrategyKind,
    pub seed: u64,
    pub budget: usize,
    pub evaluations: usize,
    pub fraction: f64,
}

pub const STRATEGIES: [StrategyKind; 3] = [
    StrategyKind::Nsga2,
    StrategyKind::Reinforce,
    StrategyKind::Random,
];

/// Replays `strategies` on the table of `study` (which must hold every valid
/// configuration), `seeds` seeds each, recording the hypervolume fraction at `budgets`.
pub fn replay(
    study: &Study,
    strategies: &[StrategyKind],
    seeds: u64,
    budgets: &[usize],
) -> Result<Vec<Row>> {
    let first = study.space.fidelity.rungs()[0];
    let table: HashMap<Genome, f64> = study
        .store
        .trials()?
        .into_iter()
        .filter(|t| t.state == State::Complete && t.epochs == first)
        .map(|t| (t.genome, t.val_accuracy.unwrap_or(0.0)))
        .collect();
    let missing = study
        .genomes
        .valid()
        .iter()
        .filter(|g| !table.contains_key(*g))
        .count();
    if missing > 0 {
        return Err(Error::Other(format!(
            "the table lacks {missing} of {} valid configurations; run the grid to the end first",
            study.genomes.valid().len()
        )));
    }
    let p = study.space.select_index();
    let reference = reference_seconds(study, p);
    let hv = |gs: &[Genome]| {
        let pts: Vec<Point> = gs.iter().map(|g| study.point(g, Some(table[g]))).collect();
        hypervolume(&pts, reference)
    };
    let all: Vec<Genome> = table.keys().copied().collect();
    let best = hv(&all);
    let max_budget = budgets.iter().copied().max().unwrap_or(0);
    let mut rows = Vec::new();
    for &kind in strategies {
        for seed in 0..seeds {
            let ctx = study.ctx(seed);
            let mut history: Vec<Record> = Vec::new();
            let mut evaluated: Vec<Genome> = Vec::new();
            while evaluated.len() < max_budget {
                match propose(kind, &ctx, &history) {
                    Step::Evaluate(g) => {
                        history.push(Record {
                            genome: g,
                            outcome: Outcome::Accuracy(table[&g]),
                        });
                        evaluated.push(g);
                    }
                    Step::Skip(g) => history.push(Record {
                        genome: g,
                        outcome: Outcome::Skipped,
                    }),
                    Step::Wait | Step::Done => break,
                }
            }
            for &b in budgets {
                let used = b.min(evaluated.len());
                rows.push(Row {
                    strategy: kind,
                    seed,
                    budget: b,
                    evaluations: used,
                    fraction: hv(&evaluated[..used]) / best,
                });
            }
        }
    }
    Ok(rows)
}

/// Mean, standard deviation, minimum and maximum.
fn stats(xs: &[f64]) -> (f64, f64, f64, f64) {
    let n = xs.len().max(1) as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    let min = xs.iter().copied().fold(f64::INFINITY, f64::min);
    let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (mean, var.sqrt(), min, max)
}

/// Writes `replay.csv`, `replay_summary.csv`, `replay.md` and `replay.png`/`.svg` into
/// `out`; returns the summary as markdown.
pub fn write(rows: &[Row], budgets: &[usize], out: &Path, title: &str) -> Result<String> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let col = |name: &str, f: &dyn Fn(&Row) -> String| {
        Column::new(name.into(), rows.iter().map(f).collect::<Vec<_>>())
    };
    let mut raw = DataFrame::new_infer_height(vec![
        col("strategy", &|r| r.strategy.to_string()),
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
        Column::new(
            "hypervolume_fraction".into(),
            rows.iter().map(|r| r.fraction).collect::<Vec<_>>(),
        ),
    ])
    .map_err(|e| Error::Other(e.to_string()))?;
    let mut md = String::from(
        "| strategy | budget | mean | std | min | max | mean evaluations used |\n|---|---|---|---|---|---|---|\n",
    );
    let (mut s_name, mut s_budget, mut s_mean, mut s_std, mut s_min, mut s_max, mut s_used) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut curves = Vec::new();
    let names: Vec<String> = STRATEGIES.iter().map(|s| s.to_string()).collect();
    for kind in STRATEGIES {
        let mut curve = Vec::new();
        for &b in budgets {
            let sel: Vec<&Row> = rows
                .iter()
                .filter(|r| r.strategy == kind && r.budget == b)
                .collect();
            if sel.is_empty() {
                continue;
            }
            let f: Vec<f64> = sel.iter().map(|r| r.fraction).collect();
            let (mean, std, min, max) = stats(&f);
            let used = sel.iter().map(|r| r.evaluations as f64).sum::<f64>() / sel.len() as f64;
            md += &format!(
                "| {kind} | {b} | {mean:.3} | {std:.3} | {min:.3} | {max:.3} | {used:.1} |\n"
            );
            s_name.push(kind.to_string());
            s_budget.push(b as u64);
            s_mean.push(mean);
            s_std.push(std);
            s_min.push(min);
            s_max.push(max);
            s_used.push(used);
            curve.push((b as f64, mean));
        }
        curves.push(curve);
    }
    let mut summary = DataFrame::new_infer_height(vec![
        Column::new("strategy".into(), s_name),
        Column::new("budget".into(), s_budget),
        Column::new("mean".into(), s_mean),
        Column::new("std".into(), s_std),
        Column::new("min".into(), s_min),
        Column::new("max".into(), s_max),
        Column::new("mean_evaluations".into(), s_used),
    ])
    .map_err(|e| Error::Other(e.to_string()))?;
    for (df, name) in [
        (&mut raw, "replay.csv"),
        (&mut summary, "replay_summary.csv"),
    ] {
        let mut buf = Vec::new();
        CsvWriter::new(&mut buf)
            .finish(df)
            .map_err(|e| Error::Other(format!("{name}: {e}")))?;
        write_atomic(&out.join(name), &buf)?;
    }
    write_atomic(&out.join("replay.md"), md.as_bytes())?;
    plot::lines(
        &out.join("replay"),
        title,
        "budget (evaluations)",
        "hypervolume / true front's (mean over seeds)",
        &curves,
        &names,
    )?;
    Ok(md)
}
