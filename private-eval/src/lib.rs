//! Secure two-party evaluation of OWC adapters with a dealer.

pub mod baseline;
pub mod bench;
pub mod comm;
pub mod dcf;
pub mod dealer;
pub mod exec;
pub mod fixed;
pub mod half;
pub mod hidden;
pub mod layout;
pub mod local;
pub mod lower;
pub mod material;
pub mod matmul;
pub mod model;
pub mod plain;
pub mod plan;
pub mod prg;
pub mod reference;
pub mod ring;
pub mod shapes;
pub mod tensor;
pub mod transport;
pub mod trunc;
