//! Burn's forward on an exported checkpoint gives the secure evaluator's plaintext
//! reference logits (and the secure logits), for several points of the space.
#![cfg(feature = "train")]

use burn::tensor::{Tensor, TensorData};
use cryptpeft_private_eval::arith::tensor::max_abs_diff;
use cryptpeft_private_eval::{
    hidden, model::OwcModel, online::local, plan::lower, reference, transport::memory_pair,
};
use cryptpeft_train::{cpu, owc::OwcModel as BurnOwc};
use cryptpeft_types::{
    Activation, AdapterSpec, AttentionKind, BackboneSpec, NetworkProfile, NormKind,
};

#[test]
fn burn_forward_equals_reference_on_exported_checkpoints() {
    let device = cpu();
    let bb = BackboneSpec::vit_tiny_fixture();
    let dir = std::env::temp_dir().join(format!("cryptpeft-cross-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut seed = 0;
    for norm in NormKind::ALL {
        for attention in AttentionKind::ALL {
            for (s, k) in [(1, 1), (2, 2)] {
                seed += 1;
                // Every activation the evaluator runs, in turn.
                let activation =
                    [Activation::Relu, Activation::Square, Activation::Gelu][seed as usize % 3];
                let spec = AdapterSpec {
                    scope: s,
                    blocks: k,
                    attention,
                    norm,
                    activation,
                    ..AdapterSpec::paper(2, 8, s)
                };
                let burn_model = BurnOwc::init(&spec, &bb, 10, None, seed, &device).unwrap();
                let path = dir.join(format!("{}.safetensors", spec.label()));
                burn_model.save(&path).unwrap();
                let model = OwcModel::load(&path).unwrap();
                let x = hidden::random(s + 1, bb.tokens(), bb.hidden_dim, seed);
                let states: Vec<Tensor<3>> = x
                    .iter()
                    .map(|m| {
                        let v: Vec<f32> = m.data.iter().map(|&v| v as f32).collect();
                        Tensor::from_data(TensorData::new(v, [1, m.rows, m.cols]), &device)
                    })
                    .collect();
                let got: Vec<f32> = burn_model
                    .forward(&states)
                    .into_data()
                    .try_to_vec::<f32>()
                    .unwrap();
                let want = reference::forward(&model, &x);
                let err = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (*a as f64 - b).abs())
                    .fold(0.0, f64::max);
                assert!(
                    err <= 1e-4,
                    "{}: burn vs reference max abs err {err}",
                    spec.label()
                );
                // And the secure evaluator on the same checkpoint.
                let (plan, w) = lower::lower(&model, Default::default()).unwrap();
                let (c, sv) =
                    memory_pair(NetworkProfile::none(), std::time::Duration::from_secs(10));
                let secure = local::infer(&plan, &w, &x, c, sv, seed as u128)
                    .unwrap()
                    .logits;
                let err = max_abs_diff(&secure, &want);
                assert!(
                    err <= 0.01,
                    "{}: secure vs reference max abs err {err}",
                    spec.label()
                );
            }
        }
    }
}

/// A baseline loaded from a torchvision-layout backbone (`BaselineModel::from_backbone`)
/// holds that backbone's layers: its f64 forward of the last layer and final norm equals
/// burn's on the same file, and the secure run gives the f64 logits.
#[test]
fn sft_baseline_loads_the_backbone_layers() {
    use cryptpeft_private_eval::baseline::{Baseline, BaselineModel};
    let device = cpu();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/vit_tiny_torchvision.safetensors");
    let bb = BackboneSpec::vit_tiny_fixture();
    let vit = cryptpeft_train::backbone::Vit::load(&path, Some(&bb), &device).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let m = BaselineModel::from_backbone(Baseline::Sft(1), bb.clone(), &bytes, 5, 3).unwrap();
    let x = hidden::random(1, bb.tokens(), bb.hidden_dim, 4);
    let v: Vec<f32> = x[0].data.iter().map(|&v| v as f32).collect();
    let t = Tensor::<3>::from_data(TensorData::new(v, [1, bb.tokens(), bb.hidden_dim]), &device);
    let z = vit.ln.forward(vit.layers[bb.layers - 1].forward(t));
    let cls: Vec<f32> = z.narrow(1, 0, 1).into_data().try_to_vec::<f32>().unwrap();
    let cls = cryptpeft_private_eval::arith::tensor::Mat::new(
        1,
        bb.hidden_dim,
        cls.iter().map(|&v| v as f64).collect(),
    );
    let burn = cls.linear(&m.head.weight, Some(&m.head.bias)).data;
    let want = reference::layers_forward(&m.layers, bb.heads, &m.final_norm, &m.head, &x[0]);
    let err = max_abs_diff(&burn, &want);
    assert!(err <= 1e-4, "burn vs f64 on the loaded layers: {err}");
    let (plan, w) = m.lower(Default::default()).unwrap();
    let (c, s) = memory_pair(NetworkProfile::none(), std::time::Duration::from_secs(10));
    let got = local::infer(&plan, &w, &x, c, s, 7).unwrap().logits;
    let err = max_abs_diff(&got, &want);
    assert!(err <= 1e-2, "secure vs f64: {err}");
}
