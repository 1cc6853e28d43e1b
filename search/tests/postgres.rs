//! The study on a real PostgreSQL server (see `common/pg.rs`): three worker processes,
//! each with its own run directory as if on its own machine, split one study; a worker
//! killed mid-training has its trial taken over and finished once; a report from a
//! fourth directory exports every front member's checkpoint from the database; over TCP
//! the connection is TLS and the server's certificate is verified.

mod common;

use std::collections::{HashMap, HashSet};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use common::*;
use cryptpeft_search::study::{Location, State, Trial};

/// Six of the tiny space's eight configurations, two epochs each.
const BUDGET: usize = 6;

fn worker(space: &Path, out: &Path, url: &str, kill_at: Option<&str>) -> Child {
    let mut c = Command::new(BIN);
    c.arg("--space")
        .arg(space)
        .arg("--out")
        .arg(out)
        .args(["--storage", url, "-q"])
        .stdout(std::process::Stdio::null())
        .env_remove(cryptpeft_search::fault::VAR);
    if let Some(k) = kill_at {
        c.env(cryptpeft_search::fault::VAR, k);
    }
    c.spawn().unwrap()
}

fn pg_trials(url: &str) -> Vec<Trial> {
    let at = Location::Postgres {
        url: url.to_string(),
        study: "tiny".into(),
    };
    at.open().unwrap().trials().unwrap()
}

/// The budget, each configuration once, all complete.
fn assert_budget_once(t: &[Trial]) {
    assert_eq!(t.len(), BUDGET, "{t:#?}");
    assert!(t.iter().all(|t| t.state == State::Complete), "{t:#?}");
    let configs: HashSet<&str> = t.iter().map(|t| t.config.as_str()).collect();
    assert_eq!(configs.len(), BUDGET, "a configuration was evaluated twice");
}

/// Starts three workers on `space_text`, one run directory each.
fn three_workers(tmp: &Path, space_text: &str, url: &str) -> (Vec<PathBuf>, Vec<Child>) {
    let space = write_space(tmp, space_text);
    let dirs: Vec<PathBuf> = (0..3).map(|i| tmp.join(format!("machine{i}"))).collect();
    let children = dirs.iter().map(|d| worker(&space, d, url, None)).collect();
    (dirs, children)
}

#[test]
fn three_workers_split_one_study() {
    let tmp = tempfile::tempdir().unwrap();
    let url = pg::fresh_database("three");
    // Random proposals (no generation to wait for) and four epochs a trial, so that
    // every worker gets a share although the tiny trials take a second or so.
    let text = tiny_space(3, BUDGET, 4).replace("population: 3\n", "strategy: random\n");
    let (dirs, children) = three_workers(tmp.path(), &text, &url);
    let mut names = Vec::new();
    for mut c in children {
        names.push(format!(":{}", c.id()));
        let s = c.wait().unwrap();
        assert!(s.success(), "a worker failed: {s:?}");
    }
    let t = pg_trials(&url);
    assert_budget_once(&t);
    let mut per_worker: HashMap<&str, usize> = HashMap::new();
    for tr in &t {
        *per_worker.entry(tr.worker.as_str()).or_default() += 1;
    }
    // Disjoint shares, each worker's own, whose union is the budget.
    assert!(
        per_worker
            .keys()
            .all(|w| names.iter().any(|n| w.ends_with(n))),
        "{per_worker:?}"
    );
    assert_eq!(per_worker.len(), 3, "a worker got nothing: {per_worker:?}");
    // Every machine wrote the outputs, each front's checkpoints from the database.
    for d in &dirs {
        assert!(d.join("storage.json").is_file());
        assert!(!d.join("study.sqlite").exists(), "an SQLite study was made");
        for line in std::fs::read_to_string(d.join("pareto_wan.csv"))
            .unwrap()
            .lines()
            .skip(1)
        {
            let ckpt = line.rsplit(',').next().unwrap();
            assert!(d.join(ckpt).is_file(), "{ckpt} missing in {}", d.display());
        }
    }
    // A report from a fourth machine needs only the URL and the study's name.
    let fourth = tmp.path().join("laptop");
    let o = Command::new(BIN)
        .arg("report")
        .arg(&fourth)
        .args(["--storage", &url, "--study", "tiny", "-q"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(fourth.join("pareto_wan.csv")).unwrap(),
        std::fs::read_to_string(dirs[0].join("pareto_wan.csv")).unwrap()
    );
    // A misspelt study is an error, and creates nothing.
    let typo = Location::Postgres {
        url: url.clone(),
        study: "tinny".into(),
    };
    for _ in 0..2 {
        let o = Command::new(BIN)
            .arg("report")
            .arg(tmp.path().join("typo"))
            .args(["--storage", &url, "--study", "tinny", "-q"])
            .output()
            .unwrap();
        assert!(!o.status.success());
        assert!(stderr(&o).contains("no such study"), "{}", stderr(&o));
    }
    assert!(typo.open_existing().is_err());
}

#[test]
fn a_killed_workers_trial_is_taken_over_once() {
    let tmp = tempfile::tempdir().unwrap();
    let url = pg::fresh_database("kill");
    let space = write_space(tmp.path(), &tiny_space(3, BUDGET, 2));
    // The first worker runs alone until it dies in its first training, so that it holds
    // a trial however the machine schedules the others; then two survivors start.
    let mut killed = worker(&space, &tmp.path().join("machine0"), &url, Some("train:1"));
    let killed_name = format!(":{}", killed.id());
    assert_eq!(
        killed.wait().unwrap().signal(),
        Some(9),
        "the first worker was not killed mid-training"
    );
    let survivors: Vec<Child> = (1..3)
        .map(|i| worker(&space, &tmp.path().join(format!("machine{i}")), &url, None))
        .collect();
    for mut c in survivors {
        let s = c.wait().unwrap();
        assert!(s.success(), "a surviving worker failed: {s:?}");
    }
    let t = pg_trials(&url);
    assert_budget_once(&t);
    // The killed worker held a running trial; a survivor took it over and finished it.
    assert!(
        t.iter().all(|tr| !tr.worker.ends_with(&killed_name)),
        "the dead worker still holds a trial: {t:#?}"
    );
}

#[test]
fn a_study_resumes_and_refuses_another_space() {
    let tmp = tempfile::tempdir().unwrap();
    let url = pg::fresh_database("resume");
    let out = tmp.path().join("run");
    let run = |text: &str, storage: bool| {
        let space = write_space(tmp.path(), text);
        let mut c = Command::new(BIN);
        c.arg("--space")
            .arg(&space)
            .arg("--out")
            .arg(&out)
            .arg("-q");
        if storage {
            c.args(["--storage", &url]);
        }
        c.output().unwrap()
    };
    let o = run(&tiny_space(3, 2, 1), true);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(pg_trials(&url).len(), 2);
    // The run directory remembers the database: the same command without --storage
    // resumes there with a larger budget.
    let o = run(&tiny_space(3, 4, 1), false);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(pg_trials(&url).len(), 4);
    let o = run(
        &tiny_space(3, 4, 1).replace("rank: [8, 16]", "rank: [4, 8]"),
        true,
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("different space"), "{}", stderr(&o));
    assert_eq!(pg_trials(&url).len(), 4);
}

#[test]
fn over_tcp_the_connection_is_tls_and_verified() {
    let tmp = tempfile::tempdir().unwrap();
    let url = pg::tls_url(&pg::fresh_database("tls"));
    let space = write_space(tmp.path(), &tiny_space(3, 2, 1));
    let other_ca = tmp.path().join("other-ca.pem");
    let other = cryptpeft_deploy::keys::Deployment::generate(&["127.0.0.1".into()], 1).unwrap();
    std::fs::write(&other_ca, other.dealer_ca.cert_pem).unwrap();
    let run = |ca: &Path| {
        Command::new(BIN)
            .arg("--space")
            .arg(&space)
            .arg("--out")
            .arg(tmp.path().join("run"))
            .args(["--storage", &url, "-q"])
            .env("PGSSLROOTCERT", ca)
            .env_remove(cryptpeft_search::fault::VAR)
            .output()
            .unwrap()
    };
    // A server certificate from another CA: refused before anything is sent.
    let o = run(&other_ca);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("cannot connect") && e.contains("certificate"),
        "{e}"
    );
    // The cluster takes TCP connections with TLS only (hostssl), so this run's success
    // is a TLS connection.
    let o = run(&pg::cluster().ca);
    assert!(o.status.success(), "{}", stderr(&o));
    let at = Location::Postgres {
        url: url.clone(),
        study: "tiny".into(),
    };
    std::env::set_var("PGSSLROOTCERT", &pg::cluster().ca);
    assert_eq!(at.open().unwrap().trials().unwrap().len(), 2);
}

#[test]
fn the_dashboard_reads_a_server_study_and_never_shows_its_password() {
    let tmp = tempfile::tempdir().unwrap();
    let url = pg::fresh_database("dashboard");
    let o = Command::new(BIN)
        .arg("--space")
        .arg(write_space(tmp.path(), &tiny_space(3, 2, 1)))
        .arg("--out")
        .arg(tmp.path().join("worker"))
        .args(["--storage", &url, "-q"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // Another machine's directory, the password in the URL (the socket trusts anyone).
    let secret = format!("{url}&password=hunter2secret");
    let dash = Dashboard::start(
        &tmp.path().join("viewer"),
        &["--storage", &secret, "--study", "tiny"],
    );
    let get = |path: &str| {
        dash.raw(&format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        ))
    };
    let body = get("/api/study");
    // A trial's details: its price breakdown and the curve the worker recorded.
    let number = pg_trials(&url)[0].number;
    let details = get(&format!("/api/trial/{number}"));
    assert!(details.contains("\"curve\":[{\"epoch\":1,"), "{details}");
    assert!(
        details.contains("\"steps\":[{\"name\":\"open\""),
        "{details}"
    );
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("\"state\":\"complete\""), "{body}");
    assert_eq!(body.matches("\"number\":").count(), 2, "{body}");
    assert!(!body.contains("hunter2secret"), "{body}");
}
