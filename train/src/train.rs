//! The training loop and the library entry point [`train_adapter`].
//!
//! Hand-written loop (`backward` -> `GradientsParams::from_grads` -> `optim.step`), the
//! paper's recipe by default: SGD (lr 0.01, momentum 0.9, weight decay 5e-4), cosine
//! schedule, batch 50. Frozen-backbone methods train on the feature cache.

use std::path::PathBuf;
use std::time::Instant;

use burn::module::Module;
use burn::prelude::*;
use cryptpeft_types::{AdapterSpec, BackboneSpec};
use serde::Serialize;

use crate::backbone::Vit;
use crate::baselines::{full_finetune_model, PeftModel, TailModel};
use crate::cache::{file_sha256, CacheInfo, CacheRequest};
use crate::config::{DeviceChoice, EpochStats, Method, TrainConfig};
use crate::data::{Preprocess, Split};
use crate::error::{Result, TrainError};
use crate::fit::{evaluate, fit, fit_group, Member, Source, Trained};
use crate::owc::OwcModel;
use crate::st::HostTensor;

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
    if use_cache && config.augment {
        return Err(TrainError::Config(
            "`augment: true` draws new views every batch, which a feature cache cannot hold: \
             set `use_cache: false` (or cache fixed views with `views: N`)"
                .into(),
        ));
    }
    let mut cache_train = None;
    let mut cache_test = None;
    let (train_feats, test_feats);
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
        let frozen = from.map(|_| &frozen);
        let images = |set| Source::Images {
            set,
            pre: &pre,
            frozen,
        };
        (images(&train_set), images(&test_set))
    };

    let seed = config.seed.wrapping_add(1);
    let mut checkpoint = None;
    let (trainable_params, epochs) = match &config.method {
        Method::Owc { spec } => {
            let (g, b) = final_norm_init(&vit);
            let model = OwcModel::init(spec, &vit.spec, classes, Some((&g, &b)), seed, &device)?;
            let p = count_trainable(&model);
            let (model, stats) = fit(model, &train_src, &test_src, from, config, &device)?;
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
                fit(model, &train_src, &test_src, from, config, &device)?.1,
            )
        }
        Method::Sft { layers: k } => {
            let model = TailModel::new(&vit, *k, classes, seed, &device);
            (
                count_trainable(&model),
                fit(model, &train_src, &test_src, from, config, &device)?.1,
            )
        }
        Method::Lora { rank } => {
            let model = PeftModel::lora(&vit, *rank, classes, seed, &device);
            (
                count_trainable(&model),
                fit(model, &train_src, &test_src, from, config, &device)?.1,
            )
        }
        Method::Adaptformer { rank } => {
            let model = PeftModel::adaptformer(&vit, *rank, classes, seed, &device);
            (
                count_trainable(&model),
                fit(model, &train_src, &test_src, from, config, &device)?.1,
            )
        }
        Method::Full => {
            let model = if config.backbone.is_some() {
                full_finetune_model(&vit, classes, seed, &device)
            } else {
                crate::nn::fresh_copy(&vit, &device)
            };
            let p = count_trainable(&model);
            let (model, stats) = fit(model, &train_src, &test_src, None, config, &device)?;
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

/// Trains OWC adapters together on the same batches and scores each on `val` after
/// every epoch (the search's inner loop). Each gets what it would get trained alone (same
/// recipe, seed and batches); with image sources the frozen backbone runs once per batch
/// for the whole group. The recipe (epochs, batch, optimizer, schedule, seed,
/// augmentation, progress) comes from `config`; its data and method are ignored. Each
/// member's `test_accuracy` is its accuracy on `val`. With `snapshots` (one folder per
/// adapter, or none), each saves its state per epoch and a new call resumes from it.
#[allow(clippy::too_many_arguments)]
pub fn fit_owc(
    specs: &[AdapterSpec],
    backbone: &BackboneSpec,
    final_norm: (&HostTensor, &HostTensor),
    classes: usize,
    train: &Source,
    val: &Source,
    config: &TrainConfig,
    snapshots: &[PathBuf],
) -> Result<Vec<Trained<OwcModel>>> {
    if !snapshots.is_empty() && snapshots.len() != specs.len() {
        return Err(TrainError::Config(format!(
            "{} snapshot folders for {} adapters",
            snapshots.len(),
            specs.len()
        )));
    }
    if config.epochs == 0 || config.batch_size == 0 {
        return Err(TrainError::Config(
            "epochs and batch_size must be positive".into(),
        ));
    }
    if config.augment && matches!(train, Source::Cached(_)) {
        return Err(TrainError::Config(
            "augmentation needs images, not a feature cache".into(),
        ));
    }
    let device = config.device.device()?.autodiff();
    let seed = config.seed.wrapping_add(1);
    let members = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let first = backbone.layers - spec.scope.min(backbone.layers);
            for src in [train, val] {
                reads(src, first, &format!("scope {}", spec.scope))?;
            }
            let model = OwcModel::init(spec, backbone, classes, Some(final_norm), seed, &device)?;
            Ok(Member {
                model,
                from: Some(first),
                snapshot: snapshots.get(i).cloned(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(fit_group(members, train, val, config, &device)
        .into_iter()
        .map(|t| t.map(|(model, stats)| (model.valid(), stats)))
        .collect())
}

/// Refuses a cache that starts after hidden state `first`.
fn reads(src: &Source, first: usize, who: &str) -> Result<()> {
    match src {
        Source::Cached(f) if f.first > first => Err(TrainError::Config(format!(
            "the feature cache starts at x_{}, {who} needs x_{first}",
            f.first
        ))),
        _ => Ok(()),
    }
}

/// Accuracy of a trained OWC model on a source of hidden states (batches of 200).
pub fn owc_accuracy(model: &OwcModel, src: &Source) -> Result<f64> {
    let device = model.head.weight.val().device();
    let first = model.first_state();
    reads(src, first, "the model")?;
    Ok(evaluate(&[(model, Some(first))], src, 200, 1, &device)[0])
}
