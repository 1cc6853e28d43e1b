//! Surrogate-guided search: only accuracy is unknown before training. The cost model
//! prices every candidate's latency (and dealer material) exactly in milliseconds, so a
//! Gaussian process ([`super::gp`]) models accuracy alone, and the next configuration
//! trained is the one with the largest expected hypervolume improvement (EHVI) at its
//! known latency. With one objective uncertain the EHVI has a closed form: the
//! improvement of accuracy `y` at latency `t` is the area of the current front's
//! staircase that `(t, y)` adds, `HVI(y) = int_{ref}^{y} max(0, T(a) - t) da` with `T(a)`
//! the fastest front point at least `a` accurate, so
//! `EHVI = sum over steps of width_k * sigma * (psi(z_k) - psi(z_k+1))`,
//! `psi(z) = phi(z) - z (1 - Phi(z))`.
//!
//! The share of the true front found asks for something else: configurations whose
//! latency is within a hair of a known front member add almost no hypervolume, yet
//! training noise may put either on the front. With `front_share` (strategy
//! `ehvi-front`) every other training goes to the configuration most often
//! on the front over posterior draws, the greedy step for that share, so each goal
//! gets half of the budget.
//!
//! Candidates: every unseen valid configuration of a space up to [`SCORE_ALL`]; beyond
//! it, NSGA-II offspring of the trained archive plus random configurations, so the
//! evolutionary loop proposes and the surrogate decides which offspring are trained.
//! Constraints known from the price (latency per profile, dealer material) exclude a
//! candidate before training; the accuracy floor raises the reference. Trials still
//! running count at their predicted accuracy (the "Kriging believer"), so workers
//! sharing a study never repeat one and, the proposal being a function of seed and
//! history alone, every worker makes the same.

use std::collections::HashSet;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::gp::{Encoding, Gp};
use super::nsga2::Parents;
use super::{Ctx, Outcome, Record, Step};
use crate::draws::front_counts;
use crate::genes::Genome;
use crate::pareto::{front, Point};

/// Monte Carlo draws behind [`likeliest_on_front`].
const DRAWS: usize = 256;
/// Spaces up to this many valid configurations are scored whole.
pub const SCORE_ALL: usize = 20_000;
/// Offspring and random configurations scored per proposal in larger spaces.
const OFFSPRING: usize = 2_000;
const RANDOM: usize = 1_000;
/// The acquisition's reference lies this share of each objective's range beyond the
/// worst value (the usual convention: extreme points keep a positive contribution).
const MARGIN: f64 = 0.1;

/// `phi(z) - z (1 - Phi(z))`: the expected excess `E[(Z - z)+]` of a standard normal.
fn psi(z: f64) -> f64 {
    let phi = (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt();
    let tail = 0.5 * libm::erfc(z / std::f64::consts::SQRT_2);
    phi - z * tail
}

/// The current front as a staircase: accuracy levels (ascending, from the reference)
/// and the fastest latency reaching each interval above a level.
struct Staircase {
    /// `(lo, hi, fastest)`: for accuracy in `(lo, hi]` the fastest front point that
    /// accurate takes `fastest` seconds.
    steps: Vec<(f64, f64, f64)>,
}

impl Staircase {
    fn new(front: &[Point], ref_acc: f64, ref_s: f64) -> Self {
        let mut pts: Vec<Point> = front
            .iter()
            .filter(|p| p.accuracy > ref_acc)
            .copied()
            .collect();
        pts.sort_by(|a, b| a.accuracy.total_cmp(&b.accuracy));
        let mut steps = Vec::new();
        let mut lo = ref_acc;
        for (k, p) in pts.iter().enumerate() {
            if p.accuracy > lo {
                let fastest = pts[k..].iter().map(|q| q.seconds).fold(ref_s, f64::min);
                steps.push((lo, p.accuracy, fastest));
                lo = p.accuracy;
            }
        }
        // Above the most accurate point nothing is dominated yet (accuracy is at most 1).
        if lo < 1.0 {
            steps.push((lo, 1.0, ref_s));
        }
        Self { steps }
    }

    /// Expected improvement of a point at `seconds` with accuracy `N(mean, sd^2)`.
    fn ehvi(&self, seconds: f64, mean: f64, sd: f64) -> f64 {
        self.steps
            .iter()
            .filter(|s| s.2 > seconds)
            .map(|&(lo, hi, fastest)| {
                let mass = if sd > 1e-12 {
                    sd * (psi((lo - mean) / sd) - psi((hi - mean) / sd))
                } else {
                    (mean.min(hi) - lo).max(0.0)
                };
                (fastest - seconds) * mass
            })
            .sum()
    }
}

/// The next configuration; with `front_share`, every other one (from the first after
/// the initial design) is [`likeliest_on_front`] instead of the largest EHVI.
pub fn propose(ctx: &Ctx, history: &[Record], front_share: bool) -> Step {
    let seen: HashSet<Genome> = history.iter().map(|r| r.genome).collect();
    let enc = Encoding::new(ctx.space);
    let mut rng = ctx.rng(history.len());
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for r in history {
        if let Outcome::Accuracy(a) = r.outcome {
            x.push(r.genome);
            y.push(a);
        }
    }
    let pool = candidates(ctx, history, &seen, &mut rng);
    let priced: Vec<(Genome, Point)> = pool
        .into_iter()
        .map(|g| (g, ctx.objectives.point(&g, None)))
        .collect();
    let feasible: Vec<&(Genome, Point)> = priced.iter().filter(|c| c.1.violation == 0.0).collect();
    if feasible.is_empty() {
        // Every configuration meeting the priced constraints is taken: done. If none
        // ever did, the least violation (Deb's rule), so the user sees how far off.
        let met = history
            .iter()
            .any(|r| ctx.objectives.point(&r.genome, None).violation == 0.0);
        if met {
            return Step::Done;
        }
        return priced
            .iter()
            .min_by(|a, b| a.1.violation.total_cmp(&b.1.violation))
            .map_or(Step::Done, |c| Step::Evaluate(c.0));
    }
    // An initial design of random configurations, one more than the active genes.
    if history.len() <= enc.active() || x.len() < 2 {
        return Step::Evaluate(feasible[rng.random_range(0..feasible.len())].0);
    }
    let gp = Gp::fit(&enc, &x, &y);
    // The front so far, trials in flight at their predicted accuracy.
    let mut known: Vec<Point> = x
        .iter()
        .zip(&y)
        .map(|(g, &a)| ctx.objectives.point(g, Some(a)))
        .collect();
    for r in history.iter().filter(|r| r.outcome == Outcome::Pending) {
        known.push(
            ctx.objectives
                .point(&r.genome, Some(gp.predict(&r.genome).0)),
        );
    }
    if front_share && (history.len() - enc.active() - 1).is_multiple_of(2) {
        // What one training would measure: the posterior plus one training's noise.
        let noise = gp.noise_sd();
        let dist: Vec<(f64, f64)> = feasible
            .iter()
            .map(|c| {
                let (m, s) = gp.predict(&c.0);
                (m, s.hypot(noise))
            })
            .collect();
        let candidates: Vec<(Genome, Point)> = feasible.iter().map(|c| **c).collect();
        let floor = ctx.objectives.accuracy_floor().unwrap_or(f64::NEG_INFINITY);
        let next = likeliest_on_front(&candidates, &dist, &known, floor, &mut rng);
        return Step::Evaluate(next);
    }
    let front_pts: Vec<Point> = front(&known).into_iter().map(|i| known[i]).collect();
    let (ref_acc, ref_s) = reference(ctx, &y, &priced, &known);
    let stairs = Staircase::new(&front_pts, ref_acc, ref_s);
    let mut best: Option<(f64, f64, Genome)> = None;
    for &&(g, p) in &feasible {
        let (mean, sd) = gp.predict(&g);
        let score = (stairs.ehvi(p.seconds, mean, sd), sd);
        // Ties (all zero late in a search) go to the least known.
        if best.is_none_or(|b| score.0 > b.0 || (score.0 == b.0 && score.1 > b.1)) {
            best = Some((score.0, score.1, g));
        }
    }
    best.map_or(Step::Done, |b| Step::Evaluate(b.2))
}

/// The candidate most often on the front over [`DRAWS`] draws of the accuracy one
/// training of each would measure, `dist[k] = (mean, sd)` for candidate `k` (drawn
/// independently), the `known` points fixed, a draw below the accuracy `floor` off the
/// front: greedy for the share of the front found, as EHVI is for hypervolume. Ties go
/// to the higher mean.
fn likeliest_on_front(
    candidates: &[(Genome, Point)],
    dist: &[(f64, f64)],
    known: &[Point],
    floor: f64,
    rng: &mut ChaCha8Rng,
) -> Genome {
    let points: Vec<Point> = candidates
        .iter()
        .map(|c| c.1)
        .chain(known.iter().copied())
        .collect();
    let all: Vec<(f64, f64)> = dist
        .iter()
        .copied()
        .chain(known.iter().map(|p| (p.accuracy, 0.0)))
        .collect();
    let hits = front_counts(&points, &all, floor, DRAWS, rng);
    let k = (0..candidates.len())
        .max_by(|&a, &b| hits[a].cmp(&hits[b]).then(dist[a].0.total_cmp(&dist[b].0)))
        .expect("a candidate");
    candidates[k].0
}

/// The acquisition's reference: the worst accuracy seen and the slowest priced
/// configuration, each [`MARGIN`] of its range further; the accuracy floor if higher.
fn reference(ctx: &Ctx, y: &[f64], priced: &[(Genome, Point)], known: &[Point]) -> (f64, f64) {
    let (amin, amax) = y
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &a| (lo.min(a), hi.max(a)));
    let seconds = priced
        .iter()
        .map(|c| c.1.seconds)
        .chain(known.iter().map(|p| p.seconds));
    let (smin, smax) = seconds.fold((f64::MAX, f64::MIN), |(lo, hi), s| (lo.min(s), hi.max(s)));
    let ref_acc =
        (amin - MARGIN * (amax - amin)).max(ctx.objectives.accuracy_floor().unwrap_or(f64::MIN));
    (ref_acc, smax + MARGIN * (smax - smin).max(1e-12))
}

/// What the surrogate scores: every unseen valid configuration of a small space, else
/// NSGA-II offspring of the trained archive and random configurations.
fn candidates(
    ctx: &Ctx,
    history: &[Record],
    seen: &HashSet<Genome>,
    rng: &mut ChaCha8Rng,
) -> Vec<Genome> {
    let valid = ctx.space.valid();
    if valid.len() <= SCORE_ALL {
        return valid
            .iter()
            .filter(|g| !seen.contains(*g))
            .copied()
            .collect();
    }
    let mut pool = HashSet::new();
    if let Some(parents) = Parents::new(ctx, history) {
        for _ in 0..OFFSPRING {
            pool.insert(parents.child(ctx, rng));
        }
    }
    for _ in 0..RANDOM {
        pool.insert(valid[rng.random_range(0..valid.len())]);
    }
    let mut out: Vec<Genome> = pool
        .into_iter()
        .filter(|g| ctx.space.is_valid(g) && !seen.contains(g))
        .collect();
    // A set's order is not a function of the history: sort, so every worker agrees.
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(accuracy: f64, seconds: f64) -> Point {
        Point::feasible(accuracy, seconds)
    }

    #[test]
    fn ehvi_matches_a_monte_carlo_estimate() {
        use rand::SeedableRng;
        let front = [p(0.6, 1.0), p(0.8, 2.0), p(0.9, 4.0)];
        let stairs = Staircase::new(&front, 0.5, 5.0);
        let area = |pts: &[Point]| crate::pareto::hypervolume_at(pts, 0.5, 5.0);
        let base = area(&front);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for (t, mean, sd) in [(1.5, 0.75, 0.05), (0.5, 0.55, 0.1), (3.0, 0.95, 0.03)] {
            let n = 200_000;
            let mut sum = 0.0;
            for _ in 0..n {
                // Box-Muller.
                let (u1, u2): (f64, f64) = (rng.random(), rng.random());
                let z = (-2.0 * (1.0 - u1).ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                let a = (mean + sd * z).min(1.0);
                let mut pts = front.to_vec();
                pts.push(p(a, t));
                sum += area(&pts) - base;
            }
            let mc = sum / n as f64;
            let exact = stairs.ehvi(t, mean, sd);
            assert!(
                (mc - exact).abs() < 2e-3 * (1.0 + exact),
                "t {t}: {mc} vs {exact}"
            );
        }
        // A certain point behind the front improves nothing.
        assert_eq!(stairs.ehvi(3.0, 0.7, 0.0), 0.0);
    }

    #[test]
    fn the_front_share_step_takes_what_is_likeliest_on_the_front() {
        use rand::SeedableRng;
        let known = [p(0.6, 1.0), p(0.8, 2.0)];
        let g = |k: u16| -> Genome {
            let mut g = Genome::default();
            g[0] = k;
            g
        };
        // 0: a hair slower than a known member, a hair better on average: on the front
        // about half the time. 1: far slower and surely worse. 2: faster than all but
        // surely worse than the known member just slower, so always on the front.
        let candidates = [
            (g(0), p(0.0, 2.01)),
            (g(1), p(0.0, 3.0)),
            (g(2), p(0.0, 0.5)),
        ];
        let dist = [(0.81, 0.02), (0.5, 0.01), (0.1, 0.01)];
        let none = f64::NEG_INFINITY;
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let pick = likeliest_on_front(&candidates, &dist, &known, none, &mut rng);
        assert_eq!(pick, g(2));
        // Without the fast one, the near tie beats the sure loser.
        let pick = likeliest_on_front(&candidates[..2], &dist[..2], &known, none, &mut rng);
        assert_eq!(pick, g(0));
        // Under an accuracy floor of 0.55 the fast one never counts.
        let pick = likeliest_on_front(&candidates, &dist, &known, 0.55, &mut rng);
        assert_eq!(pick, g(0));
    }
}
