//! NSGA-II (Deb et al. 2002) over categorical genes, generational and elitist: the
//! first population is random; each later child comes from binary tournaments (rank,
//! then crowding) among the best `population` of all earlier generations, uniform
//! crossover and one-gene-on-average mutation, and is never a configuration proposed
//! before.

use std::collections::HashSet;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::simple::unseen_random;
use super::{Ctx, Outcome, Record, Step};
use crate::genes::Genome;
use crate::pareto::{crowding, ranks, Point};

/// Tries to breed an unseen valid child before falling back to a random one.
const BREED_TRIES: usize = 200;

pub fn propose(ctx: &Ctx, history: &[Record]) -> Step {
    let n = history.len();
    let pop = ctx.population;
    let mut rng = ctx.rng(n);
    let generation = n / pop;
    if generation == 0 {
        return unseen_random(ctx, history, &mut rng);
    }
    let earlier = &history[..generation * pop];
    if earlier.iter().any(|r| r.outcome == Outcome::Pending) {
        return Step::Wait;
    }
    let Some(parents) = Parents::new(ctx, earlier) else {
        return unseen_random(ctx, history, &mut rng);
    };
    let seen: HashSet<Genome> = history.iter().map(|r| r.genome).collect();
    for _ in 0..BREED_TRIES {
        let child = parents.child(ctx, &mut rng);
        if ctx.space.is_valid(&child) && !seen.contains(&child) {
            return Step::Evaluate(child);
        }
    }
    unseen_random(ctx, history, &mut rng)
}

/// The mating pool: the best `population` trained configurations of `history` by
/// (constrained rank, crowding), with what binary tournaments compare.
pub(super) struct Parents {
    archive: Vec<Genome>,
    rank: Vec<usize>,
    crowd: Vec<f64>,
    order: Vec<usize>,
}

impl Parents {
    /// `None` with fewer than two trained configurations.
    pub(super) fn new(ctx: &Ctx, history: &[Record]) -> Option<Self> {
        let (archive, points): (Vec<Genome>, Vec<Point>) = history
            .iter()
            .filter_map(|r| match r.outcome {
                Outcome::Accuracy(a) => Some((r.genome, ctx.objectives.point(&r.genome, Some(a)))),
                _ => None,
            })
            .unzip();
        if archive.len() < 2 {
            return None;
        }
        let rank = ranks(&points);
        let crowd = crowding(&points, &rank);
        // Environmental selection: the best `population` by (rank, crowding).
        let mut order: Vec<usize> = (0..archive.len()).collect();
        order.sort_by(|&a, &b| {
            rank[a]
                .cmp(&rank[b])
                .then(crowd[b].total_cmp(&crowd[a]))
                .then(a.cmp(&b))
        });
        order.truncate(ctx.population);
        Some(Self {
            archive,
            rank,
            crowd,
            order,
        })
    }

    fn tournament(&self, rng: &mut ChaCha8Rng) -> usize {
        let a = self.order[rng.random_range(0..self.order.len())];
        let b = self.order[rng.random_range(0..self.order.len())];
        let b_better = if self.rank[a] != self.rank[b] {
            self.rank[b] < self.rank[a]
        } else {
            self.crowd[b] > self.crowd[a]
        };
        if b_better {
            b
        } else {
            a
        }
    }

    /// One child: two tournaments, uniform crossover, one-gene-on-average mutation
    /// (possibly invalid or seen; the caller checks).
    pub(super) fn child(&self, ctx: &Ctx, rng: &mut ChaCha8Rng) -> Genome {
        let (a, b) = (
            self.archive[self.tournament(rng)],
            self.archive[self.tournament(rng)],
        );
        let genes = a.len();
        let active = (0..genes)
            .filter(|&k| ctx.space.arity(k) > 1)
            .count()
            .max(1);
        let mut child = a;
        for k in 0..genes {
            if rng.random_bool(0.5) {
                child[k] = b[k];
            }
        }
        for (k, gene) in child.iter_mut().enumerate() {
            let arity = ctx.space.arity(k);
            if arity > 1 && rng.random_bool(1.0 / active as f64) {
                let other = rng.random_range(0..arity - 1) as u16;
                *gene = if other >= *gene { other + 1 } else { other };
            }
        }
        child
    }
}
