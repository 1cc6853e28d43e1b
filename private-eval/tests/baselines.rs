//! The baselines (SFT of the last layers, LoRA, AdaptFormer) run securely and give the
//! plaintext f64 model's logits: softmax attention, GELU, LayerNorm, AdaptFormer's
//! bottleneck, dead-token elimination in the last layer.

use cryptpeft_private_eval::arith::tensor::max_abs_diff;
use std::time::Duration;

use cryptpeft_private_eval::baseline::{Baseline, BaselineModel};
use cryptpeft_private_eval::plan::lower::LowerOptions;
use cryptpeft_private_eval::plan::InvSqrtParams;
use cryptpeft_private_eval::{hidden, online::local, reference, transport::memory_pair};
use cryptpeft_types::{BackboneSpec, NetworkProfile};

#[test]
fn baselines_match_the_plaintext_model() {
    let bb = BackboneSpec::test_small();
    for (i, kind) in [
        Baseline::Sft(1),
        Baseline::Sft(2),
        Baseline::Lora,
        Baseline::AdaptFormer(8),
    ]
    .into_iter()
    .enumerate()
    {
        let seed = 40 + i as u64;
        let m = BaselineModel::random(kind, bb.clone(), 5, seed).unwrap();
        let x = hidden::random(1, bb.tokens(), bb.hidden_dim, seed);
        let want = reference::layers_forward(&m.layers, bb.heads, &m.final_norm, &m.head, &x[0]);
        // The default inverse square root, and one without Newton's 7 rounds (a first
        // guess 4x finer instead).
        let no_newton = LowerOptions {
            inv_sqrt: InvSqrtParams {
                newton: 0,
                per_octave: 32,
                ..Default::default()
            },
            ..Default::default()
        };
        for (how, opts) in [
            ("default", LowerOptions::default()),
            ("no newton", no_newton),
        ] {
            let (plan, w) = m.lower(opts).unwrap();
            let (c, s) = memory_pair(NetworkProfile::none(), Duration::from_secs(10));
            let got = local::infer(&plan, &w, &x, c, s, seed as u128).unwrap();
            let err = max_abs_diff(&want, &got.logits);
            assert!(
                err <= 1e-2,
                "{kind} ({how}): max |logit error| {err}\n want {want:?}\n got {:?}",
                got.logits
            );
            eprintln!(
                "{kind} ({how}): {} layers, max |logit error| {err:.1e}",
                m.layers.len()
            );
        }
    }
}

#[test]
fn baselines_parse_and_check_their_depth() {
    assert_eq!("sft-2".parse::<Baseline>(), Ok(Baseline::Sft(2)));
    assert_eq!(
        "adaptformer".parse::<Baseline>(),
        Ok(Baseline::AdaptFormer(64))
    );
    assert_eq!(
        "adaptformer-r16".parse::<Baseline>(),
        Ok(Baseline::AdaptFormer(16))
    );
    assert_eq!(Baseline::AdaptFormer(16).to_string(), "adaptformer-r16");
    assert!("adaptformer-r0".parse::<Baseline>().is_err());
    assert!("sft-0".parse::<Baseline>().is_err());
    assert!("lorax".parse::<Baseline>().is_err());
    let bb = BackboneSpec::test_small();
    let err = BaselineModel::symbolic(Baseline::Sft(bb.layers + 1), bb, 5).unwrap_err();
    assert!(err.contains("layers"), "{err}");
}
