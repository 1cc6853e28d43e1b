//! How much of a tabulated benchmark is training noise, and what that leaves a
//! strategy. The same grid re-run under other training seeds (`--train-seed`: same
//! split, other initialisation and batch order) gives every configuration several
//! accuracies. From them:
//!
//! - the spread of one training's validation accuracy;
//! - how many of the table's front members stay on the front when retrained;
//! - the front share of an oracle that knows every configuration's accuracy in the
//!   replicates (their mean) but not the table's, and, one training at a time, trains the
//!   configuration most likely to be on the table's front given what it has seen (Monte
//!   Carlo over the unseen accuracies: the replicates' mean plus a normal deviation of
//!   the spread the table's accuracies have about it).
//!
//! A strategy learns accuracies from the table alone, so it cannot expect to find
//! much more of the front than this oracle: where front membership is decided by a
//! margin of the order of the noise, no model of the genes can predict it.

use std::fmt::Write as _;
use std::path::Path;

use polars::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::draws::front_counts;
use crate::error::{Error, Result};
use crate::genes::Genome;
use crate::metrics::{Scores, Truth};
use crate::pareto::{front, Point};
use crate::replay::{frame, stats, table, write_csv};
use crate::strategy::Objectives;
use crate::study::{write_atomic, View};

/// The oracle's scores at one budget.
#[derive(Debug, Clone)]
pub struct Row {
    pub seed: u64,
    pub budget: usize,
    pub scores: Scores,
}

/// What the replicates say about a table.
pub struct Noise {
    pub configurations: usize,
    /// Trainings per configuration: the table's and the replicates'.
    pub trainings: usize,
    /// Spread of the table's accuracy about the replicates' mean: `1.4826` times the
    /// median absolute deviation, robust to the odd training that collapses.
    pub spread: f64,
    /// Standard deviation of one training's accuracy, from `spread` (which also holds
    /// the replicates' mean's own noise).
    pub sd: f64,
    /// Configurations whose table accuracy lies more than five spreads from the
    /// replicates' mean.
    pub outliers: usize,
    /// Mean absolute difference between the table's accuracy and a replicate's.
    pub mean_abs_diff: f64,
    /// Per replicate: the share of the table's front members on the replicate's front
    /// (both priced alike).
    pub reproduced: Vec<f64>,
    pub front: usize,
    pub oracle: Vec<Row>,
    /// Per configuration: its label and accuracies, the table's first.
    pub accuracies: Vec<(String, Vec<f64>)>,
    /// Whether each configuration is on the table's front.
    pub on_front: Vec<bool>,
}

/// The median (of a non-empty slice).
fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n % 2 {
        1 => v[n / 2],
        _ => 0.5 * (v[n / 2 - 1] + v[n / 2]),
    }
}

/// The oracle's trainings, in order: `budget` configurations of `points` (accuracy the
/// table's), each the unseen one most often on the front over `draws` draws of the
/// unseen accuracies `mean + sd * N(0, 1)`; ties to the higher mean.
fn oracle(
    points: &[Point],
    mean: &[f64],
    sd: f64,
    budget: usize,
    draws: usize,
    seed: u64,
) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut seen = vec![false; points.len()];
    let mut order = Vec::with_capacity(budget);
    // Feasible configurations, fastest first (this order settles exact ties).
    let mut feasible: Vec<usize> = (0..points.len())
        .filter(|&i| points[i].violation == 0.0)
        .collect();
    feasible.sort_by(|&a, &b| points[a].seconds.total_cmp(&points[b].seconds));
    while order.len() < budget.min(feasible.len()) {
        let dist: Vec<(f64, f64)> = (0..points.len())
            .map(|i| match seen[i] {
                true => (points[i].accuracy, 0.0),
                false => (mean[i], sd),
            })
            .collect();
        let hits = front_counts(points, &dist, f64::NEG_INFINITY, draws, &mut rng);
        let next = feasible
            .iter()
            .copied()
            .filter(|&i| !seen[i])
            .max_by(|&a, &b| hits[a].cmp(&hits[b]).then(mean[a].total_cmp(&mean[b])))
            .expect("an unseen feasible configuration is left");
        seen[next] = true;
        order.push(next);
    }
    order
}

/// Compares the table of `study` with its `replicates` (the same space under other
/// training seeds) and runs the oracle with seeds `0..seeds` at `budgets`.
pub fn noise(
    study: &View,
    replicates: &[View],
    seeds: u64,
    budgets: &[usize],
    draws: usize,
) -> Result<Noise> {
    if replicates.is_empty() {
        return Err(Error::Other(
            "noise: name at least one replicate table".into(),
        ));
    }
    let without_train_seed = |v: &View| {
        let mut s = v.space.clone();
        s.train_seed = None;
        s.identity()
    };
    let base = table(study)?;
    let mut others = Vec::with_capacity(replicates.len());
    for r in replicates {
        if without_train_seed(r) != without_train_seed(study) {
            return Err(Error::Other(format!(
                "noise: replicate `{}` is not the table's space under another training seed",
                r.space.name
            )));
        }
        others.push(table(r)?);
    }
    let valid = study.genomes.valid();
    let values: Vec<Vec<f64>> = valid
        .iter()
        .map(|g| {
            std::iter::once(base[g])
                .chain(others.iter().map(|t| t[g]))
                .collect()
        })
        .collect();
    let r = others.len() as f64;
    let mean: Vec<f64> = values
        .iter()
        .map(|v| v[1..].iter().sum::<f64>() / r)
        .collect();
    let dev: Vec<f64> = values.iter().zip(&mean).map(|(v, m)| v[0] - m).collect();
    let centre = median(&dev);
    let spread = 1.4826 * median(&dev.iter().map(|d| (d - centre).abs()).collect::<Vec<_>>());
    // The deviation holds one training's noise and the mean's: sd^2 (1 + 1/r).
    let sd = spread / (1.0 + 1.0 / r).sqrt();
    let outliers = dev.iter().filter(|d| d.abs() > 5.0 * spread).count();
    let mean_abs_diff = values
        .iter()
        .map(|v| v[1..].iter().map(|a| (a - v[0]).abs()).sum::<f64>() / r)
        .sum::<f64>()
        / valid.len() as f64;
    let priced = |t: &std::collections::HashMap<Genome, f64>| -> Vec<Point> {
        valid.iter().map(|g| study.point(g, Some(t[g]))).collect()
    };
    let points = priced(&base);
    let truth_members = front(&points);
    let reproduced = others
        .iter()
        .map(|t| {
            let theirs = front(&priced(t));
            let kept = truth_members.iter().filter(|i| theirs.contains(i)).count();
            kept as f64 / truth_members.len().max(1) as f64
        })
        .collect();
    let mut on_front = vec![false; valid.len()];
    truth_members.iter().for_each(|&i| on_front[i] = true);
    let all: Vec<(Genome, Point)> = valid.iter().copied().zip(points.iter().copied()).collect();
    let truth = Truth::new(&all);
    let max_budget = budgets.iter().copied().max().unwrap_or(0);
    let mut rows = Vec::new();
    for seed in 0..seeds {
        let order = oracle(&points, &mean, spread, max_budget, draws, seed);
        let evaluated: Vec<(Genome, Point)> = order.iter().map(|&i| all[i]).collect();
        for &b in budgets {
            rows.push(Row {
                seed,
                budget: b,
                scores: truth.score(&evaluated[..b.min(evaluated.len())]),
            });
        }
    }
    Ok(Noise {
        configurations: valid.len(),
        trainings: 1 + others.len(),
        spread,
        sd,
        outliers,
        mean_abs_diff,
        reproduced,
        front: truth.front_len(),
        oracle: rows,
        accuracies: valid
            .iter()
            .zip(values)
            .map(|(g, v)| (study.genomes.spec(g).label(), v))
            .collect(),
        on_front,
    })
}

/// Writes `noise.md`, `noise.csv` (every configuration's accuracies) and `noise.png`
/// (`.svg`: the table's accuracies against the first replicate's) into `out`; returns
/// the summary as markdown.
pub fn write(n: &Noise, budgets: &[usize], out: &Path, name: &str) -> Result<String> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let mut cols = vec![Column::new(
        "config".into(),
        n.accuracies.iter().map(|a| a.0.clone()).collect::<Vec<_>>(),
    )];
    for t in 0..n.trainings {
        let name = match t {
            0 => "table".to_string(),
            t => format!("replicate_{t}"),
        };
        cols.push(Column::new(
            name.into(),
            n.accuracies.iter().map(|a| a.1[t]).collect::<Vec<_>>(),
        ));
    }
    write_csv(&mut frame(cols)?, &out.join("noise.csv"))?;
    let pair = |front: bool| -> Vec<(f64, f64)> {
        let mine = n
            .accuracies
            .iter()
            .zip(&n.on_front)
            .filter(|a| *a.1 == front);
        mine.map(|(a, _)| (a.1[0], a.1[1])).collect()
    };
    let groups = [
        ("off the table's front".to_string(), pair(false)),
        ("on the table's front".to_string(), pair(true)),
    ];
    let desc = (
        "validation accuracy, the table",
        "validation accuracy, retrained",
    );
    let title = format!("{name}: each configuration, in the table and retrained");
    cryptpeft_plot::against(&out.join("noise"), &title, desc, &groups).map_err(Error::Other)?;
    let mut md = format!("# {name}: training noise and the oracle's front share\n\n");
    let pct = |x: f64| format!("{:.1}%", 100.0 * x);
    let _ = writeln!(
        md,
        "{} configurations, each trained {} times on the same split. One training's \
         validation accuracy has a standard deviation of {:.4} (robust: from the median \
         absolute deviation of the table's accuracies about the replicates' mean, {:.4}; \
         {} configurations lie more than five times that from it, a training that \
         collapsed or took off). The table and a replicate differ by {:.4} on average. Of \
         the table's {} front members, {} stay on the front when retrained (per \
         replicate).\n",
        n.configurations,
        n.trainings,
        n.sd,
        n.spread,
        n.outliers,
        n.mean_abs_diff,
        n.front,
        n.reproduced
            .iter()
            .map(|&r| pct(r))
            .collect::<Vec<_>>()
            .join(", "),
    );
    let _ = writeln!(
        md,
        "The oracle knows every configuration's accuracy in the replicates (their mean), \
         not the table's, and trains, one at a time, the configuration most often on the \
         table's front over draws of the unseen accuracies (the replicates' mean plus a \
         normal deviation of that spread), {} seeds. It is what a perfect model of the genes \
         up to {} retraining(s) would do for front share:\n",
        n.oracle.iter().map(|r| r.seed).max().map_or(0, |s| s + 1),
        n.trainings - 1,
    );
    md.push_str("![the table against a retraining](noise.png)\n\n");
    md.push_str("| budget | nadir HV mean | nadir HV min | front share mean | front share min |\n");
    md.push_str("|---|---|---|---|---|\n");
    for &b in budgets {
        let at: Vec<&Row> = n.oracle.iter().filter(|r| r.budget == b).collect();
        let hv = stats(&at.iter().map(|r| r.scores.nadir_hv).collect::<Vec<_>>());
        let share = stats(&at.iter().map(|r| r.scores.front_share).collect::<Vec<_>>());
        let _ = writeln!(
            md,
            "| {b} | {:.3} | {:.3} | {:.3} | {:.3} |",
            hv.0, hv.1, share.0, share.1
        );
    }
    write_atomic(&out.join("noise.md"), md.as_bytes())?;
    Ok(md)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(accuracy: f64, seconds: f64) -> Point {
        Point::feasible(accuracy, seconds)
    }

    #[test]
    fn without_noise_the_oracle_takes_the_front_first() {
        let pts = [
            p(0.5, 1.0),
            p(0.4, 2.0),
            p(0.7, 3.0),
            p(0.6, 4.0),
            p(0.9, 5.0),
        ];
        let mean: Vec<f64> = pts.iter().map(|q| q.accuracy).collect();
        let mut first = oracle(&pts, &mean, 0.0, 3, 8, 0);
        first.sort_unstable();
        assert_eq!(first, [0, 2, 4]);
    }
}
