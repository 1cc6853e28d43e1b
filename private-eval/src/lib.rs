//! Secure two-party evaluation.
