//! Accuracy: the backbone runs once per space into the feature cache (train part,
//! validation part carved from the training split, test split), shared by every
//! candidate and every worker; each candidate trains on the cache alone.

use std::path::{Path, PathBuf};

use cryptpeft_train::backbone::Vit;
use cryptpeft_train::cache::{file_sha256, CacheRequest, FeatureSet, Storage};
use cryptpeft_train::data::{ImageSet, Preprocess, Split};
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
use crate::space::{CacheConfig, CacheStore, SpaceFile};

/// The cached features of a space and what training needs besides.
pub struct Features {
    pub backbone: BackboneSpec,
    pub final_norm: (HostTensor, HostTensor),
    pub classes: usize,
    pub train: FeatureSet,
    pub val: FeatureSet,
    pub test: FeatureSet,
}

/// Splits `set` into (train, validation) with a seeded shuffle.
fn carve(set: &ImageSet, fraction: f64, seed: u64) -> (ImageSet, ImageSet) {
    let mut idx: Vec<usize> = (0..set.len()).collect();
    idx.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x7a11d));
    let n_val = ((set.len() as f64 * fraction).round() as usize).clamp(1, set.len() - 1);
    let (val, train) = idx.split_at(n_val);
    let (mut train, mut val) = (train.to_vec(), val.to_vec());
    train.sort_unstable();
    val.sort_unstable();
    (set.select(&train), set.select(&val))
}

/// The space's backbone (frozen, on the space's device).
pub fn load_backbone(space: &SpaceFile) -> Result<Vit> {
    let path = space.backbone_path();
    Vit::load(&path, None, &space.device.device()?)
        .map_err(|e| Error::Other(format!("backbone: {e}")))
}

/// Builds (or loads) the feature cache under `dir`, holding a file lock so that workers
/// starting together compute it once.
pub fn features(space: &SpaceFile, vit: &Vit, dir: &Path, progress: bool) -> Result<Features> {
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
    let (storage, why) = choose_cache(
        &space.cache,
        &spec,
        first,
        all.len() + test.len(),
        cryptpeft_types::memory::available_bytes(),
        free_disk_bytes(dir),
    )?;
    if progress {
        eprintln!("{why}");
    }
    let (train, val) = carve(&all, space.validation, space.seed);
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
            vit,
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
        final_norm: cryptpeft_train::final_norm_init(vit),
        backbone: spec,
        classes,
        train,
        val,
        test,
    })
}

/// Where the cache of `images` images goes, and why: in memory when it fits in 80% of
/// `memory` bytes, else on disk when it fits in 90% of `disk` free bytes (`None`:
/// unknown, taken to fit). A cache that fits nowhere allowed is refused up front,
/// naming the settings that change it.
pub fn choose_cache(
    cache: &CacheConfig,
    spec: &BackboneSpec,
    first: usize,
    images: usize,
    memory: Option<f64>,
    disk: Option<f64>,
) -> Result<(Storage, String)> {
    let states = spec.layers + 1 - first;
    let need = (images * states * spec.tokens() * spec.hidden_dim * cache.precision.bytes()) as f64;
    let memory = cache.memory_gb.map(|g| g * 1e9).or(memory);
    let in_memory = memory.is_none_or(|m| need <= 0.8 * m);
    let on_disk = disk.is_none_or(|d| need <= 0.9 * d);
    let gb = |b: Option<f64>| b.map_or("unknown".into(), |b| format!("{:.1} GB", b / 1e9));
    let what = format!(
        "{:.1} GB ({images} images x {states} hidden states of {} x {}, {:?})",
        need / 1e9,
        spec.tokens(),
        spec.hidden_dim,
        cache.precision
    );
    let mapped = match cache.store {
        CacheStore::Memory if in_memory => false,
        CacheStore::Disk if on_disk => true,
        CacheStore::Auto if in_memory => false,
        CacheStore::Auto if on_disk => true,
        _ => {
            return Err(Error::Other(format!(
                "the feature cache needs {what}: {} of memory and {} of free disk do not hold \
                 it where `cache.store` allows; set `cache.store: disk` or `cache.precision: \
                 f16`, raise `cache.memory_gb`, or lower data.max_train / data.max_test or \
                 the largest scope",
                gb(memory),
                gb(disk)
            )))
        }
    };
    let why = match mapped {
        false => format!("feature cache in memory: {what}, memory {}", gb(memory)),
        true => format!(
            "feature cache on disk, memory-mapped: {what}, memory {}, free disk {}",
            gb(memory),
            gb(disk)
        ),
    };
    Ok((
        Storage {
            precision: cache.precision,
            mapped,
        },
        why,
    ))
}

/// Free bytes of the file system holding `dir`.
fn free_disk_bytes(dir: &Path) -> Option<f64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and a zeroed struct for the kernel to fill.
    let r = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
    (r == 0).then_some(st.f_bavail as f64 * st.f_frsize as f64)
}

/// The trainer's recipe for one candidate at `epochs`.
pub fn recipe(space: &SpaceFile, spec: &AdapterSpec, epochs: usize) -> TrainConfig {
    let mut c = TrainConfig::new(None, space.data.clone(), Method::Owc { spec: spec.clone() });
    c.epochs = epochs;
    c.batch_size = space.fidelity.batch_size;
    c.optimizer = space.fidelity.optimizer.clone();
    c.seed = space.seed;
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

/// Trains one candidate; writes its checkpoint to `checkpoint` (atomically) and returns
/// its validation accuracy and training curve.
pub fn train(
    feats: &Features,
    space: &SpaceFile,
    spec: &AdapterSpec,
    epochs: usize,
    checkpoint: &Path,
) -> Result<(f64, Vec<Epoch>)> {
    let (g, b) = (&feats.final_norm.0, &feats.final_norm.1);
    let recipe = recipe(space, spec, epochs);
    // A panic inside the trainer fails this trial, not the study.
    let fit = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        fit_owc(
            spec,
            &feats.backbone,
            (g, b),
            feats.classes,
            &feats.train,
            &feats.val,
            &recipe,
        )
    }))
    .map_err(|p| {
        let why = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into());
        Error::Other(format!("{}: training panicked: {why}", spec.label()))
    })?;
    let (model, stats) = fit?;
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
}

/// Test accuracy of an exported checkpoint (measured once, for front members).
pub fn test_accuracy(feats: &Features, checkpoint: &Path) -> Result<f64> {
    let model = OwcModel::load(checkpoint, &cpu())?;
    Ok(owc_accuracy(&model, &feats.test)?)
}

/// Where trial `number`'s checkpoint lives.
pub fn trial_checkpoint(run_dir: &Path, number: u64) -> PathBuf {
    run_dir.join("trials").join(format!("{number}.safetensors"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_goes_where_it_fits_and_is_refused_where_it_cannot() {
        let b16 = BackboneSpec::vit_b16();
        // 1,000 images x 7 states of 197 x 768 in f32: 4.2 GB; in f16: 2.1 GB.
        let choose = |store, precision, memory_gb, mem: f64, disk: f64| {
            let c = CacheConfig {
                store,
                precision,
                memory_gb,
            };
            choose_cache(&c, &b16, 6, 1000, Some(mem * 1e9), Some(disk * 1e9))
        };
        use cryptpeft_train::states::Precision::{F16, F32};
        use CacheStore::{Auto, Disk, Memory};
        let (s, why) = choose(Auto, F32, None, 16.0, 100.0).unwrap();
        assert!(!s.mapped && why.contains("in memory"), "{why}");
        let (s, why) = choose(Auto, F32, None, 4.0, 100.0).unwrap();
        assert!(s.mapped && why.contains("on disk"), "{why}");
        // memory_gb overrides what the machine has.
        assert!(choose(Auto, F32, Some(2.0), 16.0, 100.0).unwrap().0.mapped);
        assert!(!choose(Auto, F16, None, 4.0, 100.0).unwrap().0.mapped);
        for (store, mem, disk, name) in [
            (Memory, 4.0, 100.0, "cache.store: disk"),
            (Disk, 16.0, 4.0, "free disk"),
            (Auto, 4.0, 4.0, "cache.precision: f16"),
        ] {
            let e = choose(store, F32, None, mem, disk).unwrap_err().to_string();
            assert!(
                e.contains("feature cache needs 4.2 GB") && e.contains(name),
                "{e}"
            );
        }
        choose_cache(
            &CacheConfig::default(),
            &BackboneSpec::vit_mini(),
            0,
            2000,
            None,
            None,
        )
        .unwrap();
    }
}
