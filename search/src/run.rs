//! A worker: opens (or resumes) the study in the run directory, builds the feature cache,
//! then claims, trains and records trials until the budget is spent; the last worker
//! out writes the outputs.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cryptpeft_cost_model::{calibrate, cost, plan_shape_only, Constants};
use cryptpeft_types::AdapterSpec;
use indicatif::{ProgressBar, ProgressStyle};

use crate::error::{Error, Result};
use crate::eval::{self, Features};
use crate::fault;
use crate::genes::{Genome, Space};
use crate::pareto::{ranks, Point};
use crate::price::Pricer;
use crate::report;
use crate::space::{ReinforceConfig, SpaceFile};
use crate::strategy::{self, Ctx, Objectives, Outcome, Record, Step};
use crate::study::{
    worker_name, Claim, NewTrial, Proposal, SqliteStudy, State, Storage, Trial, HEARTBEAT_EVERY,
};

/// Set by Ctrl-C: finish the trial in hand, record it, stop.
pub static STOP: AtomicBool = AtomicBool::new(false);

/// Ctrl-C once: stop after the current trial; twice: stop now (the study stays
/// consistent either way; an interrupted trial is taken over on the next run).
pub fn install_ctrlc() {
    let _ = ctrlc::set_handler(|| {
        if STOP.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\nstopping after the current trial (Ctrl-C again to stop now)");
    });
}

/// Everything a worker or a report needs about one study.
pub struct Study {
    pub space: SpaceFile,
    pub dir: PathBuf,
    pub store: SqliteStudy,
    pub genomes: Space,
    pub pricer: Pricer,
    pub features: Features,
    /// The controller's settings, its latency target defaulting to the selection
    /// profile's latency budget.
    pub reinforce: ReinforceConfig,
}

pub fn study_path(dir: &Path) -> PathBuf {
    dir.join("study.sqlite")
}

/// Opens the study in `dir` for `space` (creating it), checks that an existing study is
/// of the same space, fixes its cost-model constants, and builds the feature cache.
pub fn open(space: SpaceFile, dir: &Path, progress: bool) -> Result<Study> {
    // Everything that can be checked without the study is checked first, so that a bad
    // input never creates or touches one.
    let backbone = eval::backbone_spec(&space)?;
    let classes = space.data.num_classes();
    let genomes = Space::new(&space.genes, &backbone, classes)?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let store = SqliteStudy::open(&study_path(dir))?;
    let identity = space.identity();
    let stored = store.meta_or_insert("space", &identity)?;
    if stored != identity {
        return Err(Error::Study {
            path: study_path(dir),
            problem: "holds a study of a different space; give another --out, or the same space \
                      (only `budget` may change)"
                .into(),
        });
    }
    let constants = study_constants(&space, &store, progress)?;
    write_atomic(&dir.join("constants.yaml"), constants.to_yaml().as_bytes())?;
    let pricer = Pricer::new(backbone, classes, space.profiles(), constants);
    let features = eval::features(&space, &dir.join("cache"), progress)?;
    let mut reinforce = space.reinforce.clone();
    if reinforce.latency_target_s.is_none() {
        let name = &space.networks[space.select_index()];
        reinforce.latency_target_s = space.constraints.latency_s.get(name).copied();
    }
    Ok(Study {
        reinforce,
        space,
        dir: dir.to_path_buf(),
        store,
        genomes,
        pricer,
        features,
    })
}

/// The study's constants: fixed at its first run (calibrated on this machine unless the
/// space says otherwise) and kept with it, so every worker and resume prices alike.
fn study_constants(space: &SpaceFile, store: &SqliteStudy, progress: bool) -> Result<Constants> {
    let text = match store.meta("constants")? {
        Some(t) => t,
        None => {
            let c = match space.constants.as_str() {
                "calibrate" => {
                    if progress {
                        eprintln!("calibrating the cost model on this machine (a few seconds)");
                    }
                    calibrate()
                }
                "shipped" => {
                    eprintln!(
                        "warning: pricing with the shipped cost-model constants, measured on \
                         another machine; predicted seconds may not hold here"
                    );
                    Constants::shipped()
                }
                path => {
                    Constants::load(path).map_err(|e| Error::Other(format!("constants: {e}")))?
                }
            };
            store.meta_or_insert("constants", &c.to_yaml())?
        }
    };
    Constants::from_yaml(&text).map_err(|e| Error::Other(format!("stored constants: {e}")))
}

/// Writes a file atomically (temporary file, then rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

impl Objectives for Study {
    fn point(&self, g: &Genome, accuracy: Option<f64>) -> Point {
        let spec = self.genomes.spec(g);
        let price = self.pricer.price(&spec);
        point_of(&self.space, &price.seconds, accuracy)
    }

    fn latency_of(&self, spec: &AdapterSpec) -> Option<f64> {
        spec.validate(self.features.backbone.layers).ok()?;
        let plan = plan_shape_only(spec, &self.features.backbone, self.features.classes).ok()?;
        let profile = &self.pricer.profiles()[self.space.select_index()];
        Some(cost(&plan, profile, self.pricer.constants()).predicted_online_s)
    }
}

impl Study {
    /// The strategies' view of this study, with seed `seed`.
    pub fn ctx(&self, seed: u64) -> Ctx<'_> {
        Ctx {
            space: &self.genomes,
            seed,
            population: self.space.population,
            reinforce: &self.reinforce,
            objectives: self,
        }
    }

    /// Trainings the budget allows (default: every valid configuration once per rung 0).
    pub fn budget(&self) -> usize {
        self.space
            .budget
            .evaluations
            .unwrap_or(self.genomes.valid().len())
    }
}

/// The point of a candidate with per-profile `seconds` (constraints: every profile's
/// latency budget, relative excess; the accuracy floor, absolute shortfall).
pub fn point_of(space: &SpaceFile, seconds: &[f64], accuracy: Option<f64>) -> Point {
    let mut violation = 0.0;
    for (p, name) in space.networks.iter().enumerate() {
        if let Some(b) = space.constraints.latency_s.get(name) {
            violation += (seconds[p] / b - 1.0).max(0.0);
        }
    }
    if let (Some(floor), Some(a)) = (space.constraints.min_accuracy, accuracy) {
        violation += (floor - a).max(0.0);
    }
    Point {
        accuracy: accuracy.unwrap_or(0.0),
        seconds: seconds[space.select_index()],
        violation,
    }
}

/// The strategy's view of the trials: the first rung, in proposal order.
pub fn history(trials: &[Trial], study: &Study) -> Vec<Record> {
    let first = study.space.fidelity.rungs()[0];
    trials
        .iter()
        .filter(|t| t.epochs == first)
        .map(|t| Record {
            genome: t.genome,
            outcome: match t.state {
                State::Running => Outcome::Pending,
                State::Complete => Outcome::Accuracy(t.val_accuracy.unwrap_or(0.0)),
                State::Pruned => Outcome::Skipped,
                State::Failed => Outcome::Failed,
            },
        })
        .collect()
}

/// Trainings spent: every trial but the pruned ones.
pub fn spent(trials: &[Trial]) -> usize {
    trials.iter().filter(|t| t.state != State::Pruned).count()
}

/// Successive halving: the next configuration to move up a rung, if any. At each rung
/// the best `1/eta` (constrained non-dominated rank, then accuracy) move up.
fn promotion(study: &Study, trials: &[Trial]) -> Option<(Genome, usize)> {
    let rungs = study.space.fidelity.rungs();
    for r in 0..rungs.len().saturating_sub(1) {
        let done: Vec<&Trial> = trials
            .iter()
            .filter(|t| t.epochs == rungs[r] && t.state == State::Complete)
            .collect();
        let k = done.len() / study.space.fidelity.eta;
        if k == 0 {
            continue;
        }
        let pts: Vec<Point> = done
            .iter()
            .map(|t| study.point(&t.genome, t.val_accuracy))
            .collect();
        let rank = ranks(&pts);
        let mut order: Vec<usize> = (0..done.len()).collect();
        order.sort_by(|&a, &b| {
            rank[a]
                .cmp(&rank[b])
                .then(pts[b].accuracy.total_cmp(&pts[a].accuracy))
                .then(done[a].number.cmp(&done[b].number))
        });
        for &i in order.iter().take(k) {
            let g = done[i].genome;
            if !trials
                .iter()
                .any(|t| t.genome == g && t.epochs == rungs[r + 1])
            {
                return Some((g, rungs[r + 1]));
            }
        }
    }
    None
}

/// The proposal for the next trial, given all trials so far.
fn propose(study: &Study, trials: &[Trial], deadline: Option<Instant>) -> Proposal {
    if spent(trials) >= study.budget()
        || STOP.load(Ordering::SeqCst)
        || deadline.is_some_and(|d| Instant::now() >= d)
    {
        return Proposal::Done;
    }
    let new = |g: Genome, epochs: usize, skip: bool| {
        let spec = study.genomes.spec(&g);
        Proposal::New(NewTrial {
            genome: g,
            config: spec.label(),
            epochs,
            price: study.pricer.price(&spec),
            skip,
        })
    };
    if let Some((g, epochs)) = promotion(study, trials) {
        return new(g, epochs, false);
    }
    let ctx = study.ctx(study.space.seed);
    let rung0 = study.space.fidelity.rungs()[0];
    match strategy::propose(study.space.strategy, &ctx, &history(trials, study)) {
        Step::Evaluate(g) => new(g, rung0, false),
        Step::Skip(g) => new(g, rung0, true),
        Step::Wait => Proposal::Wait,
        // With a ladder, running trials may still earn promotions.
        Step::Done if trials.iter().any(|t| t.state == State::Running) => Proposal::Wait,
        Step::Done => Proposal::Done,
    }
}

/// Beats the trial's heartbeat from a second connection while it trains.
fn heartbeat(db: PathBuf, number: u64, worker: String, stop: mpsc::Receiver<()>) {
    // The crash tests' "mid-training" point: shortly after training started.
    std::thread::sleep(Duration::from_millis(50));
    fault::point("train");
    let Ok(store) = SqliteStudy::open(&db) else {
        return;
    };
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(HEARTBEAT_EVERY) {
        let _ = store.heartbeat(number, &worker);
    }
}

fn search_bar(len: u64, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>12} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta}  {msg}",
        )
        .expect("template")
        .progress_chars("=> "),
    );
    bar.set_prefix("search");
    bar
}

/// The best feasible validation accuracy so far and its predicted seconds.
fn best_so_far(study: &Study, trials: &[Trial]) -> String {
    let best = trials
        .iter()
        .filter(|t| t.state == State::Complete)
        .map(|t| (t, study.point(&t.genome, t.val_accuracy)))
        .filter(|(_, p)| p.violation == 0.0)
        .max_by(|a, b| a.1.accuracy.total_cmp(&b.1.accuracy));
    match best {
        Some((t, p)) => format!(
            "best {:.1}% ({}, {:.1} ms {})",
            100.0 * p.accuracy,
            t.config,
            1e3 * p.seconds,
            study.space.networks[study.space.select_index()]
        ),
        None => String::new(),
    }
}

/// What a finished worker did.
pub struct RunSummary {
    pub trained: usize,
    pub outputs: Option<report::Outputs>,
}

/// Runs this process as one worker of the study in `dir`.
pub fn run(space: SpaceFile, dir: &Path, verify: bool, progress: bool) -> Result<RunSummary> {
    let study = open(space, dir, progress)?;
    let worker = worker_name();
    let deadline = study
        .space
        .budget
        .minutes
        .map(|m| Instant::now() + Duration::from_secs_f64(60.0 * m));
    let budget = study.budget();
    let bar = search_bar(budget as u64, progress);
    let mut trained = 0;
    loop {
        let trials = study.store.trials()?;
        bar.set_position(spent(&trials).min(budget) as u64);
        let best = best_so_far(&study, &trials);
        fault::point("between");
        let claim = study
            .store
            .claim(&worker, &mut |t| propose(&study, t, deadline))?;
        match claim {
            Claim::Run(trial) => {
                bar.set_message(format!("training {}  {best}", trial.config));
                run_trial(&study, &worker, &trial)?;
                trained += 1;
            }
            Claim::Recorded => {}
            Claim::Wait => std::thread::sleep(Duration::from_millis(300)),
            Claim::Done => {
                let trials = study.store.trials()?;
                if STOP.load(Ordering::SeqCst) || !trials.iter().any(|t| t.state == State::Running)
                {
                    break;
                }
                // Others still train: wait (their trials are taken over if they die).
                std::thread::sleep(Duration::from_millis(300));
            }
        }
    }
    bar.finish_and_clear();
    let stopped = STOP.load(Ordering::SeqCst);
    let outputs = if stopped {
        None
    } else {
        Some(report::write(&study, verify, progress)?)
    };
    Ok(RunSummary { trained, outputs })
}

/// Trains one claimed trial and records the result (one transaction).
fn run_trial(study: &Study, worker: &str, trial: &Trial) -> Result<()> {
    let spec = study.genomes.spec(&trial.genome);
    let (tx, rx) = mpsc::channel();
    let beat = {
        let (db, w, n) = (study_path(&study.dir), worker.to_string(), trial.number);
        std::thread::spawn(move || heartbeat(db, n, w, rx))
    };
    let start = Instant::now();
    let ckpt = eval::trial_checkpoint(&study.dir, trial.number);
    let result = eval::train(&study.features, &study.space, &spec, trial.epochs, &ckpt);
    let _ = tx.send(());
    let _ = beat.join();
    let outcome = match result {
        Ok(acc) => Ok((acc, start.elapsed().as_secs_f64())),
        Err(e) => Err(e.to_string()),
    };
    study.store.finish(trial.number, worker, outcome)
}
