//! Restructuring changes no byte: the 20 paper configurations at ViT-B/16, every kind of
//! the search space on small shapes, and the baselines give the same plan digest, online
//! bytes, rounds, dealer bytes and bit-identical logits as the release recorded in
//! `tests/fixtures/equivalence.json` (fixed seeds throughout).
//!
//! After a change that is meant to alter plans (a new protocol, a new encoding), rewrite
//! the record with `CRYPTPEFT_WRITE_EQUIVALENCE=1 cargo test -p cryptpeft-private-eval
//! --test equivalence` and say why in the commit.

use std::path::PathBuf;
use std::time::Duration;

use cryptpeft_private_eval::baseline::{Baseline, BaselineModel};
use cryptpeft_private_eval::model::OwcModel;
use cryptpeft_private_eval::plan::{PlanWeights, SecurePlan};
use cryptpeft_private_eval::{hidden, online::local, plan::lower, transport::memory_pair};
use cryptpeft_types::{
    Activation, AdapterSpec, AttentionKind, BackboneSpec, NetworkProfile, NormKind, PAPER_SELECTED,
};
use serde::{Deserialize, Serialize};

/// What one plan gives; the logits as their f64 bit patterns, so equality is exact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Record {
    label: String,
    digest: String,
    online_bytes: u64,
    rounds: u64,
    offline_bytes: u64,
    logits: Vec<u64>,
}

#[derive(Serialize, Deserialize)]
struct Fixture {
    /// The commit whose code wrote the record.
    commit: String,
    records: Vec<Record>,
}

fn record(
    label: String,
    plan: &SecurePlan,
    w: &PlanWeights,
    x: &[cryptpeft_private_eval::arith::tensor::Mat],
    seed: u128,
) -> Record {
    let (c, s) = memory_pair(NetworkProfile::none(), Duration::from_secs(60));
    let got = local::infer(plan, w, x, c, s, seed).unwrap_or_else(|e| panic!("{label}: {e}"));
    Record {
        label,
        digest: format!("{:016x}", plan.digest()),
        online_bytes: got.online.total_bytes(),
        rounds: got.online.rounds,
        offline_bytes: got.offline_bytes,
        logits: got.logits.iter().map(|v| v.to_bits()).collect(),
    }
}

fn records() -> Vec<Record> {
    let mut out = Vec::new();
    let bb = BackboneSpec::vit_b16();
    for (i, &(h, r, s)) in PAPER_SELECTED.iter().enumerate() {
        let spec = AdapterSpec::paper(h, r, s);
        let model = OwcModel::random(spec.clone(), bb.clone(), 100, i as u64);
        let x = hidden::random(s + 1, bb.tokens(), bb.hidden_dim, i as u64);
        let (plan, w) = lower::lower(&model, Default::default()).unwrap();
        out.push(record(
            format!("paper-{i}-{}", spec.label()),
            &plan,
            &w,
            &x,
            i as u128,
        ));
    }
    let bb = BackboneSpec::test_small();
    let mut seed = 1000;
    for norm in NormKind::ALL {
        for attention in AttentionKind::ALL {
            for activation in Activation::ALL {
                seed += 1;
                let (h, r) = if seed % 2 == 0 { (2, 8) } else { (1, 4) };
                let spec = AdapterSpec {
                    scope: 1 + seed as usize % 3,
                    blocks: 1 + seed as usize / 3 % 2,
                    attention,
                    norm,
                    activation,
                    ..AdapterSpec::paper(h, r, 1)
                };
                let model = OwcModel::random(spec.clone(), bb.clone(), 5, seed);
                let x = hidden::random(spec.scope + 1, bb.tokens(), bb.hidden_dim, seed);
                let (plan, w) = lower::lower(&model, Default::default()).unwrap();
                out.push(record(
                    format!("kind-{}", spec.label()),
                    &plan,
                    &w,
                    &x,
                    seed as u128,
                ));
            }
        }
    }
    for (i, kind) in [
        Baseline::Sft(1),
        Baseline::Sft(2),
        Baseline::Lora,
        Baseline::AdaptFormer(8),
    ]
    .into_iter()
    .enumerate()
    {
        let seed = 2000 + i as u64;
        let m = BaselineModel::random(kind, bb.clone(), 5, seed).unwrap();
        let x = hidden::random(1, bb.tokens(), bb.hidden_dim, seed);
        let (plan, w) = m.lower(Default::default()).unwrap();
        out.push(record(
            format!("baseline-{kind:?}"),
            &plan,
            &w,
            &x,
            seed as u128,
        ));
    }
    out
}

fn fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/equivalence.json")
}

#[test]
fn plans_bytes_rounds_and_logits_equal_the_recorded_release() {
    let got = records();
    let path = fixture_path();
    if std::env::var_os("CRYPTPEFT_WRITE_EQUIVALENCE").is_some() {
        let commit = std::process::Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        let f = Fixture {
            commit,
            records: got,
        };
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, serde_json::to_string_pretty(&f).unwrap() + "\n").unwrap();
        eprintln!("wrote {}", path.display());
        return;
    }
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let want: Fixture =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(got.len(), want.records.len(), "number of plans");
    let mut differ = Vec::new();
    for (g, w) in got.iter().zip(&want.records) {
        if g != w {
            let what = [
                ("label", g.label != w.label),
                ("digest", g.digest != w.digest),
                ("online bytes", g.online_bytes != w.online_bytes),
                ("rounds", g.rounds != w.rounds),
                ("offline bytes", g.offline_bytes != w.offline_bytes),
                ("logits", g.logits != w.logits),
            ]
            .iter()
            .filter(|(_, d)| *d)
            .map(|(n, _)| *n)
            .collect::<Vec<_>>();
            differ.push(format!("{}: {}", w.label, what.join(", ")));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} plans differ from commit {}:\n{}",
        differ.len(),
        got.len(),
        want.commit,
        differ.join("\n")
    );
}
