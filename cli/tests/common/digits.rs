//! Real digits test images through the shipped backbone, for the tests that check
//! secure runs against plaintext ones.

use std::path::PathBuf;

use burn::tensor::{Tensor, TensorData};
use cryptpeft_private_eval::arith::tensor::Mat;
use cryptpeft_train::backbone::Vit;
use cryptpeft_train::cpu;
use cryptpeft_train::data::{DataConfig, ImageSet, Preprocess, Split};
use cryptpeft_types::BackboneSpec;

/// The shipped backbone (`vit-mini`).
pub fn backbone_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../train/assets/vit_mini_fmnist04.safetensors")
}

/// The backbone, the first `n` test images of `data`, and their hidden states
/// (`x_0 .. x_L`, each `[n, tokens, d]`).
pub fn test_states(data: &DataConfig, n: usize) -> (Vit, ImageSet, Vec<Tensor<3>>) {
    let device = cpu();
    let vit = Vit::load(&backbone_path(), None, &device).unwrap();
    let bb = vit.spec.clone();
    let test = data.load(Split::Test, 0).unwrap();
    let test = test.select(&(0..n).collect::<Vec<_>>());
    let pixels = Preprocess::new(bb.image_size, bb.channels, data).apply_set(&test, None);
    let images = Tensor::<4>::from_data(
        TensorData::new(pixels, [n, bb.channels, bb.image_size, bb.image_size]),
        &device,
    );
    let states = vit.hidden_states(images);
    (vit, test, states)
}

/// Image `img`'s rows of `states` (each `[n, tokens, d]`), as the client's hidden states.
pub fn image_states(states: &[Tensor<3>], img: usize, bb: &BackboneSpec) -> Vec<Mat> {
    states
        .iter()
        .map(|t| {
            let v: Vec<f32> = t
                .clone()
                .narrow(0, img, 1)
                .into_data()
                .try_to_vec()
                .unwrap();
            Mat::new(
                bb.tokens(),
                bb.hidden_dim,
                v.into_iter().map(f64::from).collect(),
            )
        })
        .collect()
}
