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
    // The hypervolume follows one fidelity: the first rung's trials.
    let hv = std::fs::read_to_string(out.join("hypervolume.csv")).unwrap();
    let rung0 = t
        .iter()
        .filter(|t| t.epochs == 1 && t.state == State::Complete)
        .count();
    assert_eq!(hv.lines().count() - 1, rung0, "{hv}");
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
    let o = report(&out);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(out.join("pareto_lan.csv")).unwrap(),
        front
    );
    assert!(out.join("hypervolume.png").is_file());

    // A replay only reads the table: it neither migrates the database nor rewrites
    // the constants (a committed table stays as committed).
    let files = |f: &str| {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(out.join(f)).unwrap();
        (m.ino(), m.mtime_nsec(), m.len())
    };
    let before = ["study.sqlite", "constants.yaml"].map(files);
    let o = Command::new(BIN)
        .args(["replay", "--seeds", "3", "--budgets", "2,8", "--out"])
        .arg(tmp.path().join("replay"))
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(["study.sqlite", "constants.yaml"].map(files), before);
    let summary = std::fs::read_to_string(tmp.path().join("replay/replay_summary.csv")).unwrap();
    assert!(summary.starts_with("strategy,budget,nadir_hv_mean,nadir_hv_min,front_share_mean"));
    // With the whole space as budget, these find the whole true front.
    for s in ["ehvi", "nsga2", "random"] {
        let row = summary
            .lines()
            .find(|l| l.starts_with(&format!("{s},8,")))
            .unwrap_or_else(|| panic!("{summary}"));
        let cols: Vec<f64> = row.split(',').skip(2).map(|c| c.parse().unwrap()).collect();
        // nadir hypervolume, its minimum, front share, its minimum: all 1; IGD+ 0.
        assert!(cols[..4].iter().all(|c| (c - 1.0).abs() < 1e-12), "{row}");
        assert!(cols[4].abs() < 1e-12, "{row}");
    }
    // Every proposal of every run, in order.
    let proposals = std::fs::read_to_string(tmp.path().join("replay/proposals.csv")).unwrap();
    assert!(proposals.starts_with("strategy,seed,step,config,trained,propose_ms\n"));
    let ehvi: Vec<&str> = proposals
        .lines()
        .filter(|l| l.starts_with("ehvi,0,"))
        .collect();
    assert_eq!(ehvi.len(), 8, "{proposals}");
    let md = std::fs::read_to_string(tmp.path().join("replay/replay.md")).unwrap();
    assert!(
        md.contains("Close calls: ") && md.contains("0.005 / 0.01 / 0.02 in accuracy"),
        "{md}"
    );
    assert!(tmp.path().join("replay/replay.png").is_file());
    assert!(tmp.path().join("replay/replay_front.png").is_file());

    // The same grid under another training seed is a replicate: `noise` measures the
    // spread between the two and runs the oracle.
    let again = tmp.path().join("again");
    let o = Command::new(BIN)
        .arg("--space")
        .arg(&space)
        .args(["--train-seed", "1", "-q", "--out"])
        .arg(&again)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let noise = |replicate: &std::path::Path| {
        Command::new(BIN)
            .args(["noise", "--seeds", "2", "--budgets", "2,8", "--replicates"])
            .arg(replicate)
            .arg("--out")
            .arg(tmp.path().join("noise"))
            .arg(&out)
            .output()
            .unwrap()
    };
    let o = noise(&again);
    assert!(o.status.success(), "{}", stderr(&o));
    let csv = std::fs::read_to_string(tmp.path().join("noise/noise.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows[0], "config,table,replicate_1");
    assert_eq!(rows.len(), 9, "{csv}");
    // Another initialisation trains to other accuracies.
    assert!(
        rows[1..].iter().any(|r| {
            let c: Vec<&str> = r.split(',').collect();
            c[1] != c[2]
        }),
        "{csv}"
    );
    let md = std::fs::read_to_string(tmp.path().join("noise/noise.md")).unwrap();
    assert!(
        md.contains("each trained 2 times") && md.contains("| 8 | 1.000 | 1.000 | 1.000 | 1.000 |"),
        "{md}"
    );
    // A table of another space is no replicate.
    let other = tmp.path().join("other");
    let o = search(
        &write_space(
            &tmp.path().join("o"),
            &text.replace("max_train: 300", "max_train: 200"),
        ),
        &other,
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = noise(&other);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("not the table's space under another training seed"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_study_priced_by_another_cost_model_is_repriced_or_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let space = write_space(tmp.path(), &tiny_space(2, 3, 1));
    let out = tmp.path().join("run");
    let o = search(&space, &out, None);
    assert!(o.status.success(), "{}", stderr(&o));
    let db = rusqlite::Connection::open(out.join("study.sqlite")).unwrap();
    let today: String = db
        .query_row("SELECT value FROM meta WHERE key = 'cost_model'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(today, cryptpeft_cost_model::version());
    db.execute(
        "UPDATE meta SET value = 'pricing 0, protocol 1' WHERE key = 'cost_model'",
        [],
    )
    .unwrap();
    // A stored price that today's model would not give: a report must not show it.
    db.execute(
        "UPDATE trials SET price = replace(price, '\"rounds\":', '\"rounds\":9') ",
        [],
    )
    .unwrap();
    drop(db);
    // Resuming (a larger budget) would mix prices: refused, naming both versions.
    let more = write_space(&tmp.path().join("more"), &tiny_space(2, 5, 1));
    let o = search(&more, &out, None);
    let e = stderr(&o);
    assert!(!o.status.success());
    assert!(
        e.contains("pricing 0, protocol 1") && e.contains(&today),
        "{e}"
    );
    // One sentence, not a source line's indentation.
    assert!(e.contains(&format!("prices with `{today}`, and")), "{e}");
    assert_eq!(trials(&out).len(), 3);
    // A report reprices every trial with today's model and says so.
    let o = report(&out);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(summary.contains("every trial repriced"), "{summary}");
    let candidates = std::fs::read_to_string(out.join("candidates.csv")).unwrap();
    let header: Vec<&str> = candidates.lines().next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == "rounds").unwrap();
    for (line, t) in candidates.lines().skip(1).zip(trials(&out)) {
        let rounds: u64 = line.split(',').nth(col).unwrap().parse().unwrap();
        assert_ne!(
            rounds, t.price.rounds,
            "the stored (tampered) price was shown"
        );
    }
}

#[test]
fn a_half_precision_cache_on_disk_trains_like_the_memory_one() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |name: &str, cache: &str| {
        let text = tiny_space(4, 3, 1).replace(
            "constants: shipped\n",
            &format!("constants: shipped\n{cache}"),
        );
        let space = write_space(&tmp.path().join(name), &text);
        let out = tmp.path().join(name).join("run");
        let o = search(&space, &out, None);
        assert!(o.status.success(), "{}", stderr(&o));
        let mut t = trials(&out);
        t.sort_by_key(|t| t.number);
        (out, t)
    };
    let (_, memory) = run("memory", "");
    let (out, disk) = run("disk", "cache:\n  store: disk\n  precision: f16\n");
    let dirs: Vec<_> = std::fs::read_dir(out.join("cache"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        dirs.iter().filter(|d| d.ends_with(".f16")).count(),
        3,
        "{dirs:?}"
    );
    // The same configurations, trained on rows rounded to f16: close accuracies.
    assert_eq!(memory.len(), disk.len());
    for (m, d) in memory.iter().zip(&disk) {
        assert_eq!(m.config, d.config);
        let (a, b) = (m.val_accuracy.unwrap(), d.val_accuracy.unwrap());
        assert!((a - b).abs() <= 0.05, "{}: {a} vs {b}", m.config);
    }
}

#[test]
fn population_training_without_a_cache_gives_the_cached_accuracies() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |name: &str, extra: &str| {
        let text = tiny_space(6, 6, 1).replace(
            "constants: shipped\n",
            &format!("constants: shipped\nstrategy: random\n{extra}"),
        );
        let space = write_space(&tmp.path().join(name), &text);
        let out = tmp.path().join(name).join("run");
        let mut c = Command::new(BIN);
        c.arg("--space").arg(&space).arg("--out").arg(&out);
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let mut t = trials(&out);
        t.sort_by_key(|t| t.config.clone());
        (stderr(&o), t)
    };
    let (_, cached) = run("cached", "");
    let (said, streamed) = run("population", "cache:\n  store: none\n");
    // The run says what it chose and what it costs in backbone passes.
    assert!(
        said.contains("population training, groups of 3") && said.contains("image passes"),
        "{said}"
    );
    // Trained three at a time on one backbone pass per batch, each candidate reaches
    // exactly what it reached alone on the cache.
    assert_eq!(cached.len(), 6);
    for (c, s) in cached.iter().zip(&streamed) {
        assert_eq!(c.config, s.config);
        assert_eq!(c.val_accuracy, s.val_accuracy, "{}", c.config);
        assert_eq!(c.test_accuracy, s.test_accuracy, "{}", c.config);
    }
    // Augmentation needs images: refused with a cache, named.
    let text = tiny_space(6, 2, 1).replace(
        "  epochs: 1\n",
        "  epochs: 1\n  augment: true\ncache:\n  store: memory\n",
    );
    let space = write_space(&tmp.path().join("augment"), &text);
    let o = search(&space, &tmp.path().join("augment/run"), None);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("fidelity.augment"), "{}", stderr(&o));
}

#[test]
fn plan_only_prices_every_mode_and_trains_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let space = write_space(tmp.path(), &tiny_space(6, 12, 2));
    let out = tmp.path().join("run");
    let o = Command::new(BIN)
        .arg("--space")
        .arg(&space)
        .arg("--out")
        .arg(&out)
        .arg("--plan-only")
        .arg("-q")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    let rows: Vec<Vec<f64>> = text
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| mode") && !l.starts_with("| -"))
        .map(|l| {
            l.split('|')
                .skip(2)
                .filter_map(|c| c.trim().parse().ok())
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), 6, "{text}");
    // Backbone images: a cache passes every image once (300 training, 60 test); groups
    // of 3 pass the training split once per group and epoch (4 groups x 2 epochs),
    // the paper's way once per candidate and epoch (12 x 2).
    let images: Vec<f64> = rows.iter().map(|r| r[2]).collect();
    assert_eq!(
        images,
        vec![360.0, 360.0, 360.0, 360.0, 2460.0, 7260.0],
        "{text}"
    );
    assert!(
        text.contains("a run here would use feature cache in memory"),
        "{text}"
    );
    assert!(!out.join("study.sqlite").exists(), "a plan opened a study");
}
