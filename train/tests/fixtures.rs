//! Golden fixtures (PyTorch / torchvision outputs) reproduced within 1e-4.

mod common;

use common::*;
use cryptpeft_train::backbone::Vit;
use cryptpeft_train::owc::OwcModel;
use cryptpeft_train::st::{HostTensor, TensorFile};
use cryptpeft_types::{AdapterSpec, BackboneSpec, NormKind};

#[test]
fn vit_tiny_reproduces_torchvision() {
    let device = cryptpeft_train::cpu();
    let vit = Vit::load(&fixture("vit_tiny_torchvision.safetensors"), None, &device).unwrap();
    let spec = BackboneSpec::vit_tiny_fixture();
    assert_eq!(
        (
            vit.spec.hidden_dim,
            vit.spec.layers,
            vit.spec.heads,
            vit.spec.tokens()
        ),
        (spec.hidden_dim, spec.layers, spec.heads, spec.tokens())
    );
    let io = TensorFile::load(&fixture("vit_tiny_io.safetensors")).unwrap();
    let input = io.tensors["input"].to_tensor::<4>(&device);
    let states = vit.hidden_states(input);
    assert_eq!(states.len(), 4);
    for (i, s) in states.iter().enumerate() {
        let err = max_err(
            &HostTensor::from_tensor(s),
            &io.tensors[&format!("hidden.{i}")],
        );
        eprintln!("vit_tiny hidden.{i}: max abs err {err:e}");
        assert!(err <= 1e-4, "hidden.{i}: max abs err {err}");
    }
    let enc = vit.ln.forward(states[3].clone());
    let err = max_err(&HostTensor::from_tensor(&enc), &io.tensors["encoder_out"]);
    assert!(err <= 1e-4, "encoder_out: max abs err {err}");
    let logits = vit.classify(states[3].clone());
    let err = max_err(&HostTensor::from_tensor(&logits), &io.tensors["logits"]);
    eprintln!("vit_tiny logits: max abs err {err:e}");
    assert!(err <= 1e-4, "logits: max abs err {err}");

    // Export and reload round trip keeps the outputs.
    let dir = std::env::temp_dir().join(format!("cryptpeft-vit-{}", std::process::id()));
    let path = dir.join("vit.safetensors");
    vit.save(&path).unwrap();
    let again = Vit::load(&path, None, &device).unwrap();
    let l2 = again.forward(io.tensors["input"].to_tensor::<4>(&device));
    assert!(max_err(&HostTensor::from_tensor(&l2), &io.tensors["logits"]) <= 1e-4);
    std::fs::remove_dir_all(dir).ok();
}

fn owc_fixture(file: &str, norm: NormKind) {
    let device = cryptpeft_train::cpu();
    let path = fixture(file);
    let mut f = TensorFile::load(&path).unwrap();
    let meta: serde_json::Value = serde_json::from_str(&f.metadata["spec"]).unwrap();
    let mut spec = AdapterSpec::paper(2, 8, 2);
    spec.norm = norm;
    assert_eq!(meta["scale"].as_f64(), Some(spec.scale));
    let backbone = owc_fixture_backbone();
    let states: Vec<_> = (2..=4)
        .map(|i| f.tensors[&format!("hidden.{i}")].to_tensor::<3>(&device))
        .collect();
    let want = f.tensors["logits"].clone();
    for i in 0..=4 {
        f.tensors.remove(&format!("hidden.{i}"));
    }
    f.tensors.remove("logits");
    let model = OwcModel::from_tensors(&mut f.clone(), &path, &spec, &backbone, &device).unwrap();
    let logits = HostTensor::from_tensor(&model.forward(&states));
    let (abs, scaled) = (max_err(&logits, &want), max_scaled_err(&logits, &want));
    eprintln!("{file}: max abs err {abs:e}, max scaled err {scaled:e}");
    assert!(scaled <= 1e-4, "{file}: max abs err {abs}, scaled {scaled}");

    // Checkpoint round trip: same names as the fixture, same logits.
    let ckpt = model.export();
    let names: Vec<_> = ckpt.tensors.keys().collect();
    let fixture_names: Vec<_> = f.tensors.keys().collect();
    assert_eq!(names, fixture_names);
    let dir = std::env::temp_dir().join(format!("cryptpeft-owc-{}-{file}", std::process::id()));
    let p = dir.join("ckpt.safetensors");
    model.save(&p).unwrap();
    let again = OwcModel::load(&p, &device).unwrap();
    let err = max_scaled_err(&HostTensor::from_tensor(&again.forward(&states)), &want);
    assert!(err <= 1e-4, "reloaded {file}: max scaled err {err}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn owc_layernorm_fixture() {
    // Logits here are O(1): the scaled error is the absolute error (<= 1e-4).
    owc_fixture("owc_adapter_layernorm.safetensors", NormKind::LayerNorm);
}

#[test]
fn owc_batchnorm_fixture() {
    owc_fixture("owc_adapter_batchnorm.safetensors", NormKind::Affine);
}
