//! How candidates get the backbone's hidden states: a feature cache in memory, one on
//! disk, or none (population training: a group of candidates trains on each batch of
//! images as the backbone computes it). Chosen from the space, the memory and disk
//! available and the device, or forced by `cache.store`; printed with the backbone
//! passes it costs.

use std::path::Path;

use cryptpeft_train::cache::Storage;
use cryptpeft_train::DeviceChoice;
use cryptpeft_types::BackboneSpec;

use crate::error::{Error, Result};
use crate::space::{CacheStore, SpaceFile};

/// Images in one evaluation batch of the trainer (its largest batch).
const EVAL_BATCH: usize = 200;

/// How candidates get their hidden states.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    Cache(Storage),
    /// Population training in groups of this many candidates.
    Population(usize),
}

/// What a space's training reads.
pub struct Workload<'a> {
    pub spec: &'a BackboneSpec,
    /// The first hidden state any candidate reads.
    pub first: usize,
    pub train: usize,
    pub val: usize,
    pub test: usize,
    /// Bytes of the loaded images (train, validation and test).
    pub pixel_bytes: usize,
}

impl Workload<'_> {
    /// Bytes of one image's cached hidden states at `bytes` per value.
    fn states_bytes(&self, states: usize, bytes: usize) -> f64 {
        (states * self.spec.tokens() * self.spec.hidden_dim * bytes) as f64
    }

    /// Bytes of the cache of every image.
    pub fn cache_bytes(&self, bytes: usize) -> f64 {
        let images = self.train + self.val + self.test;
        images as f64 * self.states_bytes(self.spec.layers + 1 - self.first, bytes)
    }

    /// Bytes population training holds: the images, and one evaluation batch of every
    /// hidden state in flight (on the backbone's device, on the host and on the
    /// adapters' device), with one layer's attention scores.
    pub fn population_bytes(&self) -> f64 {
        let s = self.spec;
        let batch = 3.0 * EVAL_BATCH as f64 * self.states_bytes(s.layers + 1, 4);
        let scores = 2.0 * (EVAL_BATCH * s.heads * s.tokens() * s.tokens() * 4) as f64;
        self.pixel_bytes as f64 + batch + scores
    }
}

fn gb(b: f64) -> String {
    format!("{:.1} GB", b / 1e9)
}

fn known(b: Option<f64>) -> String {
    b.map_or("unknown".into(), gb)
}

/// The mode for `space`'s workload given `memory` and free `disk` bytes (`None`:
/// unknown, taken to fit), and why, with the backbone passes it costs. A cache fits in
/// 80% of the memory (or 90% of the free disk); what fits nowhere `cache.store` allows
/// is refused up front, naming the settings that change it.
pub fn choose(
    space: &SpaceFile,
    w: &Workload,
    memory: Option<f64>,
    disk: Option<f64>,
) -> Result<(Mode, String)> {
    let cache = &space.cache;
    let need = w.cache_bytes(cache.precision.bytes());
    let memory = cache.memory_gb.map(|g| g * 1e9).or(memory);
    let in_memory = memory.is_none_or(|m| need <= 0.8 * m);
    let on_disk = disk.is_none_or(|d| need <= 0.9 * d);
    let population = w.population_bytes();
    let streams = memory.is_none_or(|m| population <= 0.8 * m);
    let cpu = space.device == DeviceChoice::Cpu;
    let images = w.train + w.val + w.test;
    let what = format!(
        "{} ({images} images x {} hidden states of {} x {}, {:?})",
        gb(need),
        w.spec.layers + 1 - w.first,
        w.spec.tokens(),
        w.spec.hidden_dim,
        cache.precision
    );
    let refuse = |problem: String| Err(Error::Other(problem));
    let mode = match cache.store {
        CacheStore::Auto if space.fidelity.augment && streams => None,
        CacheStore::Auto if space.fidelity.augment => {
            return refuse(format!(
                "augmentation trains without a cache, on {} of images and batches in flight, \
                 more than 80% of {} of memory; raise `cache.memory_gb` or lower \
                 data.max_train / data.max_test",
                gb(population),
                known(memory)
            ))
        }
        CacheStore::Memory if in_memory => Some(false),
        CacheStore::Disk if on_disk => Some(true),
        CacheStore::None if streams => None,
        CacheStore::Auto if in_memory => Some(false),
        // On a GPU the backbone recomputes a batch faster than a disk pages it in.
        CacheStore::Auto if on_disk && cpu => Some(true),
        CacheStore::Auto if streams => None,
        CacheStore::None => {
            return refuse(format!(
                "training without a cache holds {} of images and batches in flight, more \
                 than 80% of {} of memory; raise `cache.memory_gb` or lower data.max_train / \
                 data.max_test",
                gb(population),
                known(memory)
            ))
        }
        _ => {
            return refuse(format!(
                "the feature cache needs {what}: {} of memory and {} of free disk do not hold \
                 it where `cache.store` allows; set `cache.store: disk`, `cache.store: none` \
                 (population training) or `cache.precision: f16`, raise `cache.memory_gb`, or \
                 lower data.max_train / data.max_test or the largest scope",
                known(memory),
                known(disk)
            ))
        }
    };
    let passes = format!("the backbone runs once over {images} images");
    Ok(match mode {
        Some(mapped) => {
            let where_ = match mapped {
                false => format!("feature cache in memory: {what}, memory {}", known(memory)),
                true => format!(
                    "feature cache on disk, memory-mapped: {what}, memory {}, free disk {}",
                    known(memory),
                    known(disk)
                ),
            };
            let storage = Storage {
                precision: cache.precision,
                mapped,
            };
            (Mode::Cache(storage), format!("{where_}; {passes}"))
        }
        None => {
            let group = cache.group.unwrap_or(space.population);
            let epochs = *space.fidelity.rungs().iter().max().expect("a rung");
            let per_epoch = (w.train + w.val) as f64 / group as f64;
            let why = format!(
                "population training, groups of {group} ({} of memory for images and \
                 batches in flight; a cache would take {what}): every epoch of a group runs \
                 the backbone over its {} training and {} validation images, {per_epoch:.0} \
                 image passes per candidate and epoch, at most {:.0} per candidate at {epochs} \
                 epochs (trained alone without a cache, {})",
                gb(population),
                w.train,
                w.val,
                per_epoch * epochs as f64,
                (w.train + w.val) * epochs
            );
            (Mode::Population(group), why)
        }
    })
}

/// Free bytes of the file system holding `dir`.
pub fn free_disk_bytes(dir: &Path) -> Option<f64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and a zeroed struct for the kernel to fill.
    let r = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
    (r == 0).then_some(st.f_bavail as f64 * st.f_frsize as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryptpeft_train::states::Precision::{self, F16, F32};
    use CacheStore::{Auto, Disk, Memory, None as NoCache};

    fn space(store: CacheStore, precision: Precision, device: DeviceChoice) -> SpaceFile {
        let mut s = SpaceFile::parse(crate::space::DEFAULT_SPACE, "default").unwrap();
        (s.cache.store, s.cache.precision, s.device) = (store, precision, device);
        s
    }

    /// ViT-B/16 reading 7 hidden states of 197 x 768 of 10,000 CIFAR images: 42.4 GB
    /// in f32; population training holds 5.6 GB.
    fn b16(spec: &BackboneSpec) -> Workload<'_> {
        Workload {
            spec,
            first: 6,
            train: 8000,
            val: 1000,
            test: 1000,
            pixel_bytes: 10_000 * 3 * 32 * 32 * 4,
        }
    }

    #[test]
    fn the_mode_goes_where_it_fits_and_is_refused_where_nothing_fits() {
        let spec = BackboneSpec::vit_b16();
        let w = b16(&spec);
        let choose = |store, precision, device, mem: f64, disk: f64| {
            choose(
                &space(store, precision, device),
                &w,
                Some(mem * 1e9),
                Some(disk * 1e9),
            )
        };
        let cpu = DeviceChoice::Cpu;
        let mapped = |m: Mode| match m {
            Mode::Cache(s) => Some(s.mapped),
            Mode::Population(_) => None,
        };
        let (m, why) = choose(Auto, F32, cpu, 64.0, 100.0).unwrap();
        assert_eq!(mapped(m), Some(false), "{why}");
        assert!(
            why.contains("42.4 GB") && why.contains("once over 10000 images"),
            "{why}"
        );
        assert_eq!(
            mapped(choose(Auto, F32, cpu, 16.0, 100.0).unwrap().0),
            Some(true)
        );
        assert_eq!(
            mapped(choose(Auto, F16, cpu, 32.0, 100.0).unwrap().0),
            Some(false)
        );
        // Neither memory nor disk holds the cache: population training, with its passes.
        let (m, why) = choose(Auto, F32, cpu, 16.0, 10.0).unwrap();
        assert_eq!(m, Mode::Population(12), "{why}");
        assert!(
            why.contains("750 image passes per candidate and epoch"),
            "{why}"
        );
        // On a GPU the backbone recomputes rather than pages in from disk.
        let (m, _) = choose(Auto, F32, DeviceChoice::Wgpu, 16.0, 100.0).unwrap();
        assert_eq!(m, Mode::Population(12));
        for (store, mem, disk, name) in [
            (Memory, 16.0, 100.0, "cache.store: disk"),
            (Disk, 64.0, 10.0, "free disk"),
            (Auto, 4.0, 4.0, "cache.store: none"),
        ] {
            let e = choose(store, F32, cpu, mem, disk).unwrap_err().to_string();
            assert!(
                e.contains("feature cache needs 42.4 GB") && e.contains(name),
                "{e}"
            );
        }
        // Population training over the memory cap is refused, naming the setting.
        let e = choose(NoCache, F32, cpu, 4.0, 100.0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("5.6 GB") && e.contains("cache.memory_gb"), "{e}");
        // memory_gb overrides what the machine has.
        let mut s = space(Auto, F32, cpu);
        s.cache.memory_gb = Some(16.0);
        let (m, _) = super::choose(&s, &w, Some(64e9), Some(100e9)).unwrap();
        assert_eq!(mapped(m), Some(true));
    }
}
