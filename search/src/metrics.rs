//! How close a set of evaluated configurations comes to a table's true front (docs/DESIGN.md
//! section 5). The lenient hypervolume (reference at accuracy 0 and the slowest
//! configuration) lets the fastest configuration alone score about 0.84, so the replay
//! also reports the hypervolume against the true front's nadir, the share of true-front
//! members found, and IGD+ on objectives normalised to the space's range.

use std::collections::HashSet;

use crate::genes::Genome;
use crate::pareto::{front, hypervolume, hypervolume_at, Point};

/// The scores of one set of evaluated configurations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scores {
    /// Hypervolume with the reference at the true front's nadir, as a fraction of the
    /// true front's.
    pub nadir_hv: f64,
    /// Share of the true front's members that were evaluated.
    pub front_share: f64,
    /// IGD+ (Ishibuchi et al. 2015): mean over true-front members of the distance to
    /// the nearest evaluated point, counting only where that point is worse; objectives
    /// normalised to the space's range. 0 when the front is found.
    pub igd_plus: f64,
    /// Hypervolume with the reference at accuracy 0 and the slowest configuration, as a
    /// fraction of the whole table's (the metric before the nadir's; lenient).
    pub lenient_hv: f64,
}

/// The true front of a table (every valid configuration evaluated once).
pub struct Truth {
    members: HashSet<Genome>,
    front: Vec<Point>,
    nadir: (f64, f64),
    nadir_hv: f64,
    slowest: f64,
    lenient_hv: f64,
    /// Accuracy and seconds ranges over the whole table.
    span: (f64, f64),
    /// Each feasible configuration's margin: its accuracy less the best of every other
    /// one at most as slow (positive on the front).
    margins: Vec<f64>,
    /// The table's worst corner (least accuracy, most seconds): an empty set's stand-in.
    worst: Point,
}

impl Truth {
    /// `table`: every configuration with its point (accuracy measured, seconds priced).
    pub fn new(table: &[(Genome, Point)]) -> Self {
        let pts: Vec<Point> = table.iter().map(|t| t.1).collect();
        let idx = front(&pts);
        let front_pts: Vec<Point> = idx.iter().map(|&i| pts[i]).collect();
        let feasible = pts.iter().filter(|p| p.violation == 0.0);
        let (mut amin, mut amax, mut smin, mut smax) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for p in feasible {
            (amin, amax) = (amin.min(p.accuracy), amax.max(p.accuracy));
            (smin, smax) = (smin.min(p.seconds), smax.max(p.seconds));
        }
        let nadir = (
            front_pts
                .iter()
                .map(|p| p.accuracy)
                .fold(f64::MAX, f64::min),
            front_pts.iter().map(|p| p.seconds).fold(f64::MIN, f64::max),
        );
        let slowest = pts.iter().map(|p| p.seconds).fold(0.0, f64::max);
        Self {
            members: idx.iter().map(|&i| table[i].0).collect(),
            nadir_hv: hypervolume_at(&front_pts, nadir.0, nadir.1),
            lenient_hv: hypervolume(&pts, slowest),
            front: front_pts,
            nadir,
            slowest,
            span: ((amax - amin).max(1e-12), (smax - smin).max(1e-12)),
            worst: Point::feasible(amin, smax),
            margins: margins(&pts),
        }
    }

    /// How hard the front is to pin down: how many members beat every faster
    /// configuration by at most `within`, and how many non-members fall short of doing so
    /// by at most `within`. When margins are of the order of the training noise, which
    /// configurations the table calls "front" is decided by that noise.
    pub fn close_calls(&self, within: f64) -> (usize, usize) {
        let members = self
            .margins
            .iter()
            .filter(|&&m| m > 0.0 && m <= within)
            .count();
        let others = self
            .margins
            .iter()
            .filter(|&&m| m <= 0.0 && m >= -within)
            .count();
        (members, others)
    }

    /// Members of the true front.
    pub fn front_len(&self) -> usize {
        self.members.len()
    }

    /// The scores of `found` (configurations evaluated, with their points).
    pub fn score(&self, found: &[(Genome, Point)]) -> Scores {
        let pts: Vec<Point> = found.iter().map(|f| f.1).collect();
        let hit = found
            .iter()
            .map(|f| f.0)
            .collect::<HashSet<_>>()
            .intersection(&self.members)
            .count();
        let nadir_hv = if self.nadir_hv > 0.0 {
            hypervolume_at(&pts, self.nadir.0, self.nadir.1) / self.nadir_hv
        } else {
            // A front of one point: found or not.
            (hit == self.members.len()) as u8 as f64
        };
        Scores {
            nadir_hv,
            front_share: hit as f64 / self.members.len().max(1) as f64,
            igd_plus: self.igd_plus(&pts),
            lenient_hv: hypervolume(&pts, self.slowest) / self.lenient_hv.max(1e-300),
        }
    }

    fn igd_plus(&self, pts: &[Point]) -> f64 {
        let feasible: Vec<&Point> = pts.iter().filter(|p| p.violation == 0.0).collect();
        let candidates: Vec<&Point> = if feasible.is_empty() {
            vec![&self.worst]
        } else {
            feasible
        };
        let (da, ds) = self.span;
        let d = |z: &Point, a: &Point| {
            let worse_acc = ((z.accuracy - a.accuracy) / da).max(0.0);
            let worse_s = ((a.seconds - z.seconds) / ds).max(0.0);
            worse_acc.hypot(worse_s)
        };
        let sum: f64 = self
            .front
            .iter()
            .map(|z| candidates.iter().map(|a| d(z, a)).fold(f64::MAX, f64::min))
            .sum();
        sum / self.front.len().max(1) as f64
    }
}

/// Each feasible point's accuracy less the best accuracy of every other feasible point
/// at most as slow (`+inf` for the fastest).
fn margins(pts: &[Point]) -> Vec<f64> {
    let mut feasible: Vec<&Point> = pts.iter().filter(|p| p.violation == 0.0).collect();
    feasible.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    let mut out = Vec::with_capacity(feasible.len());
    let (mut faster, mut start) = (f64::NEG_INFINITY, 0);
    while start < feasible.len() {
        let s = feasible[start].seconds;
        let end = start
            + feasible[start..]
                .iter()
                .take_while(|p| p.seconds == s)
                .count();
        let group = &feasible[start..end];
        for (i, p) in group.iter().enumerate() {
            let tied = group
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, q)| q.accuracy)
                .fold(faster, f64::max);
            out.push(p.accuracy - tied);
        }
        faster = group.iter().map(|p| p.accuracy).fold(faster, f64::max);
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(accuracy: f64, seconds: f64) -> Point {
        Point::feasible(accuracy, seconds)
    }

    fn g(i: u16) -> Genome {
        [i, 0, 0, 0, 0, 0, 0, 0]
    }

    #[test]
    fn the_whole_table_scores_one_and_the_fastest_alone_scores_little() {
        // Front: 0 (0.5, 1 s), 1 (0.7, 2 s), 2 (0.9, 4 s); 3 is dominated.
        let table = [
            (g(0), p(0.5, 1.0)),
            (g(1), p(0.7, 2.0)),
            (g(2), p(0.9, 4.0)),
            (g(3), p(0.6, 3.0)),
        ];
        let truth = Truth::new(&table);
        assert_eq!(truth.front_len(), 3);
        let all = truth.score(&table);
        assert!((all.nadir_hv - 1.0).abs() < 1e-12 && all.front_share == 1.0);
        assert!(all.igd_plus.abs() < 1e-12 && (all.lenient_hv - 1.0).abs() < 1e-12);
        // The nadir is (0.5, 4 s): the fastest alone adds nothing there, but much to
        // the lenient reference.
        let fastest = truth.score(&table[..1]);
        assert_eq!(fastest.nadir_hv, 0.0);
        assert!((fastest.front_share - 1.0 / 3.0).abs() < 1e-12);
        assert!(fastest.lenient_hv > 0.4, "{}", fastest.lenient_hv);
        // Missing the middle member: IGD+ is its distance to the nearest better-or-worse
        // point, (0.7 - 0.5) / 0.4 in accuracy (the 1 s point is faster).
        let ends = truth.score(&[table[0], table[2]]);
        assert!(
            (ends.igd_plus - 0.5 / 3.0).abs() < 1e-12,
            "{}",
            ends.igd_plus
        );
        // The front's ends lie on the nadir: the middle member's box, 2 s x 0.2, is
        // the whole nadir hypervolume.
        assert_eq!(ends.nadir_hv, 0.0);
        assert!((truth.score(&table[1..2]).nadir_hv - 1.0).abs() < 1e-12);
    }

    #[test]
    fn close_calls_count_margins_on_both_sides_of_the_front() {
        // Margins: 0 +inf, 1 +0.2, 3 (3 s) 0.6 - 0.7 = -0.1; 2 and 4 share 4 s, so each
        // is measured against the other too: 2 +0.19, 4 -0.19.
        let table = [
            (g(0), p(0.5, 1.0)),
            (g(1), p(0.7, 2.0)),
            (g(2), p(0.9, 4.0)),
            (g(3), p(0.6, 3.0)),
            (g(4), p(0.71, 4.0)),
        ];
        let truth = Truth::new(&table);
        assert_eq!(truth.close_calls(0.05), (0, 0));
        assert_eq!(truth.close_calls(0.1), (0, 1));
        assert_eq!(truth.close_calls(0.2), (2, 2));
    }
}
