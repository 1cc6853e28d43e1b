//! Prices a `SecurePlan` (DESIGN.md sections 2 and 3): exact online bytes and rounds
//! (from [`private_eval::comm`], the frames each protocol sends), exact offline bytes
//! (the dealer material's encoding), and time from an event simulation of both parties
//! with per-operation throughputs measured on this machine ([`calibrate()`]).
//!
//! * [`price::cost`]: `SecurePlan` x `NetworkProfile` x [`Constants`] -> [`CostReport`].
//! * [`shape::plan_shape_only`]: the plan of a spec without weights (fast, for search).
//! * [`paper::paper_linear`]: the paper's linear surrogate, as a second model.
//! * [`baselines`]: prices of the SFT / PEFT baselines' plans under MPC.

pub mod baselines;
pub mod calibrate;
pub mod constants;
pub mod paper;
pub mod price;
pub mod shape;

pub use calibrate::{calibrate, calibrate_to};
pub use constants::Constants;
pub use paper::{paper_linear, PaperNetwork};
pub use price::{
    cost, cost_with, format_table, offline, print_table, CostReport, Deployment, StepCost,
};
pub use shape::{plan_shape_only, plan_shape_only_with};
