//! What `gp.rs` needs of the search's `genes` module.
pub const GENES: [&str; 8] = ["heads","rank","scope","blocks","attention","norm","activation","scale"];
pub type Genome = [u16; 8];
pub struct Space { pub arity: [usize; 8] }
impl Space { pub fn arity(&self, k: usize) -> usize { self.arity[k] } }
