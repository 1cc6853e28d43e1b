//! Outputs of a study, rebuilt from the study alone (`cryptpeft-search report DIR`):
//! every candidate, the front per profile, the hypervolume over evaluations, plots,
//! a checkpoint per front member, and `summary.md`. Every file is written atomically.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::error::{Error, Result};
use crate::eval;
use crate::fault;
use crate::genes::{Space, GENES};
use crate::pareto::{front, hypervolume, Point};
use crate::plot;
use crate::price::Pricer;
use crate::space::SpaceFile;
use crate::study::{point_of, write_atomic, Study};
use crate::study::{State, Trial};
use crate::verify::{self, Measured};
use cryptpeft_types::stats::median;

/// One front member on one profile.
#[derive(Debug, Clone)]
pub struct FrontRow {
    pub trial: Trial,
    pub seconds: f64,
    pub checkpoint: PathBuf,
    pub measured: Option<Measured>,
}

/// The front of one profile.
#[derive(Debug, Clone)]
pub struct Front {
    pub profile: String,
    pub rows: Vec<FrontRow>,
    pub plot_png: PathBuf,
}

/// What [`write()`] produced.
#[derive(Debug)]
pub struct Outputs {
    pub dir: PathBuf,
    pub fronts: Vec<Front>,
    pub evaluated: usize,
    pub summary: PathBuf,
    /// The strategy's time per proposal beside the training's, when recorded.
    pub proposal_time: Option<String>,
}

/// A profile name fit for a file name (`custom:mbit=100,delay_ms=20` ->
/// `custom-mbit-100-delay_ms-20`).
pub fn file_name(profile: &str) -> String {
    profile
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The trials fronts are drawn from: complete, at the highest rung any reached.
pub fn finalists(trials: &[Trial]) -> Vec<Trial> {
    let top = trials
        .iter()
        .filter(|t| t.state == State::Complete)
        .map(|t| t.epochs)
        .max();
    trials
        .iter()
        .filter(|t| t.state == State::Complete && Some(t.epochs) == top)
        .cloned()
        .collect()
}

/// The trials' points on `profile`, constraints included.
pub fn points(space: &SpaceFile, trials: &[Trial], profile: usize) -> Vec<Point> {
    trials
        .iter()
        .map(|t| {
            let mut p = point_of(space, &t.price, t.val_accuracy);
            p.seconds = t.price.seconds[profile];
            p
        })
        .collect()
}

/// Writes `t`'s checkpoint from the study into `adapters/`. Studies of releases that
/// kept checkpoints as files only have them in `trials/`, or already exported.
fn export_checkpoint(study: &Study, t: &Trial) -> Result<()> {
    let to = adapter_path(&study.view.dir, t);
    if let Some(bytes) = study.view.store.checkpoint(t.number)? {
        return write_atomic(&to, &bytes);
    }
    let from = eval::trial_checkpoint(&study.view.dir, t.number);
    match std::fs::read(&from) {
        Ok(bytes) => write_atomic(&to, &bytes),
        Err(_) if to.is_file() => Ok(()),
        Err(e) => Err(Error::Study {
            at: study.view.location.to_string(),
            problem: format!(
                "trial {} ({}) has no checkpoint in the study, nor at {}: {e}",
                t.number,
                t.config,
                from.display()
            ),
        }),
    }
}

/// Writes every output of the study into its directory.
pub fn write(study: &Study, verify: bool, progress: bool) -> Result<Outputs> {
    let dir = &study.view.dir;
    let profiles = study.view.space.networks.clone();
    let mut fronts_idx = Vec::new();
    let finals = finalists(&study.trials()?);
    for p in 0..profiles.len() {
        fronts_idx.push(front(&points(&study.view.space, &finals, p)));
    }
    // Checkpoints of the front members, named by spec, from the study (trained on
    // whichever machine).
    let adapters = dir.join("adapters");
    std::fs::create_dir_all(&adapters).map_err(|e| Error::io(&adapters, e))?;
    let mut members: Vec<usize> = fronts_idx.iter().flatten().copied().collect();
    members.sort_unstable();
    members.dedup();
    for &i in &members {
        export_checkpoint(study, &finals[i])?;
    }
    // Test accuracy: once, for front members only (selection never saw it).
    for &i in &members {
        let t = &finals[i];
        if t.test_accuracy.is_none() {
            let acc = eval::test_accuracy(&study.features, &adapter_path(dir, t))?;
            study.view.store.set_test_accuracy(t.number, acc)?;
        }
    }
    let trials = study.trials()?;
    let finals = finalists(&trials);
    write_table(&candidates(study, &trials)?, &dir.join("candidates"), true)?;
    fault::point("output");
    let mut fronts = Vec::new();
    for (p, name) in profiles.iter().enumerate() {
        let pts = points(&study.view.space, &finals, p);
        let rows: Vec<FrontRow> = fronts_idx[p]
            .iter()
            .map(|&i| FrontRow {
                trial: finals[i].clone(),
                seconds: pts[i].seconds,
                checkpoint: adapter_path(dir, &finals[i]),
                measured: None,
            })
            .collect();
        let rows = if verify {
            let profile = &study.view.pricer.profiles()[p];
            rows.into_iter()
                .map(|mut r| {
                    if progress {
                        eprintln!("verifying {} on {name}", r.trial.config);
                    }
                    r.measured = Some(verify::measure(study, &r.checkpoint, profile)?);
                    Ok(r)
                })
                .collect::<Result<Vec<_>>>()?
        } else {
            rows
        };
        let stem = dir.join(format!("pareto_{}", file_name(name)));
        write_table(&front_table(&rows)?, &stem, false)?;
        let title = format!(
            "{}: {} (predicted online latency, {name})",
            study.view.space.name, study.view.space.strategy
        );
        plot::pareto(&stem, &title, &pts, &finals, &fronts_idx[p], study, p)?;
        fronts.push(Front {
            profile: name.clone(),
            rows,
            plot_png: stem.with_extension("png"),
        });
    }
    let hv = hypervolume_table(study, &trials)?;
    write_table(&hv.0, &dir.join("hypervolume"), false)?;
    plot::hypervolume(
        &dir.join("hypervolume"),
        &study.view.space.name,
        &hv.1,
        &profiles,
    )?;
    let summary = dir.join("summary.md");
    write_atomic(&summary, summary_md(study, &trials, &fronts).as_bytes())?;
    study.view.store.settle()?;
    Ok(Outputs {
        dir: dir.clone(),
        evaluated: trials.iter().filter(|t| t.state == State::Complete).count(),
        proposal_time: proposal_time(&trials),
        fronts,
        summary,
    })
}

fn adapter_path(dir: &Path, t: &Trial) -> PathBuf {
    dir.join("adapters")
        .join(format!("{}.safetensors", t.config))
}

fn write_table(df: &DataFrame, stem: &Path, parquet: bool) -> Result<()> {
    let mut df = df.clone();
    let csv = stem.with_extension("csv");
    let mut buf = Vec::new();
    CsvWriter::new(&mut buf)
        .finish(&mut df)
        .map_err(|e| Error::Other(format!("{}: {e}", csv.display())))?;
    write_atomic(&csv, &buf)?;
    if parquet {
        let pq = stem.with_extension("parquet");
        let mut buf = Vec::new();
        ParquetWriter::new(&mut buf)
            .finish(&mut df)
            .map_err(|e| Error::Other(format!("{}: {e}", pq.display())))?;
        write_atomic(&pq, &buf)?;
    }
    Ok(())
}

fn df(cols: Vec<Column>) -> Result<DataFrame> {
    DataFrame::new_infer_height(cols).map_err(|e| Error::Other(format!("table: {e}")))
}

/// Every trial: genes, fidelity, accuracy, costs per profile, training seconds.
fn candidates(study: &Study, trials: &[Trial]) -> Result<DataFrame> {
    let specs: Vec<_> = trials
        .iter()
        .map(|t| study.view.genomes.spec(&t.genome))
        .collect();
    let mut cols = vec![
        Column::new(
            "trial".into(),
            trials.iter().map(|t| t.number).collect::<Vec<_>>(),
        ),
        Column::new(
            "state".into(),
            trials
                .iter()
                .map(|t| format!("{:?}", t.state).to_lowercase())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "config".into(),
            trials.iter().map(|t| t.config.clone()).collect::<Vec<_>>(),
        ),
    ];
    let gene_col = |k: usize| -> Column {
        let name = GENES[k];
        match k {
            0..=3 => Column::new(
                name.into(),
                specs
                    .iter()
                    .map(|s| [s.heads, s.rank, s.scope, s.blocks][k] as u64)
                    .collect::<Vec<_>>(),
            ),
            7 => Column::new(
                name.into(),
                specs.iter().map(|s| s.scale).collect::<Vec<_>>(),
            ),
            _ => Column::new(
                name.into(),
                specs
                    .iter()
                    .map(|s| match k {
                        4 => s.attention.to_string(),
                        5 => s.norm.to_string(),
                        _ => s.activation.to_string(),
                    })
                    .collect::<Vec<_>>(),
            ),
        }
    };
    cols.extend((0..GENES.len()).map(gene_col));
    cols.extend([
        Column::new(
            "epochs".into(),
            trials.iter().map(|t| t.epochs as u64).collect::<Vec<_>>(),
        ),
        Column::new(
            "val_accuracy".into(),
            trials.iter().map(|t| t.val_accuracy).collect::<Vec<_>>(),
        ),
        Column::new(
            "test_accuracy".into(),
            trials.iter().map(|t| t.test_accuracy).collect::<Vec<_>>(),
        ),
        Column::new(
            "train_seconds".into(),
            trials.iter().map(|t| t.train_seconds).collect::<Vec<_>>(),
        ),
        Column::new(
            "propose_seconds".into(),
            trials.iter().map(|t| t.propose_seconds).collect::<Vec<_>>(),
        ),
        // Which machine and process evaluated it (workers may share a study).
        Column::new(
            "worker".into(),
            trials.iter().map(|t| t.worker.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "online_bytes".into(),
            trials
                .iter()
                .map(|t| t.price.online_bytes)
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "rounds".into(),
            trials.iter().map(|t| t.price.rounds).collect::<Vec<_>>(),
        ),
        // Priced afresh: studies priced before the bound was kept lack it.
        Column::new(
            "depth_bound".into(),
            specs
                .iter()
                .map(|s| study.view.pricer.price(s).depth_bound)
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "offline_bytes".into(),
            trials
                .iter()
                .map(|t| t.price.offline_bytes)
                .collect::<Vec<_>>(),
        ),
    ]);
    for (p, name) in study.view.space.networks.iter().enumerate() {
        cols.push(Column::new(
            format!("seconds_{}", file_name(name)).into(),
            trials
                .iter()
                .map(|t| t.price.seconds[p])
                .collect::<Vec<_>>(),
        ));
    }
    df(cols)
}

fn front_table(rows: &[FrontRow]) -> Result<DataFrame> {
    let t = |f: &dyn Fn(&FrontRow) -> f64| rows.iter().map(f).collect::<Vec<f64>>();
    let mut cols = vec![
        Column::new(
            "trial".into(),
            rows.iter().map(|r| r.trial.number).collect::<Vec<_>>(),
        ),
        Column::new(
            "config".into(),
            rows.iter()
                .map(|r| r.trial.config.clone())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "val_accuracy".into(),
            t(&|r| r.trial.val_accuracy.unwrap_or(f64::NAN)),
        ),
        Column::new(
            "test_accuracy".into(),
            t(&|r| r.trial.test_accuracy.unwrap_or(f64::NAN)),
        ),
        Column::new("predicted_online_s".into(), t(&|r| r.seconds)),
        Column::new(
            "online_bytes".into(),
            rows.iter()
                .map(|r| r.trial.price.online_bytes)
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "rounds".into(),
            rows.iter()
                .map(|r| r.trial.price.rounds)
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "offline_bytes".into(),
            rows.iter()
                .map(|r| r.trial.price.offline_bytes)
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "checkpoint".into(),
            rows.iter()
                .map(|r| {
                    r.checkpoint
                        .file_name()
                        .map(|f| format!("adapters/{}", f.to_string_lossy()))
                        .unwrap_or_default()
                })
                .collect::<Vec<_>>(),
        ),
    ];
    if rows.iter().all(|r| r.measured.is_some()) && !rows.is_empty() {
        let m = |f: &dyn Fn(&Measured) -> f64| {
            rows.iter()
                .map(|r| f(r.measured.as_ref().expect("all measured")))
                .collect::<Vec<f64>>()
        };
        cols.extend([
            Column::new("measured_online_s".into(), m(&|m| m.online_s)),
            Column::new(
                "measured_online_bytes".into(),
                rows.iter()
                    .map(|r| r.measured.as_ref().map_or(0, |m| m.online_bytes))
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "measured_rounds".into(),
                rows.iter()
                    .map(|r| r.measured.as_ref().map_or(0, |m| m.rounds))
                    .collect::<Vec<_>>(),
            ),
            Column::new("max_abs_logit_err".into(), m(&|m| m.max_abs_logit_err)),
        ]);
    }
    df(cols)
}

/// Hypervolume per profile after each completed trial of the first rung (one fidelity:
/// accuracies after different epochs do not compare), against the space's slowest
/// configuration on that profile. Returns the table and the curves.
fn hypervolume_table(study: &Study, trials: &[Trial]) -> Result<(DataFrame, Vec<Vec<f64>>)> {
    let references = reference_seconds(&study.view.genomes, &study.view.pricer);
    let curves = hypervolume_curves(&study.view.space, &references, trials);
    let evaluations = curves.first().map_or(0, Vec::len) as u64;
    let mut cols = vec![Column::new(
        "evaluations".into(),
        (1..=evaluations).collect::<Vec<_>>(),
    )];
    for (curve, name) in curves.iter().zip(&study.view.space.networks) {
        cols.push(Column::new(
            format!("hypervolume_{}", file_name(name)).into(),
            curve.clone(),
        ));
    }
    Ok((df(cols)?, curves))
}

/// Hypervolume per profile after each completed trial of the first rung, against
/// `references` (one fidelity: accuracies after different epochs do not compare).
pub fn hypervolume_curves(
    space: &SpaceFile,
    references: &[f64],
    trials: &[Trial],
) -> Vec<Vec<f64>> {
    let first = space.fidelity.rungs()[0];
    let done: Vec<Trial> = trials
        .iter()
        .filter(|t| t.state == State::Complete && t.epochs == first)
        .cloned()
        .collect();
    (0..space.networks.len())
        .map(|p| {
            let pts = points(space, &done, p);
            (1..=pts.len())
                .map(|k| hypervolume(&pts[..k], references[p]))
                .collect()
        })
        .collect()
}

/// The slowest valid configuration's predicted seconds per profile (docs/DESIGN.md
/// section 5's hypervolume reference).
pub fn reference_seconds(genomes: &Space, pricer: &Pricer) -> Vec<f64> {
    let mut slowest = vec![0.0f64; pricer.profiles().len()];
    for g in genomes.valid() {
        for (s, x) in slowest
            .iter_mut()
            .zip(pricer.price(&genomes.spec(g)).seconds)
        {
            *s = s.max(x);
        }
    }
    slowest
}

/// The strategy's own time per trial beside the training's (medians).
fn proposal_time(trials: &[Trial]) -> Option<String> {
    let propose = median(
        &trials
            .iter()
            .filter_map(|t| t.propose_seconds)
            .collect::<Vec<_>>(),
    )?;
    let train = median(
        &trials
            .iter()
            .filter_map(|t| t.train_seconds)
            .collect::<Vec<_>>(),
    )?;
    Some(format!(
        "Proposal time (surrogate fit and acquisition included): median {:.1} ms per trial, \
         {:.1}% of the median training time ({:.2} s).",
        1e3 * propose,
        100.0 * propose / train,
        train
    ))
}

fn summary_md(study: &Study, trials: &[Trial], fronts: &[Front]) -> String {
    let s = &study.view.space;
    let mut md = String::new();
    let count = |st: State| trials.iter().filter(|t| t.state == st).count();
    let _ = writeln!(
        md,
        "# Search `{}`: {} over {} valid configurations\n",
        s.name,
        s.strategy,
        study.view.genomes.valid().len()
    );
    let _ = writeln!(
        md,
        "{} trials: {} complete, {} pruned, {} failed, {} running. Backbone `{}`, dataset {:?}, \
         validation {:.0}% of the training split, seed {} (training seed {}, strategy seed {}). Costs \
         predicted by the cost model ({}{}) with constants measured on: {}.\n",
        trials.len(),
        count(State::Complete),
        count(State::Pruned),
        count(State::Failed),
        count(State::Running),
        s.backbone,
        s.data.dataset,
        100.0 * s.validation,
        s.seed,
        s.train_seed(),
        s.strategy_seed(),
        cryptpeft_cost_model::version(),
        study.view.priced_by.as_ref().map_or(String::new(), |old| {
            format!("; every trial repriced, the study's prices came from `{old}`")
        }),
        study.view.pricer.constants().machine
    );
    if let Some(line) = proposal_time(trials) {
        let _ = writeln!(md, "{line}\n");
    }
    for f in fronts {
        let file = file_name(&f.profile);
        let _ = writeln!(
            md,
            "## Front on `{}`\n\n![front {}](pareto_{file}.png)\n",
            f.profile, f.profile
        );
        let measured = f.rows.iter().any(|r| r.measured.is_some());
        let _ = write!(
            md,
            "| adapter | val acc | test acc | predicted ms | online MB | rounds | offline MB |"
        );
        if measured {
            let _ = write!(
                md,
                " measured ms | measured MB | measured rounds | max logit err |"
            );
        }
        let _ = writeln!(md, " checkpoint |");
        let _ = writeln!(md, "|{}", "---|".repeat(if measured { 12 } else { 8 }));
        for r in &f.rows {
            let t = &r.trial;
            let _ = write!(
                md,
                "| {} | {:.2}% | {:.2}% | {:.2} | {:.3} | {} | {:.3} |",
                t.config,
                100.0 * t.val_accuracy.unwrap_or(f64::NAN),
                100.0 * t.test_accuracy.unwrap_or(f64::NAN),
                1e3 * r.seconds,
                t.price.online_bytes as f64 / 1e6,
                t.price.rounds,
                t.price.offline_bytes as f64 / 1e6
            );
            if let Some(m) = &r.measured {
                let _ = write!(
                    md,
                    " {:.2} | {:.3} | {} | {:.1e} |",
                    1e3 * m.online_s,
                    m.online_bytes as f64 / 1e6,
                    m.rounds,
                    m.max_abs_logit_err
                );
            }
            let _ = writeln!(md, " `adapters/{}.safetensors` |", t.config);
        }
        let _ = writeln!(md);
    }
    let _ = writeln!(md, "## Hypervolume\n\n![hypervolume](hypervolume.png)\n");
    let _ = writeln!(
        md,
        "Every trial is in `candidates.csv` / `.parquet`; fronts in `pareto_<profile>.csv`; \
         the study in `study.sqlite` (`cryptpeft-search report DIR` rebuilds these files)."
    );
    md
}
