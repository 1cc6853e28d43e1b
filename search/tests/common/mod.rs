//! A tiny space (8 configurations, 2 epochs on 300 digits) and helpers to run the binary.

#![allow(dead_code)]

pub mod pg;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
