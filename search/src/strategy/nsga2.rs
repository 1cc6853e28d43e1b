//! NSGA-II (Deb et al. 2002) over categorical genes, generational and elitist: the
//! first population is random; each later child comes from binary tournaments (rank,
//! then crowding) among the best `population` of all earlier generations, uniform
//! crossover and one-gene-on-average mutation, and is never a configuration proposed
//! before.

use std::collections::HashSet;

use rand::Rng;

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
    // The archive: every trained configuration of earlier generations.
    let archive: Vec<(Genome, Point)> = earlier
        .iter()
        .filter_map(|r| match r.outcome {
            Outcome::Accuracy(a) => Some((r.genome, ctx.objectives.point(&r.genome, Some(a)))),
            _ => None,
        })
        .collect();
    if archive.len() < 2 {
        return unseen_random(ctx, history, &mut rng);
    }
    let points: Vec<Point> = archive.iter().map(|a| a.1).collect();
    let rank = ranks(&points);
    let crowd = crowding(&points, &rank);
    // Environmental selection: the best `pop` by (rank, crowding).
    let mut order: Vec<usize> = (0..archive.len()).collect();
    order.sort_by(|&a, &b| {
        rank[a]
            .cmp(&rank[b])
            .then(crowd[b].total_cmp(&crowd[a]))
            .then(a.cmp(&b))
    });
    order.truncate(pop);
    let better = |a: usize, b: usize| {
        if rank[a] != rank[b] {
            rank[a] < rank[b]
        } else {
            crowd[a] > crowd[b]
        }
    };
    let tournament = |rng: &mut rand_chacha::ChaCha8Rng| {
        let a = order[rng.random_range(0..order.len())];
        let b = order[rng.random_range(0..order.len())];
        if better(b, a) {
            b
        } else {
            a
        }
    };
    let seen: HashSet<Genome> = history.iter().map(|r| r.genome).collect();
    let genes = archive[0].0.len();
    let active = (0..genes)
        .filter(|&k| ctx.space.arity(k) > 1)
        .count()
        .max(1);
    for _ in 0..BREED_TRIES {
        let (p1, p2) = (tournament(&mut rng), tournament(&mut rng));
        let (a, b) = (archive[p1].0, archive[p2].0);
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
        if ctx.space.is_valid(&child) && !seen.contains(&child) {
            return Step::Evaluate(child);
        }
    }
    unseen_random(ctx, history, &mut rng)
}
