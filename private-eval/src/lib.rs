//! Secure two-party evaluation of OWC adapters with a dealer.

pub mod dcf;
pub mod fixed;
pub mod matmul;
pub mod prg;
pub mod transport;
