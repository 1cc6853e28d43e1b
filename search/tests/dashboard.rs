//! The dashboard in a real browser: Debian's Chromium, driven through chromedriver
//! (WebDriver), on a study while a search runs. `.ci/run` installs both
//! (`chromium`, `chromium-driver`); `CHROMIUM` and `CHROMEDRIVER` name others.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

fn tool(var: &str, default: &str) -> String {
    let path = std::env::var(var).unwrap_or_else(|_| default.to_string());
    assert!(
        Path::new(&path).is_file(),
        "{path} is missing: install Debian's chromium and chromium-driver (.ci/run does), \
         or name them with CHROMIUM and CHROMEDRIVER"
    );
    path
}

/// A WebDriver session in headless Chromium; the driver ends with it.
struct Browser {
    base: String,
    session: String,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Self {
        let chromium = tool("CHROMIUM", "/usr/bin/chromium");
        let port = free_port();
        let driver = Command::new(tool("CHROMEDRIVER", "/usr/bin/chromedriver"))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        while ureq::get(&format!("{base}/status")).call().is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1400,1800",
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args}
        }}});
        let mut b = Browser {
            base,
            session: String::new(),
            driver,
            _profile: profile,
        };
        let v = b.call("POST", "/session", caps);
        b.session = v["sessionId"].as_str().expect("a session id").to_string();
        b
    }

    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = if self.session.is_empty() {
            format!("{}{path}", self.base)
        } else {
            format!("{}/session/{}{path}", self.base, self.session)
        };
        let r = match method {
            "POST" => ureq::post(&url).send_json(body),
            _ => ureq::delete(&url).call(),
        };
        let v: Value = r
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
            .body_mut()
            .read_json()
            .unwrap();
        v["value"].clone()
    }

    fn goto(&self, url: &str) {
        self.call("POST", "/url", json!({ "url": url }));
    }

    fn script(&self, js: &str) -> Value {
        self.call("POST", "/execute/sync", json!({ "script": js, "args": [] }))
    }

    /// Polls `js` until it returns something other than null or false.
    fn wait(&self, js: &str, secs: u64, what: &str) -> Value {
        let start = Instant::now();
        loop {
            let v = self.script(js);
            if !v.is_null() && v != Value::Bool(false) {
                return v;
            }
            assert!(
                start.elapsed().as_secs() < secs,
                "waited {secs} s for {what}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn click(&self, css: &str) {
        let e = self.call(
            "POST",
            "/element",
            json!({ "using": "css selector", "value": css }),
        );
        let id = e
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}"))
            .to_string();
        self.call("POST", &format!("/element/{id}/click"), json!({}));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = ureq::delete(&format!("{}/session/{}", self.base, self.session)).call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// `(trial, val_accuracy, predicted_online_s)` of each row of a `pareto_<profile>.csv`.
fn csv_front(path: &Path) -> Vec<(u64, f64, f64)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| head.iter().position(|h| *h == name).unwrap();
    let (t, a, s) = (col("trial"), col("val_accuracy"), col("predicted_online_s"));
    let mut rows: Vec<_> = lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[t].parse().unwrap(),
                f[a].parse().unwrap(),
                f[s].parse().unwrap(),
            )
        })
        .collect();
    rows.sort_by_key(|r: &(u64, f64, f64)| r.0);
    rows
}

fn page_front(b: &Browser, p: usize) -> Vec<(u64, f64, f64)> {
    let v = b.script(&format!(
        "return [...document.querySelectorAll('#front-{p} circle.member')]
           .map(c => [Number(c.dataset.trial), Number(c.dataset.acc), Number(c.dataset.seconds)]);"
    ));
    let mut rows: Vec<_> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r[0].as_u64().unwrap(),
                r[1].as_f64().unwrap(),
                r[2].as_f64().unwrap(),
            )
        })
        .collect();
    rows.sort_by_key(|r| r.0);
    rows
}

#[test]
fn the_dashboard_follows_a_running_search_in_chromium() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    // A latency budget on lan: its region is shaded on lan's front only.
    let space_text = |n| {
        tiny_space(3, n, 1).replace(
            "select: wan\n",
            "select: wan\nconstraints:\n  latency_s:\n    lan: 1.0\n",
        )
    };
    let first = search(&write_space(tmp.path(), &space_text(3)), &run, None);
    assert!(first.status.success(), "{}", stderr(&first));
    let dash = Dashboard::start(&run, &[]);
    let browser = Browser::start();
    browser.goto(&dash.url);
    browser.wait(
        "return document.querySelectorAll('#front-1 circle.member').length > 0",
        60,
        "the wan front",
    );
    browser.script("window.loadedOnce = true; return null;");
    let shaded =
        "return [0, 1].map(p => document.querySelectorAll(`#front-${p} rect.shade`).length)";
    assert_eq!(browser.script(shaded), json!([1, 0]));
    let complete = "return study.trials.filter(t => t.state === 'complete').length";
    assert_eq!(browser.script(complete), 3);
    // The same study with a larger budget: a search to watch.
    let space = write_space(tmp.path(), &space_text(7));
    let mut second = Command::new(BIN)
        .arg("--space")
        .arg(&space)
        .arg("--out")
        .arg(&run)
        .arg("-q")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = second.wait().unwrap();
    let mut err = String::new();
    second
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{err}");
    // Trials finished after the page loaded appear without a reload.
    browser.wait(
        "return study.trials.filter(t => t.state === 'complete').length === 7",
        30,
        "the trials finished since the page loaded",
    );
    assert_eq!(browser.script("return window.loadedOnce === true"), true);
    let rows = browser.script("return document.querySelectorAll('#trials tbody tr').length");
    assert_eq!(rows, 7);

    // The front's points are the report's pareto_<profile>.csv.
    for (p, name) in ["lan", "wan"].iter().enumerate() {
        let want = csv_front(&run.join(format!("pareto_{name}.csv")));
        let got = page_front(&browser, p);
        assert_eq!(
            got.iter().map(|r| r.0).collect::<Vec<_>>(),
            want.iter().map(|r| r.0).collect::<Vec<_>>(),
            "{name} front"
        );
        for (g, w) in got.iter().zip(&want) {
            assert!((g.1 - w.1).abs() < 1e-9, "{name}: {g:?} vs {w:?}");
            assert!(
                (g.2 - w.2).abs() < 1e-9 * w.2.max(1.0),
                "{name}: {g:?} vs {w:?}"
            );
        }
    }

    // Selecting a point shows the command that deploys its checkpoint.
    let (number, _, _) = page_front(&browser, 1)[0];
    browser.click(&format!("#front-1 circle.member[data-trial=\"{number}\"]"));
    let serve = browser.wait(
        "const e = document.querySelector('#detail pre.serve'); return e && e.textContent",
        10,
        "the serve command",
    );
    // The training curve the worker recorded (one epoch here).
    browser.wait(
        "return document.querySelectorAll('#curve svg path').length === 2",
        10,
        "the training curve",
    );
    let config = trials(&run)
        .into_iter()
        .find(|t| t.number == number)
        .unwrap()
        .config;
    let serve = serve.as_str().unwrap();
    let checkpoint = run.join("adapters").join(format!("{config}.safetensors"));
    assert!(checkpoint.is_file());
    assert!(
        serve.starts_with(&format!(
            "cryptpeft serve --checkpoint {}",
            checkpoint.display()
        )) && serve.contains("--network wan"),
        "{serve}"
    );

    // `report --html` writes the same page as one file with the data inside: no
    // server, no other file, the same front, and the front members' breakdowns.
    let o = Command::new(BIN)
        .args(["report", "--html", "-q"])
        .arg(&run)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let html = run.join("dashboard.html");
    let text = std::fs::read_to_string(&html).unwrap();
    for outside in ["src=\"http", "href=\"http", "@import", "<link"] {
        assert!(
            !text.contains(outside),
            "the page refers outside itself: {outside}"
        );
    }
    drop(dash);
    browser.goto(&format!("file://{}#trial={number}", html.display()));
    browser.wait(
        "return document.querySelectorAll('#front-1 circle.member').length > 0",
        30,
        "the static page's front",
    );
    for (p, name) in ["lan", "wan"].iter().enumerate() {
        let want = csv_front(&run.join(format!("pareto_{name}.csv")));
        let got: Vec<u64> = page_front(&browser, p).iter().map(|r| r.0).collect();
        assert_eq!(got, want.iter().map(|r| r.0).collect::<Vec<_>>(), "{name}");
    }
    let steps = browser.wait(
        "return document.querySelectorAll('#detail table tr').length",
        10,
        "the linked trial's price breakdown",
    );
    assert!(steps.as_u64().unwrap() > 3, "{steps}");
}

#[test]
fn the_dashboard_refuses_what_it_must_not_serve_and_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let o = search(&write_space(tmp.path(), &tiny_space(3, 2, 1)), &run, None);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::write(tmp.path().join("secret.csv"), "x").unwrap();
    // As an older release left it: no curve column (a worker would add it; the
    // dashboard must not).
    rusqlite::Connection::open(run.join("study.sqlite"))
        .unwrap()
        .execute_batch("ALTER TABLE trials DROP COLUMN curve")
        .unwrap();
    let study = std::fs::read(run.join("study.sqlite")).unwrap();
    let dash = Dashboard::start(&run, &[]);
    // Outside the run directory, a secret file, a malformed request: an error status,
    // and the dashboard goes on serving.
    let get = |path: &str| {
        dash.status(&format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        ))
    };
    for path in [
        "/files/../../../etc/passwd",
        "/files/%2e%2e/%2e%2e/etc/passwd",
        "/files/../secret.csv",
        "/files/study.sqlite",
    ] {
        let status = get(path);
        assert!(status.contains(" 403 "), "{path}: {status}");
    }
    assert!(get("/nothing").contains(" 404 "));
    assert!(dash.status("GARBAGE\r\n\r\n").contains(" 400 "));
    assert!(dash
        .status("GET /api/study HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
        .contains(" 403 "));
    assert!(get("/files/pareto_wan.csv").contains(" 200 "));
    assert!(get("/api/study").contains(" 200 "));
    let details =
        dash.raw("GET /api/trial/0 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    assert!(details.starts_with("HTTP/1.1 200 "), "{details}");
    assert!(details.contains("\"curve\":null"), "{details}");
    drop(dash);
    // It only read the study: its file and its tables are as they were.
    assert!(std::fs::read(run.join("study.sqlite")).unwrap() == study);
    let columns: i64 = rusqlite::Connection::open(run.join("study.sqlite"))
        .unwrap()
        .query_row(
            "SELECT COUNT(*) FROM pragma_table_info('trials') WHERE name = 'curve'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(columns, 0, "the dashboard upgraded the study");
}
