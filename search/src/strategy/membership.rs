//! The probability that a configuration is on the true front: the front of every
//! configuration of the space, trained or not. A configuration at latency `t` is on it
//! when it is more accurate than every configuration faster than `t`, so its chance
//! depends on the untrained competitors as much as on the trained ones. Joint draws
//! from the surrogate's posterior give every untrained configuration an accuracy at
//! once (correlated, as similar configurations are); the share of draws in which a
//! configuration is on the front of the trained points and the drawn ones is its
//! chance. Training the likeliest member next maximises the expected number of front
//! members found per training: the greedy policy for the front-share metric.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::gp::Gp;
use crate::genes::Genome;
use crate::pareto::Point;

/// Joint draws per proposal: a chance's Monte Carlo standard error is at most
/// `0.5 / sqrt(DRAWS)`, about 0.03.
const DRAWS: usize = 256;
/// The joint covariance is factored for at most this many configurations (a cubic
/// cost); beyond it, those likeliest to beat the trained front on their own.
const JOINT: usize = 800;

/// An untrained configuration at its priced latency.
#[derive(Debug, Clone, Copy)]
pub struct Competitor {
    pub genome: Genome,
    pub seconds: f64,
    /// False for a trial in flight: it competes but is not proposed again.
    pub proposable: bool,
}

/// Each competitor's chance of being on the front of `trained` (feasible points) and
/// every competitor, accuracies below `floor` being infeasible.
pub fn chances(
    gp: &Gp,
    trained: &[Point],
    open: &[Competitor],
    floor: Option<f64>,
    rng: &mut ChaCha8Rng,
) -> Vec<f64> {
    let drawn = shortlist(gp, trained, open);
    let genomes: Vec<Genome> = drawn.iter().map(|&i| open[i].genome).collect();
    let (mean, factor) = match gp.joint(&genomes) {
        Some(j) => (j.0, Some(j.1)),
        // Not positive definite in floating point: draw each on its own.
        None => (genomes.iter().map(|g| gp.predict(g).0).collect(), None),
    };
    let sd: Vec<f64> = genomes.iter().map(|g| gp.predict(g).1).collect();
    let m = drawn.len();
    // Everyone by latency, trained points as (index None, fixed accuracy).
    let mut order: Vec<(f64, Option<usize>, f64)> = trained
        .iter()
        .map(|p| (p.seconds, None, p.accuracy))
        .chain(
            drawn
                .iter()
                .enumerate()
                .map(|(k, &i)| (open[i].seconds, Some(k), 0.0)),
        )
        .collect();
    order.sort_by(|a, b| a.0.total_cmp(&b.0));
    let floor = floor.unwrap_or(f64::MIN);
    let mut hits = vec![0usize; m];
    let mut acc = vec![0.0; m];
    let mut z = vec![0.0; m];
    for _ in 0..DRAWS {
        z.iter_mut().for_each(|v| *v = normal(rng));
        for k in 0..m {
            acc[k] = mean[k]
                + match &factor {
                    Some(l) => (0..=k).map(|j| l[k * m + j] * z[j]).sum::<f64>(),
                    None => sd[k] * z[k],
                };
        }
        on_front(&order, &acc, floor, &mut hits);
    }
    let mut out = vec![0.0; open.len()];
    for (k, &i) in drawn.iter().enumerate() {
        out[i] = hits[k] as f64 / DRAWS as f64;
    }
    out
}

/// Counts, for one draw, the drawn configurations on the front: in latency order, a
/// point is on it when it beats every strictly faster feasible point and is not
/// beaten at its own latency.
fn on_front(order: &[(f64, Option<usize>, f64)], acc: &[f64], floor: f64, hits: &mut [usize]) {
    let value = |e: &(f64, Option<usize>, f64)| e.1.map_or(e.2, |k| acc[k]);
    let mut faster = f64::MIN;
    let mut start = 0;
    while start < order.len() {
        let end = start
            + order[start..]
                .iter()
                .take_while(|e| e.0 == order[start].0)
                .count();
        let group = &order[start..end];
        let best = group
            .iter()
            .map(value)
            .filter(|&a| a >= floor)
            .fold(f64::MIN, f64::max);
        for e in group {
            let a = value(e);
            if let Some(k) = e.1 {
                if a >= floor && a > faster && a >= best {
                    hits[k] += 1;
                }
            }
        }
        faster = faster.max(best);
        start = end;
    }
}

/// The competitors drawn jointly: all of them up to [`JOINT`], else trials in flight
/// and those likeliest, on their own, to beat every trained point at least as fast.
fn shortlist(gp: &Gp, trained: &[Point], open: &[Competitor]) -> Vec<usize> {
    if open.len() <= JOINT {
        return (0..open.len()).collect();
    }
    let alone = |c: &Competitor| {
        let bar = trained
            .iter()
            .filter(|p| p.seconds <= c.seconds)
            .map(|p| p.accuracy)
            .fold(f64::MIN, f64::max);
        let (mean, sd) = gp.predict(&c.genome);
        0.5 * libm::erfc((bar - mean) / (sd.max(1e-12) * std::f64::consts::SQRT_2))
    };
    let mut scored: Vec<(f64, usize)> = open
        .iter()
        .enumerate()
        .map(|(i, c)| (if c.proposable { alone(c) } else { 2.0 }, i))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut keep: Vec<usize> = scored.into_iter().take(JOINT).map(|s| s.1).collect();
    keep.sort_unstable();
    keep
}

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let (u1, u2): (f64, f64) = (rng.random(), rng.random());
    (-2.0 * (1.0 - u1).ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_point_is_on_the_front_when_it_beats_everything_faster() {
        // Trained (1 s, 0.7); drawn at 0.5 s, 1 s, 2 s and 3 s.
        let order = vec![
            (0.5, Some(0), 0.0),
            (1.0, None, 0.7),
            (1.0, Some(1), 0.0),
            (2.0, Some(2), 0.0),
            (3.0, Some(3), 0.0),
        ];
        let mut hits = vec![0; 4];
        on_front(&order, &[0.6, 0.65, 0.8, 0.75], f64::MIN, &mut hits);
        assert_eq!(hits, vec![1, 0, 1, 0]);
        // A tie at the same latency keeps both; the floor removes what falls below.
        let mut hits = vec![0; 4];
        on_front(&order, &[0.6, 0.7, 0.8, 0.9], 0.65, &mut hits);
        assert_eq!(hits, vec![0, 1, 1, 1]);
    }
}
