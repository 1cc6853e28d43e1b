//! Analytic prices of baselines (filled below).
