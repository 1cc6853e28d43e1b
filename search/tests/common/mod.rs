//! A tiny space (8 configurations, 2 epochs on 300 digits) and helpers to run the binary.

#![allow(dead_code)]

pub mod pg;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use cryptpeft_search::study::{SqliteStudy, Storage, Trial};

pub const BIN: &str = env!("CARGO_BIN_EXE_cryptpeft-search");

pub fn tiny_space(seed: u64, evaluations: usize, epochs: usize) -> String {
    format!(
        "name: tiny
backbone: vit-mini
data:
  dataset: digits
  max_train: 300
  max_test: 60
validation: 0.25
genes:
  heads: [1, 2]
  rank: [8, 16]
  scope: [1, 2]
fidelity:
  epochs: {epochs}
networks: [lan, wan]
select: wan
population: 3
budget:
  evaluations: {evaluations}
seed: {seed}
constants: shipped
"
    )
}

/// Writes `text` as `space.yaml` in `dir`.
pub fn write_space(dir: &Path, text: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join("space.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

/// Runs the search quietly; `kill_at` arms a kill point.
pub fn search(space: &Path, out: &Path, kill_at: Option<&str>) -> Output {
    let mut c = Command::new(BIN);
    c.arg("--space").arg(space).arg("--out").arg(out).arg("-q");
    c.env_remove(cryptpeft_search::fault::VAR);
    if let Some(k) = kill_at {
        c.env(cryptpeft_search::fault::VAR, k);
    }
    c.output().unwrap()
}

/// Runs `report` on the run directory `out`, quietly.
pub fn report(out: &Path) -> Output {
    Command::new(BIN)
        .arg("report")
        .arg(out)
        .arg("-q")
        .output()
        .unwrap()
}

pub fn trials(out: &Path) -> Vec<Trial> {
    SqliteStudy::open(&out.join("study.sqlite"))
        .unwrap()
        .trials()
        .unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `cryptpeft-search dashboard` on a free port, killed when dropped.
pub struct Dashboard {
    pub url: String,
    child: Child,
}

impl Dashboard {
    pub fn start(run: &Path, args: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .arg("dashboard")
            .arg(run)
            .args(args)
            .args(["--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"))
            .to_string();
        Dashboard { url, child }
    }

    /// The whole response to a raw request.
    pub fn raw(&self, request: &str) -> String {
        let addr = self.url.trim_start_matches("http://").trim_end_matches('/');
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    /// The status line of a raw request.
    pub fn status(&self, request: &str) -> String {
        self.raw(request).lines().next().unwrap_or("").to_string()
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
