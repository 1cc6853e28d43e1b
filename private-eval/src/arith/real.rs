//! The real functions secure steps approximate, defined once for the plan's splines
//! and the f64 reference.

/// Exact GELU, `x * Phi(x)`, as PyTorch's default.
pub fn gelu(x: f64) -> f64 {
    0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))
}
