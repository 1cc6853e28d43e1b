//! Trained checkpoints of every attention kind and activation of the search space
//! evaluate securely to the f64 reference's logits (within 1e-2) on the shipped
//! backbone's hidden states of real digits test images, with the norms' default
//! inverse square root and with the direct guess (no Newton).
#![cfg(feature = "train")]

mod common;

use common::digits::{backbone_path, image_states, test_states};
use cryptpeft_private_eval::arith::tensor::max_abs_diff;
use cryptpeft_private_eval::plan::lower::LowerOptions;
use cryptpeft_private_eval::plan::InvSqrtParams;
use cryptpeft_private_eval::{
    model::OwcModel, online::local, plan::lower, reference, transport::memory_pair,
};
use cryptpeft_train::data::{DataConfig, DatasetKind};
use cryptpeft_train::{train_adapter, Method, TrainConfig};
use cryptpeft_types::{Activation, AdapterSpec, AttentionKind, NetworkProfile, NormKind};

const IMAGES: usize = 4;

#[test]
fn trained_checkpoints_of_every_kind_evaluate_securely() {
    let backbone = backbone_path();
    let data = DataConfig {
        max_train: Some(400),
        ..DataConfig::new(DatasetKind::Digits)
    };
    let (vit, _, states) = test_states(&data, IMAGES);
    let bb = vit.spec.clone();
    let tmp = tempfile::tempdir().unwrap();
    // Every attention kind, every activation, both norms.
    let kinds = [
        (AttentionKind::LinAtten, Activation::Relu, NormKind::Affine),
        (
            AttentionKind::Softmax,
            Activation::Gelu,
            NormKind::LayerNorm,
        ),
        (
            AttentionKind::TwoQuad,
            Activation::Square,
            NormKind::LayerNorm,
        ),
        (
            AttentionKind::ReluSoftmax,
            Activation::Gelu,
            NormKind::Affine,
        ),
        (AttentionKind::None, Activation::Square, NormKind::Affine),
    ];
    for (i, (attention, activation, norm)) in kinds.into_iter().enumerate() {
        let spec = AdapterSpec {
            attention,
            activation,
            norm,
            ..AdapterSpec::paper(2, 16, 1)
        };
        let ckpt = tmp.path().join(format!("{i}.safetensors"));
        let mut cfg = TrainConfig::new(
            Some(backbone.clone()),
            data.clone(),
            Method::Owc { spec: spec.clone() },
        );
        cfg.epochs = 3;
        cfg.progress = false;
        cfg.checkpoint = Some(ckpt.clone());
        let report = train_adapter(&cfg).unwrap();
        let model = OwcModel::load(&ckpt).unwrap();
        let no_newton = LowerOptions {
            inv_sqrt: InvSqrtParams {
                newton: 0,
                per_octave: 16,
                ..Default::default()
            },
            ..Default::default()
        };
        let first = bb.layers - spec.scope;
        for (how, opts) in [
            ("default", LowerOptions::default()),
            ("no newton", no_newton),
        ] {
            let (plan, w) = lower::lower(&model, opts).unwrap();
            let mut worst: f64 = 0.0;
            for img in 0..IMAGES {
                let x = image_states(&states[first..], img, &bb);
                let want = reference::forward(&model, &x);
                let (c, s) =
                    memory_pair(NetworkProfile::none(), std::time::Duration::from_secs(10));
                let got = local::infer(&plan, &w, &x, c, s, img as u128)
                    .unwrap()
                    .logits;
                let err = max_abs_diff(&want, &got);
                worst = worst.max(err);
            }
            eprintln!(
                "{} ({how}): test accuracy {:.3}, max |logit error| {worst:.1e}",
                spec.label(),
                report.test_accuracy
            );
            assert!(
                worst <= 1e-2,
                "{} ({how}): max |logit error| {worst}",
                spec.label()
            );
        }
    }
}
