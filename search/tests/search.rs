//! End to end on the tiny space: successive halving, the paper's controller under a
//! latency target, `report` rebuilding outputs, and the replay on a tabulated grid.

mod common;

use std::process::Command;

use common::*;
use cryptpeft_search::study::State;

#[test]
fn successive_halving_promotes_the_best_and_fronts_use_the_top_rung() {
    let tmp = tempfile::tempdir().unwrap();
    let text =
        tiny_space(1, 8, 2).replace("  epochs: 2\n", "  epochs: 2\n  ladder: [1, 2]\n  eta: 2\n");
    let space = write_space(tmp.path(), &text);
    let out = tmp.path().join("run");
    let o = search(&space, &out, None);
    assert!(o.status.success(), "{}", stderr(&o));
    let t = trials(&out);
    assert_eq!(t.len(), 8);
    let top: Vec<_> = t.iter().filter(|t| t.epochs == 2).collect();
    assert!(!top.is_empty(), "nothing promoted: {t:#?}");
    for p in &top {
        assert!(
            t.iter().any(|b| b.epochs == 1 && b.config == p.config),
            "{} skipped rung 0",
            p.config
        );
    }
    let front = std::fs::read_to_string(out.join("pareto_wan.csv")).unwrap();
    for line in front.lines().skip(1) {
        let config = line.split(',').nth(1).unwrap();
        assert!(
            top.iter().any(|p| p.config == config),
            "{config} is not from the top rung"
        );
    }
}

#[test]
fn the_controller_skips_slow_candidates_and_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let text = tiny_space(2, 4, 1).replace(
        "population: 3\n",
        "population: 3\nstrategy: reinforce\nreinforce:\n  latency_target_s: 0.06\n",
    );
    let space = write_space(tmp.path(), &text);
    let out = tmp.path().join("run");
    let o = search(&space, &out, None);
    assert!(o.status.success(), "{}", stderr(&o));
    let t = trials(&out);
    let wan = 1;
    for tr in &t {
        match tr.state {
            State::Pruned => assert!(tr.price.seconds[wan] > 0.06),
            State::Complete => assert!(tr.price.seconds[wan] <= 0.06),
            s => panic!("unexpected state {s:?}"),
        }
    }
    assert!(t.iter().any(|t| t.state == State::Complete));
    assert!(out.join("summary.md").is_file());
}

#[test]
fn a_target_nothing_meets_ends_the_search_with_empty_fronts() {
    let tmp = tempfile::tempdir().unwrap();
    let text = tiny_space(2, 4, 1).replace(
        "population: 3\n",
        "population: 3\nstrategy: reinforce\nreinforce:\n  latency_target_s: 0.001\n",
    );
    let space = write_space(tmp.path(), &text);
    let out = tmp.path().join("run");
    let o = search(&space, &out, None);
    assert!(o.status.success(), "{}", stderr(&o));
    let t = trials(&out);
    assert!(!t.is_empty() && t.iter().all(|t| t.state == State::Pruned));
    assert!(out.join("hypervolume.png").is_file());
}

#[test]
fn report_rebuilds_the_outputs_and_replay_reads_a_grid() {
    let tmp = tempfile::tempdir().unwrap();
    let text = tiny_space(4, 8, 1).replace("population: 3\n", "population: 3\nstrategy: grid\n");
    let space = write_space(tmp.path(), &text);
    let out = tmp.path().join("run");
    let o = search(&space, &out, None);
    assert!(o.status.success(), "{}", stderr(&o));
    let front = std::fs::read_to_string(out.join("pareto_lan.csv")).unwrap();
    for f in [
        "pareto_lan.csv",
        "candidates.csv",
        "summary.md",
        "hypervolume.png",
    ] {
        std::fs::remove_file(out.join(f)).unwrap();
    }
    let o = Command::new(BIN)
        .arg("report")
        .arg(&out)
        .arg("-q")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(out.join("pareto_lan.csv")).unwrap(),
        front
    );
    assert!(out.join("hypervolume.png").is_file());

    let o = Command::new(BIN)
        .args(["replay", "--seeds", "3", "--budgets", "2,8", "--out"])
        .arg(tmp.path().join("replay"))
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let summary = std::fs::read_to_string(tmp.path().join("replay/replay_summary.csv")).unwrap();
    // With the whole space as budget, NSGA-II and random find the whole true front.
    for s in ["nsga2", "random"] {
        let row = summary
            .lines()
            .find(|l| l.starts_with(&format!("{s},8,")))
            .unwrap_or_else(|| panic!("{summary}"));
        let mean: f64 = row.split(',').nth(2).unwrap().parse().unwrap();
        assert!((mean - 1.0).abs() < 1e-12, "{row}");
    }
    assert!(tmp.path().join("replay/replay.png").is_file());
}
