//! `--verify`: each front member runs for real through dealer, server and client over
//! loopback TCP with the profile's shaping, on the backbone's hidden states of a real
//! test image, and the measured seconds, bytes and rounds sit beside the predicted ones.

use std::path::Path;

use cryptpeft_deploy::loopback::bench_secure;
use cryptpeft_private_eval::arith::tensor::Mat;
use cryptpeft_private_eval::model::OwcModel;
use cryptpeft_types::NetworkProfile;

use crate::error::{Error, Result};
use crate::eval::Features;
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
    feats.test.states[from - feats.test.first..]
        .iter()
        .map(|t| {
            let [_, n, d] = t.shape();
            let mut row = Vec::with_capacity(n * d);
            t.gather(&[image], &mut row);
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
