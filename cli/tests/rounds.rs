//! `cryptpeft rounds`: every paper configuration, kind and baseline, its rounds never
//! below its dependency-depth bound.

mod common;

use std::process::Command;

#[test]
fn every_plan_has_its_bound_beside_its_rounds() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("rounds.csv");
    let o = Command::new(common::BIN)
        .args(["rounds", "--configs"])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../experiments/paper_configs.yaml"
        ))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = std::fs::read_to_string(&out).unwrap();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    // 20 configurations (15 distinct) twice, 45 kinds, 4 baselines.
    assert_eq!(rows.iter().filter(|r| r[0] == "baseline").count(), 4);
    assert_eq!(rows.iter().filter(|r| r[0] == "kinds").count(), 45);
    assert!(rows
        .iter()
        .any(|r| r[1] == "h1-r300-s1" && r[2] == "8" && r[3] == "7"));
    for r in &rows {
        let (rounds, bound): (u64, u64) = (r[2].parse().unwrap(), r[3].parse().unwrap());
        assert!(0 < bound && bound <= rounds, "{r:?}");
    }
}
