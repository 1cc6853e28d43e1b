//! Prices a `SecurePlan` (docs/DESIGN.md sections 2 and 3): exact online bytes and rounds
//! (from [`cryptpeft_private_eval::online::comm`], the frames each protocol sends), exact offline bytes
//! (the dealer material's encoding), and time from an event simulation of both parties
//! with per-operation throughputs measured on this machine ([`calibrate()`]).
//!
//! * [`price::cost`]: `SecurePlan` x `NetworkProfile` x [`Constants`] -> [`CostReport`].
//! * [`shape::plan_shape_only`]: the plan of a spec without weights (fast, for search).
//! * [`paper::paper_linear`]: the paper's linear surrogate, as a second model.
//! * [`baselines`]: prices of the SFT / PEFT baselines' plans under MPC, and CrypTen's
//!   figures for them.

pub mod baselines;
pub mod calibrate;
pub mod constants;
pub mod paper;
pub mod price;
pub mod shape;

pub use baselines::{crypten_reference, CryptenReference};
pub use calibrate::{calibrate, calibrate_to};
pub use constants::Constants;
pub use paper::{paper_linear, PaperNetwork};
pub use price::{
    cost, cost_with, depth_note, format_table, offline, print_table, CostReport, Deployment,
    StepCost,
};
pub use shape::{plan_shape_only, plan_shape_only_with};

/// Revision of the pricing itself: bump it whenever the same plan and constants would
/// be priced differently. Changes of the plans are covered by the protocol version.
pub const PRICING: u32 = 1;

/// What priced a figure: a study records it beside its constants, so that stored
/// prices are never mixed with prices from another release.
pub fn version() -> String {
    format!(
        "pricing {PRICING}, protocol {}",
        cryptpeft_private_eval::plan::PROTOCOL
    )
}
