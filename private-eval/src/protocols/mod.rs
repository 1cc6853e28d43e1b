//! Two-party building blocks used by the online executor: distributed comparison
//! functions (the keys behind comparison, ReLU and row max), exact truncation, and
//! products whose operands are truncated in their own opening.

pub mod dcf;
pub mod fused;
pub mod trunc;
