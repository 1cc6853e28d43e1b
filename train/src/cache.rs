//! Feature cache: the frozen backbone's hidden states `x_{first} .. x_L`, computed once per
//! (backbone, dataset, split, preprocessing, views) and stored as safetensors, keyed by a
//! SHA-256 of all of those inputs (the backbone file's bytes and the loaded pixels included),
//! so any changed input gives a new key. A cache in half precision, or on disk, is a
//! directory of raw rows ([`crate::states`]) written batch by batch and renamed whole.

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
use crate::states::{Precision, States, Writer};

const CACHE_FORMAT: &str = "cryptpeft-features-v1";

/// Hidden states of a dataset split: `states[k]` is `x_{first+k}` of shape `[M, N, d]`.
/// `M = images * views` (view-major within an image: rows `i*views .. (i+1)*views`).
#[derive(Debug)]
pub struct FeatureSet {
    pub first: usize,
    pub states: Vec<States>,
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
                let [_, n, d] = t.shape();
                let mut data = Vec::with_capacity(idx.len() * n * d);
                t.gather(idx, &mut data);
                Tensor::from_data(TensorData::new(data, [idx.len(), n, d]), device)
            })
            .collect()
    }

    /// Bytes of the stored states.
    pub fn bytes(&self) -> usize {
        self.states.iter().map(States::bytes).sum()
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
    pub storage: Storage,
}

/// How a cache keeps its states: f32 in memory (a safetensors file, the default), or
/// raw rows in `precision`, read into memory or, `mapped`, paged in from disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Storage {
    pub precision: Precision,
    pub mapped: bool,
}

impl Storage {
    fn raw(self) -> bool {
        self.precision != Precision::F32 || self.mapped
    }
}

/// What a raw cache directory records beside its rows.
#[derive(Serialize, serde::Deserialize)]
struct RawMeta {
    format: String,
    first: usize,
    last: usize,
    views: usize,
    shape: [usize; 3],
    precision: Precision,
    labels: Vec<u32>,
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
        let mut meta = meta;
        // Keys of f32 caches stay what they were before precision was a choice.
        if self.storage.precision != Precision::F32 {
            meta["precision"] = serde_json::to_value(self.storage.precision).expect("json");
        }
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
        if self.storage.raw() {
            return self.get_raw(device);
        }
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
        let (states, labels) = self.compute_in_memory(device)?;
        let views = self.views.max(1);
        let mut bytes = states.iter().map(|t| t.data.len() as u64 * 4).sum();
        if let Some(p) = &path {
            // The file holds its own copy only while it is written.
            let mut tf = TensorFile::default();
            for (k, s) in states.iter().enumerate() {
                tf.insert(format!("hidden.{}", self.first + k), s.clone());
            }
            let as_f32 = labels.iter().map(|&l| l as f32).collect();
            tf.insert("labels", HostTensor::new(vec![labels.len()], as_f32));
            tf.metadata.insert("format".into(), CACHE_FORMAT.into());
            tf.metadata.insert("first".into(), self.first.to_string());
            tf.metadata.insert("views".into(), views.to_string());
            tf.save(p)?;
            bytes = std::fs::metadata(p).map(|m| m.len()).unwrap_or(bytes);
        }
        let feats = FeatureSet {
            first: self.first,
            states: states.into_iter().map(States::memory).collect(),
            labels,
            views,
        };
        let info = CacheInfo {
            key,
            path,
            hit: false,
            seconds: start.elapsed().as_secs_f64(),
            bytes,
        };
        Ok((feats, info))
    }

    /// The backbone's states `x_first .. x_L` of every image, in memory.
    fn compute_in_memory(&self, device: &Device) -> Result<(Vec<HostTensor>, Vec<u32>)> {
        let spec = &self.vit.spec;
        let (n, d) = (spec.tokens(), spec.hidden_dim);
        let mut states = vec![Vec::new(); spec.layers + 1 - self.first];
        let labels = self.run_backbone(device, |k, v| {
            states[k].extend(v);
            Ok(())
        })?;
        let m = labels.len();
        let states = states
            .into_iter()
            .map(|v| HostTensor::new(vec![m, n, d], v))
            .collect();
        Ok((states, labels))
    }

    /// A raw cache directory (`KEY.f16` or `KEY.f32`): loaded if whole, else computed
    /// batch by batch into a temporary directory and renamed, so a kill leaves no half
    /// cache behind.
    fn get_raw(&self, device: &Device) -> Result<(FeatureSet, CacheInfo)> {
        let start = Instant::now();
        let key = self.key();
        let precision = self.storage.precision;
        let ext = match precision {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
        };
        let Some(root) = self.dir else {
            return Err(TrainError::Config(
                "a half-precision or disk cache needs a cache directory".into(),
            ));
        };
        let dir = root.join(format!("{key}.{ext}"));
        let hit = dir.join("meta.json").is_file();
        if !hit {
            let tmp = root.join(format!("{key}.{ext}.tmp{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&tmp);
            let spec = &self.vit.spec;
            let mut w = Writer::create(&tmp, self.first..=spec.layers, precision)?;
            let labels = self.run_backbone(device, |k, v| w.append(k, &v))?;
            w.finish()?;
            let meta = RawMeta {
                format: CACHE_FORMAT.into(),
                first: self.first,
                last: spec.layers,
                views: self.views.max(1),
                shape: [labels.len(), spec.tokens(), spec.hidden_dim],
                precision,
                labels,
            };
            let text = serde_json::to_vec(&meta).expect("json");
            let mp = tmp.join("meta.json");
            std::fs::write(&mp, text).map_err(|e| TrainError::io(&mp, e))?;
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::rename(&tmp, &dir).map_err(|e| TrainError::io(&dir, e))?;
        }
        let mp = dir.join("meta.json");
        let text = std::fs::read(&mp).map_err(|e| TrainError::io(&mp, e))?;
        let meta: RawMeta =
            serde_json::from_slice(&text).map_err(|e| TrainError::format(&mp, e.to_string()))?;
        if meta.format != CACHE_FORMAT || meta.first != self.first || meta.precision != precision {
            return Err(TrainError::format(&mp, "not this cache's directory"));
        }
        let states = (meta.first..=meta.last)
            .map(|l| States::open(&dir, l, meta.shape, precision, self.storage.mapped))
            .collect::<Result<Vec<_>>>()?;
        let feats = FeatureSet {
            first: meta.first,
            states,
            labels: meta.labels,
            views: meta.views,
        };
        let info = CacheInfo {
            key,
            path: Some(dir),
            hit,
            seconds: start.elapsed().as_secs_f64(),
            bytes: feats.bytes() as u64,
        };
        Ok((feats, info))
    }

    /// Runs the frozen backbone over the set in batches of 64, handing each batch's
    /// state `x_{first+k}` to `emit(k, values)`; returns the labels, one per view.
    fn run_backbone(
        &self,
        device: &Device,
        mut emit: impl FnMut(usize, Vec<f32>) -> Result<()>,
    ) -> Result<Vec<u32>> {
        let (set, pre, views) = (self.set, self.pre, self.views);
        let nviews = views.max(1);
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let mut labels = Vec::with_capacity(set.len() * nviews);
        let bar = progress_bar(set.len() as u64, "features", self.progress);
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
            let hs = self.vit.hidden_states(x);
            for (k, h) in hs[self.first..].iter().enumerate() {
                emit(k, HostTensor::from_tensor(h).data)?;
            }
            bar.inc(idx.len() as u64);
        }
        bar.finish_and_clear();
        Ok(labels)
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
                    .map(States::memory)
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

    /// Tiny 4x4 RGB images and the fixture backbone's preprocessing.
    fn images(images: Vec<f32>, labels: Vec<u32>) -> (ImageSet, Preprocess) {
        let set = ImageSet {
            images,
            labels,
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
        (set, pre)
    }

    /// A request of the tests' defaults: backbone id `a`, from layer 1, no views.
    fn request<'a>(
        vit: &'a Vit,
        set: &'a ImageSet,
        pre: &'a Preprocess,
        dir: Option<&'a Path>,
        storage: Storage,
    ) -> CacheRequest<'a> {
        CacheRequest {
            vit,
            vit_id: "a",
            set,
            describe: "test",
            pre,
            first: 1,
            views: 0,
            seed: 0,
            dir,
            progress: false,
            storage,
        }
    }

    #[test]
    fn every_input_changes_the_key() {
        let device = crate::cpu();
        let vit = Vit::init(&BackboneSpec::vit_tiny_fixture(), 2, 0, &device);
        let (set, pre) = images(vec![0.5; 2 * 3 * 4 * 4], vec![0, 1]);
        let req = |vit_id, set, pre, first, views, seed| {
            CacheRequest {
                vit_id,
                first,
                views,
                seed,
                ..request(&vit, set, pre, None, Storage::default())
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
        let (f, info) = request(&vit, &set, &pre, None, Storage::default())
            .get(&device)
            .unwrap();
        assert!(!info.hit);
        assert_eq!(f.states.len(), 3);
        assert_eq!(f.states[0].shape(), [2, 17, 32]);
    }

    #[test]
    fn a_half_precision_disk_cache_gives_the_memory_caches_rows() {
        let device = crate::cpu();
        let vit = Vit::init(&BackboneSpec::vit_tiny_fixture(), 2, 0, &device);
        let pixels = (0..3 * 3 * 4 * 4).map(|i| (i % 7) as f32 / 7.0).collect();
        let (set, pre) = images(pixels, vec![0, 1, 1]);
        let tmp = tempfile::tempdir().unwrap();
        let get = |storage| {
            request(&vit, &set, &pre, Some(tmp.path()), storage)
                .get(&device)
                .unwrap()
        };
        let (mem, _) = get(Storage::default());
        let disk = Storage {
            precision: Precision::F16,
            mapped: true,
        };
        // A directory a killed run left half written is not taken for the cache.
        std::fs::create_dir_all(tmp.path().join("leftover.f16.tmp1")).unwrap();
        let (first, info) = get(disk);
        assert!(!info.hit && info.path.as_ref().unwrap().is_dir());
        let (again, info) = get(disk);
        assert!(info.hit);
        assert_eq!(again.labels, mem.labels);
        assert_eq!(again.bytes() * 2, mem.bytes());
        for f in [&first, &again] {
            let a = mem.batch(&[2, 0], 1, &device);
            let b = f.batch(&[2, 0], 1, &device);
            assert_eq!(a.len(), b.len());
            for (a, b) in a.iter().zip(&b) {
                let err: f32 = (a.clone() - b.clone()).abs().max().into_scalar();
                let top: f32 = a.clone().abs().max().into_scalar();
                assert!(err <= 1e-3 * top.max(1.0), "{err} of {top}");
            }
        }
    }
}
