//! Random search and the exhaustive grid.

use std::collections::HashSet;

use rand::Rng;

use super::{Ctx, Record, Step};
use crate::genes::Genome;

/// A uniformly random valid configuration not proposed before.
pub fn random(ctx: &Ctx, history: &[Record]) -> Step {
    let mut rng = ctx.rng(history.len());
    unseen_random(ctx, history, &mut rng)
}

pub(super) fn unseen_random(ctx: &Ctx, history: &[Record], rng: &mut impl Rng) -> Step {
    let seen: HashSet<Genome> = history.iter().map(|r| r.genome).collect();
    let left: Vec<&Genome> = ctx
        .space
        .valid()
        .iter()
        .filter(|g| !seen.contains(*g))
        .collect();
    if left.is_empty() {
        return Step::Done;
    }
    Step::Evaluate(*left[rng.random_range(0..left.len())])
}

/// The first valid configuration, in enumeration order, not proposed before.
pub fn grid(ctx: &Ctx, history: &[Record]) -> Step {
    let seen: HashSet<Genome> = history.iter().map(|r| r.genome).collect();
    ctx.space
        .valid()
        .iter()
        .find(|g| !seen.contains(*g))
        .map_or(Step::Done, |g| Step::Evaluate(*g))
}
