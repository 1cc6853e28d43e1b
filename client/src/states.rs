//! The hidden states a client computes in plaintext for a batch of a dataset's test
//! images (the demo's and the load test's inputs).

use cryptpeft_private_eval::arith::tensor::Mat;
use cryptpeft_private_eval::model::OwcModel;
use cryptpeft_train::backbone::Vit;
use cryptpeft_train::burn;
use cryptpeft_train::cpu;
use cryptpeft_train::data::{DataConfig, Preprocess, Split};

/// What the client computes in plaintext: the hidden states entering the adapter's
/// scope for the first `n` test images of `data`, through the backbone at `backbone`;
/// with the images' labels.
pub fn hidden_states(
    backbone: &std::path::Path,
    data: &DataConfig,
    seed: u64,
    model: &OwcModel,
    n: usize,
) -> Result<(Vec<Vec<Mat>>, Vec<u32>), String> {
    let device = cpu();
    let vit = Vit::load(backbone, None, &device).map_err(|e| e.to_string())?;
    let test = data.load(Split::Test, seed).map_err(|e| e.to_string())?;
    let n = n.min(test.len());
    let test = test.select(&(0..n).collect::<Vec<_>>());
    let bb = &model.backbone;
    let pixels = Preprocess::new(bb.image_size, bb.channels, data).apply_set(&test, None);
    let images = burn::tensor::Tensor::<4>::from_data(
        burn::tensor::TensorData::new(pixels, [n, bb.channels, bb.image_size, bb.image_size]),
        &device,
    );
    let states = vit.hidden_states(images);
    let first = bb.layers - model.spec.scope;
    let per_image = (0..n)
        .map(|i| {
            states[first..]
                .iter()
                .map(|t| {
                    let one = t.clone().narrow(0, i, 1);
                    let v: Vec<f32> = one.into_data().try_to_vec::<f32>().expect("f32 states");
                    Mat::new(
                        bb.tokens(),
                        bb.hidden_dim,
                        v.into_iter().map(f64::from).collect(),
                    )
                })
                .collect()
        })
        .collect();
    Ok((per_image, test.labels.clone()))
}
