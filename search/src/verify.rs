//! `--verify`: each front member runs for real through dealer, server and client over
//! loopback TCP with the profile's shaping, on the backbone's hidden states of a real
//! test image, and the measured seconds, bytes and rounds sit beside the predicted ones.

use std::path::Path;

use cryptpeft_deploy::loopback::bench_secure;
use cryptpeft_private_eval::arith::tensor::Mat;
use cryptpeft_private_eval::model::OwcModel;
use cryptpeft_train::burn::prelude::*;
use cryptpeft_train::cpu;
use cryptpeft_train::st::HostTensor;
use cryptpeft_types::NetworkProfile;

use crate::error::{Error, Result};
use crate::eval::{Data, Features};
use crate::study::Study;

/// Inferences per front member (the median is reported).
const REPEAT: usize = 3;

#[derive(Debug, Clone)]
pub struct Measured {
    pub online_s: f64,
    pub online_bytes: u64,
    pub rounds: u64,
    /// Secure logits against the f64 plaintext reference.
    pub max_abs_logit_err: f64,
}

/// Hidden states `x_{L-scope} .. x_L` of test image `image`, as the client would hold them.
pub fn hidden_states(feats: &Features, scope: usize, image: usize) -> Vec<Mat> {
    let from = feats.backbone.layers - scope;
    let states = match &feats.data {
        Data::Cached { test, .. } => test.batch(&[image], from, &cpu()),
        Data::Streamed { vit, pre, test, .. } => {
            let one = test.select(&[image]);
            let pixels = pre.apply_set(&one, None);
            let s = pre.image_size;
            let x = Tensor::from_data(
                TensorData::new(pixels, [1, pre.channels, s, s]),
                &vit.conv_b.val().device(),
            );
            vit.hidden_states(x).split_off(from)
        }
    };
    states
        .iter()
        .map(|t| {
            let [_, n, d] = t.dims();
            let row = HostTensor::from_tensor(t).data;
            Mat::new(n, d, row.iter().map(|&v| f64::from(v)).collect())
        })
        .collect()
}

/// Runs the checkpoint securely `REPEAT` times under `profile`.
pub fn measure(study: &Study, checkpoint: &Path, profile: &NetworkProfile) -> Result<Measured> {
    let model = OwcModel::load(checkpoint)
        .map_err(|e| Error::Other(format!("{}: {e}", checkpoint.display())))?;
    let hidden = hidden_states(&study.features, model.spec.scope, 0);
    let b = bench_secure(
        &model,
        &hidden,
        profile.clone(),
        REPEAT,
        false,
        Default::default(),
    )
    .map_err(|e| Error::Other(format!("verify {}: {e}", model.spec.label())))?;
    Ok(Measured {
        online_s: b.online_s,
        online_bytes: b.online_bytes,
        rounds: b.rounds,
        max_abs_logit_err: b.max_abs_logit_err,
    })
}
