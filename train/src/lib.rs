//! CryptPEFT trainer: the accuracy half of the toolkit.
//!
//! - [`backbone::Vit`]: torchvision-layout ViT loaded from safetensors (any size).
//! - [`owc::OwcModel`]: the one-way-communication adapter model (docs/DESIGN.md section 1) and
//!   its checkpoint format (`CHECKPOINT.md`).
//! - [`baselines`]: linear probe, SFT, LoRA, AdaptFormer, full fine-tuning.
//! - [`data`]: CIFAR-10/100 binary, IDX (Fashion-MNIST), digits CSV; resizing, normalization.
//! - [`cache`]: the on-disk feature cache of backbone hidden states.
//! - [`fit`]: the training loop, for one model or a group sharing every batch.
//! - [`resume`]: per-epoch snapshots, so a killed training resumes at its last epoch.
//! - [`train::train_adapter`]: the library entry point a CLI calls with a [`TrainConfig`].

pub mod backbone;
pub mod baselines;
pub mod cache;
pub mod config;
pub mod data;
pub mod error;
pub mod fault;
pub mod fit;
pub mod nn;
pub mod owc;
pub mod resume;
pub mod st;
pub mod states;
pub mod train;

pub use burn;
pub use config::{DeviceChoice, EpochStats, Method, OptimizerConfig, TrainConfig};
pub use error::{Result, TrainError};
pub use train::{final_norm_init, fit_owc, owc_accuracy, train_adapter, TrainReport};

/// The default CPU device (ndarray backend, as docs/DESIGN.md section 4 asks; burn 0.22 marks it
/// deprecated in favour of `flex`).
#[allow(deprecated)]
pub fn cpu() -> burn::prelude::Device {
    burn::prelude::Device::ndarray()
}
