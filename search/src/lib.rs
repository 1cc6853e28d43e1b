//! CryptPEFT's search (docs/DESIGN.md section 5): give it a space, get back the adapters worth
//! deploying for each network, as tables, pictures and checkpoints `cryptpeft serve` loads.
//!
//! - [`space`]: the space file; [`genes`]: its valid configurations.
//! - [`strategy`]: EHVI over a Gaussian process of accuracy (the default), NSGA-II, the
//!   paper's REINFORCE controller and its generalisation, random, grid.
//! - [`study`]: the opened study, its trials in SQLite or PostgreSQL (kill-safe, shared
//!   by workers on one machine or several); [`run`]: a worker.
//! - [`eval`]: the feature cache and training; [`mode`]: cache in memory, on disk, or
//!   population training; [`plan`]: each mode's needs before
//!   a run; [`price`]: the cost model's prices.
//! - [`pareto`], [`report`], [`plot`]: fronts, tables, pictures; [`verify`]: measured runs;
//!   [`dashboard`]: the study as a live web page.
//! - [`replay`]: strategies replayed on a tabulated space (NAS-Bench style), scored by
//!   [`metrics`] against its true front.

/// Kill points for the crash tests (the trainer's: its epochs have one).
pub use cryptpeft_train::fault;

pub mod cli;
pub mod dashboard;
pub mod draws;
pub mod error;
pub mod eval;
pub mod genes;
pub mod metrics;
pub mod mode;
pub mod noise;
pub mod pareto;
pub mod plan;
pub mod plot;
pub mod price;
pub mod replay;
pub mod report;
pub mod run;
mod say;
pub mod space;
pub mod strategy;
pub mod study;
pub mod verify;

pub use error::{Error, Result};
