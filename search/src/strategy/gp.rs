//! A Gaussian process over genomes: the surrogate of accuracy. Ordinal genes (heads,
//! rank, scope, blocks, scale) enter by their choice's position scaled to [0, 1] with a
//! squared-exponential kernel; categorical genes (attention, norm, activation) by an
//! exponential overlap kernel (`exp(-theta)` when the choices differ). One length or
//! decay per gene (ARD), a noise ratio and a constant mean are fitted by maximising the
//! marginal likelihood over a small grid, coordinate by coordinate; the signal variance
//! has its closed-form maximum. Collapsed trainings are left out of the fit
//! ([`Gp::fit`]). Dozens of points: a dense Cholesky factor is exact and takes
//! microseconds.

use crate::genes::{Genome, Space, GENES};

/// Genes whose choices are unordered.
const CATEGORICAL: [&str; 3] = ["attention", "norm", "activation"];
/// Length scales tried for an ordinal gene (positions span [0, 1]).
const LENGTHS: [f64; 6] = [0.2, 0.35, 0.6, 1.0, 2.0, 5.0];
/// Decays tried for a categorical gene.
const DECAYS: [f64; 6] = [0.05, 0.2, 0.5, 1.0, 2.0, 4.0];
/// Noise variance over signal variance.
const NOISE: [f64; 5] = [1e-4, 1e-3, 1e-2, 0.05, 0.2];
/// Coordinate sweeps over the hyperparameters.
const SWEEPS: usize = 2;
/// How far below its leave-one-out prediction a training counts as collapsed.
const COLLAPSE_Z: f64 = 5.0;

/// How one gene enters the kernel.
#[derive(Clone, Copy, Debug)]
enum Input {
    /// Position of the choice, scaled to [0, 1].
    Ordinal {
        gene: usize,
        last: f64,
    },
    Categorical {
        gene: usize,
    },
}

/// The encoding of a space: its genes with more than one choice.
#[derive(Clone, Debug)]
pub struct Encoding {
    inputs: Vec<Input>,
}

impl Encoding {
    pub fn new(space: &Space) -> Self {
        let inputs = (0..GENES.len())
            .filter(|&k| space.arity(k) > 1)
            .map(|k| {
                if CATEGORICAL.contains(&GENES[k]) {
                    Input::Categorical { gene: k }
                } else {
                    Input::Ordinal {
                        gene: k,
                        last: (space.arity(k) - 1) as f64,
                    }
                }
            })
            .collect();
        Self { inputs }
    }

    /// Genes with more than one choice.
    pub fn active(&self) -> usize {
        self.inputs.len()
    }

    /// Correlation of `a` and `b` under per-input parameters `theta`.
    fn corr(&self, theta: &[f64], a: &Genome, b: &Genome) -> f64 {
        let mut log = 0.0;
        for (input, &t) in self.inputs.iter().zip(theta) {
            log -= match *input {
                Input::Ordinal { gene, last } => {
                    let d = (a[gene] as f64 - b[gene] as f64) / last / t;
                    0.5 * d * d
                }
                Input::Categorical { gene } => t * (a[gene] != b[gene]) as u8 as f64,
            };
        }
        log.exp()
    }

    /// The values each input's parameter is chosen among, and where the fit starts.
    fn grid(&self, k: usize) -> (&'static [f64], f64) {
        match self.inputs[k] {
            Input::Ordinal { .. } => (&LENGTHS, 0.6),
            Input::Categorical { .. } => (&DECAYS, 1.0),
        }
    }
}

/// A fitted process.
pub struct Gp {
    enc: Encoding,
    x: Vec<Genome>,
    theta: Vec<f64>,
    /// Lower Cholesky factor of `R + noise I`, row-major.
    chol: Vec<f64>,
    /// `(R + noise I)^-1 y`, `y` standardised.
    alpha: Vec<f64>,
    mean: f64,
    scale: f64,
    /// Signal variance of the standardised outputs (its maximum-likelihood value).
    signal: f64,
    /// Noise variance over signal variance.
    noise: f64,
}

/// Tukey's far-out fence below `y`: the lower quartile less three interquartile
/// ranges (quartiles by nearest rank).
fn far_out_below(y: &[f64]) -> f64 {
    let mut v = y.to_vec();
    v.sort_by(f64::total_cmp);
    let q = |p: f64| v[((p * (v.len() - 1) as f64).round()) as usize];
    let (q1, q3) = (q(0.25), q(0.75));
    q1 - 3.0 * (q3 - q1)
}

/// Lower Cholesky factor of the `n x n` matrix `a` (row-major), `None` if not positive.
fn cholesky(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i * n + k] * l[j * n + k]).sum();
            let v = a[i * n + j] - s;
            if i == j {
                if v <= 0.0 {
                    return None;
                }
                l[i * n + i] = v.sqrt();
            } else {
                l[i * n + j] = v / l[j * n + j];
            }
        }
    }
    Some(l)
}

/// Solves `L z = b` for lower-triangular `L`.
fn forward(l: &[f64], n: usize, b: &[f64]) -> Vec<f64> {
    let mut z = vec![0.0; n];
    for i in 0..n {
        let s: f64 = (0..i).map(|k| l[i * n + k] * z[k]).sum();
        z[i] = (b[i] - s) / l[i * n + i];
    }
    z
}

/// Solves `L^T z = b` for lower-triangular `L`.
fn backward(l: &[f64], n: usize, b: &[f64]) -> Vec<f64> {
    let mut z = vec![0.0; n];
    for i in (0..n).rev() {
        let s: f64 = (i + 1..n).map(|k| l[k * n + i] * z[k]).sum();
        z[i] = (b[i] - s) / l[i * n + i];
    }
    z
}

/// Factor, weights, signal variance and negative log marginal likelihood (up to a
/// constant) of standardised outputs `y` under `theta` and `noise`.
type Fitted = (Vec<f64>, Vec<f64>, f64, f64);

fn evaluate(enc: &Encoding, x: &[Genome], y: &[f64], theta: &[f64], noise: f64) -> Option<Fitted> {
    let n = x.len();
    let mut r = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..i {
            let c = enc.corr(theta, &x[i], &x[j]);
            r[i * n + j] = c;
            r[j * n + i] = c;
        }
        r[i * n + i] = 1.0 + noise;
    }
    let l = cholesky(&r, n)?;
    let alpha = backward(&l, n, &forward(&l, n, y));
    let signal = (y.iter().zip(&alpha).map(|(a, b)| a * b).sum::<f64>() / n as f64).max(1e-12);
    let logdet: f64 = (0..n).map(|i| l[i * n + i].ln()).sum();
    let nll = 0.5 * n as f64 * signal.ln() + logdet;
    Some((l, alpha, signal, nll))
}

impl Gp {
    /// Fits the process to accuracies `y` of genomes `x` (at least one), leaving out
    /// collapsed trainings. The least accurate point, if far below the others (Tukey's
    /// far-out fence: three interquartile ranges under the lower quartile), is dropped
    /// when it lies more than [`COLLAPSE_Z`] standard deviations below what the process
    /// fitted without it predicts (fitted without it, so that it cannot mask itself by
    /// inflating the noise); then the next, for at most a tenth of the points. A
    /// diverged training (accuracy at chance) says nothing about its neighbours, yet
    /// one such point inflates the fitted variance everywhere. A training better than
    /// predicted is kept, being evidence, and so is a poor region whose trainings agree.
    pub fn fit(enc: &Encoding, x: &[Genome], y: &[f64]) -> Self {
        let fence = far_out_below(y);
        let (mut x, mut y) = (x.to_vec(), y.to_vec());
        let mut gp = Self::fit_all(enc, &x, &y);
        for _ in 0..y.len() / 10 {
            let Some(low) = (0..y.len())
                .filter(|&i| y[i] < fence)
                .min_by(|&a, &b| y[a].total_cmp(&y[b]))
            else {
                break;
            };
            let (mut xo, mut yo) = (x.clone(), y.clone());
            let (g, a) = (xo.remove(low), yo.remove(low));
            let without = Self::fit_all(enc, &xo, &yo);
            let (mean, sd) = without.predict(&g);
            if a - mean >= -COLLAPSE_Z * sd.hypot(without.noise_sd()) {
                break;
            }
            (x, y, gp) = (xo, yo, without);
        }
        gp
    }

    fn fit_all(enc: &Encoding, x: &[Genome], y: &[f64]) -> Self {
        let n = y.len() as f64;
        let mean = y.iter().sum::<f64>() / n;
        let var = y.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        let scale = var.sqrt().max(1e-6);
        let ys: Vec<f64> = y.iter().map(|v| (v - mean) / scale).collect();
        let mut theta: Vec<f64> = (0..enc.active()).map(|k| enc.grid(k).1).collect();
        let mut noise = 1e-2;
        let nll = |theta: &[f64], noise: f64| {
            evaluate(enc, x, &ys, theta, noise).map_or(f64::INFINITY, |f| f.3)
        };
        let mut best = nll(&theta, noise);
        for _ in 0..SWEEPS {
            for k in 0..enc.active() {
                for &v in enc.grid(k).0 {
                    let mut t = theta.clone();
                    t[k] = v;
                    let f = nll(&t, noise);
                    if f < best {
                        (best, theta) = (f, t);
                    }
                }
            }
            for &v in &NOISE {
                let f = nll(&theta, v);
                if f < best {
                    (best, noise) = (f, v);
                }
            }
        }
        // R is a correlation matrix (positive semi-definite), so R + I always factors.
        let ((chol, alpha, signal, _), noise) = evaluate(enc, x, &ys, &theta, noise)
            .map(|f| (f, noise))
            .or_else(|| evaluate(enc, x, &ys, &theta, 1.0).map(|f| (f, 1.0)))
            .expect("R + I is positive definite");
        Self {
            enc: enc.clone(),
            x: x.to_vec(),
            theta,
            chol,
            alpha,
            mean,
            scale,
            signal,
            noise,
        }
    }

    /// Standard deviation of one training about the process's mean: the spread a
    /// measured accuracy has around the noise-free value [`Gp::predict`] gives.
    pub fn noise_sd(&self) -> f64 {
        self.scale * (self.signal * self.noise).sqrt()
    }

    /// Posterior mean and standard deviation of accuracy at `g` (noise-free).
    pub fn predict(&self, g: &Genome) -> (f64, f64) {
        let n = self.x.len();
        let r: Vec<f64> = self
            .x
            .iter()
            .map(|xi| self.enc.corr(&self.theta, g, xi))
            .collect();
        let mu: f64 = r.iter().zip(&self.alpha).map(|(a, b)| a * b).sum();
        let v = forward(&self.chol, n, &r);
        let var = self.signal * (1.0 - v.iter().map(|z| z * z).sum::<f64>()).max(1e-12);
        (self.mean + self.scale * mu, self.scale * var.sqrt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::tests::space;
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// Smooth in rank and scope, a step for the norm.
    fn truth(g: &Genome) -> f64 {
        0.5 + 0.1 * g[1] as f64 + 0.05 * g[2] as f64 + 0.08 * g[5] as f64
    }

    #[test]
    fn it_interpolates_and_is_less_sure_away_from_data() {
        let space = space();
        let enc = Encoding::new(&space);
        assert_eq!(enc.active(), 4);
        let all = space.valid();
        let x = third(&space);
        let y: Vec<f64> = x.iter().map(truth).collect();
        let gp = Gp::fit(&enc, &x, &y);
        // At the data: close, and sure.
        let (m, s) = gp.predict(&x[0]);
        assert!((m - y[0]).abs() < 0.02 && s < 0.03, "{m} {s}");
        // Elsewhere: the smooth trend is learned.
        let err: f64 = all
            .iter()
            .map(|g| (gp.predict(g).0 - truth(g)).abs())
            .sum::<f64>()
            / all.len() as f64;
        assert!(err < 0.03, "mean error {err}");
        // Less sure away from the data than at it.
        let mean_sd = |gs: &mut dyn Iterator<Item = &Genome>| {
            let sds: Vec<f64> = gs.map(|g| gp.predict(g).1).collect();
            sds.iter().sum::<f64>() / sds.len() as f64
        };
        let at = mean_sd(&mut x.iter());
        let away = mean_sd(&mut all.iter().filter(|g| !x.contains(g)));
        assert!(away > 1.5 * at, "sd {away} away, {at} at the data");
    }

    /// A third of the space, drawn at random (a stride would alias the genes).
    fn third(space: &Space) -> Vec<Genome> {
        let mut x: Vec<Genome> = space.valid().to_vec();
        x.shuffle(&mut ChaCha8Rng::seed_from_u64(5));
        x.truncate(space.valid().len() / 3);
        x
    }

    #[test]
    fn a_collapsed_training_is_left_out_and_a_lucky_one_kept() {
        let space = space();
        let enc = Encoding::new(&space);
        let x = third(&space);
        let mut y: Vec<f64> = x.iter().map(truth).collect();
        let without = Gp::fit(&enc, &x[1..], &y[1..]);
        // Trained to chance: the fit is the one without it.
        y[0] = 0.0;
        let gp = Gp::fit(&enc, &x, &y);
        for g in space.valid() {
            assert_eq!(gp.predict(g), without.predict(g));
        }
        // Better than its neighbours: evidence, kept.
        y[0] = truth(&x[0]) + 0.3;
        let gp = Gp::fit(&enc, &x, &y);
        assert!(gp.predict(&x[0]).0 > truth(&x[0]) + 0.1);
    }

    #[test]
    fn the_factor_solves() {
        let a = [4.0, 2.0, 2.0, 3.0];
        let l = cholesky(&a, 2).unwrap();
        let z = backward(&l, 2, &forward(&l, 2, &[2.0, 1.0]));
        // a z = b
        assert!((4.0 * z[0] + 2.0 * z[1] - 2.0).abs() < 1e-12);
        assert!((2.0 * z[0] + 3.0 * z[1] - 1.0).abs() < 1e-12);
        assert!(cholesky(&[1.0, 2.0, 2.0, 1.0], 2).is_none());
    }
}
