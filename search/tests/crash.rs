//! Kill-safety: SIGKILL at six moments, then resume; every configuration evaluated
//! exactly once, none lost, the fronts equal to an uninterrupted run's. And two workers
//! on one study split the budget between them.

mod common;

use std::collections::HashSet;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::*;
use cryptpeft_search::study::State;

const BUDGET: usize = 6;

/// The uninterrupted run every other run is compared with.
fn reference() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, out) = DIR.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let space = write_space(tmp.path(), &tiny_space(3, BUDGET, 2));
        let out = tmp.path().join("run");
        let o = search(&space, &out, None);
        assert!(o.status.success(), "{}", stderr(&o));
        (tmp, out)
    });
    out
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The study holds the budget, each configuration once, all complete, and the fronts
/// and the candidates' results equal the reference's.
fn assert_same_as_reference(out: &Path) {
    assert_same_as(out, reference());
}

/// The study in `out` holds the budget, each configuration once, all complete.
fn assert_whole(out: &Path) -> Vec<cryptpeft_search::study::Trial> {
    let t = trials(out);
    assert_eq!(t.len(), BUDGET, "{t:#?}");
    assert!(t.iter().all(|t| t.state == State::Complete), "{t:#?}");
    let configs: HashSet<&str> = t.iter().map(|t| t.config.as_str()).collect();
    assert_eq!(configs.len(), BUDGET, "a configuration was evaluated twice");
    t
}

/// As [`assert_whole`], and the trials and fronts equal those of the run in `reference`.
fn assert_same_as(out: &Path, reference: &Path) {
    let t = assert_whole(out);
    let r = trials(reference);
    let key = |t: &[cryptpeft_search::study::Trial]| -> Vec<(String, Option<f64>)> {
        t.iter()
            .map(|t| (t.config.clone(), t.val_accuracy))
            .collect()
    };
    assert_eq!(key(&t), key(&r), "trials differ from the uninterrupted run");
    for f in ["pareto_lan.csv", "pareto_wan.csv"] {
        assert_eq!(read(&out.join(f)), read(&reference.join(f)), "{f}");
    }
    for f in [
        "candidates.parquet",
        "pareto_wan.png",
        "pareto_wan.svg",
        "hypervolume.png",
        "summary.md",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    for line in read(&out.join("pareto_wan.csv")).lines().skip(1) {
        let ckpt = line.rsplit(',').next().unwrap();
        assert!(out.join(ckpt).is_file(), "{ckpt} missing");
    }
}

fn kill_then_resume(point: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let space = write_space(tmp.path(), &tiny_space(3, BUDGET, 2));
    let out = tmp.path().join("run");
    let o = search(&space, &out, Some(point));
    assert_eq!(
        o.status.signal(),
        Some(9),
        "not killed at {point}: {}",
        stderr(&o)
    );
    let o = search(&space, &out, None);
    assert!(o.status.success(), "resume after {point}: {}", stderr(&o));
    assert_same_as_reference(&out);
}

#[test]
fn killed_during_cache_build() {
    kill_then_resume("cache");
}

#[test]
fn killed_mid_training() {
    kill_then_resume("train:2");
}

#[test]
fn killed_between_trials() {
    kill_then_resume("between:4");
}

#[test]
fn killed_during_a_commit() {
    kill_then_resume("commit:3");
}

#[test]
fn killed_while_writing_outputs() {
    kill_then_resume("output");
}

/// Two worker processes on one study of `space_text`; returns the run directory.
fn two_workers(tmp: &Path, space_text: &str) -> PathBuf {
    let space = write_space(tmp, space_text);
    let out = tmp.join("run");
    let spawn = || {
        std::process::Command::new(BIN)
            .arg("--space")
            .arg(&space)
            .arg("--out")
            .arg(&out)
            .arg("-q")
            .env_remove(cryptpeft_search::fault::VAR)
            .spawn()
            .unwrap()
    };
    let (mut a, mut b) = (spawn(), spawn());
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());
    let t = trials(&out);
    let workers: HashSet<&str> = t.iter().map(|t| t.worker.as_str()).collect();
    assert_eq!(workers.len(), 2, "one worker did everything: {t:#?}");
    out
}

#[test]
fn two_workers_share_one_study() {
    // EHVI (the default) counts the other worker's running trial at its predicted
    // accuracy, so the order may differ from one worker's; nothing is trained twice.
    let tmp = tempfile::tempdir().unwrap();
    let out = two_workers(tmp.path(), &tiny_space(3, BUDGET, 2));
    assert_whole(&out);
    for f in ["pareto_lan.csv", "pareto_wan.csv", "summary.md"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
}

#[test]
fn two_workers_of_a_generational_strategy_match_one() {
    // NSGA-II waits for each generation: shared, it proposes what one worker would.
    let tmp = tempfile::tempdir().unwrap();
    let text =
        tiny_space(3, BUDGET, 2).replace("population: 3\n", "population: 3\nstrategy: nsga2\n");
    let alone = tmp.path().join("alone");
    let o = search(&write_space(&alone, &text), &alone.join("run"), None);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = two_workers(&tmp.path().join("shared"), &text);
    assert_same_as(&out, &alone.join("run"));
}

/// A tiny space trained by population training (groups of 3, no cache).
fn population_space() -> String {
    tiny_space(3, BUDGET, 2).replace(
        "constants: shipped\n",
        "constants: shipped\ncache:\n  store: none\n",
    )
}

/// The uninterrupted population run.
fn population_reference() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, out) = DIR.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("run");
        let o = search(&write_space(tmp.path(), &population_space()), &out, None);
        assert!(o.status.success(), "{}", stderr(&o));
        (tmp, out)
    });
    out
}

#[test]
fn a_group_killed_mid_training_is_taken_over_whole() {
    // Population training: a worker trains three candidates on one backbone pass per
    // batch. Killed during its second group, the resumed run takes the group's trials
    // over together and ends where an uninterrupted population run ends.
    let tmp = tempfile::tempdir().unwrap();
    let space = write_space(tmp.path(), &population_space());
    let out = tmp.path().join("run");
    let o = search(&space, &out, Some("train:2"));
    assert_eq!(o.status.signal(), Some(9), "not killed: {}", stderr(&o));
    let t = trials(&out);
    assert_eq!(
        t.iter().filter(|t| t.state == State::Running).count(),
        3,
        "the second group was not in training: {t:#?}"
    );
    let o = search(&space, &out, None);
    assert!(o.status.success(), "resume: {}", stderr(&o));
    assert_same_as(&out, population_reference());
}

#[test]
fn a_group_killed_after_an_epoch_resumes_at_the_next() {
    // Killed right after the first epoch of the second group (the third epoch the
    // process finishes), the group's snapshots hold that epoch: the resumed run trains
    // only the second, and ends bit for bit where the uninterrupted run ends.
    let tmp = tempfile::tempdir().unwrap();
    let space = write_space(tmp.path(), &population_space());
    let out = tmp.path().join("run");
    let o = search(&space, &out, Some("epoch:3"));
    assert_eq!(o.status.signal(), Some(9), "not killed: {}", stderr(&o));
    let running: Vec<u64> = trials(&out)
        .iter()
        .filter(|t| t.state == State::Running)
        .map(|t| t.number)
        .collect();
    assert_eq!(running.len(), 3, "the second group was not in training");
    for n in &running {
        let epoch = out.join(format!("trials/{n}.epochs/epoch-1/state.json"));
        assert!(epoch.is_file(), "no snapshot of trial {n}'s first epoch");
    }
    let o = search(&space, &out, None);
    assert!(o.status.success(), "resume: {}", stderr(&o));
    assert!(
        stderr(&o).contains("resuming at epoch 2 of 2"),
        "did not resume from the snapshots: {}",
        stderr(&o)
    );
    assert_same_as(&out, population_reference());
    for n in running {
        assert!(
            !out.join(format!("trials/{n}.epochs")).exists(),
            "trial {n}'s snapshots outlived its result"
        );
    }
}
