//! Per-operation throughput constants of one machine, measured by
//! [`calibrate`](crate::calibrate::calibrate) and stored as YAML.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// The constants this repository ships, measured on its development machine (see the
/// file's header for the command and commit).
pub const DEFAULT_YAML: &str = include_str!("../constants.yaml");

#[derive(Debug, thiserror::Error)]
pub enum ConstantsError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing constants YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("constant `{0}` must be positive and finite")]
    Invalid(&'static str),
}

/// Throughputs of the operations the executor runs. "Full" rates use the whole rayon
/// pool (`threads` workers); "single" rates one thread. Ring matmul GOP/s counts
/// `2 m k n` operations, like `bench_matmul`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Constants {
    /// Free text: CPU, date, command.
    pub machine: String,
    /// Worker threads of the rayon pool the rates were measured with.
    pub threads: usize,
    /// Ring (`Z_2^64`) matmul throughput on large shapes, whole pool.
    pub matmul_gops: f64,
    /// Fixed cost of one `matmul` call (packing, task spawn), seconds.
    pub matmul_call_s: f64,
    /// The GEMM micro-tile (`m` and `n` are padded to it): 8 x 16 with AVX-512.
    pub matmul_tile: [usize; 2],
    /// Elements of `B` packed per second (every call packs `k x n`), whole pool.
    pub matmul_pack_per_s: f64,
    /// The comparisons' DCF (two-element payload): tree levels walked per second, one
    /// thread (a key's points share the levels of their common prefixes).
    pub dcf_levels_per_s: f64,
    /// The same for batches over the whole pool, beside a cost per point (sorting,
    /// the leaf, the output): seconds are `levels / dcf_pool_levels_per_s + points /
    /// dcf_pool_points_per_s`.
    pub dcf_pool_levels_per_s: f64,
    pub dcf_pool_points_per_s: f64,
    /// The comparisons' DCF key generation: tree levels per second, whole pool
    /// (offline).
    pub dcf_keygen_levels_per_s: f64,
    /// ReLU of a large batch, both parties at once on this machine (each with the
    /// pool) over a local pair: seconds per value are `relu_value_s + levels *
    /// relu_level_s` (masking, opening, select and the DCF's per-value bookkeeping,
    /// then one hash per tree level).
    pub relu_value_s: f64,
    pub relu_level_s: f64,
    /// ReLU key generation: tree levels (both parties' children hashed) per second,
    /// whole pool (offline).
    pub relu_keygen_levels_per_s: f64,
    /// Element-wise ring operations (add, sub, copy, truncate) per second, one thread.
    pub elementwise_per_s: f64,
    /// Bytes per second of `u64` <-> bytes conversion and frame assembly, one thread.
    pub serialize_bytes_per_s: f64,
    /// Bytes per second through a local socket pair with profile `none` (writer thread
    /// plus reader), as seen by the receiver.
    pub socket_bytes_per_s: f64,
    /// Latency a frame adds beyond its shaping (queue, thread wake-ups), seconds.
    pub frame_latency_s: f64,
    /// Fixed cost per plan step on each party (trace, dispatch), seconds.
    pub step_overhead_s: f64,
    /// Fixed-key AES blocks per second, one thread (dealer PRG).
    pub prg_words_per_s: f64,
}

/// Constants stored by releases that priced DCF work per evaluation (studies keep
/// theirs): every evaluation then walked a 63-level tree, so the rates convert to tree
/// levels exactly; the cost per point was not separated (taken as free).
fn upgrade(v: &mut serde_yaml::Value) {
    let Some(m) = v.as_mapping_mut() else {
        return;
    };
    if m.contains_key("dcf_levels_per_s") {
        return;
    }
    let mut rename = |old: &str, new: &str| {
        if let Some(x) = m.remove(old).and_then(|x| x.as_f64()) {
            m.insert(new.into(), (x * 63.0).into());
        }
    };
    rename("dcf_evals_per_s", "dcf_levels_per_s");
    rename("dcf_pool_evals_per_s", "dcf_pool_levels_per_s");
    rename("dcf_keygen_per_s", "dcf_keygen_levels_per_s");
    if m.contains_key("dcf_levels_per_s") {
        m.insert("dcf_pool_points_per_s".into(), 1e12.into());
    }
}

impl Default for Constants {
    fn default() -> Self {
        Self::shipped()
    }
}

impl Constants {
    /// The shipped constants (`cost-model/constants.yaml`, embedded at build time).
    pub fn shipped() -> Self {
        Self::from_yaml(DEFAULT_YAML).expect("the shipped constants.yaml parses")
    }

    pub fn from_yaml(text: &str) -> Result<Self, ConstantsError> {
        let mut v: serde_yaml::Value = serde_yaml::from_str(text)?;
        upgrade(&mut v);
        let c: Constants = serde_yaml::from_value(v)?;
        c.validate()?;
        Ok(c)
    }

    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConstantsError> {
        let p = path.as_ref();
        let text = std::fs::read_to_string(p).map_err(|source| ConstantsError::Io {
            path: p.display().to_string(),
            source,
        })?;
        Self::from_yaml(&text)
    }

    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).expect("constants serialize")
    }

    /// Writes YAML with a comment header (e.g. the command and commit).
    pub fn save(&self, path: impl AsRef<Path>, header: &str) -> Result<(), ConstantsError> {
        let p = path.as_ref();
        let mut text = String::new();
        for line in header.lines() {
            text.push_str("# ");
            text.push_str(line);
            text.push('\n');
        }
        text.push_str(&self.to_yaml());
        std::fs::write(p, text).map_err(|source| ConstantsError::Io {
            path: p.display().to_string(),
            source,
        })
    }

    fn validate(&self) -> Result<(), ConstantsError> {
        let pos = [
            ("matmul_gops", self.matmul_gops),
            ("matmul_pack_per_s", self.matmul_pack_per_s),
            ("dcf_levels_per_s", self.dcf_levels_per_s),
            ("relu_level_s", self.relu_level_s),
            ("relu_keygen_levels_per_s", self.relu_keygen_levels_per_s),
            ("dcf_pool_levels_per_s", self.dcf_pool_levels_per_s),
            ("dcf_pool_points_per_s", self.dcf_pool_points_per_s),
            ("dcf_keygen_levels_per_s", self.dcf_keygen_levels_per_s),
            ("elementwise_per_s", self.elementwise_per_s),
            ("serialize_bytes_per_s", self.serialize_bytes_per_s),
            ("socket_bytes_per_s", self.socket_bytes_per_s),
            ("prg_words_per_s", self.prg_words_per_s),
        ];
        for (name, v) in pos {
            if !(v.is_finite() && v > 0.0) {
                return Err(ConstantsError::Invalid(name));
            }
        }
        let nonneg = [
            ("matmul_call_s", self.matmul_call_s),
            ("relu_value_s", self.relu_value_s),
            ("frame_latency_s", self.frame_latency_s),
            ("step_overhead_s", self.step_overhead_s),
        ];
        for (name, v) in nonneg {
            if !(v.is_finite() && v >= 0.0) {
                return Err(ConstantsError::Invalid(name));
            }
        }
        if self.threads == 0 || self.matmul_tile.contains(&0) {
            return Err(ConstantsError::Invalid("threads"));
        }
        Ok(())
    }
}
