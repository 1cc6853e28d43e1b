//! The command line, shared by `cryptpeft-search` and `cryptpeft search`.

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use crate::error::{Error, Result};
use crate::replay::{self, STRATEGIES};
use crate::report::Outputs;
use crate::run;
use crate::space::{SpaceFile, StrategyKind, DEFAULT_SPACE};
use crate::study::{self, study_path, SqliteStudy, Storage};

#[derive(Parser, Debug)]
#[command(
    name = "cryptpeft-search",
    version,
    about = "Search OWC adapters: Pareto fronts of accuracy against private-inference latency per network",
    args_conflicts_with_subcommands = true
)]
pub struct SearchArgs {
    #[command(subcommand)]
    pub cmd: Option<Cmd>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Rebuild a study's tables, plots, checkpoints and summary from its database.
    Report {
        dir: PathBuf,
        /// Also run each front member securely and add measured figures.
        #[arg(long)]
        verify: bool,
        #[arg(long, short)]
        quiet: bool,
    },
    /// Replay strategies on a tabulated study (a finished `--strategy grid` run).
    Replay {
        /// The grid study's run directory.
        table: PathBuf,
        #[arg(long, default_value_t = 20)]
        seeds: u64,
        #[arg(long, value_delimiter = ',', default_value = "20,40,60,100")]
        budgets: Vec<usize>,
        /// Where to write replay.csv, replay_summary.csv, replay.md and the plot.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Space file (YAML); default: the embedded digits space on vit-mini.
    #[arg(long)]
    pub space: Option<PathBuf>,
    /// Run directory (study, cache, outputs); default: runs/<space name>.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Override the space's strategy (nsga2, reinforce, random, grid).
    #[arg(long)]
    pub strategy: Option<StrategyKind>,
    /// Override the space's budget of trainings (`all`: every valid configuration).
    #[arg(long)]
    pub evaluations: Option<String>,
    /// Override the space's budget in minutes.
    #[arg(long)]
    pub minutes: Option<f64>,
    /// Override the space's seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run each front member securely (dealer, server, client on loopback, with the
    /// profile's shaping) and report measured beside predicted.
    #[arg(long)]
    pub verify: bool,
    /// No progress bars or notes; only the fronts.
    #[arg(long, short)]
    pub quiet: bool,
}

/// The space of a run: the file or the embedded default, with the overrides applied.
fn space(a: &RunArgs) -> Result<SpaceFile> {
    let mut s = match &a.space {
        Some(p) => SpaceFile::load(p)?,
        None => SpaceFile::parse(DEFAULT_SPACE, "the default space")?,
    };
    if let Some(k) = a.strategy {
        s.strategy = k;
    }
    if let Some(e) = &a.evaluations {
        s.budget.evaluations = match e.as_str() {
            "all" => None,
            n => Some(n.parse().ok().filter(|&n| n > 0).ok_or_else(|| {
                Error::Other(format!("--evaluations `{n}`: a positive number or `all`"))
            })?),
        };
        if e == "all" {
            s.budget.minutes = None;
        }
    }
    if let Some(m) = a.minutes {
        s.budget.minutes = Some(m);
    }
    if let Some(seed) = a.seed {
        s.seed = seed;
    }
    Ok(s)
}

/// The space stored in an existing study.
fn stored_space(dir: &Path) -> Result<SpaceFile> {
    let path = study_path(dir);
    if !path.is_file() {
        return Err(Error::Study {
            path,
            problem: "no study here".into(),
        });
    }
    let store = SqliteStudy::open(&path)?;
    let text = store.meta("space")?.ok_or_else(|| Error::Study {
        path: path.clone(),
        problem: "no space recorded".into(),
    })?;
    serde_json::from_str(&text).map_err(|e| Error::Study {
        path,
        problem: format!("recorded space: {e}"),
    })
}

pub fn main(args: SearchArgs) -> Result<()> {
    match args.cmd {
        None => {
            let a = args.run;
            let s = space(&a)?;
            let dir = a
                .out
                .clone()
                .unwrap_or_else(|| Path::new("runs").join(&s.name));
            if !a.quiet {
                run::install_ctrlc();
            }
            let summary = run::run(s, &dir, a.verify, !a.quiet)?;
            match summary.outputs {
                Some(o) => print_fronts(&o),
                None => println!(
                    "stopped after {} trainings; the study in {} resumes with the same command",
                    summary.trained,
                    dir.display()
                ),
            }
            Ok(())
        }
        Some(Cmd::Report { dir, verify, quiet }) => {
            let s = stored_space(&dir)?;
            let study = study::open(s, &dir, !quiet)?;
            print_fronts(&crate::report::write(&study, verify, !quiet)?);
            Ok(())
        }
        Some(Cmd::Replay {
            table,
            seeds,
            budgets,
            out,
        }) => {
            let s = stored_space(&table)?;
            let study = study::open(s, &table, true)?;
            let rows = replay::replay(&study, &STRATEGIES, seeds, &budgets)?;
            let out = out.unwrap_or_else(|| table.join("replay"));
            let title = format!(
                "{}: hypervolume reached by budget ({} seeds)",
                study.space.name, seeds
            );
            let md = replay::write(&rows, &budgets, &out, &title)?;
            println!("{md}");
            println!("tables and plot in {}", out.display());
            Ok(())
        }
    }
}

/// Prints each front and where the files are.
fn print_fronts(o: &Outputs) {
    println!("{} candidates evaluated", o.evaluated);
    for f in &o.fronts {
        println!("\nfront on {} ({} adapters):", f.profile, f.rows.len());
        println!(
            "  {:<28} {:>8} {:>8} {:>12} {:>10} {:>7}",
            "adapter", "val acc", "test acc", "predicted ms", "online MB", "rounds"
        );
        for r in &f.rows {
            let t = &r.trial;
            let measured = r
                .measured
                .as_ref()
                .map(|m| format!("  measured {:.2} ms, {} rounds", 1e3 * m.online_s, m.rounds))
                .unwrap_or_default();
            println!(
                "  {:<28} {:>7.2}% {:>7.2}% {:>12.2} {:>10.3} {:>7}{measured}",
                t.config,
                100.0 * t.val_accuracy.unwrap_or(f64::NAN),
                100.0 * t.test_accuracy.unwrap_or(f64::NAN),
                1e3 * r.seconds,
                t.price.online_bytes as f64 / 1e6,
                t.price.rounds
            );
        }
        println!("  plot: {}", f.plot_png.display());
    }
    println!(
        "\ncheckpoints: {}\nsummary: {}",
        o.dir.join("adapters").display(),
        o.summary.display()
    );
}
