//! The check of a plan a peer sends, before anything sizes or runs it: the plan's own
//! limits here, each step's by its gate.

use super::{gate, wires_exist};
use crate::plan::{SecurePlan, MAX_ELEMENTS};

impl SecurePlan {
    /// Checks the protocol parameters a peer's plan carries before anything sizes or
    /// runs it: the fixed-point width, each wire's and weight's size, each opening, and
    /// each step's wires and parameters (its gate's `check`).
    pub fn check(&self) -> Result<(), String> {
        if !(1..=30).contains(&self.frac_bits) {
            return Err(format!("{} fractional bits (1 to 30)", self.frac_bits));
        }
        let sizes = self.wires.iter().map(|w| (w.rows, w.cols, w.name.as_str()));
        let weights = self.weights.iter().map(|w| (w.rows, w.cols, "a weight"));
        for (rows, cols, name) in sizes.chain(weights) {
            if rows.checked_mul(cols).is_none_or(|n| n > MAX_ELEMENTS) {
                return Err(format!("{name} of {rows} x {cols} (at most 2^36 values)"));
            }
        }
        for o in &self.openings {
            wires_exist(self, &[o.wire])?;
            if o.wide && !self.wide_allowed() {
                return Err(format!(
                    "a wide opening at {} fractional bits",
                    self.frac_bits
                ));
            }
        }
        self.steps.iter().try_for_each(|s| gate(s).check(self))
    }
}
