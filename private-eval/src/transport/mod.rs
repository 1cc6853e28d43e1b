//! Framed two-party transport.
