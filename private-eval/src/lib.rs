//! Secure two-party evaluation of OWC adapters with a dealer, in layers: [`arith`]
//! (ring, fixed point, PRG, matrices) and [`transport`] at the bottom; the plan IR and
//! its lowering from a model in [`plan`]; the two-party [`protocols`]; the dealer's
//! [`preprocessing`]; the [`online`] executor on top. The model, its f64 reference and
//! the baselines sit beside them.

pub mod arith;
pub mod baseline;
pub mod bench;
pub mod gates;
pub mod hidden;
pub mod model;
pub mod online;
pub mod party;
pub mod plan;
pub mod preprocessing;
pub mod protocols;
pub mod reference;
pub mod transport;
