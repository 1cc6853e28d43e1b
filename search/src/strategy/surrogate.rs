//! Surrogate-guided search: only accuracy is unknown before training. The cost model
//! prices every candidate's latency (and dealer material) exactly in milliseconds, so a
//! Gaussian process ([`super::gp`]) models accuracy alone, and an acquisition decides
//! which configuration is trained next: the largest expected hypervolume improvement
//! ([`super::ehvi`]) or the highest probability of joining the true front
//! ([`super::membership`]).
//!
//! Candidates: every unseen valid configuration of a space up to [`SCORE_ALL`]; beyond
//! it, NSGA-II offspring of the trained archive plus random configurations, so the
//! evolutionary loop proposes and the surrogate decides which offspring are trained.
//! Constraints known from the price (latency per profile, dealer material) exclude a
//! candidate before training; the accuracy floor raises the reference. Trials still
//! running are never proposed again and, the proposal being a function of seed and
//! history alone, every worker sharing a study makes the same one.

use std::collections::HashSet;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::ehvi::Staircase;
use super::gp::{Encoding, Gp};
use super::membership::{self, Competitor};
use super::nsga2::Parents;
use super::{Ctx, Outcome, Record, Step};
use crate::genes::Genome;
use crate::pareto::{front, Point};

/// Spaces up to this many valid configurations are scored whole.
const SCORE_ALL: usize = 20_000;
/// Offspring and random configurations scored per proposal in larger spaces.
const OFFSPRING: usize = 2_000;
const RANDOM: usize = 1_000;
/// The EHVI reference lies this share of each objective's range beyond the worst value
/// (the usual convention: extreme points keep a positive contribution).
const MARGIN: f64 = 0.1;

/// What decides among the priced candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquisition {
    /// Largest expected hypervolume improvement; trials in flight count at their
    /// predicted accuracy (the "Kriging believer").
    Ehvi,
    /// Highest probability of being on the front of every configuration, estimated
    /// from joint posterior draws; trials in flight are drawn like the others.
    Membership,
}

pub fn propose(ctx: &Ctx, history: &[Record], acquisition: Acquisition) -> Step {
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
    let feasible: Vec<(Genome, Point)> = priced
        .iter()
        .filter(|c| c.1.violation == 0.0)
        .copied()
        .collect();
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
    let trained: Vec<Point> = x
        .iter()
        .zip(&y)
        .map(|(g, &a)| ctx.objectives.point(g, Some(a)))
        .collect();
    let pending: Vec<Genome> = history
        .iter()
        .filter(|r| r.outcome == Outcome::Pending)
        .map(|r| r.genome)
        .collect();
    let pick = match acquisition {
        Acquisition::Ehvi => by_ehvi(ctx, &gp, &y, &priced, &feasible, trained, &pending),
        Acquisition::Membership => {
            by_membership(ctx, &gp, &feasible, &trained, &pending, &mut rng)
        }
    };
    pick.map_or(Step::Done, Step::Evaluate)
}

/// The feasible candidate with the largest EHVI; ties (all zero late in a search) go
/// to the least known.
fn by_ehvi(
    ctx: &Ctx,
    gp: &Gp,
    y: &[f64],
    priced: &[(Genome, Point)],
    feasible: &[(Genome, Point)],
    mut known: Vec<Point>,
    pending: &[Genome],
) -> Option<Genome> {
    for g in pending {
        known.push(ctx.objectives.point(g, Some(gp.predict(g).0)));
    }
    let front_pts: Vec<Point> = front(&known).into_iter().map(|i| known[i]).collect();
    let (ref_acc, ref_s) = reference(ctx, y, priced, &known);
    let stairs = Staircase::new(&front_pts, ref_acc, ref_s);
    let mut best: Option<(f64, f64, Genome)> = None;
    for &(g, p) in feasible {
        let (mean, sd) = gp.predict(&g);
        let score = (stairs.ehvi(p.seconds, mean, sd), sd);
        if best.is_none_or(|b| score.0 > b.0 || (score.0 == b.0 && score.1 > b.1)) {
            best = Some((score.0, score.1, g));
        }
    }
    best.map(|b| b.2)
}

/// The feasible candidate most likely to be on the front of every configuration;
/// ties go to the least known.
fn by_membership(
    ctx: &Ctx,
    gp: &Gp,
    feasible: &[(Genome, Point)],
    trained: &[Point],
    pending: &[Genome],
    rng: &mut ChaCha8Rng,
) -> Option<Genome> {
    let fixed: Vec<Point> = trained
        .iter()
        .filter(|p| p.violation == 0.0)
        .copied()
        .collect();
    let mut open: Vec<Competitor> = feasible
        .iter()
        .map(|&(genome, p)| Competitor {
            genome,
            seconds: p.seconds,
            proposable: true,
        })
        .collect();
    for g in pending {
        let p = ctx.objectives.point(g, None);
        if p.violation == 0.0 {
            open.push(Competitor {
                genome: *g,
                seconds: p.seconds,
                proposable: false,
            });
        }
    }
    let floor = ctx.objectives.accuracy_floor();
    let chances = membership::chances(gp, &fixed, &open, floor, rng);
    let mut best: Option<(f64, f64, Genome)> = None;
    for (c, &chance) in open.iter().zip(&chances) {
        if !c.proposable {
            continue;
        }
        let sd = gp.predict(&c.genome).1;
        if best.is_none_or(|b| chance > b.0 || (chance == b.0 && sd > b.1)) {
            best = Some((chance, sd, c.genome));
        }
    }
    best.map(|b| b.2)
}

/// The EHVI reference: the worst accuracy seen and the slowest priced configuration,
/// each [`MARGIN`] of its range further; the accuracy floor if higher.
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

