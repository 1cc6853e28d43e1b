//! `cryptpeft experiment experiments/NAME.yaml`: runs one of the paper's comparisons and
//! writes `results/NAME/`: its table (`table.csv`, via polars), its figure (`figure.png`
//! and `.svg`, via plotters) where it has one, and `meta.json` (the command, commit,
//! machine, date, and what the experiment shows beside the paper's number).

use std::path::{Path, PathBuf};

use clap::Args;
use cryptpeft_cost_model::{cost, Constants};
use cryptpeft_types::{AdapterSpec, AttentionKind, BackboneSpec, NetworkProfile};
use polars::prelude::*;
use private_eval::{bench, hidden, lower, model::OwcModel};
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
                local_truncation: false,
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
    let mut cols: (
        Vec<String>,
        Vec<f64>,
        Vec<f64>,
        Vec<u64>,
        Vec<u64>,
        Vec<f64>,
        Vec<f64>,
    ) = Default::default();
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
                let b = bench::bench_secure(
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
                cols.0.push(attention.to_string());
                cols.1.push(bw);
                cols.2.push(delay);
                cols.3.push(b.online_bytes);
                cols.4.push(b.rounds);
                cols.5.push(b.online_s);
                cols.6.push(c.predicted_online_s);
            }
        }
        measured.push(m);
        model.push(p);
    }
    let x_desc = match by_bandwidth {
        true => format!("log10 bandwidth (Mbit/s), {} ms one way", delays[0]),
        false => format!("one-way delay (ms), {} Mbit/s", bandwidths[0]),
    };
    cryptpeft_search::plot::measured_vs_model(
        &dir.join("figure"),
        &format!("{}: {} per attention kind", e.name, base.label()),
        (&x_desc, "online latency per inference (ms)"),
        &measured,
        &model,
        &names,
    )
    .map_err(|err| err.to_string())?;
    DataFrame::new_infer_height(vec![
        Column::new("attention".into(), cols.0),
        Column::new("bandwidth_mbit".into(), cols.1),
        Column::new("delay_ms".into(), cols.2),
        Column::new("online_bytes".into(), cols.3),
        Column::new("rounds".into(), cols.4),
        Column::new("measured_s".into(), cols.5),
        Column::new("predicted_s".into(), cols.6),
    ])
    .map_err(|err| err.to_string())
}

fn write_table(path: &Path, df: &mut DataFrame) -> Result<(), String> {
    let mut f = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    CsvWriter::new(&mut f)
        .finish(df)
        .map_err(|e| format!("{}: {e}", path.display()))
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
