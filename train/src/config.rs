//! What one training run is told: the method, the optimizer, the device and the recipe
//! (deserializable from YAML), and the figures each epoch reports.

use std::path::PathBuf;

use burn::prelude::*;
use cryptpeft_types::{AdapterSpec, BackboneSpec};
use serde::{Deserialize, Serialize};

use crate::data::DataConfig;
use crate::error::{Result, TrainError};

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
    /// Augment every training batch afresh (random resized crop + flip, drawn from the
    /// seed): needs `use_cache: false`, since a cache holds fixed views.
    #[serde(default)]
    pub augment: bool,
    /// Where to write the checkpoint: OWC adapter format for `owc`, torchvision layout
    /// for `full`. Other methods write nothing.
    #[serde(default)]
    pub checkpoint: Option<PathBuf>,
    #[serde(default = "d_true")]
    pub progress: bool,
    #[serde(default)]
    pub device: DeviceChoice,
    /// Threads that step a group's members side by side (0: one per core). Each member
    /// computes alone, so the count changes the time, not the numbers.
    #[serde(default)]
    pub threads: usize,
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
            augment: false,
            checkpoint: None,
            progress: true,
            device: DeviceChoice::Cpu,
            threads: 0,
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
