//! The deployed service on top of the MPC core (`cryptpeft_private_eval`): the dealer,
//! server and client roles over TCP, their limits, TLS with role-bound certificates,
//! the client's setup cache, the loopback harness behind `bench-secure`, and the
//! hostile peers its tests and `load-test` use. The core builds no TLS.

pub mod attack;
pub mod dealer_service;
pub mod keys;
pub mod loopback;
pub mod messages;
pub mod roles;
pub mod security;
pub mod setup_cache;
pub mod tls;
