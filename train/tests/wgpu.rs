//! burn-wgpu against ndarray, for real (CI runs it on lavapipe, Mesa's software Vulkan
//! device): the ViT and OWC fixtures give the same outputs on both devices, and a few
//! training epochs give the same losses and accuracies. Built with `--features wgpu`
//! (the README's test command builds every feature).
//!
//! Tolerances: f32 kernels differ in summation order, so outputs agree to 1e-4 (scaled
//! as in `fixtures.rs`); after two epochs of SGD the losses agree to 1e-3.

#![cfg(feature = "wgpu")]

mod common;

use std::io::Write;

use common::*;
use cryptpeft_train::backbone::Vit;
use cryptpeft_train::data::{DataConfig, DatasetKind};
use cryptpeft_train::owc::OwcModel;
use cryptpeft_train::st::{HostTensor, TensorFile};
use cryptpeft_train::{train_adapter, DeviceChoice, Method, TrainConfig};
use cryptpeft_types::AdapterSpec;

/// The wgpu device, its adapter written to the log. Straight to the stderr file
/// descriptor: the test harness captures only `eprintln!`, and CI's log should show
/// which adapter ran.
fn wgpu() -> cryptpeft_train::burn::prelude::Device {
    let name = DeviceChoice::Wgpu.describe().unwrap();
    let _ = writeln!(std::io::stderr(), "device: {name}");
    DeviceChoice::Wgpu.device().unwrap()
}

#[test]
fn vit_fixture_agrees_across_devices() {
    let (cpu, gpu) = (cryptpeft_train::cpu(), wgpu());
    let io = TensorFile::load(&fixture("vit_tiny_io.safetensors")).unwrap();
    let path = fixture("vit_tiny_torchvision.safetensors");
    let run = |device| {
        let vit = Vit::load(&path, None, device).unwrap();
        let states = vit.hidden_states(io.tensors["input"].to_tensor::<4>(device));
        let logits = vit.classify(states[3].clone());
        let mut out: Vec<HostTensor> = states.iter().map(HostTensor::from_tensor).collect();
        out.push(HostTensor::from_tensor(&logits));
        out
    };
    let (a, b) = (run(&cpu), run(&gpu));
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let err = max_scaled_err(y, x);
        let _ = writeln!(std::io::stderr(), "vit output {i}: wgpu vs ndarray {err:e}");
        assert!(err <= 1e-4, "output {i}: wgpu vs ndarray {err:e}");
    }
    let err = max_scaled_err(&b[4], &io.tensors["logits"]);
    assert!(err <= 1e-4, "wgpu logits vs torchvision {err:e}");
}

#[test]
fn owc_fixtures_agree_across_devices() {
    let (cpu, gpu) = (cryptpeft_train::cpu(), wgpu());
    let backbone = owc_fixture_backbone();
    for (file, norm) in [
        (
            "owc_adapter_layernorm.safetensors",
            cryptpeft_types::NormKind::LayerNorm,
        ),
        (
            "owc_adapter_batchnorm.safetensors",
            cryptpeft_types::NormKind::Affine,
        ),
    ] {
        let path = fixture(file);
        let mut f = TensorFile::load(&path).unwrap();
        let mut spec = AdapterSpec::paper(2, 8, 2);
        spec.norm = norm;
        let want = f.tensors.remove("logits").unwrap();
        let hidden: Vec<HostTensor> = (2..=4)
            .map(|i| f.tensors[&format!("hidden.{i}")].clone())
            .collect();
        for i in 0..=4 {
            f.tensors.remove(&format!("hidden.{i}"));
        }
        let run = |device| {
            let model =
                OwcModel::from_tensors(&mut f.clone(), &path, &spec, &backbone, device).unwrap();
            let states: Vec<_> = hidden.iter().map(|h| h.to_tensor::<3>(device)).collect();
            HostTensor::from_tensor(&model.forward(&states))
        };
        let (a, b) = (run(&cpu), run(&gpu));
        let err = max_scaled_err(&b, &a);
        let _ = writeln!(std::io::stderr(), "{file}: wgpu vs ndarray {err:e}");
        assert!(err <= 1e-4, "{file}: wgpu vs ndarray {err:e}");
        let err = max_scaled_err(&b, &want);
        assert!(err <= 1e-4, "{file}: wgpu vs PyTorch {err:e}");
    }
}

#[test]
fn training_agrees_across_devices() {
    let _ = wgpu();
    let mut data = DataConfig::new(DatasetKind::Digits);
    data.max_train = Some(200);
    data.max_test = Some(100);
    let spec: AdapterSpec = "h=2,r=8,s=2".parse().unwrap();
    let backbone = fixture("vit_tiny_torchvision.safetensors");
    let mut c = TrainConfig::new(Some(backbone), data, Method::Owc { spec });
    c.epochs = 2;
    c.progress = false;
    let cpu = train_adapter(&c).unwrap();
    c.device = DeviceChoice::Wgpu;
    let gpu = train_adapter(&c).unwrap();
    for (a, b) in cpu.epochs.iter().zip(&gpu.epochs) {
        let _ = writeln!(
            std::io::stderr(),
            "epoch {}: loss {:.6} (ndarray) {:.6} (wgpu), test accuracy {} {}, {:.2} s {:.2} s",
            a.epoch,
            a.loss,
            b.loss,
            a.test_accuracy,
            b.test_accuracy,
            a.seconds,
            b.seconds
        );
        assert!(
            (a.loss - b.loss).abs() <= 1e-3,
            "epoch {}: loss {} (ndarray) vs {} (wgpu)",
            a.epoch,
            a.loss,
            b.loss
        );
        assert!(
            (a.test_accuracy - b.test_accuracy).abs() <= 0.011,
            "epoch {}: accuracy {} vs {}",
            a.epoch,
            a.test_accuracy,
            b.test_accuracy
        );
    }
}
