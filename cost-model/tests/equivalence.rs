//! Restructuring changes no price: for the 20 paper configurations, every kind of the
//! search space and the baselines at ViT-B/16, the shipped constants give the same
//! predicted online, offline and dealer seconds and compute, bit for bit, as the release
//! recorded in `tests/fixtures/prices.json`.
//!
//! After a change meant to alter prices, rewrite the record with
//! `CRYPTPEFT_WRITE_EQUIVALENCE=1 cargo test -p cryptpeft-cost-model --test equivalence`
//! and say why in the commit.

use std::path::PathBuf;

use cryptpeft_cost_model::{cost, Constants};
use cryptpeft_private_eval::baseline::{Baseline, BaselineModel};
use cryptpeft_private_eval::model::OwcModel;
use cryptpeft_private_eval::plan::lower;
use cryptpeft_types::{
    Activation, AdapterSpec, AttentionKind, BackboneSpec, NetworkProfile, NormKind, PAPER_SELECTED,
};
use serde::{Deserialize, Serialize};

/// One plan's prices as f64 bit patterns, so equality is exact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Record {
    label: String,
    online_s: u64,
    offline_s: u64,
    dealer_s: u64,
    compute_s: u64,
    bytes: u64,
    rounds: u64,
}

#[derive(Serialize, Deserialize)]
struct Fixture {
    commit: String,
    records: Vec<Record>,
}

fn records() -> Vec<Record> {
    let bb = BackboneSpec::vit_b16();
    let c = Constants::shipped();
    let wan: NetworkProfile = "wan".parse().unwrap();
    let mut plans = Vec::new();
    for &(h, r, s) in &PAPER_SELECTED {
        let spec = AdapterSpec::paper(h, r, s);
        let model = OwcModel::symbolic(spec.clone(), bb.clone(), 100);
        plans.push((
            spec.label(),
            lower::lower(&model, Default::default()).unwrap().0,
        ));
    }
    for norm in NormKind::ALL {
        for attention in AttentionKind::ALL {
            for activation in Activation::ALL {
                let spec = AdapterSpec {
                    blocks: 2,
                    attention,
                    norm,
                    activation,
                    ..AdapterSpec::paper(2, 64, 2)
                };
                let model = OwcModel::symbolic(spec.clone(), bb.clone(), 100);
                plans.push((
                    spec.label(),
                    lower::lower(&model, Default::default()).unwrap().0,
                ));
            }
        }
    }
    for kind in [Baseline::Sft(1), Baseline::Lora, Baseline::AdaptFormer(64)] {
        let m = BaselineModel::symbolic(kind, bb.clone(), 100).unwrap();
        plans.push((format!("{kind:?}"), m.lower(Default::default()).unwrap().0));
    }
    plans
        .into_iter()
        .map(|(label, plan)| {
            let r = cost(&plan, &wan, &c);
            Record {
                label,
                online_s: r.predicted_online_s.to_bits(),
                offline_s: r.predicted_offline_s.to_bits(),
                dealer_s: r.offline_dealer_s.to_bits(),
                compute_s: r.compute_s.to_bits(),
                bytes: r.online_bytes,
                rounds: r.rounds,
            }
        })
        .collect()
}

#[test]
fn prices_equal_the_recorded_release() {
    let got = records();
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/prices.json");
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
        std::fs::write(&path, serde_json::to_string_pretty(&f).unwrap() + "\n").unwrap();
        return;
    }
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let want: Fixture =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(got.len(), want.records.len(), "number of plans");
    let differ: Vec<String> = got
        .iter()
        .zip(&want.records)
        .filter(|(g, w)| g != w)
        .map(|(g, w)| format!("{}: got {g:?}\n want {w:?}", w.label))
        .collect();
    assert!(
        differ.is_empty(),
        "{} of {} prices differ from commit {}:\n{}",
        differ.len(),
        got.len(),
        want.commit,
        differ.join("\n")
    );
}
