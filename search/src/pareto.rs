//! Two objectives, validation accuracy (max) and predicted seconds (min), under
//! constraints (Deb's rule: feasible beats infeasible, smaller violation beats larger):
//! non-dominated sorting, crowding distance, fronts and hypervolume.

/// One evaluated candidate in objective space.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub accuracy: f64,
    pub seconds: f64,
    /// Total constraint violation; 0 = feasible.
    pub violation: f64,
}

impl Point {
    /// A point that meets every constraint.
    pub fn feasible(accuracy: f64, seconds: f64) -> Self {
        Self {
            accuracy,
            seconds,
            violation: 0.0,
        }
    }
}

/// `a` constrained-dominates `b`.
pub fn dominates(a: &Point, b: &Point) -> bool {
    match (a.violation > 0.0, b.violation > 0.0) {
        (false, true) => true,
        (true, false) => false,
        (true, true) => a.violation < b.violation,
        (false, false) => {
            a.accuracy >= b.accuracy
                && a.seconds <= b.seconds
                && (a.accuracy > b.accuracy || a.seconds < b.seconds)
        }
    }
}

/// Rank of every point (0 = non-dominated), by repeated peeling.
pub fn ranks(points: &[Point]) -> Vec<usize> {
    let n = points.len();
    let mut rank = vec![usize::MAX; n];
    let mut left: Vec<usize> = (0..n).collect();
    let mut r = 0;
    while !left.is_empty() {
        let front: Vec<usize> = left
            .iter()
            .copied()
            .filter(|&i| !left.iter().any(|&j| dominates(&points[j], &points[i])))
            .collect();
        for &i in &front {
            rank[i] = r;
        }
        left.retain(|i| rank[*i] == usize::MAX);
        r += 1;
    }
    rank
}

/// Crowding distance of each point within its own rank (boundary points: infinite).
pub fn crowding(points: &[Point], rank: &[usize]) -> Vec<f64> {
    let mut dist = vec![0.0; points.len()];
    let max_rank = rank.iter().copied().max().unwrap_or(0);
    for r in 0..=max_rank {
        let members: Vec<usize> = (0..points.len()).filter(|&i| rank[i] == r).collect();
        for obj in [|p: &Point| p.accuracy, |p: &Point| p.seconds] {
            let mut m = members.clone();
            m.sort_by(|&a, &b| obj(&points[a]).total_cmp(&obj(&points[b])).then(a.cmp(&b)));
            if m.len() < 3 {
                for &i in &m {
                    dist[i] = f64::INFINITY;
                }
                continue;
            }
            let span = obj(&points[m[m.len() - 1]]) - obj(&points[m[0]]);
            dist[m[0]] = f64::INFINITY;
            dist[m[m.len() - 1]] = f64::INFINITY;
            if span > 0.0 {
                for k in 1..m.len() - 1 {
                    dist[m[k]] += (obj(&points[m[k + 1]]) - obj(&points[m[k - 1]])) / span;
                }
            }
        }
    }
    dist
}

/// Indices of the feasible non-dominated points, by increasing seconds. Ties (same
/// objectives) keep the earliest.
pub fn front(points: &[Point]) -> Vec<usize> {
    let mut f: Vec<usize> = (0..points.len())
        .filter(|&i| points[i].violation == 0.0)
        .filter(|&i| {
            !(0..points.len()).any(|j| {
                points[j].violation == 0.0
                    && (dominates(&points[j], &points[i])
                        || (j < i
                            && points[j].accuracy == points[i].accuracy
                            && points[j].seconds == points[i].seconds))
            })
        })
        .collect();
    f.sort_by(|&a, &b| points[a].seconds.total_cmp(&points[b].seconds));
    f
}

/// Hypervolume of the feasible points against the reference (accuracy 0, seconds
/// `reference_s`), with seconds normalised by `reference_s`: a fraction of the unit square.
/// docs/DESIGN.md section 5 calls this reference lenient; [`crate::metrics`] has the nadir's.
pub fn hypervolume(points: &[Point], reference_s: f64) -> f64 {
    hypervolume_at(points, 0.0, reference_s) / reference_s
}

/// Area dominated by the feasible points and bounded by the reference (accuracy
/// `ref_accuracy`, seconds `ref_seconds`); points not better than the reference in both
/// objectives add nothing. Accuracy above 1 counts as 1.
pub fn hypervolume_at(points: &[Point], ref_accuracy: f64, ref_seconds: f64) -> f64 {
    let mut pts: Vec<(f64, f64)> = points
        .iter()
        .filter(|p| p.violation == 0.0 && p.seconds < ref_seconds && p.accuracy > ref_accuracy)
        .map(|p| (p.seconds, p.accuracy.min(1.0)))
        .collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut area = 0.0;
    let mut best = ref_accuracy;
    for (k, &(s, a)) in pts.iter().enumerate() {
        best = best.max(a);
        let next = pts.get(k + 1).map_or(ref_seconds, |p| p.0);
        area += (next - s) * (best - ref_accuracy);
    }
    area
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(accuracy: f64, seconds: f64) -> Point {
        Point::feasible(accuracy, seconds)
    }

    #[test]
    fn ranks_front_and_crowding() {
        let pts = [
            p(0.9, 2.0),
            p(0.8, 1.0),
            p(0.7, 1.5),
            p(0.95, 3.0),
            p(0.6, 0.5),
        ];
        let r = ranks(&pts);
        assert_eq!(r, vec![0, 0, 1, 0, 0]);
        assert_eq!(front(&pts), vec![4, 1, 0, 3]);
        let c = crowding(&pts, &r);
        assert!(c[4].is_infinite() && c[3].is_infinite());
        assert!(c[1].is_finite() && c[1] > 0.0);
    }

    #[test]
    fn infeasible_points_lose_and_never_reach_the_front() {
        let mut bad = p(0.99, 0.1);
        bad.violation = 0.5;
        let pts = [p(0.5, 1.0), bad];
        assert!(dominates(&pts[0], &pts[1]));
        assert_eq!(front(&pts), vec![0]);
    }

    #[test]
    fn hypervolume_of_a_staircase() {
        // Reference 4 s: points at 1 s (0.5) and 2 s (0.8) -> 0.25*0.5 + 0.5*0.8.
        let hv = hypervolume(&[p(0.5, 1.0), p(0.8, 2.0), p(0.4, 3.0)], 4.0);
        assert!((hv - (0.25 * 0.5 + 0.5 * 0.8)).abs() < 1e-12, "{hv}");
        assert_eq!(hypervolume(&[], 4.0), 0.0);
        // Against (0.45, 2.5 s): only the 1 s and 2 s points count, above 0.45.
        let at = hypervolume_at(&[p(0.5, 1.0), p(0.8, 2.0), p(0.4, 3.0)], 0.45, 2.5);
        assert!((at - (1.0 * 0.05 + 0.5 * 0.35)).abs() < 1e-12, "{at}");
    }
}
