//! The training loop and the library entry point [`train_adapter`].
//!
//! Hand-written loop (`backward` -> `GradientsParams::from_grads` -> `optim.step`), the
//! paper's recipe by default: SGD (lr 0.01, momentum 0.9, weight decay 5e-4), cosine
//! schedule, batch 50. Frozen-backbone methods train on the feature cache.

use std::path::PathBuf;
use std::time::Instant;

use burn::module::Module;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamWConfig, GradientsParams, SgdConfig};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use cryptpeft_types::{AdapterSpec, BackboneSpec};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::backbone::Vit;
use crate::baselines::{full_finetune_model, PeftModel, TailModel};
use crate::cache::{file_sha256, progress_bar, CacheInfo, CacheRequest, FeatureSet};
use crate::data::{DataConfig, Preprocess, Split};
use crate::error::{Result, TrainError};
use crate::owc::OwcModel;
use crate::st::HostTensor;

/// What to train on top of the frozen (or not) backbone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Method {
    /// CryptPEFT's one-way adapters (docs/DESIGN.md section 1).
    Owc { spec: AdapterSpec },
    /// Head only, on the frozen final norm of `x_L`.
    LinearProbe,
    /// Fine-tune the last `layers` backbone layers, final norm and head.
    Sft { layers: usize },
    /// LoRA of rank `rank` on q and v in every layer (two-way).
    Lora { rank: usize },
    /// AdaptFormer bottleneck `rank` beside every MLP (two-way).
    Adaptformer { rank: usize },
    /// Every backbone parameter (also used to pretrain a backbone from scratch).
    Full,
}

impl Method {
    pub fn label(&self) -> String {
        match self {
            Method::Owc { spec } => format!("cryptpeft {}", spec.label()),
            Method::LinearProbe => "linear-probe".into(),
            Method::Sft { layers } => format!("sft-{layers}"),
            Method::Lora { rank } => format!("lora-r{rank}"),
            Method::Adaptformer { rank } => format!("adaptformer-r{rank}"),
            Method::Full => "full-ft".into(),
        }
    }

    /// Index of the first hidden state the method reads (`None`: raw images).
    pub fn first_state(&self, layers: usize) -> Option<usize> {
        match self {
            Method::Owc { spec } => Some(layers - spec.scope.min(layers)),
            Method::LinearProbe => Some(layers),
            Method::Sft { layers: k } => Some(layers - (*k).min(layers)),
            Method::Lora { .. } | Method::Adaptformer { .. } => Some(0),
            Method::Full => None,
        }
    }
}

/// Optimizer choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum OptimizerConfig {
    Sgd {
        lr: f64,
        momentum: f64,
        weight_decay: f64,
    },
    Adamw {
        lr: f64,
        weight_decay: f64,
    },
}

impl Default for OptimizerConfig {
    /// The paper's recipe: SGD, lr 0.01, momentum 0.9, weight decay 5e-4.
    fn default() -> Self {
        OptimizerConfig::Sgd {
            lr: 0.01,
            momentum: 0.9,
            weight_decay: 5e-4,
        }
    }
}

impl OptimizerConfig {
    pub fn lr(&self) -> f64 {
        match self {
            OptimizerConfig::Sgd { lr, .. } | OptimizerConfig::Adamw { lr, .. } => *lr,
        }
    }
}

/// Which device trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceChoice {
    /// ndarray CPU backend.
    #[default]
    Cpu,
    /// burn-wgpu (needs the `wgpu` cargo feature).
    Wgpu,
}

impl DeviceChoice {
    pub fn device(self) -> Result<Device> {
        match self {
            DeviceChoice::Cpu => Ok(crate::cpu()),
            #[cfg(feature = "wgpu")]
            DeviceChoice::Wgpu => {
                wgpu_adapter()?;
                Ok(Device::wgpu(Default::default()))
            }
            #[cfg(not(feature = "wgpu"))]
            DeviceChoice::Wgpu => Err(TrainError::Config(
                "device `wgpu` needs cryptpeft-train built with the `wgpu` feature".into(),
            )),
        }
    }

    /// The device as a person would name it (for wgpu, the adapter burn-wgpu runs on).
    pub fn describe(self) -> Result<String> {
        match self {
            DeviceChoice::Cpu => Ok("cpu (ndarray)".into()),
            #[cfg(feature = "wgpu")]
            DeviceChoice::Wgpu => Ok(format!("wgpu on {}", wgpu_adapter()?)),
            #[cfg(not(feature = "wgpu"))]
            DeviceChoice::Wgpu => self.device().map(|_| String::new()),
        }
    }
}

/// The name of burn-wgpu's default adapter (e.g. `llvmpipe (LLVM 15.0.6, 256 bits)`
/// for lavapipe); an error, not a panic, where there is none.
#[cfg(feature = "wgpu")]
fn wgpu_adapter() -> Result<String> {
    std::panic::catch_unwind(|| {
        let device = cubecl::Device::wgpu(Default::default()).ok()?;
        Some(device.client().properties().identity.name.clone())
    })
    .ok()
    .flatten()
    .ok_or(())
    .map_err(|_| {
        TrainError::Config(
            "device `wgpu`: no usable GPU adapter (for a software one, install Debian's \
             mesa-vulkan-drivers)"
                .into(),
        )
    })
}

fn d_epochs() -> usize {
    10
}
fn d_batch() -> usize {
    50
}
fn d_true() -> bool {
    true
}

/// Everything one training run needs; deserializable from YAML (unknown keys rejected).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Backbone weights (torchvision layout). `None`: a fresh random backbone of
    /// `backbone_spec` (pretraining from scratch, `method: full` only).
    #[serde(default)]
    pub backbone: Option<PathBuf>,
    /// Backbone shape when the weights file has no metadata, or for pretraining.
    #[serde(default)]
    pub backbone_spec: Option<BackboneSpec>,
    pub data: DataConfig,
    pub method: Method,
    #[serde(default = "d_epochs")]
    pub epochs: usize,
    #[serde(default = "d_batch")]
    pub batch_size: usize,
    #[serde(default)]
    pub optimizer: OptimizerConfig,
    /// Cosine learning-rate schedule over all steps (to 0); `false`: constant.
    #[serde(default = "d_true")]
    pub cosine: bool,
    #[serde(default)]
    pub seed: u64,
    /// Train frozen-backbone methods on cached hidden states (`false`: run the backbone on
    /// every batch; same result without augmentation, much slower).
    #[serde(default = "d_true")]
    pub use_cache: bool,
    /// Directory of the on-disk feature cache (`None`: keep features in memory only).
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// Cache `x_{L-S} .. x_L` with this `S` (so candidates of scope <= S share one cache);
    /// default: exactly what the method needs.
    #[serde(default)]
    pub cache_scope: Option<usize>,
    /// Augmented views per training image in the cache (random resized crop + flip);
    /// 0 = the plain image only. A random view is drawn per image and epoch.
    #[serde(default)]
    pub views: usize,
    /// Where to write the checkpoint: OWC adapter format for `owc`, torchvision layout
    /// for `full`. Other methods write nothing.
    #[serde(default)]
    pub checkpoint: Option<PathBuf>,
    #[serde(default = "d_true")]
    pub progress: bool,
    #[serde(default)]
    pub device: DeviceChoice,
}

impl TrainConfig {
    /// A config with the paper's defaults.
    pub fn new(backbone: Option<PathBuf>, data: DataConfig, method: Method) -> Self {
        Self {
            backbone,
            backbone_spec: None,
            data,
            method,
            epochs: d_epochs(),
            batch_size: d_batch(),
            optimizer: OptimizerConfig::default(),
            cosine: true,
            seed: 0,
            use_cache: true,
            cache_dir: None,
            cache_scope: None,
            views: 0,
            checkpoint: None,
            progress: true,
            device: DeviceChoice::Cpu,
        }
    }

    pub fn from_yaml(text: &str) -> Result<Self> {
        serde_yaml::from_str(text).map_err(|e| TrainError::Config(e.to_string()))
    }
}

/// One epoch's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochStats {
    pub epoch: usize,
    pub loss: f64,
    pub train_accuracy: f64,
    pub test_accuracy: f64,
    /// Wall time of the training pass (evaluation excluded).
    pub seconds: f64,
}

/// What a run did and reached.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    pub method: String,
    pub backbone: String,
    pub dataset: String,
    pub classes: usize,
    pub train_images: usize,
    pub test_images: usize,
    pub trainable_params: usize,
    pub epochs: Vec<EpochStats>,
    /// Test accuracy after the last epoch.
    pub test_accuracy: f64,
    /// Mean wall time of a training epoch.
    pub mean_epoch_seconds: f64,
    pub cache_train: Option<CacheInfo>,
    pub cache_test: Option<CacheInfo>,
    pub checkpoint: Option<PathBuf>,
    pub seconds_total: f64,
}

/// Where a batch's inputs come from.
enum Source<'a> {
    Cached(&'a FeatureSet),
    /// Preprocessed pixels; with `Some(vit, from)` the frozen backbone runs on every batch.
    Pixels {
        pixels: &'a [f32],
        labels: &'a [u32],
        shape: [usize; 3],
        frozen: Option<(&'a Vit, usize)>,
    },
}

/// A batch: backbone hidden states `x_from .. x_L` or images.
pub enum Input {
    States(Vec<Tensor<3>>),
    Images(Box<Tensor<4>>),
}

impl Source<'_> {
    fn images(&self) -> usize {
        match self {
            Source::Cached(f) => f.images(),
            Source::Pixels { labels, .. } => labels.len(),
        }
    }

    /// Row of image `i` (a random view when the cache has several).
    fn row(&self, i: usize, rng: Option<&mut ChaCha8Rng>) -> usize {
        match (self, rng) {
            (Source::Cached(f), Some(r)) if f.views > 1 => i * f.views + r.random_range(0..f.views),
            (Source::Cached(f), _) => i * f.views,
            _ => i,
        }
    }

    fn label(&self, row: usize) -> u32 {
        match self {
            Source::Cached(f) => f.labels[row],
            Source::Pixels { labels, .. } => labels[row],
        }
    }

    fn input(&self, rows: &[usize], from: Option<usize>, device: &Device) -> Input {
        match self {
            Source::Cached(f) => Input::States(f.batch(rows, from.expect("state index"), device)),
            Source::Pixels {
                pixels,
                shape,
                frozen,
                ..
            } => {
                let len: usize = shape.iter().product();
                let mut data = Vec::with_capacity(rows.len() * len);
                for &r in rows {
                    data.extend_from_slice(&pixels[r * len..(r + 1) * len]);
                }
                let dims = [rows.len(), shape[0], shape[1], shape[2]];
                match frozen {
                    None => Input::Images(Box::new(Tensor::from_data(
                        TensorData::new(data, dims),
                        device,
                    ))),
                    Some((vit, from)) => {
                        let inf = device.clone().without_autodiff();
                        let x = Tensor::from_data(TensorData::new(data, dims), &inf);
                        let states = vit.hidden_states(x);
                        Input::States(
                            states[*from..]
                                .iter()
                                .map(|s| HostTensor::from_tensor(s).to_tensor(device))
                                .collect(),
                        )
                    }
                }
            }
        }
    }
}

/// A model the loop can train.
pub trait Net: Module {
    fn logits(&self, input: Input) -> Tensor<2>;
}

impl Net for OwcModel {
    fn logits(&self, input: Input) -> Tensor<2> {
        match input {
            Input::States(s) => self.forward(&s),
            Input::Images(_) => unreachable!("OWC reads hidden states"),
        }
    }
}

impl Net for TailModel {
    fn logits(&self, input: Input) -> Tensor<2> {
        match input {
            Input::States(s) => self.forward(s[0].clone()),
            Input::Images(_) => unreachable!("reads hidden states"),
        }
    }
}

impl Net for PeftModel {
    fn logits(&self, input: Input) -> Tensor<2> {
        match input {
            Input::States(s) => self.forward(s[0].clone()),
            Input::Images(_) => unreachable!("reads hidden states"),
        }
    }
}

impl Net for Vit {
    fn logits(&self, input: Input) -> Tensor<2> {
        match input {
            Input::Images(x) => self.forward(*x),
            Input::States(s) => {
                let l = self.spec.layers;
                let from = l + 1 - s.len();
                self.classify(self.run_layers(s[0].clone(), from, l))
            }
        }
    }
}

fn cross_entropy(logits: Tensor<2>, labels: &[u32], device: &Device) -> Tensor<1> {
    let [b, c] = logits.dims();
    let mut onehot = vec![0f32; b * c];
    for (i, &l) in labels.iter().enumerate() {
        onehot[i * c + l as usize] = 1.0;
    }
    let onehot = Tensor::<2>::from_data(TensorData::new(onehot, [b, c]), device);
    (log_softmax(logits, 1) * onehot).sum_dim(1).mean().neg()
}

fn argmax_rows(logits: &HostTensor) -> Vec<u32> {
    let c = logits.shape[1];
    logits
        .data
        .chunks(c)
        .map(|r| {
            r.iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
                    if v > bv {
                        (i, v)
                    } else {
                        (bi, bv)
                    }
                })
                .0 as u32
        })
        .collect()
}

/// Accuracy of `model` (already `valid()`) on a source, in batches.
fn evaluate<M: Net>(
    model: &M,
    src: &Source,
    from: Option<usize>,
    batch: usize,
    device: &Device,
) -> f64 {
    let n = src.images();
    let mut correct = 0usize;
    for start in (0..n).step_by(batch.max(1)) {
        let rows: Vec<usize> = (start..(start + batch).min(n))
            .map(|i| src.row(i, None))
            .collect();
        let logits = HostTensor::from_tensor(&model.logits(src.input(&rows, from, device)));
        correct += argmax_rows(&logits)
            .iter()
            .zip(&rows)
            .filter(|(p, &r)| **p == src.label(r))
            .count();
    }
    correct as f64 / n.max(1) as f64
}

fn count_trainable<M: Module>(m: &M) -> usize {
    struct Count(usize);
    impl burn::module::ModuleVisitor for Count {
        fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<D>>) {
            if p.is_require_grad() {
                self.0 += p.shape().num_elements();
            }
        }
    }
    let mut c = Count(0);
    m.visit(&mut c);
    c.0
}

/// The hand-written loop. Returns the trained model and per-epoch figures.
fn fit<M: Net>(
    mut model: M,
    train: &Source,
    test: &Source,
    from: Option<usize>,
    cfg: &TrainConfig,
    device: &Device,
) -> (M, Vec<EpochStats>) {
    let mut optim = match &cfg.optimizer {
        OptimizerConfig::Sgd {
            momentum,
            weight_decay,
            ..
        } => SgdConfig::new()
            .with_momentum(Some(MomentumConfig {
                momentum: *momentum,
                dampening: 0.0,
                nesterov: false,
            }))
            .with_weight_decay(Some(WeightDecayConfig::new(*weight_decay as f32)))
            .init(),
        OptimizerConfig::Adamw { weight_decay, .. } => AdamWConfig::new()
            .with_weight_decay(*weight_decay as f32)
            .init(),
    };
    let n = train.images();
    let bs = cfg.batch_size.max(1);
    let steps_per_epoch = n.div_ceil(bs);
    let total = (steps_per_epoch * cfg.epochs).max(1);
    let base_lr = cfg.optimizer.lr();
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0xe90c);
    let inference = device.clone().without_autodiff();
    let mut stats = Vec::new();
    let mut step = 0usize;
    for epoch in 0..cfg.epochs {
        let bar = progress_bar(
            steps_per_epoch as u64,
            &format!("epoch {}", epoch + 1),
            cfg.progress,
        );
        let start = Instant::now();
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rng);
        let (mut loss_sum, mut correct) = (0.0, 0usize);
        for chunk in order.chunks(bs) {
            let rows: Vec<usize> = chunk
                .iter()
                .map(|&i| train.row(i, Some(&mut rng)))
                .collect();
            let labels: Vec<u32> = rows.iter().map(|&r| train.label(r)).collect();
            let lr = if cfg.cosine {
                0.5 * base_lr * (1.0 + (std::f64::consts::PI * step as f64 / total as f64).cos())
            } else {
                base_lr
            };
            let logits = model.logits(train.input(&rows, from, device));
            let host = HostTensor::from_tensor(&logits.clone().detach());
            correct += argmax_rows(&host)
                .iter()
                .zip(&labels)
                .filter(|(p, l)| p == l)
                .count();
            let loss = cross_entropy(logits, &labels, device);
            loss_sum += loss.clone().into_scalar::<f32>() as f64 * chunk.len() as f64;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(lr, model, grads);
            step += 1;
            bar.inc(1);
        }
        bar.finish_and_clear();
        let seconds = start.elapsed().as_secs_f64();
        let test_accuracy = evaluate(&model.valid(), test, from, 200, &inference);
        let s = EpochStats {
            epoch: epoch + 1,
            loss: loss_sum / n.max(1) as f64,
            train_accuracy: correct as f64 / n.max(1) as f64,
            test_accuracy,
            seconds,
        };
        if cfg.progress {
            eprintln!(
                "epoch {:>3}  loss {:.4}  train acc {:.4}  test acc {:.4}  {:.2}s",
                s.epoch, s.loss, s.train_accuracy, s.test_accuracy, s.seconds
            );
        }
        stats.push(s);
    }
    (model, stats)
}

/// Trains `config.method` on `config.data` and reports test accuracy (and writes the
/// checkpoint when `config.checkpoint` is set). This is what `cryptpeft train` calls.
pub fn train_adapter(config: &TrainConfig) -> Result<TrainReport> {
    let t0 = Instant::now();
    let device = config.device.device()?.autodiff();
    if config.progress && config.device != DeviceChoice::Cpu {
        eprintln!("training on {}", config.device.describe()?);
    }
    let inference = device.clone().without_autodiff();
    if config.epochs == 0 || config.batch_size == 0 {
        return Err(TrainError::Config(
            "epochs and batch_size must be positive".into(),
        ));
    }
    // Backbone: on the training device (for methods that copy its layers), plus a frozen
    // inference copy for features.
    let (vit, vit_id) = match &config.backbone {
        Some(p) => (
            Vit::load(p, config.backbone_spec.as_ref(), &device)?,
            file_sha256(p)?,
        ),
        None => {
            let spec = config.backbone_spec.as_ref().ok_or_else(|| {
                TrainError::Config(
                    "give `backbone` (weights) or `backbone_spec` (to pretrain)".into(),
                )
            })?;
            if config.method != Method::Full {
                return Err(TrainError::Config(
                    "a random backbone (no `backbone` file) only makes sense with method `full`"
                        .into(),
                ));
            }
            (
                Vit::init(spec, config.data.num_classes(), config.seed, &device),
                format!("random-{}", config.seed),
            )
        }
    };
    let layers = vit.spec.layers;
    if let Method::Owc { spec } = &config.method {
        spec.validate(layers)?;
    }
    if let Method::Sft { layers: k } = config.method {
        if k == 0 || k > layers {
            return Err(TrainError::Config(format!(
                "sft layers {k} must be in 1..={layers}"
            )));
        }
    }
    let frozen = vit.valid();
    let pre = Preprocess::new(vit.spec.image_size, vit.spec.channels, &config.data);
    let train_set = config.data.load(Split::Train, config.seed)?;
    let test_set = config.data.load(Split::Test, config.seed)?;
    let classes = config.data.num_classes();
    if let Some(bad) = train_set
        .labels
        .iter()
        .chain(&test_set.labels)
        .find(|&&l| l as usize >= classes)
    {
        return Err(TrainError::Config(format!(
            "label {bad} >= {classes} classes; set `classes`"
        )));
    }
    let dataset = format!(
        "{:?}{}",
        config.data.dataset,
        config
            .data
            .classes
            .as_ref()
            .map(|c| format!("{c:?}"))
            .unwrap_or_default()
    );

    let from = config.method.first_state(layers);
    let use_cache = config.use_cache && from.is_some();
    let mut cache_train = None;
    let mut cache_test = None;
    let (train_feats, test_feats);
    let (train_pix, test_pix);
    let shape = [pre.channels, pre.image_size, pre.image_size];
    let (train_src, test_src) = if use_cache {
        let need = layers - from.expect("state");
        let first = layers - config.cache_scope.unwrap_or(need).max(need).min(layers);
        let describe = |split: &str| format!("{dataset} {split} {:?}", config.data);
        let (d_train, d_test) = (describe("train"), describe("test"));
        let req = |set, describe, views| CacheRequest {
            vit: &frozen,
            vit_id: &vit_id,
            set,
            describe,
            pre: &pre,
            first,
            views,
            seed: config.seed,
            dir: config.cache_dir.as_deref(),
            progress: config.progress,
            storage: Default::default(),
        };
        let (f, info) = req(&train_set, &d_train, config.views).get(&inference)?;
        train_feats = f;
        cache_train = Some(info);
        let (f, info) = req(&test_set, &d_test, 0).get(&inference)?;
        test_feats = f;
        cache_test = Some(info);
        (Source::Cached(&train_feats), Source::Cached(&test_feats))
    } else {
        train_pix = pre.apply_set(&train_set, None);
        test_pix = pre.apply_set(&test_set, None);
        let fr = from.map(|f| (&frozen, f));
        (
            Source::Pixels {
                pixels: &train_pix,
                labels: &train_set.labels,
                shape,
                frozen: fr,
            },
            Source::Pixels {
                pixels: &test_pix,
                labels: &test_set.labels,
                shape,
                frozen: fr,
            },
        )
    };

    let seed = config.seed.wrapping_add(1);
    let mut checkpoint = None;
    let (trainable_params, epochs) = match &config.method {
        Method::Owc { spec } => {
            let (g, b) = final_norm_init(&vit);
            let model = OwcModel::init(spec, &vit.spec, classes, Some((&g, &b)), seed, &device)?;
            let p = count_trainable(&model);
            let (model, stats) = fit(model, &train_src, &test_src, from, config, &device);
            if let Some(path) = &config.checkpoint {
                model.valid().save(path)?;
                checkpoint = Some(path.clone());
            }
            (p, stats)
        }
        Method::LinearProbe => {
            let model = TailModel::new(&vit, 0, classes, seed, &device);
            (
                count_trainable(&model),
                fit(model, &train_src, &test_src, from, config, &device).1,
            )
        }
        Method::Sft { layers: k } => {
            let model = TailModel::new(&vit, *k, classes, seed, &device);
            (
                count_trainable(&model),
                fit(model, &train_src, &test_src, from, config, &device).1,
            )
        }
        Method::Lora { rank } => {
            let model = PeftModel::lora(&vit, *rank, classes, seed, &device);
            (
                count_trainable(&model),
                fit(model, &train_src, &test_src, from, config, &device).1,
            )
        }
        Method::Adaptformer { rank } => {
            let model = PeftModel::adaptformer(&vit, *rank, classes, seed, &device);
            (
                count_trainable(&model),
                fit(model, &train_src, &test_src, from, config, &device).1,
            )
        }
        Method::Full => {
            let model = if config.backbone.is_some() {
                full_finetune_model(&vit, classes, seed, &device)
            } else {
                crate::nn::fresh_copy(&vit, &device)
            };
            let p = count_trainable(&model);
            let (model, stats) = fit(model, &train_src, &test_src, None, config, &device);
            if let Some(path) = &config.checkpoint {
                model.valid().save(path)?;
                checkpoint = Some(path.clone());
            }
            (p, stats)
        }
    };
    let mean_epoch_seconds =
        epochs.iter().map(|e| e.seconds).sum::<f64>() / epochs.len().max(1) as f64;
    Ok(TrainReport {
        method: config.method.label(),
        backbone: vit.spec.name.clone(),
        dataset,
        classes,
        train_images: train_set.len(),
        test_images: test_set.len(),
        trainable_params,
        test_accuracy: epochs.last().map(|e| e.test_accuracy).unwrap_or(0.0),
        epochs,
        mean_epoch_seconds,
        cache_train,
        cache_test,
        checkpoint,
        seconds_total: t0.elapsed().as_secs_f64(),
    })
}

/// The backbone's pretrained final LayerNorm (weight, bias): an OWC model's final norm
/// starts from it (docs/DESIGN.md section 1).
pub fn final_norm_init(vit: &Vit) -> (HostTensor, HostTensor) {
    let ln = vit.ln.ln.as_ref().expect("a ViT ends with a LayerNorm");
    let g = HostTensor::from_tensor(&ln.gamma.val());
    let b = HostTensor::from_tensor(&ln.beta.as_ref().expect("LayerNorm bias").val());
    (g, b)
}

/// Trains an OWC adapter on cached features and scores it on `val` after each epoch
/// (the search's inner loop: no backbone, no data loading). The recipe (epochs, batch,
/// optimizer, schedule, seed, progress) comes from `config`; its data and method are
/// ignored. Returns the trained model for inference and the per-epoch figures, whose
/// `test_accuracy` is the accuracy on `val`.
#[allow(clippy::too_many_arguments)]
pub fn fit_owc(
    spec: &AdapterSpec,
    backbone: &BackboneSpec,
    final_norm: (&HostTensor, &HostTensor),
    classes: usize,
    train: &FeatureSet,
    val: &FeatureSet,
    config: &TrainConfig,
) -> Result<(OwcModel, Vec<EpochStats>)> {
    if config.epochs == 0 || config.batch_size == 0 {
        return Err(TrainError::Config(
            "epochs and batch_size must be positive".into(),
        ));
    }
    let first = backbone.layers - spec.scope.min(backbone.layers);
    if train.first > first || val.first > first {
        return Err(TrainError::Config(format!(
            "the feature cache starts at x_{}, scope {} needs x_{first}",
            train.first.max(val.first),
            spec.scope
        )));
    }
    let device = config.device.device()?.autodiff();
    let seed = config.seed.wrapping_add(1);
    let model = OwcModel::init(spec, backbone, classes, Some(final_norm), seed, &device)?;
    let (model, stats) = fit(
        model,
        &Source::Cached(train),
        &Source::Cached(val),
        Some(first),
        config,
        &device,
    );
    Ok((model.valid(), stats))
}

/// Accuracy of a trained OWC model on cached features (batches of 200).
pub fn owc_accuracy(model: &OwcModel, feats: &FeatureSet) -> Result<f64> {
    let device = model.head.weight.val().device();
    let first = model.first_state();
    if feats.first > first {
        return Err(TrainError::Config(format!(
            "the feature cache starts at x_{}, the model reads x_{first}",
            feats.first
        )));
    }
    Ok(evaluate(
        model,
        &Source::Cached(feats),
        Some(first),
        200,
        &device,
    ))
}
