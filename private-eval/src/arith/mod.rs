//! The arithmetic everything else stands on: the ring `Z_2^64` and its fixed-point
//! encoding, the seeded PRG the parties and the dealer expand shares from, and plaintext
//! matrices with their ring products.

pub mod fixed;
pub mod matmul;
pub mod prg;
pub mod real;
pub mod ring;
pub mod tensor;
