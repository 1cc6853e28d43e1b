//! Secure two-party evaluation of OWC adapters with a dealer.

pub mod baseline;
pub mod bench;
pub mod comm;
pub mod dcf;
pub mod dealer;
pub mod dealer_service;
pub mod exec;
pub mod fixed;
pub mod hidden;
pub mod keys;
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
pub mod roles;
pub mod security;
pub mod setup_cache;
pub mod tensor;
pub mod transport;
pub mod trunc;
