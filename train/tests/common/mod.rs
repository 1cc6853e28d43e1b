//! What the fixture tests share: the fixture files, error measures, the OWC fixtures'
//! backbone shape.

#![allow(dead_code)]

use std::path::PathBuf;

use cryptpeft_train::st::HostTensor;
use cryptpeft_types::BackboneSpec;

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name)
}

pub fn max_err(a: &HostTensor, b: &HostTensor) -> f32 {
    assert_eq!(a.shape, b.shape);
    a.data
        .iter()
        .zip(&b.data)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Largest `|a - b| / max(1, |b|)`: absolute error for logits of magnitude <= 1, relative
/// beyond (the batchnorm fixture's logits reach ~1100, where one f32 ulp is 1.2e-4).
pub fn max_scaled_err(a: &HostTensor, b: &HostTensor) -> f32 {
    assert_eq!(a.shape, b.shape);
    a.data
        .iter()
        .zip(&b.data)
        .map(|(x, y)| (x - y).abs() / y.abs().max(1.0))
        .fold(0.0, f32::max)
}

/// The backbone shape the OWC fixtures were made on (their hidden states are given).
pub fn owc_fixture_backbone() -> BackboneSpec {
    BackboneSpec {
        name: "owc-fixture".into(),
        image_size: 32,
        patch_size: 8,
        channels: 3,
        hidden_dim: 32,
        layers: 4,
        heads: 4,
        mlp_dim: 64,
        norm_eps: 1e-6,
    }
}
