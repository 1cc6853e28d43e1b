//! Constants, the paper's surrogate, baselines and pricing speed.

use cryptpeft_cost_model::{
    baselines, cost, paper_linear, plan_shape_only, Constants, PaperNetwork,
};
use cryptpeft_types::{AdapterSpec, BackboneSpec, NetworkProfile};

#[test]
fn shipped_constants_parse_and_round_trip() {
    let c = Constants::shipped();
    assert!(c.matmul_gops > 0.0 && c.threads >= 1);
    let back = Constants::from_yaml(&c.to_yaml()).unwrap();
    assert_eq!(back, c);
    let dir = std::env::temp_dir().join(format!("cm-consts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("c.yaml");
    c.save(&p, "test header\nsecond line").unwrap();
    assert_eq!(Constants::load(&p).unwrap(), c);
    let bad = c.to_yaml().replace(
        &format!("matmul_gops: {}", c.matmul_gops),
        "matmul_gops: -1.0",
    );
    assert!(Constants::from_yaml(&bad)
        .unwrap_err()
        .to_string()
        .contains("matmul_gops"));
}

#[test]
fn paper_surrogate_matches_the_formulas() {
    let wan = paper_linear(1, 300, 1, PaperNetwork::Wan);
    assert!((wan - ((0.03828 + 0.00465 * 300.0 + 0.48139) + 0.3212)).abs() < 1e-12);
    let lan = paper_linear(2, 120, 2, PaperNetwork::Lan);
    assert!((lan - ((0.027466 * 2.0 + 0.002962 * 120.0 + 0.123125) * 2.0 + 0.24229)).abs() < 1e-12);
    assert_eq!(
        PaperNetwork::from_profile(&NetworkProfile::wan()),
        Some(PaperNetwork::Wan)
    );
    assert_eq!(PaperNetwork::from_profile(&NetworkProfile::none()), None);
}

#[test]
fn baselines_cost_more_than_an_owc_adapter() {
    let bb = BackboneSpec::vit_b16();
    let c = Constants::shipped();
    let wan = NetworkProfile::wan();
    let plan = plan_shape_only(&AdapterSpec::paper(1, 300, 1), &bb, 100).unwrap();
    let owc = cost(&plan, &wan, &c);
    let b = baselines::all(&bb, 100, &wan, &c).unwrap();
    assert_eq!(b.len(), 4);
    for x in &b {
        // Even SFT of the last layer alone, with its dead tokens eliminated (only the CLS
        // row after attention), needs LayerNorm, softmax and 12 heads under MPC.
        assert!(
            x.online_bytes > 3 * owc.online_bytes,
            "{}: {} vs {}",
            x.name,
            x.online_bytes,
            owc.online_bytes
        );
        assert!(x.rounds > owc.rounds && x.predicted_online_s > owc.predicted_online_s);
    }
    // One full layer more for SFT-2; the whole backbone (12 layers) for LoRA, and
    // AdaptFormer's bottlenecks beside it (their ReLUs add rounds; with truncations
    // fused, its bytes are within 0.1% of LoRA's).
    assert!(b[1].online_bytes > 3 * b[0].online_bytes);
    assert!(b[2].online_bytes > 5 * b[1].online_bytes && b[3].rounds > b[2].rounds);
}

#[test]
fn pricing_a_vit_b16_candidate_is_fast() {
    let bb = BackboneSpec::vit_b16();
    let c = Constants::shipped();
    for spec in [
        AdapterSpec::paper(6, 300, 6),
        AdapterSpec {
            norm: cryptpeft_types::NormKind::LayerNorm,
            ..AdapterSpec::paper(6, 300, 6)
        },
    ] {
        let t = std::time::Instant::now();
        let reps = 50;
        for _ in 0..reps {
            let plan = plan_shape_only(&spec, &bb, 100).unwrap();
            std::hint::black_box(cost(&plan, &NetworkProfile::wan(), &c));
        }
        let per = t.elapsed().as_secs_f64() / reps as f64;
        eprintln!("{}: plan + price {:.3} ms", spec.label(), per * 1e3);
        // Generous for a test build on a loaded machine; the release figure is printed by
        // `cargo test --release -p cryptpeft-cost-model pricing -- --nocapture`.
        assert!(per < 0.02, "plan + price took {per} s");
    }
}

/// Studies keep the constants they were priced with: those of the release before DCF
/// work was priced in tree levels (commit 6ebb27d's shipped file) still load, with
/// every 63-level evaluation counted as 63 levels.
#[test]
fn constants_of_the_previous_release_load() {
    let text = include_str!("constants_6ebb27d.yaml");
    let c = Constants::from_yaml(text).unwrap();
    let old = |k: &str| -> f64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{k}:")))
            .unwrap();
        line.split(':').nth(1).unwrap().trim().parse().unwrap()
    };
    assert_eq!(c.dcf_levels_per_s, 63.0 * old("dcf_evals_per_s"));
    assert_eq!(c.dcf_pool_levels_per_s, 63.0 * old("dcf_pool_evals_per_s"));
    assert_eq!(c.dcf_keygen_levels_per_s, 63.0 * old("dcf_keygen_per_s"));
    assert_eq!(c.relu_level_s, old("relu_level_s"));
    // Older still (before ReLU was calibrated): refused, naming the missing field.
    let older = text.replace("relu_level_s", "some_other_field");
    assert!(Constants::from_yaml(&older)
        .unwrap_err()
        .to_string()
        .contains("relu_level_s"));
}
