//! A worker: opens (or resumes) the study in the run directory, builds the feature cache,
//! then claims, trains and records trials until the budget is spent; the last worker
//! out writes the outputs.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::error::{Error, Result};
use crate::eval;
use crate::fault;
use crate::genes::Genome;
use crate::pareto::{ranks, Point};
use crate::report;
use crate::space::SpaceFile;
use crate::strategy::{self, Objectives, Outcome, Record, Step};
use crate::study::{
    open, worker_name, Claim, Finished, Location, NewTrial, Proposal, State, Study, Trial,
    HEARTBEAT_EVERY,
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

/// The strategy's view of the trials: the first rung, in proposal order.
pub fn history(trials: &[Trial], study: &Study) -> Vec<Record> {
    let first = study.view.space.fidelity.rungs()[0];
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

/// Successive halving: the next configuration to move up a rung, if any. A rung is
/// decided in blocks of `population` trials, in the order they were proposed, once a
/// block's trials have all finished (like NSGA-II's generations): after `m` trials the
/// best `m / eta` of them (constrained non-dominated rank, then accuracy) move up. So a
/// study shared by workers, whose results arrive in any order, promotes what an
/// uninterrupted one would.
fn promotion(study: &Study, trials: &[Trial]) -> Option<(Genome, usize)> {
    let rungs = study.view.space.fidelity.rungs();
    let block = study.view.space.population.max(1);
    for r in 0..rungs.len().saturating_sub(1) {
        let at: Vec<&Trial> = trials
            .iter()
            .filter(|t| t.epochs == rungs[r] && t.state != State::Pruned)
            .collect();
        let finished = at.iter().take_while(|t| t.state != State::Running).count();
        let decided = &at[..finished / block * block];
        let k = decided.len() / study.view.space.fidelity.eta;
        if k == 0 {
            continue;
        }
        let done: Vec<&Trial> = decided
            .iter()
            .filter(|t| t.state == State::Complete)
            .copied()
            .collect();
        let pts: Vec<Point> = done
            .iter()
            .map(|t| study.view.point(&t.genome, t.val_accuracy))
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
    let start = Instant::now();
    let new = |g: Genome, epochs: usize, skip: bool| {
        let spec = study.view.genomes.spec(&g);
        Proposal::New(NewTrial {
            genome: g,
            config: spec.label(),
            epochs,
            price: study.view.pricer.price(&spec),
            skip,
            propose_seconds: start.elapsed().as_secs_f64(),
        })
    };
    if let Some((g, epochs)) = promotion(study, trials) {
        return new(g, epochs, false);
    }
    let ctx = study.ctx(study.view.space.strategy_seed());
    let rung0 = study.view.space.fidelity.rungs()[0];
    match strategy::propose(study.view.space.strategy, &ctx, &history(trials, study)) {
        Step::Evaluate(g) => new(g, rung0, false),
        Step::Skip(g) => new(g, rung0, true),
        Step::Wait => Proposal::Wait,
        // With a ladder, running trials may still earn promotions.
        Step::Done if trials.iter().any(|t| t.state == State::Running) => Proposal::Wait,
        Step::Done => Proposal::Done,
    }
}

/// Beats the heartbeats of the trials `numbers` from a second connection while they train.
fn heartbeat(at: Location, numbers: Vec<u64>, worker: String, stop: mpsc::Receiver<()>) {
    // The crash tests' "mid-training" point: shortly after training started.
    if fault::armed("train") {
        std::thread::sleep(Duration::from_millis(50));
        fault::point("train");
    }
    let store = match at.open() {
        Ok(s) => s,
        Err(e) => {
            // The trials go on; without heartbeats another worker may take them over
            // after STALE_AFTER, and this one's results are then refused, not recorded
            // twice.
            eprintln!("warning: trials {numbers:?}: no heartbeats ({e})");
            return;
        }
    };
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(HEARTBEAT_EVERY) {
        for &n in &numbers {
            let _ = store.heartbeat(n, &worker);
        }
    }
}

/// The group a worker trains together: `first`, and without a cache up to `group - 1`
/// more proposals claimed at once (a proposal made while the others are pending, as
/// with several workers, so the group is what workers claiming one by one would train).
fn gather(
    study: &Study,
    worker: &str,
    first: Trial,
    deadline: Option<Instant>,
) -> Result<Vec<Trial>> {
    let mut group = vec![first];
    while group.len() < study.features.group() && !STOP.load(Ordering::SeqCst) {
        match study
            .view
            .store
            .claim(worker, &mut |t| propose(study, t, deadline))?
        {
            Claim::Run(t) => group.push(*t),
            Claim::Recorded => {}
            Claim::Wait | Claim::Done => break,
        }
    }
    Ok(group)
}

/// Trials split by epochs (a promotion trains longer than a new proposal), in order.
fn by_epochs(trials: Vec<Trial>) -> Vec<Vec<Trial>> {
    let mut out: Vec<Vec<Trial>> = Vec::new();
    for t in trials {
        match out.iter_mut().find(|g| g[0].epochs == t.epochs) {
            Some(g) => g.push(t),
            None => out.push(vec![t]),
        }
    }
    out
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
        .map(|t| (t, study.view.point(&t.genome, t.val_accuracy)))
        .filter(|(_, p)| p.violation == 0.0)
        .max_by(|a, b| a.1.accuracy.total_cmp(&b.1.accuracy));
    match best {
        Some((t, p)) => format!(
            "best {:.1}% ({}, {:.1} ms {})",
            100.0 * p.accuracy,
            t.config,
            1e3 * p.seconds,
            study.view.space.networks[study.view.space.select_index()]
        ),
        None => String::new(),
    }
}

/// What a finished worker did.
pub struct RunSummary {
    pub trained: usize,
    pub outputs: Option<report::Outputs>,
}

/// Runs this process as one worker of the study at `location`, with `dir` as this
/// machine's run directory.
pub fn run(
    space: SpaceFile,
    dir: &Path,
    location: Location,
    verify: bool,
    progress: bool,
) -> Result<RunSummary> {
    let study = open(space, dir, location, progress)?;
    study.check_resumable()?;
    let worker = worker_name();
    let deadline = study
        .view
        .space
        .budget
        .minutes
        .map(|m| Instant::now() + Duration::from_secs_f64(60.0 * m));
    let budget = study.budget();
    let bar = search_bar(budget as u64, progress);
    let mut trained = 0;
    loop {
        let trials = study.view.store.trials()?;
        bar.set_position(spent(&trials).min(budget) as u64);
        let best = best_so_far(&study, &trials);
        fault::point("between");
        let claim = study
            .view
            .store
            .claim(&worker, &mut |t| propose(&study, t, deadline))?;
        match claim {
            Claim::Run(trial) => {
                let group = gather(&study, &worker, *trial, deadline)?;
                let names: Vec<&str> = group.iter().map(|t| t.config.as_str()).collect();
                bar.set_message(format!("training {}  {best}", names.join(", ")));
                for same in by_epochs(group) {
                    run_group(&study, &worker, &same, progress)?;
                    trained += same.len();
                }
            }
            Claim::Recorded => {}
            Claim::Wait => std::thread::sleep(Duration::from_millis(300)),
            Claim::Done => {
                let trials = study.view.store.trials()?;
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

/// Trains claimed trials of equal epochs together and records each result (one
/// transaction each).
fn run_group(study: &Study, worker: &str, trials: &[Trial], progress: bool) -> Result<()> {
    let specs: Vec<_> = trials
        .iter()
        .map(|t| study.view.genomes.spec(&t.genome))
        .collect();
    let (tx, rx) = mpsc::channel();
    let beat = {
        let (at, w) = (study.view.location.clone(), worker.to_string());
        let numbers = trials.iter().map(|t| t.number).collect();
        std::thread::spawn(move || heartbeat(at, numbers, w, rx))
    };
    let start = Instant::now();
    let ckpts: Vec<_> = trials
        .iter()
        .map(|t| eval::trial_checkpoint(&study.view.dir, t.number))
        .collect();
    let snapshots: Vec<_> = trials
        .iter()
        .map(|t| eval::trial_snapshots(&study.view.dir, t.number))
        .collect();
    let results = eval::train(
        &study.features,
        &study.view.space,
        &specs,
        trials[0].epochs,
        &ckpts,
        &snapshots,
        progress,
    );
    let _ = tx.send(());
    let _ = beat.join();
    // A group's time is its members' together.
    let seconds = start.elapsed().as_secs_f64() / trials.len() as f64;
    for (((trial, result), ckpt), snapshot) in
        trials.iter().zip(results).zip(&ckpts).zip(&snapshots)
    {
        let outcome = match result {
            Ok((accuracy, curve)) => Ok(Finished {
                accuracy,
                seconds,
                checkpoint: std::fs::read(ckpt).map_err(|e| Error::io(ckpt, e))?,
                curve,
            }),
            Err(e) => Err(e.to_string()),
        };
        let finished = study.view.store.finish(trial.number, worker, outcome);
        // The study holds the checkpoint now (or another worker's); the file and the
        // snapshots were the trainer's scratch copies.
        let _ = std::fs::remove_file(ckpt);
        let _ = std::fs::remove_dir_all(snapshot);
        match finished {
            // This worker looked dead (no heartbeat for a while): the trial is the other
            // worker's now, and this one goes on with its next proposal.
            Err(e @ Error::TakenOver { .. }) => eprintln!("note: {e}; going on"),
            other => other?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small study: 8 configurations on 120 digits, 1 epoch, population 3.
    fn tiny(dir: &Path, ladder: &str) -> Study {
        let text = format!(
            "name: t
backbone: vit-mini
data:
  dataset: digits
  max_train: 120
  max_test: 20
genes:
  heads: [1, 2]
  rank: [8, 16]
  scope: [1, 2]
fidelity:
  epochs: 1
{ladder}networks: [wan]
population: 3
constants: shipped
"
        );
        let space = SpaceFile::parse(&text, "t.yaml").unwrap();
        let at = Location::of_run(dir, None, Some("t")).unwrap();
        open(space, dir, at, false).unwrap()
    }

    #[test]
    fn a_worker_whose_trial_was_taken_over_goes_on() {
        let tmp = tempfile::tempdir().unwrap();
        let study = tiny(tmp.path(), "");
        // A worker of this machine whose process is gone claims a trial ...
        let me = worker_name();
        let (space, _) = me.rsplit_once(':').unwrap();
        let gone = format!("{space}:{}", (1 << 22) + 7);
        let mut propose = |t: &[Trial]| super::propose(&study, t, None);
        let Claim::Run(trial) = study.view.store.claim(&gone, &mut propose).unwrap() else {
            panic!("no trial");
        };
        // ... this worker takes it over ...
        let Claim::Run(taken) = study.view.store.claim(&me, &mut propose).unwrap() else {
            panic!("not taken over");
        };
        assert_eq!(taken.number, trial.number);
        // ... and the first one's finish is refused, without ending that worker.
        run_group(&study, &gone, std::slice::from_ref(&trial), false).unwrap();
        run_group(&study, &me, std::slice::from_ref(&taken), false).unwrap();
        let t = &study.view.store.trials().unwrap()[0];
        assert_eq!((t.state, t.worker.as_str()), (State::Complete, me.as_str()));
    }

    fn trial(number: u64, g: Genome, epochs: usize, accuracy: Option<f64>) -> Trial {
        Trial {
            number,
            genome: g,
            config: format!("c{}", g[1]),
            epochs,
            state: match accuracy {
                Some(_) => State::Complete,
                None => State::Running,
            },
            worker: "w".into(),
            price: crate::price::Price {
                online_bytes: 0,
                rounds: 0,
                depth_bound: 0,
                offline_bytes: 0,
                seconds: vec![0.0],
            },
            val_accuracy: accuracy,
            test_accuracy: None,
            train_seconds: None,
            message: None,
            propose_seconds: None,
        }
    }

    #[test]
    fn successive_halving_decides_a_block_once_it_is_complete() {
        let tmp = tempfile::tempdir().unwrap();
        let study = tiny(tmp.path(), "  ladder: [1, 2]\n  eta: 3\n");
        let g = |rank: u16, heads: u16| [heads, rank, 0, 0, 0, 0, 0, 0];
        let mut trials = vec![
            trial(0, g(0, 0), 1, Some(0.5)),
            trial(1, g(1, 0), 1, Some(0.6)),
            trial(2, g(0, 1), 1, None),
            trial(3, g(1, 1), 1, Some(0.7)),
        ];
        // Three of four finished, but the first block (0, 1, 2) is not: a worker that
        // promoted now would promote what an uninterrupted run might not.
        assert_eq!(promotion(&study, &trials), None);
        trials[2] = trial(2, g(0, 1), 1, Some(0.9));
        // The most accurate of the block is on its front and moves up, not trial 3.
        assert_eq!(promotion(&study, &trials), Some((g(0, 1), 2)));
    }
}
