//! Secure two-party evaluation of OWC adapters with a dealer.

pub mod dcf;
pub mod fixed;
pub mod lower;
pub mod matmul;
pub mod model;
pub mod plain;
pub mod plan;
pub mod prg;
pub mod reference;
pub mod tensor;
pub mod transport;
