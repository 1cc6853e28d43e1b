//! Feature cache: the frozen backbone's hidden states `x_{first} .. x_L`, computed once per
//! (backbone, dataset, split, preprocessing, views) and stored as safetensors, keyed by a
//! SHA-256 of all of those inputs (the backbone file's bytes and the loaded pixels included),
//! so any changed input gives a new key.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::backbone::Vit;
use crate::data::{ImageSet, Preprocess};
use crate::error::{Result, TrainError};
use crate::st::{HostTensor, TensorFile};

const CACHE_FORMAT: &str = "cryptpeft-features-v1";

/// Hidden states of a dataset split: `states[k]` is `x_{first+k}` of shape `[M, N, d]`.
/// `M = images * views` (view-major within an image: rows `i*views .. (i+1)*views`).
#[derive(Debug, Clone)]
pub struct FeatureSet {
    pub first: usize,
    pub states: Vec<HostTensor>,
    pub labels: Vec<u32>,
    pub views: usize,
}

impl FeatureSet {
    pub fn images(&self) -> usize {
        self.labels.len() / self.views
    }

    /// Rows `idx` of states `x_from .. x_L` as tensors on `device`.
    pub fn batch(&self, idx: &[usize], from: usize, device: &Device) -> Vec<Tensor<3>> {
        assert!(from >= self.first, "cache starts at x_{}", self.first);
        self.states[from - self.first..]
            .iter()
            .map(|t| {
                let (n, d) = (t.shape[1], t.shape[2]);
                let row = n * d;
                let mut data = Vec::with_capacity(idx.len() * row);
                for &i in idx {
                    data.extend_from_slice(&t.data[i * row..(i + 1) * row]);
                }
                Tensor::from_data(TensorData::new(data, [idx.len(), n, d]), device)
            })
            .collect()
    }

    /// Bytes of the stored states.
    pub fn bytes(&self) -> usize {
        self.states.iter().map(|t| t.data.len() * 4).sum()
    }
}

/// What the cache did.
#[derive(Debug, Clone, Serialize)]
pub struct CacheInfo {
    pub key: String,
    pub path: Option<PathBuf>,
    pub hit: bool,
    pub seconds: f64,
    pub bytes: u64,
}

/// Everything a cached feature set depends on.
pub struct CacheRequest<'a> {
    pub vit: &'a Vit,
    /// SHA-256 of the backbone weights file (or any unique id of the weights).
    pub vit_id: &'a str,
    pub set: &'a ImageSet,
    /// Free-form description (dataset, split, subset) recorded in the key.
    pub describe: &'a str,
    pub pre: &'a Preprocess,
    pub first: usize,
    /// Augmented views per image; 0 = the plain image only.
    pub views: usize,
    pub seed: u64,
    pub dir: Option<&'a Path>,
    pub progress: bool,
}

/// SHA-256 of a file's bytes, hex.
pub fn file_sha256(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
    Ok(hex(&Sha256::digest(&bytes)))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl CacheRequest<'_> {
    pub fn key(&self) -> String {
        let mut h = Sha256::new();
        let meta = serde_json::json!({
            "format": CACHE_FORMAT, "backbone_id": self.vit_id, "backbone": self.vit.spec,
            "describe": self.describe, "pre": self.pre, "first": self.first,
            "views": self.views, "seed": if self.views > 0 { self.seed } else { 0 },
        });
        h.update(meta.to_string().as_bytes());
        for v in &self.set.images {
            h.update(v.to_le_bytes());
        }
        for l in &self.set.labels {
            h.update(l.to_le_bytes());
        }
        hex(&h.finalize())[..32].to_string()
    }

    /// Loads the cached features, or computes and stores them.
    pub fn get(&self, device: &Device) -> Result<(FeatureSet, CacheInfo)> {
        let start = Instant::now();
        let key = self.key();
        let path = self.dir.map(|d| d.join(format!("{key}.safetensors")));
        if let Some(p) = path.as_ref().filter(|p| p.exists()) {
            if let Ok(f) = self.read(p) {
                let bytes = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
                let info = CacheInfo {
                    key,
                    path: path.clone(),
                    hit: true,
                    seconds: start.elapsed().as_secs_f64(),
                    bytes,
                };
                return Ok((f, info));
            }
        }
        let feats = compute_features(
            self.vit,
            self.set,
            self.pre,
            self.first,
            self.views,
            self.seed,
            self.progress,
            device,
        );
        let mut bytes = feats.bytes() as u64;
        if let Some(p) = &path {
            let mut tf = TensorFile::default();
            for (k, s) in feats.states.iter().enumerate() {
                tf.insert(format!("hidden.{}", feats.first + k), s.clone());
            }
            let labels = feats.labels.iter().map(|&l| l as f32).collect();
            tf.insert("labels", HostTensor::new(vec![feats.labels.len()], labels));
            tf.metadata.insert("format".into(), CACHE_FORMAT.into());
            tf.metadata.insert("first".into(), feats.first.to_string());
            tf.metadata.insert("views".into(), feats.views.to_string());
            tf.save(p)?;
            bytes = std::fs::metadata(p).map(|m| m.len()).unwrap_or(bytes);
        }
        let info = CacheInfo {
            key,
            path,
            hit: false,
            seconds: start.elapsed().as_secs_f64(),
            bytes,
        };
        Ok((feats, info))
    }

    fn read(&self, p: &Path) -> Result<FeatureSet> {
        let mut f = TensorFile::load(p)?;
        let views: usize = f
            .metadata
            .get("views")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let labels = f
            .tensors
            .remove("labels")
            .ok_or_else(|| TrainError::format(p, "missing labels"))?;
        let labels: Vec<u32> = labels.data.iter().map(|&l| l as u32).collect();
        let states = (self.first..=self.vit.spec.layers)
            .map(|i| {
                f.tensors
                    .remove(&format!("hidden.{i}"))
                    .ok_or_else(|| TrainError::format(p, format!("missing hidden.{i}")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(FeatureSet {
            first: self.first,
            states,
            labels,
            views: views.max(1),
        })
    }
}

/// Runs the frozen backbone over a set (batches of 64) and keeps `x_first .. x_L`.
#[allow(clippy::too_many_arguments)]
pub fn compute_features(
    vit: &Vit,
    set: &ImageSet,
    pre: &Preprocess,
    first: usize,
    views: usize,
    seed: u64,
    progress: bool,
    device: &Device,
) -> FeatureSet {
    let layers = vit.spec.layers;
    let nviews = views.max(1);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (n, d) = (vit.spec.tokens(), vit.spec.hidden_dim);
    let mut states: Vec<Vec<f32>> =
        vec![Vec::with_capacity(set.len() * nviews * n * d); layers + 1 - first];
    let mut labels = Vec::with_capacity(set.len() * nviews);
    let bar = progress_bar(set.len() as u64, "features", progress);
    let s = pre.image_size;
    let chunk = 64;
    for start in (0..set.len()).step_by(chunk) {
        let idx: Vec<usize> = (start..(start + chunk).min(set.len())).collect();
        let sub = set.select(&idx);
        let mut pix = Vec::with_capacity(idx.len() * nviews * pre.channels * s * s);
        for i in 0..sub.len() {
            let one = sub.select(&[i]);
            for _ in 0..nviews {
                pix.extend(pre.apply_set(&one, (views > 0).then_some(&mut rng)));
                labels.push(sub.labels[i]);
            }
        }
        let m = idx.len() * nviews;
        let x = Tensor::<4>::from_data(TensorData::new(pix, [m, pre.channels, s, s]), device);
        let hs = vit.hidden_states(x);
        for (k, h) in hs[first..].iter().enumerate() {
            states[k].extend(HostTensor::from_tensor(h).data);
        }
        bar.inc(idx.len() as u64);
    }
    bar.finish_and_clear();
    let m = labels.len();
    FeatureSet {
        first,
        states: states
            .into_iter()
            .map(|v| HostTensor::new(vec![m, n, d], v))
            .collect(),
        labels,
        views: nviews,
    }
}

/// A progress bar (hidden when `show` is false).
pub fn progress_bar(len: u64, what: &str, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:>12} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta}",
        )
        .expect("template")
        .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryptpeft_types::BackboneSpec;

    #[test]
    fn every_input_changes_the_key() {
        let device = crate::cpu();
        let vit = Vit::init(&BackboneSpec::vit_tiny_fixture(), 2, 0, &device);
        let set = ImageSet {
            images: vec![0.5; 2 * 3 * 4 * 4],
            labels: vec![0, 1],
            channels: 3,
            height: 4,
            width: 4,
        };
        let pre = Preprocess {
            image_size: 32,
            channels: 3,
            mean: vec![0.5],
            std: vec![0.5],
        };
        let req = |vit_id, set, pre, first, views, seed| {
            CacheRequest {
                vit: &vit,
                vit_id,
                set,
                describe: "test",
                pre,
                first,
                views,
                seed,
                dir: None,
                progress: false,
            }
            .key()
        };
        let base = req("a", &set, &pre, 1, 0, 0);
        assert_eq!(
            base,
            req("a", &set, &pre, 1, 0, 9),
            "seed is irrelevant without views"
        );
        assert_ne!(base, req("b", &set, &pre, 1, 0, 0));
        assert_ne!(base, req("a", &set, &pre, 2, 0, 0));
        assert_ne!(base, req("a", &set, &pre, 1, 2, 0));
        assert_ne!(req("a", &set, &pre, 1, 2, 0), req("a", &set, &pre, 1, 2, 1));
        let mut other = set.clone();
        other.images[5] = 0.25;
        assert_ne!(base, req("a", &other, &pre, 1, 0, 0));
        let mut p2 = pre.clone();
        p2.std = vec![0.25];
        assert_ne!(base, req("a", &set, &p2, 1, 0, 0));
        let (f, info) = CacheRequest {
            vit: &vit,
            vit_id: "a",
            set: &set,
            describe: "test",
            pre: &pre,
            first: 1,
            views: 0,
            seed: 0,
            dir: None,
            progress: false,
        }
        .get(&device)
        .unwrap();
        assert!(!info.hit);
        assert_eq!(f.states.len(), 3);
        assert_eq!(f.states[0].shape, vec![2, 17, 32]);
    }
}
