//! The command line, shared by `cryptpeft-search` and `cryptpeft search`.

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use std::net::{IpAddr, SocketAddr};

use crate::dashboard;
use crate::error::{Error, Result};
use crate::noise;
use crate::replay::{self, STRATEGIES};
use crate::report::Outputs;
use crate::run;
use crate::say::say;
use crate::space::{SpaceFile, StrategyKind, DEFAULT_SPACE};
use crate::study::{self, Location};

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
        #[command(flatten)]
        at: StorageArgs,
        /// Also run each front member securely and add measured figures.
        #[arg(long)]
        verify: bool,
        /// Also write the dashboard as one self-contained page, `dashboard.html`.
        #[arg(long)]
        html: bool,
        #[arg(long, short)]
        quiet: bool,
    },
    /// Serve a live, read-only web page of a study: fronts, progress, what matters.
    Dashboard {
        dir: PathBuf,
        #[command(flatten)]
        at: StorageArgs,
        /// Address to listen on; anything but loopback shows the study to the network.
        #[arg(long, default_value = "127.0.0.1")]
        host: IpAddr,
        /// Port (0: any free one; the URL is printed).
        #[arg(long, default_value_t = 8765)]
        port: u16,
    },
    /// Replay strategies on a tabulated study (a finished `--strategy grid` run).
    Replay {
        /// The grid study's run directory.
        table: PathBuf,
        #[command(flatten)]
        at: StorageArgs,
        #[arg(long, default_value_t = 20)]
        seeds: u64,
        #[arg(long, value_delimiter = ',', default_value = "20,40,60,100")]
        budgets: Vec<usize>,
        /// Strategies to replay (default: ehvi, ehvi-front, nsga2, reinforce, reinforce-paper,
        /// random).
        #[arg(long, value_delimiter = ',')]
        strategies: Vec<StrategyKind>,
        /// Where to write replay.csv, proposals.csv, replay_summary.csv, replay.md and
        /// the plots (default: TABLE/replay).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Training noise of a tabulated study, from replicates of its grid under other
    /// training seeds (`--train-seed`), and the front share of an oracle that knows
    /// every configuration's mean accuracy: what is left to any strategy.
    Noise {
        /// The grid study's run directory.
        table: PathBuf,
        /// The replicates' run directories.
        #[arg(long, value_delimiter = ',', required = true)]
        replicates: Vec<PathBuf>,
        /// Seeds of the oracle's draws (at least one).
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
        seeds: u64,
        #[arg(long, value_delimiter = ',', default_value = "20,40,60,100")]
        budgets: Vec<usize>,
        /// Draws of the unseen accuracies per oracle step.
        #[arg(long, default_value_t = 256)]
        draws: usize,
        /// Where to write noise.md and noise.csv (default: TABLE/noise).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Where the study lives, when not in the run directory's SQLite file.
#[derive(Args, Debug, Clone, Default)]
pub struct StorageArgs {
    /// A PostgreSQL database for the study (postgresql://USER@HOST/DB), shared by
    /// workers on several machines; the password may come from PGPASSWORD. The run
    /// directory remembers it. Default: the run directory's SQLite file.
    #[arg(long, value_name = "URL")]
    pub storage: Option<String>,
    /// The study's name in that database (default: the space's name).
    #[arg(long, value_name = "NAME")]
    pub study: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Space file (YAML); default: the embedded digits space on vit-mini.
    #[arg(long)]
    pub space: Option<PathBuf>,
    /// Run directory (study, cache, outputs); default: runs/NAME, NAME the space.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Override the space's strategy (ehvi, ehvi-front, nsga2, reinforce, reinforce-paper,
    /// random, grid).
    #[arg(long)]
    pub strategy: Option<StrategyKind>,
    /// Override the space's budget of trainings (`all`: every valid configuration).
    #[arg(long)]
    pub evaluations: Option<String>,
    /// Override the space's budget in minutes.
    #[arg(long)]
    pub minutes: Option<f64>,
    /// Override the space's seed (data split; also training's and the strategy's
    /// unless --train-seed or --strategy-seed is given).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Override the strategy's seed alone.
    #[arg(long)]
    pub strategy_seed: Option<u64>,
    /// Override training's seed alone (initialisation and batch order; same split).
    #[arg(long)]
    pub train_seed: Option<u64>,
    /// Run each front member securely (dealer, server, client on loopback, with the
    /// profile's shaping) and report measured beside predicted.
    #[arg(long)]
    pub verify: bool,
    /// Print what the search would need in each mode (memory, disk, backbone passes,
    /// hours, from two short measurements here) and the mode it would choose; train
    /// nothing.
    #[arg(long)]
    pub plan_only: bool,
    /// No progress bars or notes; only the fronts.
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub at: StorageArgs,
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
    if let Some(seed) = a.strategy_seed {
        s.strategy_seed = Some(seed);
    }
    if let Some(seed) = a.train_seed {
        s.train_seed = Some(seed);
    }
    Ok(s)
}

/// The study of an existing run directory and the space stored in it; `read_only`
/// reads it without upgrading its tables.
fn stored(dir: &Path, at: &StorageArgs, read_only: bool) -> Result<(SpaceFile, Location)> {
    let location = Location::of_run(dir, at.storage.as_deref(), at.study.as_deref())?;
    let none = |problem: &str| Error::Study {
        at: location.to_string(),
        problem: problem.into(),
    };
    let store = match read_only {
        true => location.open_read_only()?,
        false => location.open_existing()?,
    };
    let text = store
        .meta("space")?
        .ok_or_else(|| none("no space recorded (no run has started this study)"))?;
    let space = serde_json::from_str(&text).map_err(|e| none(&format!("recorded space: {e}")))?;
    Ok((space, location))
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
            if a.plan_only {
                return crate::plan::print(&s, &dir, !a.quiet);
            }
            let name = a.at.study.clone().unwrap_or_else(|| s.name.clone());
            let location = Location::of_run(&dir, a.at.storage.as_deref(), Some(&name))?;
            if !a.quiet {
                run::install_ctrlc();
            }
            let summary = run::run(s, &dir, location, a.verify, !a.quiet)?;
            match summary.outputs {
                Some(o) => print_fronts(&o)?,
                None => say!(
                    "stopped after {} trainings; the study in {} resumes with the same command",
                    summary.trained,
                    dir.display()
                ),
            }
            Ok(())
        }
        Some(Cmd::Report {
            dir,
            at,
            verify,
            html,
            quiet,
        }) => {
            let (s, location) = stored(&dir, &at, false)?;
            let study = study::open(s.clone(), &dir, location.clone(), !quiet)?;
            print_fronts(&crate::report::write(&study, verify, !quiet)?)?;
            drop(study);
            if html {
                let page = dashboard::static_page(&study::view(s, &dir, location)?)?;
                let path = dir.join("dashboard.html");
                study::write_atomic(&path, page.as_bytes())?;
                say!("dashboard: {}", path.display());
            }
            Ok(())
        }
        Some(Cmd::Dashboard {
            dir,
            at,
            host,
            port,
        }) => {
            let (s, location) = stored(&dir, &at, true)?;
            let view = study::view(s, &dir, location)?;
            if !host.is_loopback() {
                eprintln!(
                    "warning: listening on {host}: anyone who reaches it sees the study (no \
                     password, no TLS)"
                );
            }
            dashboard::serve(view, SocketAddr::new(host, port), |addr| {
                // The server runs until Ctrl-C: a closed pipe only loses this line.
                let _ = crate::say::said(std::io::Write::write_fmt(
                    &mut std::io::stdout(),
                    format_args!("dashboard on http://{addr}/ (read-only; Ctrl-C stops)\n"),
                ));
            })
        }
        Some(Cmd::Replay {
            table,
            at,
            seeds,
            budgets,
            strategies,
            out,
        }) => {
            // Read-only: a replay neither migrates, calibrates nor caches in the table.
            let (s, location) = stored(&table, &at, true)?;
            let study = study::view(s, &table, location)?;
            let strategies = if strategies.is_empty() {
                STRATEGIES.to_vec()
            } else {
                strategies
            };
            let r = replay::replay(&study, &strategies, seeds, &budgets)?;
            let out = out.unwrap_or_else(|| table.join("replay"));
            // The table's directory says which training of the space it is (a
            // retrained grid shares the space's name).
            let name = table.file_name().map_or(table.display().to_string(), |n| {
                n.to_string_lossy().into_owned()
            });
            let title = format!(
                "{name} (space {}): replayed on its table ({seeds} seeds)",
                study.space.name
            );
            let md = replay::write(&r, &budgets, &out, &title)?;
            say!("{md}");
            say!("tables and plot in {}", out.display());
            Ok(())
        }
        Some(Cmd::Noise {
            table,
            replicates,
            seeds,
            budgets,
            draws,
            out,
        }) => {
            // Read-only, like a replay.
            let open = |dir: &PathBuf| -> Result<study::View> {
                let (s, location) = stored(dir, &StorageArgs::default(), true)?;
                study::view(s, dir, location)
            };
            let study = open(&table)?;
            let replicates = replicates.iter().map(open).collect::<Result<Vec<_>>>()?;
            let n = noise::noise(&study, &replicates, seeds, &budgets, draws)?;
            let out = out.unwrap_or_else(|| table.join("noise"));
            say!("{}", noise::write(&n, &budgets, &out, &study.space.name)?);
            say!("tables in {}", out.display());
            Ok(())
        }
    }
}

/// Prints each front and where the files are.
fn print_fronts(o: &Outputs) -> Result<()> {
    say!("{} candidates evaluated", o.evaluated);
    if let Some(t) = &o.proposal_time {
        say!("{t}");
    }
    for f in &o.fronts {
        say!("\nfront on {} ({} adapters):", f.profile, f.rows.len());
        say!(
            "  {:<28} {:>8} {:>8} {:>12} {:>10} {:>7}",
            "adapter",
            "val acc",
            "test acc",
            "predicted ms",
            "online MB",
            "rounds"
        );
        for r in &f.rows {
            let t = &r.trial;
            let measured = r
                .measured
                .as_ref()
                .map(|m| format!("  measured {:.2} ms, {} rounds", 1e3 * m.online_s, m.rounds))
                .unwrap_or_default();
            say!(
                "  {:<28} {:>7.2}% {:>7.2}% {:>12.2} {:>10.3} {:>7}{measured}",
                t.config,
                100.0 * t.val_accuracy.unwrap_or(f64::NAN),
                100.0 * t.test_accuracy.unwrap_or(f64::NAN),
                1e3 * r.seconds,
                t.price.online_bytes as f64 / 1e6,
                t.price.rounds
            );
        }
        say!("  plot: {}", f.plot_png.display());
    }
    say!(
        "\ncheckpoints: {}\nsummary: {}",
        o.dir.join("adapters").display(),
        o.summary.display()
    );
    Ok(())
}
