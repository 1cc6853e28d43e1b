//! The online phase: the executor that runs a plan on shares, one party's half of a
//! session, both halves in one process, and the bytes and rounds each step puts on the
//! wire (which the cost model prices).

pub mod comm;
pub mod exec;
pub mod half;
pub mod local;
