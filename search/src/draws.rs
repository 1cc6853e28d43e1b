//! Monte Carlo over accuracies not yet measured: how often each configuration would be
//! on the front. The noise oracle ([`crate::noise`]) and the search's front-share step
//! ([`crate::strategy`]) both ask it.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::pareto::Point;

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let (u1, u2): (f64, f64) = (rng.random(), rng.random());
    (-2.0 * (1.0 - u1).ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Feasible configurations grouped by equal seconds, fastest group first: a front
/// member is the most accurate of its group and more accurate than every faster one.
fn groups(points: &[Point]) -> Vec<Vec<usize>> {
    let mut idx: Vec<usize> = (0..points.len())
        .filter(|&i| points[i].violation == 0.0)
        .collect();
    idx.sort_by(|&a, &b| points[a].seconds.total_cmp(&points[b].seconds));
    let mut out: Vec<Vec<usize>> = Vec::new();
    for i in idx {
        match out.last_mut() {
            Some(g) if points[g[0]].seconds == points[i].seconds => g.push(i),
            _ => out.push(vec![i]),
        }
    }
    out
}

/// Adds one to `hits[i]` for every front member `i` under accuracies `acc`.
fn count_front(groups: &[Vec<usize>], acc: &[f64], hits: &mut [u32]) {
    let mut best = f64::NEG_INFINITY;
    for g in groups {
        let top = g.iter().map(|&i| acc[i]).fold(f64::NEG_INFINITY, f64::max);
        if top > best {
            if let Some(&i) = g.iter().find(|&&i| acc[i] == top) {
                hits[i] += 1;
            }
            best = top;
        }
    }
}

/// In how many of `draws` draws each of `points` is on the front, the accuracy of point
/// `i` drawn as `mean + sd * N(0, 1)` from `dist[i] = (mean, sd)` (a point with `sd` 0
/// keeps its mean and draws nothing). Infeasible points are never on it, nor is a draw
/// below the accuracy `floor`.
pub fn front_counts(
    points: &[Point],
    dist: &[(f64, f64)],
    floor: f64,
    draws: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<u32> {
    let groups = groups(points);
    let mut acc: Vec<f64> = dist.iter().map(|d| d.0).collect();
    let mut hits = vec![0u32; points.len()];
    for _ in 0..draws {
        for (a, &(mean, sd)) in acc.iter_mut().zip(dist) {
            if sd > 0.0 {
                *a = mean + sd * normal(rng);
            }
            if *a < floor {
                *a = f64::NEG_INFINITY;
            }
        }
        count_front(&groups, &acc, &mut hits);
    }
    hits
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pareto::front;
    use rand::SeedableRng;

    fn p(accuracy: f64, seconds: f64) -> Point {
        Point::feasible(accuracy, seconds)
    }

    #[test]
    fn without_spread_the_count_is_the_front() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..50 {
            // Few distinct latencies, so groups of equal seconds occur.
            let pts: Vec<Point> = (0..40)
                .map(|_| p(rng.random(), rng.random_range(0..8) as f64))
                .collect();
            let dist: Vec<(f64, f64)> = pts.iter().map(|q| (q.accuracy, 0.0)).collect();
            let hits = front_counts(&pts, &dist, f64::NEG_INFINITY, 3, &mut rng);
            let mut want = vec![0; pts.len()];
            for i in front(&pts) {
                want[i] = 3;
            }
            assert_eq!(hits, want);
        }
    }

    #[test]
    fn a_coin_toss_between_equals() {
        // Two configurations at the same latency, equally good: each wins half the draws.
        let pts = [p(0.0, 1.0), p(0.0, 1.0)];
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let dist = [(0.8, 0.01), (0.8, 0.01)];
        let hits = front_counts(&pts, &dist, f64::NEG_INFINITY, 4000, &mut rng);
        assert_eq!(hits[0] + hits[1], 4000);
        assert!((hits[0] as f64 / 4000.0 - 0.5).abs() < 0.05, "{hits:?}");
        // Under a floor at their mean, each is on the front only when drawn above it.
        let hits = front_counts(&pts, &dist, 0.8, 4000, &mut rng);
        let share = (hits[0] + hits[1]) as f64 / 4000.0;
        assert!((share - 0.75).abs() < 0.05, "{hits:?}");
    }
}
