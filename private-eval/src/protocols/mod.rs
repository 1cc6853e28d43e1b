//! Two-party building blocks used by the online executor: distributed comparison
//! functions (the keys behind comparison, ReLU and row max) and exact truncation.

pub mod dcf;
pub mod trunc;
