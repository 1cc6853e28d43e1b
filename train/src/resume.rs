//! Per-epoch snapshots of a model in training, so that a killed run resumes at its last
//! finished epoch instead of its first.
//!
//! A snapshot holds what the next epoch depends on: the weights (burnpack, with their
//! parameter ids), the optimizer's state (keyed by those ids), the epochs so far, and the
//! positions of the shuffle and augmentation streams. Resumed, a model trains on exactly
//! the batches it would have met, so the result equals an uninterrupted run bit for bit.
//!
//! Layout: `DIR/epoch-K/{model.bpk, optim.bpk, state.json}`, written under a temporary
//! name and renamed, so a kill while writing leaves the previous epoch's snapshot.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{EpochStats, TrainConfig};
use crate::error::{Result, TrainError};

/// Where the shuffle and augmentation streams stand (ChaCha word positions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Streams {
    pub order: u128,
    pub augment: Option<u128>,
}

/// A snapshot's plain part.
#[derive(Serialize, Deserialize)]
struct State {
    /// What the snapshot was taken of: a different recipe, data size or model is not
    /// resumed.
    key: String,
    epochs: usize,
    stats: Vec<EpochStats>,
    /// `Streams`, as decimal strings (JSON numbers stop short of 128 bits).
    order: String,
    augment: Option<String>,
}

/// What a model resumes with.
pub struct Resumed<M> {
    pub model: M,
    pub optim: ModuleOptimizer,
    pub stats: Vec<EpochStats>,
    pub streams: Streams,
}

/// The identity of a training: its recipe (progress and threads aside), the training
/// images and the model's size. A snapshot of another training is not resumed.
pub fn key<M: Module>(cfg: &TrainConfig, images: usize, model: &M) -> String {
    let mut cfg = cfg.clone();
    (cfg.progress, cfg.threads) = (false, 0);
    let text = format!("{cfg:?}|{images}|{}", model.num_params());
    format!("{:x}", Sha256::digest(text.as_bytes()))
}

fn epoch_dir(dir: &Path, epochs: usize) -> PathBuf {
    dir.join(format!("epoch-{epochs}"))
}

/// Writes the snapshot after `stats.len()` epochs and removes the older ones.
pub fn save<M: Module>(
    dir: &Path,
    key: &str,
    model: &M,
    optim: &ModuleOptimizer,
    stats: &[EpochStats],
    streams: Streams,
) -> Result<()> {
    let epochs = stats.len();
    let tmp = dir.join(format!("epoch-{epochs}.tmp-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    let model_path = tmp.join("model.bpk");
    model
        .clone()
        .save_file(&model_path)
        .map_err(|e| TrainError::format(&model_path, e.to_string()))?;
    let optim_path = tmp.join("optim.bpk");
    optim
        .save(&optim_path)
        .map_err(|e| TrainError::format(&optim_path, e.to_string()))?;
    let state = State {
        key: key.to_string(),
        epochs,
        stats: stats.to_vec(),
        order: streams.order.to_string(),
        augment: streams.augment.map(|a| a.to_string()),
    };
    let state_path = tmp.join("state.json");
    let text = serde_json::to_string(&state).expect("a snapshot's state serializes");
    std::fs::write(&state_path, text).map_err(|e| TrainError::io(&state_path, e))?;
    let done = epoch_dir(dir, epochs);
    if let Err(e) = std::fs::rename(&tmp, &done) {
        // Another process wrote this epoch first (a worker that only looked dead).
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(TrainError::io(&done, e));
    }
    for older in 0..epochs {
        let _ = std::fs::remove_dir_all(epoch_dir(dir, older));
    }
    Ok(())
}

/// The latest snapshot under `dir` loaded into `model` and `optim`: `Ok(None)` when there
/// is none, an error when there is one that cannot be resumed (the caller then trains
/// from the start).
pub fn load<M: Module>(
    dir: &Path,
    key: &str,
    model: &M,
    optim: ModuleOptimizer,
) -> Result<Option<Resumed<M>>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(None);
    };
    let latest = entries
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_prefix("epoch-")?
                .parse()
                .ok()
        })
        .max();
    let Some(epochs) = latest else {
        return Ok(None);
    };
    let at = epoch_dir(dir, epochs);
    let state_path = at.join("state.json");
    let text = std::fs::read_to_string(&state_path).map_err(|e| TrainError::io(&state_path, e))?;
    let state: State =
        serde_json::from_str(&text).map_err(|e| TrainError::format(&state_path, e.to_string()))?;
    if state.key != key {
        return Err(TrainError::format(
            &state_path,
            "taken of another recipe, data or model",
        ));
    }
    if state.epochs != epochs || state.stats.len() != epochs {
        return Err(TrainError::format(
            &state_path,
            format!("says {} epochs in the folder of {epochs}", state.epochs),
        ));
    }
    let number = |s: &str| {
        s.parse::<u128>()
            .map_err(|e| TrainError::format(&state_path, format!("stream position {s:?}: {e}")))
    };
    let streams = Streams {
        order: number(&state.order)?,
        augment: state.augment.as_deref().map(number).transpose()?,
    };
    let model_path = at.join("model.bpk");
    let model = model
        .clone()
        .try_load_file(&model_path)
        .map_err(|e| TrainError::format(&model_path, e.to_string()))?;
    let optim_path = at.join("optim.bpk");
    let optim = optim
        .load(&optim_path)
        .map_err(|e| TrainError::format(&optim_path, e.to_string()))?;
    Ok(Some(Resumed {
        model,
        optim,
        stats: state.stats,
        streams,
    }))
}

#[cfg(test)]
mod tests {
    use burn::optim::AdamWConfig;

    use super::*;
    use crate::nn::{Init, Linear};

    fn linear(seed: u64) -> Linear {
        Linear::init(3, 2, true, &mut Init::new(seed), &crate::cpu())
    }

    fn weights(l: &Linear) -> Vec<f32> {
        crate::st::HostTensor::from_tensor(&l.weight.val()).data
    }

    #[test]
    fn a_snapshot_resumes_only_its_own_training() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("7.epochs");
        assert!(load(&dir, "k", &linear(2), AdamWConfig::new().init())
            .unwrap()
            .is_none());
        let stats = |n: usize| -> Vec<EpochStats> {
            (1..=n)
                .map(|epoch| EpochStats {
                    epoch,
                    loss: 1.0 / epoch as f64,
                    train_accuracy: 0.5,
                    test_accuracy: 0.25,
                    seconds: 0.1,
                })
                .collect()
        };
        let streams = Streams {
            order: (1 << 70) + 3,
            augment: Some(5),
        };
        let optim = AdamWConfig::new().init();
        save(&dir, "k", &linear(1), &optim, &stats(1), streams).unwrap();
        save(&dir, "k", &linear(1), &optim, &stats(2), streams).unwrap();
        assert!(!dir.join("epoch-1").exists(), "the older epoch stays");
        // Loaded into another initialisation: the snapshot's weights, epochs, streams.
        let r = load(&dir, "k", &linear(2), AdamWConfig::new().init())
            .unwrap()
            .unwrap();
        assert_eq!(weights(&r.model), weights(&linear(1)));
        assert_ne!(weights(&linear(2)), weights(&linear(1)));
        assert_eq!(r.stats.len(), 2);
        assert_eq!(r.streams, streams);
        // Another recipe's snapshot, or a damaged one, is refused with its path.
        let e = load(&dir, "other", &linear(2), AdamWConfig::new().init())
            .err()
            .unwrap();
        assert!(e.to_string().contains("another recipe"), "{e}");
        std::fs::write(dir.join("epoch-2/state.json"), "{").unwrap();
        let e = load(&dir, "k", &linear(2), AdamWConfig::new().init())
            .err()
            .unwrap();
        assert!(e.to_string().contains("epoch-2/state.json"), "{e}");
    }
}
