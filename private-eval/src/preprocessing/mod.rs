//! The dealer's offline phase: what each step of a plan needs from it (material), and
//! the dealer that generates it, shared between the two parties by seeds.

pub mod dealer;
pub mod material;
