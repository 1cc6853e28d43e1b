//! Prices a SecurePlan.
