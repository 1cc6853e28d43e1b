//! The cost model's bytes and rounds equal, exactly, what the executor measures on the
//! client's channel, for many random plans: in total, per step, and offline.

use std::time::Duration;

use cryptpeft_cost_model::{cost, shape::plan_shape_only_with, Constants};
use cryptpeft_private_eval::baseline::{Baseline, BaselineModel};
use cryptpeft_private_eval::plan::{InvSqrtParams, SecurePlan};
use cryptpeft_private_eval::{
    hidden, model::OwcModel, online::local, plan::lower, transport::memory_pair,
};
use cryptpeft_types::{
    Activation, AdapterSpec, AttentionKind, BackboneSpec, NetworkProfile, NormKind,
};
use rand::{Rng, SeedableRng};

fn backbone(rng: &mut impl Rng) -> BackboneSpec {
    let patch = 4;
    let side = rng.random_range(1..=3) * patch;
    let d = [8, 12, 16][rng.random_range(0..3)];
    BackboneSpec {
        name: "test".into(),
        image_size: side,
        patch_size: patch,
        channels: 3,
        hidden_dim: d,
        layers: 4,
        heads: 2,
        mlp_dim: 2 * d,
        norm_eps: 1e-6,
    }
}

#[test]
fn bytes_and_rounds_match_the_executor_exactly() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(2024);
    let consts = Constants::shipped();
    let mut checked = 0;
    for case in 0..150 {
        let bb = backbone(&mut rng);
        let h = [1, 2, 4][rng.random_range(0..3)];
        let r = h * rng.random_range(1..=3);
        let s = rng.random_range(1..=3);
        let attention = AttentionKind::ALL[rng.random_range(0..5)];
        let norm = NormKind::ALL[rng.random_range(0..3)];
        let blocks = rng.random_range(1..=2);
        let classes = rng.random_range(2..=7);
        let activation =
            [Activation::Relu, Activation::Square, Activation::Gelu][rng.random_range(0..3)];
        let spec = AdapterSpec {
            scope: s,
            heads: h,
            rank: r,
            blocks,
            attention,
            norm,
            activation,
            ..AdapterSpec::paper(h, r, s)
        };
        let model = OwcModel::random(spec.clone(), bb.clone(), classes, case);
        let mut opts = lower::LowerOptions {
            exact_truncation: rng.random_bool(0.7),
            ..Default::default()
        };
        if rng.random_bool(0.3) {
            opts.inv_sqrt = InvSqrtParams {
                min_exp: -6,
                max_exp: 12,
                per_octave: 4,
                newton: rng.random_range(0..=2),
                ..Default::default()
            };
        }
        let (plan, w) = lower::lower(&model, opts).unwrap();
        let x = hidden::random(spec.scope + 1, bb.tokens(), bb.hidden_dim, rng.random());
        let (c, sv) = memory_pair(NetworkProfile::none(), Duration::from_secs(20));
        let got = local::infer(&plan, &w, &x, c, sv, case as u128).unwrap();
        let label = format!(
            "case {case}: {} on N={} d={}",
            spec.label(),
            bb.tokens(),
            bb.hidden_dim
        );
        check(&label, &plan, &got, &consts);
        // The shape-only path (no weights) gives the same plan.
        {
            let shape = plan_shape_only_with(&spec, &bb, classes, opts).unwrap();
            assert_eq!(shape.steps, plan.steps, "{label}: shape-only plan steps");
            assert_eq!(shape.wires, plan.wires, "{label}: shape-only plan wires");
            assert_eq!(
                shape.openings, plan.openings,
                "{label}: shape-only plan openings"
            );
            assert_eq!(
                shape.weights, plan.weights,
                "{label}: shape-only plan weights"
            );
        }
        checked += 1;
    }
    eprintln!("{checked} random plans: bytes, rounds and offline bytes exact");
}

/// The priced bytes, frames, rounds and offline bytes equal the measured ones, in total
/// and per step.
fn check(label: &str, plan: &SecurePlan, got: &local::Inference, consts: &Constants) {
    let report = cost(plan, &NetworkProfile::none(), consts);
    assert_eq!(
        report.online_bytes,
        got.online.total_bytes(),
        "{label}: online bytes"
    );
    assert_eq!(
        report.online_bytes_client_to_server, got.online.bytes_sent,
        "{label}: client->server bytes"
    );
    assert_eq!(
        report.online_bytes_server_to_client, got.online.bytes_received,
        "{label}: server->client bytes"
    );
    assert_eq!(
        report.online_frames,
        got.online.frames_sent + got.online.frames_received,
        "{label}: frames"
    );
    assert_eq!(report.rounds, got.online.rounds, "{label}: rounds");
    assert_eq!(
        report.offline_bytes, got.offline_bytes,
        "{label}: offline bytes"
    );
    assert_eq!(report.steps.len(), got.steps.len());
    for (i, (p, m)) in report.steps.iter().zip(&got.steps).enumerate() {
        assert_eq!((p.name, &p.shape), (m.name, &m.shape), "{label}: step {i}");
        assert_eq!(
            (p.bytes, p.rounds),
            (m.bytes, m.rounds),
            "{label}: step {i} ({}) bytes/rounds",
            p.name
        );
    }
}

#[test]
fn baselines_bytes_and_rounds_match_the_executor_exactly() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(77);
    let consts = Constants::shipped();
    for case in 0..12u64 {
        let bb = backbone(&mut rng);
        let kind = Baseline::PAPER[case as usize % 4];
        let opts = lower::LowerOptions {
            exact_truncation: rng.random_bool(0.7),
            ..Default::default()
        };
        let classes = rng.random_range(2..=7);
        let model = BaselineModel::random(kind, bb.clone(), classes, case).unwrap();
        let (plan, w) = model.lower(opts).unwrap();
        let x = hidden::random(1, bb.tokens(), bb.hidden_dim, case);
        let (c, sv) = memory_pair(NetworkProfile::none(), Duration::from_secs(20));
        let got = local::infer(&plan, &w, &x, c, sv, case as u128).unwrap();
        let label = format!(
            "baseline case {case}: {kind} on N={} d={}",
            bb.tokens(),
            bb.hidden_dim
        );
        check(&label, &plan, &got, &consts);
        let (shape, _) = BaselineModel::symbolic(kind, bb, classes)
            .unwrap()
            .lower(opts)
            .unwrap();
        assert_eq!(shape, plan, "{label}: shape-only plan");
    }
}
