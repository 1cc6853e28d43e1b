//! Plaintext f64 reference of the OWC model (docs/DESIGN.md section 1), for every attention
//! kind, activation and norm. Secure runs are checked against it.

use cryptpeft_types::{Activation, AttentionKind};

use crate::arith::real::gelu;
use crate::arith::tensor::Mat;
use crate::model::{Block, Linear, Norm, OwcModel};

/// Applies a norm row-wise.
pub fn apply_norm(norm: &Norm, x: &Mat) -> Mat {
    match norm {
        Norm::LayerNorm { gamma, beta, eps } => {
            let mut out = x.clone();
            for row in out.data.chunks_mut(x.cols) {
                let n = row.len() as f64;
                let mean = row.iter().sum::<f64>() / n;
                let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
                let inv = 1.0 / (var + eps).sqrt();
                for (i, v) in row.iter_mut().enumerate() {
                    *v = (*v - mean) * inv * gamma[i] + beta[i];
                }
            }
            out
        }
        other => {
            let (a, c) = other.as_affine(x.cols).expect("affine norm");
            let mut out = x.clone();
            for row in out.data.chunks_mut(x.cols) {
                for (i, v) in row.iter_mut().enumerate() {
                    *v = *v * a[i] + c[i];
                }
            }
            out
        }
    }
}

fn activate(kind: Activation, x: f64) -> f64 {
    match kind {
        Activation::Relu => x.max(0.0),
        Activation::Gelu => gelu(x),
        Activation::Square => x * x,
    }
}

/// Normalizes attention scores row-wise for the non-LinAtten kinds.
fn mix_scores(kind: AttentionKind, s: &Mat) -> Mat {
    let mut p = s.clone();
    for row in p.data.chunks_mut(s.cols) {
        match kind {
            AttentionKind::Softmax => {
                let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                row.iter_mut().for_each(|v| *v = (*v - m).exp());
            }
            AttentionKind::ReluSoftmax => row.iter_mut().for_each(|v| *v = v.max(0.0)),
            AttentionKind::TwoQuad => row.iter_mut().for_each(|v| *v = (*v + 5.0).powi(2)),
            _ => unreachable!("LinAtten and None have no row normalization"),
        }
        let eps = if kind == AttentionKind::ReluSoftmax {
            cryptpeft_types::RELU_SOFTMAX_EPS
        } else {
            0.0
        };
        let sum: f64 = row.iter().sum::<f64>() + eps;
        row.iter_mut().for_each(|v| *v /= sum);
    }
    p
}

/// A transformer block with `h` heads (the OWC adapter's or a backbone layer's).
fn block_forward(
    blk: &Block,
    (attention, activation): (AttentionKind, Activation),
    h: usize,
    y: &Mat,
) -> Mat {
    let r = y.cols;
    let dh = r / h;
    let mut y = y.clone();
    if let Some(at) = &blk.attn {
        let x = apply_norm(&blk.norm1, &y);
        let qkv = x.linear(&at.qkv, at.qkv_bias.as_deref());
        let mut heads = Vec::with_capacity(h);
        for i in 0..h {
            let q = qkv
                .cols_range(i * dh, (i + 1) * dh)
                .map(|v| v / (dh as f64).sqrt());
            let k = qkv.cols_range(r + i * dh, r + (i + 1) * dh);
            let v = qkv.cols_range(2 * r + i * dh, 2 * r + (i + 1) * dh);
            let s = q.matmul(&k.transpose());
            let p = match &at.token_mix {
                Some(tm) => s.linear(&tm.weight, Some(&tm.bias)),
                None => mix_scores(attention, &s),
            };
            heads.push(p.matmul(&v));
        }
        let mut cat = Mat::zeros(y.rows, r);
        for (i, o) in heads.iter().enumerate() {
            for row in 0..y.rows {
                cat.data[row * r + i * dh..row * r + (i + 1) * dh].copy_from_slice(o.row(row));
            }
        }
        y = y.add(&cat.linear(&at.proj.weight, Some(&at.proj.bias)));
    }
    let x = apply_norm(&blk.norm2, &y);
    let hid = x
        .linear(&blk.fc1.weight, Some(&blk.fc1.bias))
        .map(|v| activate(activation, v));
    let mut out = y.add(&hid.linear(&blk.fc2.weight, Some(&blk.fc2.bias)));
    if let Some(pa) = &blk.parallel {
        let b = y
            .linear(&pa.down.weight, Some(&pa.down.bias))
            .map(|v| v.max(0.0))
            .linear(&pa.up.weight, Some(&pa.up.bias));
        out = out.add(&b.map(|v| v * pa.scale));
    }
    out
}

fn classify(final_norm: &Norm, head: &Linear, z: &Mat) -> Vec<f64> {
    let normed = apply_norm(final_norm, &z.rows_range(0, 1));
    normed.linear(&head.weight, Some(&head.bias)).data
}

/// Logits of backbone layers (softmax attention, GELU MLP, `h` heads) on `x`, then
/// the final norm and head on the CLS row (the baselines, [`crate::baseline`]).
pub fn layers_forward(
    layers: &[Block],
    h: usize,
    final_norm: &Norm,
    head: &Linear,
    x: &Mat,
) -> Vec<f64> {
    let kinds = (AttentionKind::Softmax, Activation::Gelu);
    let z = layers
        .iter()
        .fold(x.clone(), |y, blk| block_forward(blk, kinds, h, &y));
    classify(final_norm, head, &z)
}

/// Logits for one input: `hidden[i]` is the backbone state entering layer `L - s + i`
/// (`[N, d]`), and `hidden[s]` is the last layer's output `x_L`.
pub fn forward(model: &OwcModel, hidden: &[Mat]) -> Vec<f64> {
    let s = model.spec.scope;
    assert_eq!(hidden.len(), s + 1, "need s + 1 hidden states");
    let mut a: Option<Mat> = None;
    for (j, ad) in model.adapters.iter().enumerate() {
        let u = match &a {
            Some(a) => a.add(&hidden[j]),
            None => hidden[j].clone(),
        };
        let mut y = u.linear(&ad.down.weight, Some(&ad.down.bias));
        for blk in &ad.blocks {
            let kinds = (model.spec.attention, model.spec.activation);
            y = block_forward(blk, kinds, model.spec.heads, &y);
        }
        let out = y
            .linear(&ad.up.weight, Some(&ad.up.bias))
            .map(|v| v * model.spec.scale);
        a = Some(out.add(&u));
    }
    let z = hidden[s].add(a.as_ref().expect("scope >= 1"));
    classify(&model.final_norm, &model.head, &z)
}

/// The predicted class: the index of the largest logit (the last of exact ties; 0 for
/// none).
pub fn argmax(logits: &[f64]) -> usize {
    (0..logits.len())
        .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
        .unwrap_or(0)
}
