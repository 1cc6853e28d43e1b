//! Accuracy: the backbone runs once per space into the feature cache (train part,
//! validation part carved from the training split, test split), shared by every
//! candidate and every worker; each candidate trains on the cache alone. Where no cache
//! fits, or augmentation asks for fresh images, candidates train in groups instead
//! (population training): each batch of images runs through the backbone once for the
//! whole group.

use std::path::{Path, PathBuf};

use cryptpeft_train::backbone::Vit;
use cryptpeft_train::cache::{file_sha256, CacheRequest, FeatureSet};
use cryptpeft_train::data::{ImageSet, Preprocess, Split};
use cryptpeft_train::fit::{panic_message, Source};
use cryptpeft_train::owc::OwcModel;
use cryptpeft_train::st::HostTensor;
use cryptpeft_train::{cpu, fit_owc, owc_accuracy, Method, TrainConfig};
use cryptpeft_types::{AdapterSpec, BackboneSpec};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fault;
use crate::mode::{self, Mode, Workload};
use crate::space::SpaceFile;

/// What candidates of a space train on, and what training needs besides.
pub struct Features {
    pub backbone: BackboneSpec,
    pub final_norm: (HostTensor, HostTensor),
    pub classes: usize,
    pub data: Data,
}

/// The hidden states of the train part, the validation part and the test split.
pub enum Data {
    Cached {
        train: FeatureSet,
        val: FeatureSet,
        test: FeatureSet,
    },
    /// Population training: images, run through the frozen backbone batch by batch for
    /// a group of `group` candidates at a time.
    Streamed {
        vit: Box<Vit>,
        pre: Preprocess,
        train: ImageSet,
        val: ImageSet,
        test: ImageSet,
        group: usize,
    },
}

impl Features {
    /// Part `k` as a source: 0 train, 1 validation, 2 test.
    fn part(&self, k: usize) -> Source<'_> {
        match &self.data {
            Data::Cached { train, val, test } => Source::Cached([train, val, test][k]),
            Data::Streamed {
                vit,
                pre,
                train,
                val,
                test,
                ..
            } => Source::Images {
                set: [train, val, test][k],
                pre,
                frozen: Some(vit),
            },
        }
    }

    pub fn train(&self) -> Source<'_> {
        self.part(0)
    }
    pub fn val(&self) -> Source<'_> {
        self.part(1)
    }
    pub fn test(&self) -> Source<'_> {
        self.part(2)
    }

    /// Candidates trained together: 1 on a cache.
    pub fn group(&self) -> usize {
        match &self.data {
            Data::Cached { .. } => 1,
            Data::Streamed { group, .. } => *group,
        }
    }
}

/// Splits `set` into (train, validation) with a seeded shuffle.
fn carve(set: &ImageSet, fraction: f64, seed: u64) -> (ImageSet, ImageSet) {
    let mut idx: Vec<usize> = (0..set.len()).collect();
    idx.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x7a11d));
    let n_val = validation_count(set.len(), fraction);
    let (val, train) = idx.split_at(n_val);
    let (mut train, mut val) = (train.to_vec(), val.to_vec());
    train.sort_unstable();
    val.sort_unstable();
    (set.select(&train), set.select(&val))
}

/// Images of a training split of `len >= 2` carved out for validation: at least one,
/// and at least one left to train on.
pub fn validation_count(len: usize, fraction: f64) -> usize {
    ((len as f64 * fraction).round() as usize).clamp(1, len - 1)
}

/// The space's backbone (frozen, on the space's device).
pub fn load_backbone(space: &SpaceFile) -> Result<Vit> {
    let path = space.backbone_path();
    Vit::load(&path, None, &space.device.device()?)
        .map_err(|e| Error::Other(format!("backbone: {e}")))
}

/// Builds (or loads) the feature cache under `dir`, holding a file lock so that workers
/// starting together compute it once.
pub fn features(space: &SpaceFile, vit: Vit, dir: &Path, progress: bool) -> Result<Features> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let lock_path = dir.join("lock");
    let lock = std::fs::File::create(&lock_path).map_err(|e| Error::io(&lock_path, e))?;
    lock.lock().map_err(|e| Error::io(&lock_path, e))?;
    let vit_id = file_sha256(&space.backbone_path())?;
    let spec = vit.spec.clone();
    let max_scope = *space.genes.scope.iter().max().expect("checked non-empty");
    let first = spec.layers - max_scope.min(spec.layers);
    let pre = Preprocess::new(spec.image_size, spec.channels, &space.data);
    let all = space.data.load(Split::Train, space.seed)?;
    let test = space.data.load(Split::Test, space.seed)?;
    let classes = space.data.num_classes();
    if let Some(bad) = all
        .labels
        .iter()
        .chain(&test.labels)
        .find(|&&l| l as usize >= classes)
    {
        return Err(Error::Other(format!(
            "data: label {bad} >= {classes} classes; set `data.classes`"
        )));
    }
    if all.len() < 2 {
        return Err(Error::Other("data: fewer than 2 training images".into()));
    }
    let (train, val) = carve(&all, space.validation, space.seed);
    drop(all);
    let workload = Workload {
        spec: &spec,
        first,
        train: train.len(),
        val: val.len(),
        test: test.len(),
        pixel_bytes: 4 * (train.images.len() + val.images.len() + test.images.len()),
    };
    let (mode, why) = mode::choose(
        space,
        &workload,
        cryptpeft_types::memory::available_bytes(),
        mode::free_disk_bytes(dir),
    )?;
    if progress {
        eprintln!("{why}");
    }
    let final_norm = cryptpeft_train::final_norm_init(&vit);
    let storage = match mode {
        Mode::Cache(storage) => storage,
        Mode::Population(group) => {
            return Ok(Features {
                final_norm,
                backbone: spec,
                classes,
                data: Data::Streamed {
                    vit: Box::new(vit),
                    pre,
                    train,
                    val,
                    test,
                    group,
                },
            })
        }
    };
    let describe = |part: &str| {
        format!(
            "search {part} {:?} validation {}",
            space.data, space.validation
        )
    };
    let device = space.device.device()?;
    let get = |set: &ImageSet, part: &str| -> Result<FeatureSet> {
        let d = describe(part);
        let req = CacheRequest {
            vit: &vit,
            vit_id: &vit_id,
            set,
            describe: &d,
            pre: &pre,
            first,
            views: 0,
            seed: space.seed,
            dir: Some(dir),
            progress,
            storage,
        };
        let (f, _) = req.get(&device)?;
        Ok(f)
    };
    let train = get(&train, "train")?;
    fault::point("cache");
    let val = get(&val, "validation")?;
    let test = get(&test, "test")?;
    drop(lock);
    Ok(Features {
        final_norm,
        backbone: spec,
        classes,
        data: Data::Cached { train, val, test },
    })
}

/// The trainer's recipe for one candidate at `epochs`.
pub fn recipe(space: &SpaceFile, spec: &AdapterSpec, epochs: usize) -> TrainConfig {
    let mut c = TrainConfig::new(None, space.data.clone(), Method::Owc { spec: spec.clone() });
    c.epochs = epochs;
    c.batch_size = space.fidelity.batch_size;
    c.optimizer = space.fidelity.optimizer.clone();
    c.seed = space.train_seed();
    c.device = space.device;
    c.progress = false;
    c
}

/// One epoch of a trial's training, as the dashboard draws it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Epoch {
    pub epoch: usize,
    pub loss: f64,
    pub train_accuracy: f64,
    pub val_accuracy: f64,
}

/// What training one candidate gave: its validation accuracy and curve.
pub type Trained = Result<(f64, Vec<Epoch>)>;

/// Trains candidates `specs` together at `epochs` (each as it would train alone) and
/// writes each one's checkpoint to its path in `checkpoints` (atomically). A candidate
/// that fails, fails alone.
pub fn train(
    feats: &Features,
    space: &SpaceFile,
    specs: &[AdapterSpec],
    epochs: usize,
    checkpoints: &[PathBuf],
    snapshots: &[PathBuf],
    progress: bool,
) -> Vec<Trained> {
    let (g, b) = (&feats.final_norm.0, &feats.final_norm.1);
    let mut recipe = recipe(space, &specs[0], epochs);
    recipe.augment = space.fidelity.augment;
    // A group's epochs take long enough to deserve a bar with an estimated time.
    recipe.progress = progress && specs.len() > 1;
    let labels = || {
        specs
            .iter()
            .map(|s| s.label())
            .collect::<Vec<_>>()
            .join(", ")
    };
    // A panic outside one member's step (the backbone's, say) fails the whole group,
    // not the study.
    let fit = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        fit_owc(
            specs,
            &feats.backbone,
            (g, b),
            feats.classes,
            &feats.train(),
            &feats.val(),
            &recipe,
            snapshots,
        )
    }));
    let trained = match fit {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            return specs
                .iter()
                .map(|_| Err(Error::Other(e.to_string())))
                .collect()
        }
        Err(p) => {
            let why = panic_message(p);
            let e = format!("{}: training panicked: {why}", labels());
            return specs.iter().map(|_| Err(Error::Other(e.clone()))).collect();
        }
    };
    trained
        .into_iter()
        .zip(specs.iter().zip(checkpoints))
        .map(|(t, (spec, checkpoint))| {
            let (model, stats) =
                t.map_err(|why| Error::Other(format!("{}: {why}", spec.label())))?;
            let acc = stats.last().map_or(0.0, |s| s.test_accuracy);
            if !acc.is_finite() {
                return Err(Error::Other(format!(
                    "{}: accuracy is not finite",
                    spec.label()
                )));
            }
            model.save(checkpoint)?;
            // The trainer's `test_accuracy` is its held-out set's: here the validation part.
            let curve = stats
                .iter()
                .map(|s| Epoch {
                    epoch: s.epoch,
                    loss: s.loss,
                    train_accuracy: s.train_accuracy,
                    val_accuracy: s.test_accuracy,
                })
                .collect();
            Ok((acc, curve))
        })
        .collect()
}

/// Test accuracy of an exported checkpoint (measured once, for front members).
pub fn test_accuracy(feats: &Features, checkpoint: &Path) -> Result<f64> {
    let model = OwcModel::load(checkpoint, &cpu())?;
    Ok(owc_accuracy(&model, &feats.test())?)
}

/// Where trial `number`'s checkpoint lives.
pub fn trial_checkpoint(run_dir: &Path, number: u64) -> PathBuf {
    run_dir.join("trials").join(format!("{number}.safetensors"))
}

/// Where a trial in training keeps its per-epoch snapshots (this machine's run directory:
/// a worker that takes the trial over here resumes them; elsewhere it starts afresh).
pub fn trial_snapshots(run_dir: &Path, number: u64) -> PathBuf {
    run_dir.join("trials").join(format!("{number}.epochs"))
}
