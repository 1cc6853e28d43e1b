//! Datasets in their real file formats, preprocessing and class subsets.
//!
//! - CIFAR-10 / CIFAR-100 binary version: records of `label (1 byte; CIFAR-100: coarse, fine)`
//!   then 3072 bytes (R, G, B planes of 32x32).
//! - IDX (Fashion-MNIST): big-endian header `0 0 0x08 ndim`, `ndim` u32 sizes, then u8 data;
//!   plain or gzip-compressed.
//! - `digits.csv.gz`: rows of 64 integers 0..16 (8x8, row-major) then the label.
//! - ImageFolder (torchvision's layout): `train/<class>/*.png|jpg|jpeg` and
//!   `test/<class>/...` (or `val/`); classes are the folder names in sorted order.

use std::io::Read;
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// Images as `f32` planes `[n, channels, height, width]` plus labels.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSet {
    pub images: Vec<f32>,
    pub labels: Vec<u32>,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl ImageSet {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }
    pub fn image(&self, i: usize) -> &[f32] {
        let l = self.image_len();
        &self.images[i * l..(i + 1) * l]
    }

    /// Keeps the samples whose label is in `classes`, relabelled `0..classes.len()` in order.
    pub fn subset_classes(&self, classes: &[u32]) -> ImageSet {
        let l = self.image_len();
        let mut out = ImageSet {
            images: Vec::new(),
            labels: Vec::new(),
            ..self.clone()
        };
        for i in 0..self.len() {
            if let Some(k) = classes.iter().position(|&c| c == self.labels[i]) {
                out.images
                    .extend_from_slice(&self.images[i * l..(i + 1) * l]);
                out.labels.push(k as u32);
            }
        }
        out
    }

    /// Samples `n` images (seeded shuffle) when there are more.
    pub fn sample(&self, n: usize, seed: u64) -> ImageSet {
        if n >= self.len() {
            return self.clone();
        }
        let mut idx: Vec<usize> = (0..self.len()).collect();
        idx.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        idx.truncate(n);
        idx.sort_unstable();
        self.select(&idx)
    }

    pub fn select(&self, idx: &[usize]) -> ImageSet {
        let mut images = Vec::with_capacity(idx.len() * self.image_len());
        for &i in idx {
            images.extend_from_slice(self.image(i));
        }
        ImageSet {
            images,
            labels: idx.iter().map(|&i| self.labels[i]).collect(),
            ..self.clone()
        }
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| TrainError::format(path, format!("corrupt gzip stream: {e}")))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Reads an IDX file of unsigned bytes (optionally gzip-compressed): `(dims, data)`.
pub fn read_idx(path: &Path) -> Result<(Vec<usize>, Vec<u8>)> {
    let b = read_file(path)?;
    if b.len() < 4 {
        return Err(TrainError::format(
            path,
            format!("IDX file truncated: {} bytes, header needs 4", b.len()),
        ));
    }
    if b[0] != 0 || b[1] != 0 {
        return Err(TrainError::format(
            path,
            format!("bad IDX magic {:02x} {:02x} (expected 00 00)", b[0], b[1]),
        ));
    }
    if b[2] != 0x08 {
        return Err(TrainError::format(
            path,
            format!("IDX data type 0x{:02x} is not unsigned byte (0x08)", b[2]),
        ));
    }
    let nd = b[3] as usize;
    let head = 4 + 4 * nd;
    if nd == 0 || b.len() < head {
        return Err(TrainError::format(
            path,
            format!("IDX header truncated or has {nd} dimensions"),
        ));
    }
    let dims: Vec<usize> = (0..nd)
        .map(|i| u32::from_be_bytes(b[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize)
        .collect();
    let n: usize = dims.iter().product();
    if b.len() - head != n {
        return Err(TrainError::format(
            path,
            format!(
                "IDX dims {dims:?} need {n} data bytes, file has {}",
                b.len() - head
            ),
        ));
    }
    Ok((dims, b[head..].to_vec()))
}

/// Reads an IDX image file and its label file into an [`ImageSet`] (one channel).
pub fn read_idx_pair(images: &Path, labels: &Path) -> Result<ImageSet> {
    let (d, px) = read_idx(images)?;
    if d.len() != 3 {
        return Err(TrainError::format(
            images,
            format!("IDX images need 3 dimensions, got {d:?}"),
        ));
    }
    let (dl, lb) = read_idx(labels)?;
    if dl.len() != 1 || dl[0] != d[0] {
        return Err(TrainError::format(
            labels,
            format!("IDX labels dims {dl:?} do not match {} images", d[0]),
        ));
    }
    Ok(ImageSet {
        images: px.iter().map(|&p| p as f32 / 255.0).collect(),
        labels: lb.iter().map(|&l| l as u32).collect(),
        channels: 1,
        height: d[1],
        width: d[2],
    })
}

/// Reads one CIFAR binary file; `fine = true` for CIFAR-100 (coarse + fine label bytes).
pub fn read_cifar(path: &Path, cifar100: bool) -> Result<ImageSet> {
    let b = read_file(path)?;
    let lab = if cifar100 { 2 } else { 1 };
    let rec = lab + 3072;
    if b.is_empty() || b.len() % rec != 0 {
        return Err(TrainError::format(
            path,
            format!(
                "CIFAR file length {} is not a multiple of the {rec}-byte record",
                b.len()
            ),
        ));
    }
    let max = if cifar100 { 100 } else { 10 };
    let mut set = ImageSet {
        images: Vec::with_capacity(b.len() / rec * 3072),
        labels: Vec::new(),
        channels: 3,
        height: 32,
        width: 32,
    };
    for (i, r) in b.chunks_exact(rec).enumerate() {
        let label = r[lab - 1] as u32;
        if label >= max {
            return Err(TrainError::format(
                path,
                format!("record {i}: label {label} out of range 0..{max}"),
            ));
        }
        set.labels.push(label);
        set.images
            .extend(r[lab..].iter().map(|&p| p as f32 / 255.0));
    }
    Ok(set)
}

/// Reads `digits.csv(.gz)`: 64 values 0..16 then the label per row.
pub fn read_digits(path: &Path) -> Result<ImageSet> {
    let b = read_file(path)?;
    let text = String::from_utf8(b).map_err(|_| TrainError::format(path, "not UTF-8 text"))?;
    let mut set = ImageSet {
        images: Vec::new(),
        labels: Vec::new(),
        channels: 1,
        height: 8,
        width: 8,
    };
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let vals: Vec<&str> = line.split(',').collect();
        if vals.len() != 65 {
            return Err(TrainError::format(
                path,
                format!("line {}: {} fields, expected 65", i + 1, vals.len()),
            ));
        }
        for (j, v) in vals.iter().enumerate() {
            let x: f64 = v.trim().parse().map_err(|_| {
                TrainError::format(
                    path,
                    format!("line {}: field {} `{v}` is not a number", i + 1, j + 1),
                )
            })?;
            if j < 64 {
                if !(0.0..=16.0).contains(&x) {
                    return Err(TrainError::format(
                        path,
                        format!("line {}: pixel {x} outside 0..16", i + 1),
                    ));
                }
                set.images.push((x / 16.0) as f32);
            } else {
                if x.fract() != 0.0 || !(0.0..=9.0).contains(&x) {
                    return Err(TrainError::format(
                        path,
                        format!("line {}: label {x} not in 0..9", i + 1),
                    ));
                }
                set.labels.push(x as u32);
            }
        }
    }
    if set.is_empty() {
        return Err(TrainError::format(path, "no rows"));
    }
    Ok(set)
}

/// Which dataset, in which on-disk format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    /// IDX files `{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`.
    FashionMnist,
    /// `data_batch_{1..5}.bin`, `test_batch.bin`.
    Cifar10,
    /// `train.bin`, `test.bin`.
    Cifar100,
    /// `digits.csv.gz`; every 5th row (index % 5 == 0) is the test split.
    Digits,
    /// One folder per class of PNG/JPEG files under `train/` and `test/` (or `val/`).
    ImageFolder,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Split {
    Train,
    Test,
}

/// Where the data is and which part of it to use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    pub dataset: DatasetKind,
    /// Directory (or, for digits, the file). Default: Debian's Fashion-MNIST folder,
    /// `data/digits.csv.gz` of this repository, `data/cifar-10-batches-bin`, `data/cifar-100-binary`.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Keep only these classes, relabelled `0..k` in this order (e.g. `[5,6,7,8,9]`).
    #[serde(default)]
    pub classes: Option<Vec<u32>>,
    /// Seeded random sample of at most this many training images.
    #[serde(default)]
    pub max_train: Option<usize>,
    #[serde(default)]
    pub max_test: Option<usize>,
    /// Per-channel normalization after resizing (default 0.5 / 0.5).
    #[serde(default)]
    pub mean: Option<Vec<f32>>,
    #[serde(default)]
    pub std: Option<Vec<f32>>,
    /// ImageFolder: images are decoded as RGB and resized to `load_size x load_size`
    /// when read (default 64), then to the backbone's input like every dataset.
    #[serde(default)]
    pub load_size: Option<usize>,
}

impl DataConfig {
    pub fn new(dataset: DatasetKind) -> Self {
        Self {
            dataset,
            path: None,
            classes: None,
            max_train: None,
            max_test: None,
            mean: None,
            std: None,
            load_size: None,
        }
    }

    pub fn with_classes(mut self, classes: &[u32]) -> Self {
        self.classes = Some(classes.to_vec());
        self
    }

    pub fn default_path(&self) -> PathBuf {
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        match self.dataset {
            DatasetKind::FashionMnist => PathBuf::from("/usr/share/datasets/fashion-mnist"),
            DatasetKind::Digits => repo.join("data/digits.csv.gz"),
            DatasetKind::Cifar10 => repo.join("data/cifar-10-batches-bin"),
            DatasetKind::Cifar100 => repo.join("data/cifar-100-binary"),
            DatasetKind::ImageFolder => repo.join("data/images"),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.path.clone().unwrap_or_else(|| self.default_path())
    }

    /// Number of classes after the subset.
    pub fn num_classes(&self) -> usize {
        match (&self.classes, self.dataset) {
            (Some(c), _) => c.len(),
            (None, DatasetKind::Cifar100) => 100,
            // The folder's count (0 when unreadable; `load` then says why).
            (None, DatasetKind::ImageFolder) => {
                image_folder_classes(&self.path().join("train")).map_or(0, |c| c.len())
            }
            _ => 10,
        }
    }

    /// Loads one split (raw pixels in `[0, 1]`, before resizing), subset and sampled.
    pub fn load(&self, split: Split, seed: u64) -> Result<ImageSet> {
        let dir = self.path();
        let set = match self.dataset {
            DatasetKind::FashionMnist => {
                let stem = if split == Split::Train {
                    "train"
                } else {
                    "t10k"
                };
                let find = |kind: &str| {
                    let base = dir.join(format!("{stem}-{kind}-ubyte"));
                    let gz = PathBuf::from(format!("{}.gz", base.display()));
                    if base.exists() {
                        base
                    } else {
                        gz
                    }
                };
                read_idx_pair(&find("images-idx3"), &find("labels-idx1"))?
            }
            DatasetKind::Cifar10 | DatasetKind::Cifar100 => {
                let c100 = self.dataset == DatasetKind::Cifar100;
                let files: Vec<PathBuf> = match (c100, split) {
                    (false, Split::Train) => (1..=5)
                        .map(|i| dir.join(format!("data_batch_{i}.bin")))
                        .collect(),
                    (false, Split::Test) => vec![dir.join("test_batch.bin")],
                    (true, Split::Train) => vec![dir.join("train.bin")],
                    (true, Split::Test) => vec![dir.join("test.bin")],
                };
                let mut all: Option<ImageSet> = None;
                for f in files {
                    let s = read_cifar(&f, c100)?;
                    match &mut all {
                        None => all = Some(s),
                        Some(a) => {
                            a.images.extend(s.images);
                            a.labels.extend(s.labels);
                        }
                    }
                }
                all.expect("at least one file")
            }
            DatasetKind::Digits => {
                let all = read_digits(&dir)?;
                let idx: Vec<usize> = (0..all.len())
                    .filter(|i| (i % 5 == 0) == (split == Split::Test))
                    .collect();
                all.select(&idx)
            }
            // Subset and sample the file list, so only the images used are decoded.
            DatasetKind::ImageFolder => return self.load_image_folder(&dir, split, seed),
        };
        let set = match &self.classes {
            Some(c) => set.subset_classes(c),
            None => set,
        };
        let max = if split == Split::Train {
            self.max_train
        } else {
            self.max_test
        };
        Ok(match max {
            Some(n) => set.sample(n, seed ^ 0x5eed),
            None => set,
        })
    }
}

impl DataConfig {
    fn load_image_folder(&self, dir: &Path, split: Split, seed: u64) -> Result<ImageSet> {
        let classes = image_folder_classes(&dir.join("train"))?;
        let split_dir = match split {
            Split::Train => dir.join("train"),
            Split::Test => ["test", "val"]
                .iter()
                .map(|d| dir.join(d))
                .find(|d| d.is_dir())
                .unwrap_or_else(|| dir.join("test")),
        };
        if split == Split::Test {
            let theirs = image_folder_classes(&split_dir)?;
            if theirs != classes {
                return Err(TrainError::format(
                    &split_dir,
                    format!("class folders {theirs:?} differ from train/'s {classes:?}"),
                ));
            }
        }
        // Chosen classes, relabelled in the order given.
        let chosen: Vec<(u32, &String)> = match &self.classes {
            Some(c) => c
                .iter()
                .enumerate()
                .map(|(k, &i)| {
                    classes
                        .get(i as usize)
                        .map(|n| (k as u32, n))
                        .ok_or_else(|| {
                            TrainError::format(
                                &split_dir,
                                format!("class {i} requested, {} class folders", classes.len()),
                            )
                        })
                })
                .collect::<Result<_>>()?,
            None => classes
                .iter()
                .enumerate()
                .map(|(k, n)| (k as u32, n))
                .collect(),
        };
        let mut files = Vec::new();
        for (label, name) in chosen {
            let found = image_files(&split_dir.join(name))?;
            files.extend(found.into_iter().map(|f| (f, label)));
        }
        let max = match split {
            Split::Train => self.max_train,
            Split::Test => self.max_test,
        };
        if let Some(n) = max.filter(|&n| n < files.len()) {
            files.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x5eed));
            files.truncate(n);
            files.sort();
        }
        read_images(&files, self.load_size.unwrap_or(64))
    }
}

/// The class folders of an ImageFolder split, sorted by name: label `i` is the `i`-th.
pub fn image_folder_classes(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| TrainError::io(dir, e))? {
        let e = e.map_err(|e| TrainError::io(dir, e))?;
        if e.path().is_dir() {
            names.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    if names.is_empty() {
        return Err(TrainError::format(dir, "no class folders"));
    }
    Ok(names)
}

/// The PNG and JPEG files of a folder, sorted; an error when there are none.
pub fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| TrainError::io(dir, e))? {
        let p = e.map_err(|e| TrainError::io(dir, e))?.path();
        let ext = p
            .extension()
            .map(|x| x.to_string_lossy().to_ascii_lowercase());
        if matches!(ext.as_deref(), Some("png" | "jpg" | "jpeg")) {
            files.push(p);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(TrainError::format(dir, "folder without PNG or JPEG files"));
    }
    Ok(files)
}

/// Decodes `(file, label)` pairs as RGB planes in `[0, 1]`, resized to `size x size`.
pub fn read_images(files: &[(PathBuf, u32)], size: usize) -> Result<ImageSet> {
    let mut set = ImageSet {
        images: Vec::with_capacity(files.len() * 3 * size * size),
        labels: Vec::with_capacity(files.len()),
        channels: 3,
        height: size,
        width: size,
    };
    for (f, label) in files {
        let img = image::open(f)
            .map_err(|e| TrainError::format(f, format!("not a readable PNG or JPEG: {e}")))?
            .to_rgb8();
        let (w, h) = (img.width() as usize, img.height() as usize);
        let mut planes = vec![0f32; 3 * h * w];
        for (i, p) in img.pixels().enumerate() {
            for c in 0..3 {
                planes[c * h * w + i] = p[c] as f32 / 255.0;
            }
        }
        set.images
            .extend(resize_bilinear(&planes, 3, h, w, size, size));
        set.labels.push(*label);
    }
    Ok(set)
}

/// Resizing to the backbone's input and per-channel normalization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocess {
    pub image_size: usize,
    pub channels: usize,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Preprocess {
    pub fn new(image_size: usize, channels: usize, data: &DataConfig) -> Self {
        let mean = data.mean.clone().unwrap_or_else(|| vec![0.5; channels]);
        let std = data.std.clone().unwrap_or_else(|| vec![0.5; channels]);
        Self {
            image_size,
            channels,
            mean,
            std,
        }
    }

    /// One image `[c, h, w]` in `[0, 1]` -> `[channels, size, size]`, normalized.
    pub fn apply(&self, img: &[f32], c: usize, h: usize, w: usize) -> Vec<f32> {
        let s = self.image_size;
        let resized = resize_bilinear(img, c, h, w, s, s);
        let mut out = Vec::with_capacity(self.channels * s * s);
        for oc in 0..self.channels {
            let plane: Vec<f32> = if c == self.channels {
                resized[oc * s * s..(oc + 1) * s * s].to_vec()
            } else if c == 1 {
                resized.clone()
            } else {
                // Colour to fewer channels: mean over input channels.
                (0..s * s)
                    .map(|p| (0..c).map(|ic| resized[ic * s * s + p]).sum::<f32>() / c as f32)
                    .collect()
            };
            let (m, sd) = (
                self.mean[oc % self.mean.len()],
                self.std[oc % self.std.len()],
            );
            out.extend(plane.iter().map(|v| (v - m) / sd));
        }
        out
    }

    /// A whole set (plus optional augmentation) -> `[n, channels, size, size]`.
    pub fn apply_set(&self, set: &ImageSet, augment: Option<&mut ChaCha8Rng>) -> Vec<f32> {
        let mut out =
            Vec::with_capacity(set.len() * self.channels * self.image_size * self.image_size);
        let mut rng = augment;
        for i in 0..set.len() {
            let img = set.image(i);
            match rng.as_deref_mut() {
                Some(r) => {
                    let a = random_resized_crop_flip(img, set.channels, set.height, set.width, r);
                    out.extend(self.apply(&a, set.channels, set.height, set.width));
                }
                None => out.extend(self.apply(img, set.channels, set.height, set.width)),
            }
        }
        out
    }
}

/// Bilinear resize (half-pixel centres, like `align_corners=False`).
pub fn resize_bilinear(
    img: &[f32],
    c: usize,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
) -> Vec<f32> {
    if h == oh && w == ow {
        return img.to_vec();
    }
    let mut out = vec![0.0; c * oh * ow];
    let (sy, sx) = (h as f32 / oh as f32, w as f32 / ow as f32);
    for y in 0..oh {
        let fy = ((y as f32 + 0.5) * sy - 0.5).clamp(0.0, (h - 1) as f32);
        let (y0, ty) = (fy.floor() as usize, fy.fract());
        let y1 = (y0 + 1).min(h - 1);
        for x in 0..ow {
            let fx = ((x as f32 + 0.5) * sx - 0.5).clamp(0.0, (w - 1) as f32);
            let (x0, tx) = (fx.floor() as usize, fx.fract());
            let x1 = (x0 + 1).min(w - 1);
            for ch in 0..c {
                let p = |yy: usize, xx: usize| img[ch * h * w + yy * w + xx];
                let top = p(y0, x0) * (1.0 - tx) + p(y0, x1) * tx;
                let bot = p(y1, x0) * (1.0 - tx) + p(y1, x1) * tx;
                out[ch * oh * ow + y * ow + x] = top * (1.0 - ty) + bot * ty;
            }
        }
    }
    out
}

/// Random resized crop (area 50-100 %, aspect 3/4-4/3) back to the input size, then a
/// horizontal flip with probability 1/2.
pub fn random_resized_crop_flip(
    img: &[f32],
    c: usize,
    h: usize,
    w: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<f32> {
    let area = (h * w) as f32 * rng.random_range(0.5..1.0f32);
    let ratio = rng.random_range((0.75f32).ln()..(4.0f32 / 3.0).ln()).exp();
    let cw = ((area * ratio).sqrt().round() as usize).clamp(1, w);
    let ch_ = ((area / ratio).sqrt().round() as usize).clamp(1, h);
    let y0 = rng.random_range(0..=h - ch_);
    let x0 = rng.random_range(0..=w - cw);
    let flip = rng.random_bool(0.5);
    let mut crop = Vec::with_capacity(c * ch_ * cw);
    for k in 0..c {
        for y in 0..ch_ {
            for x in 0..cw {
                let xx = if flip { x0 + cw - 1 - x } else { x0 + x };
                crop.push(img[k * h * w + (y0 + y) * w + xx]);
            }
        }
    }
    resize_bilinear(&crop, c, ch_, cw, h, w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("cryptpeft-data-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d.join(name)
    }

    fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut b = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            b.extend(d.to_be_bytes());
        }
        b.extend(data);
        b
    }

    fn gz(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn idx_round_trip_gzip_and_errors() {
        let px: Vec<u8> = (0..2 * 4 * 4).map(|i| i as u8 * 8).collect();
        let im = tmp("imgs-idx3-ubyte.gz");
        let lb = tmp("labels-idx1-ubyte");
        std::fs::write(&im, gz(&idx_bytes(&[2, 4, 4], &px))).unwrap();
        std::fs::write(&lb, idx_bytes(&[2], &[3, 7])).unwrap();
        let set = read_idx_pair(&im, &lb).unwrap();
        assert_eq!(
            (set.len(), set.height, set.width, set.labels.clone()),
            (2, 4, 4, vec![3, 7])
        );
        assert_eq!(set.images[1], 8.0 / 255.0);
        assert_eq!(set.subset_classes(&[7]).labels, vec![0]);

        let bad = tmp("trunc-idx3-ubyte");
        std::fs::write(&bad, &idx_bytes(&[2, 4, 4], &px)[..30]).unwrap();
        let e = read_idx(&bad).unwrap_err().to_string();
        assert!(
            e.contains("trunc-idx3-ubyte") && e.contains("data bytes"),
            "{e}"
        );
        std::fs::write(&bad, [1u8, 2, 3, 4, 5]).unwrap();
        let e = read_idx(&bad).unwrap_err().to_string();
        assert!(e.contains("magic"), "{e}");
        let corrupt = tmp("corrupt.gz");
        std::fs::write(&corrupt, &gz(&[1, 2, 3])[..8]).unwrap();
        let e = read_idx(&corrupt).unwrap_err().to_string();
        assert!(e.contains("corrupt.gz") && e.contains("gzip"), "{e}");
        let e = read_idx(&tmp("missing")).unwrap_err().to_string();
        assert!(e.contains("missing"), "{e}");
    }

    #[test]
    fn cifar_records_and_errors() {
        let mut b = Vec::new();
        for label in [4u8, 9] {
            b.push(label);
            b.extend((0..3072).map(|i| (i % 256) as u8));
        }
        let p = tmp("data_batch_1.bin");
        std::fs::write(&p, &b).unwrap();
        let s = read_cifar(&p, false).unwrap();
        assert_eq!((s.len(), s.channels, s.labels.clone()), (2, 3, vec![4, 9]));
        assert_eq!(s.images[1024], 0.0); // green plane starts at 1024 -> byte 0
        std::fs::write(&p, &b[..3000]).unwrap();
        let e = read_cifar(&p, false).unwrap_err().to_string();
        assert!(
            e.contains("data_batch_1.bin") && e.contains("multiple"),
            "{e}"
        );
        let mut c100 = vec![1u8, 55];
        c100.extend(vec![0u8; 3072]);
        std::fs::write(&p, &c100).unwrap();
        assert_eq!(read_cifar(&p, true).unwrap().labels, vec![55]);
        c100[1] = 120;
        std::fs::write(&p, &c100).unwrap();
        assert!(read_cifar(&p, true)
            .unwrap_err()
            .to_string()
            .contains("out of range"));
    }

    #[test]
    fn digits_csv_and_errors() {
        let row: Vec<String> = (0..64)
            .map(|i| (i % 17).to_string())
            .chain(["3".into()])
            .collect();
        let p = tmp("digits.csv.gz");
        std::fs::write(
            &p,
            gz(format!("{}\n{}\n", row.join(","), row.join(",")).as_bytes()),
        )
        .unwrap();
        let s = read_digits(&p).unwrap();
        assert_eq!((s.len(), s.height, s.labels[0]), (2, 8, 3));
        assert_eq!((s.images[16], s.images[17]), (1.0, 0.0));
        std::fs::write(&p, gz(b"1,2,3\n")).unwrap();
        let e = read_digits(&p).unwrap_err().to_string();
        assert!(e.contains("digits.csv.gz") && e.contains("line 1"), "{e}");
    }

    #[test]
    fn real_digits_file_loads() {
        let cfg = DataConfig::new(DatasetKind::Digits);
        let test = cfg.load(Split::Test, 0).unwrap();
        let train = cfg.load(Split::Train, 0).unwrap();
        assert_eq!(test.len() + train.len(), 1797);
    }

    #[test]
    fn resize_and_normalize() {
        let img = vec![0.0, 1.0, 0.0, 1.0];
        let up = resize_bilinear(&img, 1, 2, 2, 4, 4);
        assert_eq!(up.len(), 16);
        assert!((up[0] - 0.0).abs() < 1e-6 && (up[3] - 1.0).abs() < 1e-6);
        let p = Preprocess {
            image_size: 4,
            channels: 3,
            mean: vec![0.5],
            std: vec![0.5],
        };
        let out = p.apply(&img, 1, 2, 2);
        assert_eq!(out.len(), 48);
        assert!((out[3] - 1.0).abs() < 1e-6 && (out[0] + 1.0).abs() < 1e-6);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let a = random_resized_crop_flip(&up, 1, 4, 4, &mut rng);
        assert_eq!(a.len(), 16);
    }

    /// Writes an ImageFolder: classes `cat` (red PNGs of two sizes) and `dog` (blue
    /// JPEGs) under `train/` and `val/`.
    fn image_folder(name: &str) -> PathBuf {
        let root = tmp(name);
        for split in ["train", "val"] {
            for (class, rgb, ext) in [("cat", [255u8, 0, 0], "png"), ("dog", [0, 0, 255], "jpg")] {
                let d = root.join(split).join(class);
                std::fs::create_dir_all(&d).unwrap();
                for (i, size) in [(0, 20u32), (1, 33), (2, 8)] {
                    let img = image::RgbImage::from_pixel(size, size + 3, image::Rgb(rgb));
                    img.save(d.join(format!("{i}.{ext}"))).unwrap();
                }
            }
            std::fs::write(root.join(split).join("cat").join("notes.txt"), "ignored").unwrap();
        }
        root
    }

    #[test]
    fn image_folder_reads_classes_in_order_resized_to_one_shape() {
        let root = image_folder("folder-ok");
        let mut cfg = DataConfig::new(DatasetKind::ImageFolder);
        cfg.path = Some(root.clone());
        cfg.load_size = Some(16);
        assert_eq!(cfg.num_classes(), 2);
        for split in [Split::Train, Split::Test] {
            let set = cfg.load(split, 0).unwrap();
            assert_eq!(
                (set.len(), set.channels, set.height, set.width),
                (6, 3, 16, 16)
            );
            assert_eq!(set.labels, [0, 0, 0, 1, 1, 1]);
            // A red cat: R plane 1, B plane 0; a blue dog (JPEG, so within rounding).
            let cat = set.image(0);
            assert!(cat[..256].iter().all(|&v| (v - 1.0).abs() < 1e-6));
            assert!(cat[512..].iter().all(|&v| v.abs() < 1e-6));
            let dog = set.image(5);
            assert!(dog[512..].iter().all(|&v| v > 0.9) && dog[..256].iter().all(|&v| v < 0.1));
        }
        // A class subset, relabelled in the order given, and a seeded sample.
        cfg.classes = Some(vec![1]);
        cfg.max_train = Some(2);
        let set = cfg.load(Split::Train, 3).unwrap();
        assert_eq!(set.labels, [0, 0]);
        assert_eq!(cfg.num_classes(), 1);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn image_folder_errors_name_the_place() {
        let root = image_folder("folder-bad");
        let mut cfg = DataConfig::new(DatasetKind::ImageFolder);
        cfg.path = Some(root.clone());
        // A file that is not an image, under an image name.
        let bad = root.join("train").join("cat").join("3.png");
        std::fs::write(&bad, "not a png").unwrap();
        let e = cfg.load(Split::Train, 0).unwrap_err().to_string();
        assert!(e.contains("3.png") && e.contains("PNG or JPEG"), "{e}");
        std::fs::remove_file(&bad).unwrap();
        // The test split with other classes.
        std::fs::create_dir_all(root.join("val").join("emu")).unwrap();
        let e = cfg.load(Split::Test, 0).unwrap_err().to_string();
        assert!(e.contains("differ"), "{e}");
        // A class folder without images.
        std::fs::create_dir_all(root.join("train").join("emu")).unwrap();
        let e = cfg.load(Split::Train, 0).unwrap_err().to_string();
        assert!(
            e.contains("emu") && e.contains("without PNG or JPEG"),
            "{e}"
        );
        // A class index beyond the folders.
        cfg.classes = Some(vec![7]);
        let e = cfg.load(Split::Train, 0).unwrap_err().to_string();
        assert!(e.contains("class 7"), "{e}");
        // No folder at all.
        cfg.classes = None;
        cfg.path = Some(root.join("nowhere"));
        assert_eq!(cfg.num_classes(), 0);
        let e = cfg.load(Split::Train, 0).unwrap_err().to_string();
        assert!(e.contains("nowhere"), "{e}");
        std::fs::remove_dir_all(root).unwrap();
    }
}
