//! Secure two-party evaluation of OWC adapters with a dealer, in layers, each importing
//! only those before it: [`arith`] (ring, fixed point, PRG, matrices) and [`transport`]
//! at the bottom; the plan IR and its lowering from a model in [`plan`]; the two-party
//! building blocks in [`protocols`]; one module per kind of plan step in [`gates`],
//! owning its whole life; the dealer's [`preprocessing`] and the [`online`] executor on
//! top, both walking a plan through the gates. The model, its f64 reference and the
//! baselines sit beside them.

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
