//! Secure logits equal the plaintext reference for many random specs on small shapes.

use cryptpeft_private_eval::arith::tensor::max_abs_diff;
use std::time::Duration;

use cryptpeft_private_eval::{
    hidden, model::OwcModel, online::local, plan::lower, reference, transport::memory_pair,
};
use cryptpeft_types::{
    Activation, AdapterSpec, AttentionKind, BackboneSpec, NetworkProfile, NormKind,
};

/// Fixed point with 16 fractional bits: weights and inputs carry 2^-17 rounding, every
/// product a truncation of 1 ulp; through a few layers this stays far below 0.01.
const BOUND: f64 = 0.01;

/// Every kind of the search space (norm x attention x activation, softmax included),
/// at scopes 1-3 and 1-2 blocks: the plans exercise every fused truncation (ReLUs of
/// `2f` and `3f` inputs, wide openings, reveals at `2f` and `3f`).
#[test]
fn secure_logits_match_reference_for_random_specs() {
    let bb = BackboneSpec::test_small();
    let mut seed = 100;
    let mut worst: f64 = 0.0;
    for norm in NormKind::ALL {
        for attention in AttentionKind::ALL {
            for activation in Activation::ALL {
                seed += 1;
                let (h, r) = if seed % 2 == 0 { (2, 8) } else { (1, 4) };
                let spec = AdapterSpec {
                    scope: 1 + seed as usize % 3,
                    heads: h,
                    rank: r,
                    blocks: 1 + seed as usize / 3 % 2,
                    attention,
                    norm,
                    activation,
                    ..AdapterSpec::paper(h, r, 1)
                };
                let model = OwcModel::random(spec.clone(), bb.clone(), 5, seed);
                let (plan, w) = lower::lower(&model, Default::default()).unwrap();
                let x = hidden::random(spec.scope + 1, bb.tokens(), bb.hidden_dim, seed);
                let want = reference::forward(&model, &x);
                let (c, sv) = memory_pair(NetworkProfile::none(), Duration::from_secs(10));
                eprintln!("SPEC {}", spec.label());
                let got = local::infer(&plan, &w, &x, c, sv, seed as u128).unwrap();
                let err = max_abs_diff(&want, &got.logits);
                worst = worst.max(err);
                assert!(
                    err <= BOUND,
                    "{}: secure vs reference max abs err {err}\n want {want:?}\n got {:?}",
                    spec.label(),
                    got.logits
                );
            }
        }
    }
    eprintln!("worst max abs logit error over all specs: {worst:.2e}");
}

/// The client's states are asked for in input order, each once, the plan's first step
/// (the first state's opening) reading state 0 alone; the logits are those of the states
/// given at once.
#[test]
fn hidden_states_are_fetched_lazily_in_order() {
    let bb = BackboneSpec::test_small();
    let spec = AdapterSpec::paper(2, 8, 3);
    let model = OwcModel::random(spec.clone(), bb.clone(), 5, 9);
    let (plan, w) = lower::lower(&model, Default::default()).unwrap();
    let x = hidden::random(spec.scope + 1, bb.tokens(), bb.hidden_dim, 9);
    let (c, s) = memory_pair(NetworkProfile::none(), Duration::from_secs(10));
    let at_once = local::infer(&plan, &w, &x, c, s, 3).unwrap();
    let mut asked = Vec::new();
    let mut get = |k: usize| {
        asked.push(k);
        Ok(x[k].clone())
    };
    let (c, s) = memory_pair(NetworkProfile::none(), Duration::from_secs(10));
    let lazy = local::infer_with(&plan, &w, &mut get, c, s, 3).unwrap();
    assert_eq!(lazy.logits, at_once.logits);
    assert_eq!(asked, (0..=spec.scope).collect::<Vec<_>>());
    // The first state's opening is the plan's first step; it needs only state 0.
    let first = plan.steps[0].reads(&plan.openings);
    assert!(first.iter().all(|&w| matches!(
        plan.wires[w].kind,
        cryptpeft_private_eval::plan::WireKind::ClientInput { hidden: 0 }
    )));
}
