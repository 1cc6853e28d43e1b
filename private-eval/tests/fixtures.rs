//! The plaintext reference reproduces the golden OWC fixtures that PyTorch computed.

use cryptpeft_private_eval::{arith::tensor::Mat, model::OwcModel, reference};
use cryptpeft_types::{AdapterSpec, BackboneSpec, NormKind};
use safetensors::SafeTensors;

fn fixture(norm: &str) -> (OwcModel, Vec<Vec<Mat>>, Mat) {
    let path = format!(
        "{}/../fixtures/owc_adapter_{norm}.safetensors",
        env!("CARGO_MANIFEST_DIR")
    );
    let bytes = std::fs::read(&path).unwrap();
    let mut spec = AdapterSpec::paper(2, 8, 2);
    spec.norm = if norm == "layernorm" {
        NormKind::LayerNorm
    } else {
        NormKind::Affine
    };
    let backbone = BackboneSpec {
        layers: 4,
        ..BackboneSpec::vit_tiny_fixture()
    };
    let model = OwcModel::from_tensors(&bytes, spec, backbone).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let get = |name: &str| -> (Vec<usize>, Vec<f64>) {
        let t = st.tensor(name).unwrap();
        let v = t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64)
            .collect();
        (t.shape().to_vec(), v)
    };
    let hidden: Vec<(Vec<usize>, Vec<f64>)> =
        (2..=4).map(|i| get(&format!("hidden.{i}"))).collect();
    let (shape, _) = &hidden[0];
    let (b, n, d) = (shape[0], shape[1], shape[2]);
    let per_input = (0..b)
        .map(|bi| {
            hidden
                .iter()
                .map(|(_, v)| Mat::new(n, d, v[bi * n * d..(bi + 1) * n * d].to_vec()))
                .collect()
        })
        .collect();
    let (ls, lv) = get("logits");
    (model, per_input, Mat::new(ls[0], ls[1], lv))
}

#[test]
fn reference_reproduces_pytorch_owc_fixtures() {
    for norm in ["layernorm", "batchnorm"] {
        let (model, inputs, logits) = fixture(norm);
        for (bi, hidden) in inputs.iter().enumerate() {
            let got = reference::forward(&model, hidden);
            let err = got
                .iter()
                .zip(logits.row(bi))
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            let scale = logits.row(bi).iter().fold(0.0f64, |m, v| m.max(v.abs()));
            eprintln!("{norm} input {bi}: max abs err {err:.2e}, max |logit| {scale:.2}");
            // The fixture is float32: allow 1e-4 absolute, scaled by the logits' magnitude
            // (the batchnorm fixture's logits reach ~335, where f32 rounding alone is ~1e-4).
            assert!(
                err <= 1e-4 * scale.max(1.0),
                "{norm} input {bi}: max abs err {err}"
            );
        }
    }
}
