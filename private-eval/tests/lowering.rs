//! The lowered plan, run in plaintext, computes the reference model's logits.

use cryptpeft_private_eval::{gates::plain, hidden, model::OwcModel, plan::lower, reference};
use cryptpeft_types::{Activation, AdapterSpec, AttentionKind, BackboneSpec, NormKind};

#[test]
fn plaintext_plan_matches_reference_for_many_specs() {
    let bb = BackboneSpec::test_small();
    let mut seed = 0;
    for norm in [NormKind::Affine, NormKind::LayerNorm, NormKind::None] {
        for attention in [
            AttentionKind::LinAtten,
            AttentionKind::TwoQuad,
            AttentionKind::ReluSoftmax,
            AttentionKind::None,
        ] {
            for (h, r) in [(1, 4), (2, 8)] {
                for s in 1..=3 {
                    for k in 1..=2 {
                        seed += 1;
                        let activation = [Activation::Relu, Activation::Square, Activation::Gelu]
                            [seed as usize % 3];
                        let spec = AdapterSpec {
                            scope: s,
                            heads: h,
                            rank: r,
                            blocks: k,
                            attention,
                            norm,
                            activation,
                            ..AdapterSpec::paper(h, r, s)
                        };
                        let model = OwcModel::random(spec.clone(), bb.clone(), 5, seed);
                        let (plan, w) = lower::lower(&model, Default::default()).unwrap();
                        let x = hidden::random(spec.scope + 1, bb.tokens(), bb.hidden_dim, seed);
                        let want = reference::forward(&model, &x);
                        plan.check().unwrap();
                        let got = plain::eval(&plan, &w, &x);
                        let err = want
                            .iter()
                            .zip(&got)
                            .map(|(a, b)| (a - b).abs())
                            .fold(0.0, f64::max);
                        assert!(err < 1e-9, "{}: err {err}", spec.label());
                        // The plan travels as JSON to the client and the dealer: it must
                        // come back bit-identical, or the material's digest check fails.
                        let back: cryptpeft_private_eval::plan::SecurePlan =
                            serde_json::from_slice(&serde_json::to_vec(&plan).unwrap()).unwrap();
                        assert_eq!(back.digest(), plan.digest(), "{}", spec.label());
                    }
                }
            }
        }
    }
}

#[test]
fn a_relu_width_outside_f_plus_2_to_64_is_refused() {
    let model = OwcModel::random(
        AdapterSpec::paper(1, 4, 1),
        BackboneSpec::test_small(),
        5,
        1,
    );
    for bits in [17, 65] {
        let opts = lower::LowerOptions {
            relu_bits: bits,
            ..Default::default()
        };
        let e = lower::lower(&model, opts).unwrap_err().to_string();
        assert!(e.contains(&format!("ReLU width {bits}")), "{e}");
    }
}

#[test]
fn a_peers_plan_with_bad_parameters_or_dangling_wires_is_refused() {
    use cryptpeft_private_eval::plan::Step;
    let spec = AdapterSpec {
        norm: NormKind::LayerNorm,
        ..AdapterSpec::paper(1, 4, 1)
    };
    let model = OwcModel::random(spec, BackboneSpec::test_small(), 5, 1);
    let (plan, _) = lower::lower(&model, Default::default()).unwrap();
    let broken = |f: &dyn Fn(&mut Step) -> bool| {
        let mut p = plan.clone();
        assert!(p.steps.iter_mut().any(f), "no step to break");
        p.check().unwrap_err()
    };
    let e = broken(&|s| match s {
        Step::Relu { bits, .. } => {
            *bits = 0;
            true
        }
        _ => false,
    });
    assert!(e.contains("ReLU width 0"), "{e}");
    let e = broken(&|s| match s {
        Step::LayerNorm { inv_sqrt, .. } => {
            inv_sqrt.power = 0;
            true
        }
        _ => false,
    });
    assert!(e.contains("norm parameters"), "{e}");
    let e = broken(&|s| match s {
        Step::Reveal { wire, .. } => {
            *wire = 10_000;
            true
        }
        _ => false,
    });
    assert!(e.contains("wire 10000"), "{e}");
    // Sizes that would overflow, or that no model needs.
    let mut p = plan.clone();
    p.wires[0].rows = usize::MAX / 2;
    let e = p.check().unwrap_err();
    assert!(e.contains("at most 2^36 values"), "{e}");
    let mut p = plan.clone();
    p.weights[0].cols = 1 << 40;
    assert!(p.check().unwrap_err().contains("a weight of"));
    // A direct guess (no Newton) whose first threshold would overflow its scale.
    let e = broken(&|s| match s {
        Step::LayerNorm {
            inv_sqrt, shifts, ..
        } => {
            // A direct guess is not fused: it takes its inputs at `f`.
            *shifts = [0, 0];
            (inv_sqrt.newton, inv_sqrt.power) = (0, 2);
            inv_sqrt.min_exp = -30;
            true
        }
        _ => false,
    });
    assert!(e.contains("first threshold of 2^-30"), "{e}");
}

#[test]
fn logits_of_a_wide_opening_are_one_bit_finer() {
    use cryptpeft_private_eval::plan::{Step, WIDE_LOGIT_BITS};
    // Without a final norm the head maps the last adapter's output, opened wide at `2f`.
    let spec = AdapterSpec {
        norm: NormKind::None,
        ..AdapterSpec::paper(1, 4, 2)
    };
    let model = OwcModel::random(spec, BackboneSpec::test_small(), 5, 3);
    let (plan, _) = lower::lower(&model, Default::default()).unwrap();
    let f = plan.frac_bits;
    let reveal = plan.steps.iter().find_map(|s| match s {
        Step::Reveal { shift, .. } => Some(*shift),
        _ => None,
    });
    assert_eq!(reveal, Some(2 * f + WIDE_LOGIT_BITS));
    let head = plan
        .steps
        .iter()
        .position(|s| matches!(s, Step::Linear { shift, .. } if *shift == WIDE_LOGIT_BITS))
        .expect("the logits' map");
    // A finer head on any other step, or two bits finer, is refused.
    let mut p = plan.clone();
    if let Step::Linear { shift, .. } = &mut p.steps[head] {
        *shift = WIDE_LOGIT_BITS + 1;
    }
    assert!(p.check().unwrap_err().contains("bits above f"));
}
