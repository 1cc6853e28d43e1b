//! `cryptpeft experiment experiments/NAME.yaml`: runs one of the paper's comparisons and
//! writes `results/NAME/`: its table (`table.csv`, via polars), its figure (`figure.png`
//! and `.svg`, via plotters; `figure-TASK-NETWORK` for accuracy against latency) where it
//! has one, and `meta.json` (the command, commit,
//! machine, date, and what the experiment shows beside the paper's number).

use std::path::{Path, PathBuf};

use clap::Args;
use cryptpeft_cost_model::{cost, Constants};
use cryptpeft_deploy::loopback;
use cryptpeft_private_eval::baseline::{Baseline, BaselineModel};
use cryptpeft_private_eval::{hidden, model::OwcModel, plan::lower};
use cryptpeft_types::{AdapterSpec, AttentionKind, BackboneSpec, NetworkProfile};
use polars::prelude::*;
use serde::Deserialize;

#[derive(Args)]
pub struct ExperimentArgs {
    /// The experiment's YAML (see `experiments/`).
    file: PathBuf,
    /// Where `NAME/` goes.
    #[arg(long, default_value = "results")]
    out: PathBuf,
}

#[derive(Deserialize)]
struct Experiment {
    name: String,
    /// What the experiment shows, in one sentence.
    shows: String,
    /// The paper's comparable figure.
    paper: String,
    #[serde(flatten)]
    kind: Kind,
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
enum Kind {
    /// One adapter per attention kind across a network sweep (every bandwidth with
    /// every delay), measured with the three roles under TLS beside the cost model.
    NetworkSweep {
        adapter: String,
        attentions: Vec<AttentionKind>,
        bandwidth_mbit: Vec<f64>,
        delay_ms: Vec<f64>,
        #[serde(default = "three")]
        repeat: usize,
    },
    /// Accuracy (the trainer's table, `results/train/accuracy_table.csv`) against the
    /// latency measured here of each method on that table's backbone, per task: the
    /// adapters and the baselines SFT, LoRA and AdaptFormer (full fine-tuning has LoRA's
    /// plan: every layer on shared data). Rows with augmented views and the linear
    /// probe are left out.
    AccuracyLatency {
        accuracy: PathBuf,
        /// Search fronts (`pareto_NET.csv` of `cryptpeft-search`): each member's
        /// checkpoint (trained weights) measured the same way, its test accuracy from
        /// the search.
        #[serde(default)]
        fronts: Vec<Front>,
        backbone: String,
        networks: Vec<String>,
        #[serde(default = "three")]
        repeat: usize,
    },
    /// CryptPEFT's adapters against the baselines (`cryptpeft baselines`).
    Baselines {
        adapters: Vec<String>,
        measure: Vec<String>,
        networks: Vec<String>,
        #[serde(default = "three")]
        repeat: usize,
    },
}

fn three() -> usize {
    3
}

#[derive(Deserialize)]
struct Front {
    /// The task's name in the accuracy table.
    task: String,
    pareto: PathBuf,
}

/// A network sweep's columns.
#[derive(Default)]
struct SweepTable {
    attention: Vec<String>,
    bandwidth_mbit: Vec<f64>,
    delay_ms: Vec<f64>,
    online_bytes: Vec<u64>,
    rounds: Vec<u64>,
    measured_s: Vec<f64>,
    predicted_s: Vec<f64>,
}

/// Accuracy against latency's columns.
#[derive(Default)]
struct AccuracyTable {
    task: Vec<String>,
    method: Vec<String>,
    network: Vec<String>,
    test_accuracy: Vec<f64>,
    online_bytes: Vec<u64>,
    rounds: Vec<u64>,
    online_s: Vec<f64>,
    predicted_online_s: Vec<f64>,
}

pub fn run(a: ExperimentArgs) -> Result<(), String> {
    let text =
        std::fs::read_to_string(&a.file).map_err(|e| format!("{}: {e}", a.file.display()))?;
    let e: Experiment =
        serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", a.file.display()))?;
    if e.name.is_empty() || e.name.contains(['/', '\\']) || e.name.starts_with('.') {
        return Err(format!(
            "{}: `name` must be a plain folder name",
            a.file.display()
        ));
    }
    let dir = a.out.join(&e.name);
    std::fs::create_dir_all(&dir).map_err(|err| format!("{}: {err}", dir.display()))?;
    let started = std::time::SystemTime::now();
    let mut table = match &e.kind {
        Kind::NetworkSweep {
            adapter,
            attentions,
            bandwidth_mbit,
            delay_ms,
            repeat,
        } => network_sweep(
            &e,
            adapter,
            attentions,
            (bandwidth_mbit, delay_ms),
            *repeat,
            &dir,
        )?,
        Kind::AccuracyLatency {
            accuracy,
            fronts,
            backbone,
            networks,
            repeat,
        } => accuracy_latency(&e, (accuracy, fronts), backbone, networks, *repeat, &dir)?,
        Kind::Baselines {
            adapters,
            measure,
            networks,
            repeat,
        } => {
            let csv = dir.join("table.csv");
            let parse = |what: &str, v: &str| format!("{what} `{v}`");
            let b = crate::baselines::BaselinesArgs {
                adapters: adapters.clone(),
                measure: measure
                    .iter()
                    .map(|m| m.parse().map_err(|err: String| parse("baseline", &err)))
                    .collect::<Result<_, _>>()?,
                networks: networks
                    .iter()
                    .map(|n| {
                        n.parse()
                            .map_err(|err| parse("network", &format!("{n}: {err}")))
                    })
                    .collect::<Result<_, _>>()?,
                repeat: *repeat,
                deep_repeat: 1,
                protocol: Default::default(),
                out: csv.clone(),
            };
            crate::baselines::run(b)?;
            CsvReadOptions::default()
                .try_into_reader_with_file_path(Some(csv))
                .and_then(|r| r.finish())
                .map_err(|err| err.to_string())?
        }
    };
    write_table(&dir.join("table.csv"), &mut table)?;
    write_meta(&dir, &e, &a.file, started)?;
    eprintln!("wrote {}", dir.display());
    Ok(())
}

/// Rows: attention, bandwidth, delay, bytes, rounds, measured and predicted seconds;
/// the figure: seconds against whichever of bandwidth and delay varies.
fn network_sweep(
    e: &Experiment,
    adapter: &str,
    attentions: &[AttentionKind],
    (bandwidths, delays): (&[f64], &[f64]),
    repeat: usize,
    dir: &Path,
) -> Result<DataFrame, String> {
    let bb = BackboneSpec::vit_b16();
    let consts = Constants::shipped();
    let base: AdapterSpec = adapter
        .parse()
        .map_err(|err| format!("adapter `{adapter}`: {err}"))?;
    let by_bandwidth = bandwidths.len() > 1;
    let mut t = SweepTable::default();
    let (mut measured, mut model) = (Vec::new(), Vec::new());
    let names: Vec<String> = attentions.iter().map(|a| a.to_string()).collect();
    for &attention in attentions {
        let spec = AdapterSpec {
            attention,
            ..base.clone()
        };
        spec.validate(bb.layers).map_err(|err| err.to_string())?;
        let model_w = OwcModel::random(spec.clone(), bb.clone(), 100, 7);
        let (plan, _) =
            lower::lower(&model_w, Default::default()).map_err(|err| err.to_string())?;
        let x = hidden::random(spec.scope + 1, bb.tokens(), bb.hidden_dim, 17);
        let (mut m, mut p) = (Vec::new(), Vec::new());
        for &bw in bandwidths {
            for &delay in delays {
                let profile = NetworkProfile {
                    name: format!("{bw}mbit-{delay}ms"),
                    bandwidth_bps: Some(bw * 1e6),
                    one_way_delay_s: delay / 1e3,
                };
                let b = loopback::bench_secure(
                    &model_w,
                    &x,
                    profile.clone(),
                    repeat,
                    true,
                    Default::default(),
                )
                .map_err(|err| err.to_string())?;
                let c = cost(&plan, &profile, &consts);
                eprintln!(
                    "{} {}: {:.1} ms measured, {:.1} ms predicted",
                    spec.label(),
                    profile.name,
                    1e3 * b.online_s,
                    1e3 * c.predicted_online_s
                );
                let xv = if by_bandwidth { bw.log10() } else { delay };
                m.push((xv, 1e3 * b.online_s));
                p.push((xv, 1e3 * c.predicted_online_s));
                t.attention.push(attention.to_string());
                t.bandwidth_mbit.push(bw);
                t.delay_ms.push(delay);
                t.online_bytes.push(b.online_bytes);
                t.rounds.push(b.rounds);
                t.measured_s.push(b.online_s);
                t.predicted_s.push(c.predicted_online_s);
            }
        }
        measured.push(m);
        model.push(p);
    }
    let x_desc = match by_bandwidth {
        true => format!("log10 bandwidth (Mbit/s), {} ms one way", delays[0]),
        false => format!("one-way delay (ms), {} Mbit/s", bandwidths[0]),
    };
    cryptpeft_plot::measured_vs_model(
        &dir.join("figure"),
        &format!("{}: {} per attention kind", e.name, base.label()),
        (&x_desc, "online latency per inference (ms)"),
        &measured,
        &model,
        &names,
    )
    .map_err(|err| err.to_string())?;
    DataFrame::new_infer_height(vec![
        Column::new("attention".into(), t.attention),
        Column::new("bandwidth_mbit".into(), t.bandwidth_mbit),
        Column::new("delay_ms".into(), t.delay_ms),
        Column::new("online_bytes".into(), t.online_bytes),
        Column::new("rounds".into(), t.rounds),
        Column::new("measured_s".into(), t.measured_s),
        Column::new("predicted_s".into(), t.predicted_s),
    ])
    .map_err(|err| err.to_string())
}

/// What a method label of the trainer's table runs under MPC.
enum Method {
    Adapter(AdapterSpec),
    Baseline(Baseline),
    /// A search front member's checkpoint.
    Searched(Box<OwcModel>),
}

/// `cryptpeft h2-r32-s2-layernorm`, `sft-1`, `lora-r8`, `adaptformer-r16`, `full-ft`;
/// `None` for what has no MPC plan here (the linear probe).
fn method(label: &str) -> Result<Option<Method>, String> {
    if let Some(spec) = label.strip_prefix("cryptpeft ") {
        let mut parts = spec.split('-');
        let mut num = |p: char| {
            parts
                .next()
                .and_then(|x| x.strip_prefix(p))
                .and_then(|x| x.parse().ok())
                .ok_or_else(|| format!("method `{label}`: expected h, r, s"))
        };
        let (h, r, sc) = (num('h')?, num('r')?, num('s')?);
        let mut a = AdapterSpec::paper(h, r, sc);
        for flag in parts {
            match flag {
                "layernorm" => a.norm = cryptpeft_types::NormKind::LayerNorm,
                "softmax" => a.attention = AttentionKind::Softmax,
                other => return Err(format!("method `{label}`: unknown part `{other}`")),
            }
        }
        return Ok(Some(Method::Adapter(a)));
    }
    Ok(match label {
        "linear-probe" => None,
        "full-ft" => Some(Method::Baseline(Baseline::Lora)),
        l if l.starts_with("lora") => Some(Method::Baseline(Baseline::Lora)),
        l => Some(Method::Baseline(l.parse()?)),
    })
}

/// Classes of a task of the trainer's table.
fn classes(task: &str) -> usize {
    match task {
        "fashion-mnist-5-9" => 5,
        _ => 10,
    }
}

/// The rows of a search front: `(config, test accuracy, model)`.
fn front_rows(f: &Front) -> Result<Vec<(String, f64, OwcModel)>, String> {
    let df = CsvReadOptions::default()
        .try_into_reader_with_file_path(Some(f.pareto.clone()))
        .and_then(|r| r.finish())
        .map_err(|err| format!("{}: {err}", f.pareto.display()))?;
    let bad = |err: PolarsError| format!("{}: {err}", f.pareto.display());
    let configs = df
        .column("config")
        .map_err(bad)?
        .str()
        .map_err(bad)?
        .clone();
    let ckpts = df
        .column("checkpoint")
        .map_err(bad)?
        .str()
        .map_err(bad)?
        .clone();
    let accs = df
        .column("test_accuracy")
        .map_err(bad)?
        .cast(&DataType::Float64)
        .map_err(bad)?;
    let accs = accs.f64().map_err(bad)?;
    let dir = f.pareto.parent().unwrap_or(Path::new("."));
    (0..df.height())
        .map(|i| {
            let (Some(c), Some(k), Some(a)) = (configs.get(i), ckpts.get(i), accs.get(i)) else {
                return Err(format!("{}: row {i} has empty fields", f.pareto.display()));
            };
            let m = OwcModel::load(&dir.join(k)).map_err(|err| format!("{k}: {err}"))?;
            Ok((c.to_string(), a, m))
        })
        .collect()
}

fn accuracy_latency(
    e: &Experiment,
    (accuracy, fronts): (&Path, &[Front]),
    backbone: &str,
    networks: &[String],
    repeat: usize,
    dir: &Path,
) -> Result<DataFrame, String> {
    let bb = BackboneSpec::by_name(backbone).map_err(|err| err.to_string())?;
    let consts = Constants::shipped();
    let acc = CsvReadOptions::default()
        .try_into_reader_with_file_path(Some(accuracy.to_path_buf()))
        .and_then(|r| r.finish())
        .map_err(|err| format!("{}: {err}", accuracy.display()))?;
    let col = |name: &str| {
        acc.column(name)
            .map_err(|err| format!("{}: {err}", accuracy.display()))
    };
    let (tasks, methods) = (
        col("task")?.str().map_err(|e| e.to_string())?,
        col("method")?.str().map_err(|e| e.to_string())?,
    );
    let views = col("views")?
        .cast(&DataType::Int64)
        .map_err(|e| e.to_string())?;
    let accs = col("test_accuracy")?
        .cast(&DataType::Float64)
        .map_err(|e| e.to_string())?;
    let (views, accs) = (
        views.i64().map_err(|e| e.to_string())?,
        accs.f64().map_err(|e| e.to_string())?,
    );
    let mut t = AccuracyTable::default();
    // Per task and network: the table's adapters', the search fronts' and the baselines' points.
    type Points = Vec<(f64, f64, String)>;
    let mut groups: std::collections::BTreeMap<(String, String), [Points; 3]> = Default::default();
    let mut runs: Vec<(String, String, f64, Method)> = Vec::new();
    for i in 0..acc.height() {
        let (Some(task), Some(label), Some(v), Some(a)) =
            (tasks.get(i), methods.get(i), views.get(i), accs.get(i))
        else {
            return Err(format!("{}: row {i} has empty fields", accuracy.display()));
        };
        if let (Some(m), 0) = (method(label)?, v) {
            runs.push((task.to_string(), label.to_string(), a, m));
        }
    }
    for f in fronts {
        for (config, a, model) in front_rows(f)? {
            runs.push((
                f.task.clone(),
                format!("search {config}"),
                a,
                Method::Searched(Box::new(model)),
            ));
        }
    }
    for (task, label, a, m) in &runs {
        let (task, label, a) = (task.as_str(), label.as_str(), *a);
        for net in networks {
            let profile: NetworkProfile = net
                .parse()
                .map_err(|err| format!("network `{net}`: {err}"))?;
            let (b, plan) = match &m {
                Method::Adapter(spec) => {
                    spec.validate(bb.layers).map_err(|err| err.to_string())?;
                    let model = OwcModel::random(spec.clone(), bb.clone(), classes(task), 3);
                    let x = hidden::random(spec.scope + 1, bb.tokens(), bb.hidden_dim, 17);
                    let b = loopback::bench_secure(
                        &model,
                        &x,
                        profile.clone(),
                        repeat,
                        true,
                        Default::default(),
                    );
                    (b, lower::lower(&model, Default::default()).map(|p| p.0))
                }
                Method::Searched(model) => {
                    let x = hidden::random(model.spec.scope + 1, bb.tokens(), bb.hidden_dim, 17);
                    let b = loopback::bench_secure(
                        model,
                        &x,
                        profile.clone(),
                        repeat,
                        true,
                        Default::default(),
                    );
                    (b, lower::lower(model, Default::default()).map(|p| p.0))
                }
                Method::Baseline(kind) => {
                    let model = BaselineModel::random(*kind, bb.clone(), classes(task), 3)?;
                    let x = hidden::random(1, bb.tokens(), bb.hidden_dim, 17);
                    let b = loopback::bench_baseline(
                        &model,
                        &x,
                        profile.clone(),
                        repeat,
                        true,
                        Default::default(),
                    );
                    (b, model.lower(Default::default()).map(|p| p.0))
                }
            };
            let b = b.map_err(|err| err.to_string())?;
            let plan = plan.map_err(|err| err.to_string())?;
            let predicted = cost(&plan, &profile, &consts).predicted_online_s;
            eprintln!(
                "{task} {label} {net}: {:.3} acc, {:.1} ms",
                a,
                1e3 * b.online_s
            );
            let short = label
                .trim_start_matches("cryptpeft ")
                .trim_start_matches("search ")
                .to_string();
            let group = match m {
                Method::Adapter(_) => 0,
                Method::Searched(_) => 1,
                Method::Baseline(_) => 2,
            };
            let g = groups.entry((task.to_string(), net.clone())).or_default();
            g[group].push((1e3 * b.online_s, 100.0 * a, short));
            t.task.push(task.to_string());
            t.method.push(label.to_string());
            t.network.push(net.clone());
            t.test_accuracy.push(a);
            t.online_bytes.push(b.online_bytes);
            t.rounds.push(b.rounds);
            t.online_s.push(b.online_s);
            t.predicted_online_s.push(predicted);
        }
    }
    for ((task, net), [ours, searched, base]) in groups {
        cryptpeft_plot::labelled_points(
            &dir.join(format!("figure-{task}-{net}")),
            &format!("{}: {task}, {net} ({backbone})", e.name),
            (
                "online latency per inference (ms, log scale)",
                "test accuracy (%)",
            ),
            &[
                ("CryptPEFT (trainer's table)".to_string(), ours),
                ("CryptPEFT (search front)".to_string(), searched),
                ("baselines".to_string(), base),
            ],
        )
        .map_err(|err| err.to_string())?;
    }
    DataFrame::new_infer_height(vec![
        Column::new("task".into(), t.task),
        Column::new("method".into(), t.method),
        Column::new("network".into(), t.network),
        Column::new("test_accuracy".into(), t.test_accuracy),
        Column::new("online_bytes".into(), t.online_bytes),
        Column::new("rounds".into(), t.rounds),
        Column::new("online_s".into(), t.online_s),
        Column::new("predicted_online_s".into(), t.predicted_online_s),
    ])
    .map_err(|err| err.to_string())
}

/// Writes the table whole or not at all (a temporary file, then a rename), so a killed
/// experiment never leaves a truncated CSV behind.
fn write_table(path: &Path, df: &mut DataFrame) -> Result<(), String> {
    let fail = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let mut buf = Vec::new();
    CsvWriter::new(&mut buf).finish(df).map_err(|e| fail(&e))?;
    cryptpeft_types::files::write_atomic(path, &buf).map_err(|e| fail(&e))
}

fn write_meta(
    dir: &Path,
    e: &Experiment,
    file: &Path,
    started: std::time::SystemTime,
) -> Result<(), String> {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let unix = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    };
    let meta = serde_json::json!({
        "name": e.name,
        "shows": e.shows,
        "paper": e.paper,
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "experiment_file": file.display().to_string(),
        "commit": git(&["rev-parse", "--short", "HEAD"]),
        "worktree_clean": git(&["status", "--porcelain"]).is_empty(),
        "machine": cryptpeft_cost_model::calibrate::machine_description(),
        "started_unix": unix(started),
        "finished_unix": unix(std::time::SystemTime::now()),
    });
    let path = dir.join("meta.json");
    std::fs::write(&path, serde_json::to_string_pretty(&meta).unwrap() + "\n")
        .map_err(|err| format!("{}: {err}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_is_written_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("table.csv");
        let mut df =
            DataFrame::new_infer_height(vec![Column::new("rounds".into(), [14u64, 8])]).unwrap();
        write_table(&path, &mut df).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "rounds\n14\n8\n");
        // No temporary file stays behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // A folder that does not exist: an error naming the path, and nothing written.
        let missing = dir.path().join("gone").join("table.csv");
        let e = write_table(&missing, &mut df).unwrap_err();
        assert!(e.contains("gone/table.csv"), "{e}");
        assert!(!dir.path().join("gone").exists());
    }
}
