//! Strategies propose the next configuration from the history of the study. A proposal
//! is a pure function of (seed, history), so a resumed or shared study proposes exactly
//! what an uninterrupted one would, and the same code replays on a tabulated benchmark.

mod ehvi;
mod gp;
mod nsga2;
mod reinforce;
mod simple;

use cryptpeft_types::AdapterSpec;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::genes::{Genome, Space};
use crate::pareto::Point;
use crate::space::{ReinforceConfig, StrategyKind};

/// What became of a proposed configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// Being trained (by this or another worker).
    Pending,
    /// Trained: validation accuracy in `[0, 1]`.
    Accuracy(f64),
    /// Priced but not trained (the paper's controller skips slow candidates).
    Skipped,
    Failed,
}

/// One configuration of the history, in proposal order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Record {
    pub genome: Genome,
    pub outcome: Outcome,
}

/// A strategy's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Evaluate(Genome),
    /// Record without training.
    Skip(Genome),
    /// Needs results that other workers are still computing.
    Wait,
    /// Nothing left to propose.
    Done,
}

/// The objectives a strategy optimises.
pub trait Objectives {
    /// Objectives of a genome on the selection profile, with its constraint violation
    /// (accuracy 0 when not trained).
    fn point(&self, g: &Genome, accuracy: Option<f64>) -> Point;
    /// Predicted seconds on the selection profile of any spec on the backbone, in the
    /// space or not (`None` when it is invalid).
    fn latency_of(&self, spec: &AdapterSpec) -> Option<f64>;
    /// The validation-accuracy floor, if the space sets one.
    fn accuracy_floor(&self) -> Option<f64> {
        None
    }
}

/// What a strategy may look at besides the history.
pub struct Ctx<'a> {
    pub space: &'a Space,
    pub seed: u64,
    pub population: usize,
    pub reinforce: &'a ReinforceConfig,
    pub objectives: &'a dyn Objectives,
}

impl Ctx<'_> {
    /// The generator for proposal `n`: one stream per proposal, so a proposal does not
    /// depend on how many random numbers earlier ones drew.
    fn rng(&self, n: usize) -> ChaCha8Rng {
        let mut r = ChaCha8Rng::seed_from_u64(self.seed);
        r.set_stream(n as u64);
        r
    }
}

/// The next step of `kind` after `history`.
pub fn propose(kind: StrategyKind, ctx: &Ctx, history: &[Record]) -> Step {
    match kind {
        StrategyKind::EhviFront => ehvi::propose(ctx, history, true),
        StrategyKind::Ehvi => ehvi::propose(ctx, history, false),
        StrategyKind::Nsga2 => nsga2::propose(ctx, history),
        StrategyKind::Reinforce => reinforce::propose(ctx, history, false),
        StrategyKind::ReinforcePaper => reinforce::propose(ctx, history, true),
        StrategyKind::Random => simple::random(ctx, history),
        StrategyKind::Grid => simple::grid(ctx, history),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::genes::SCOPE as SCOPE_GENE;
    use crate::space::Genes;
    use cryptpeft_types::{Activation, AttentionKind, BackboneSpec, NormKind};

    /// Accuracy grows with rank and scope, latency with rank, heads and scope.
    struct Toy<'a>(&'a Space);
    impl Objectives for Toy<'_> {
        fn point(&self, g: &Genome, accuracy: Option<f64>) -> Point {
            let s = self.0.spec(g);
            Point {
                accuracy: accuracy.unwrap_or(0.0),
                seconds: 1.0 + (s.rank * s.scope) as f64 / 10.0 + s.heads as f64,
                violation: 0.0,
            }
        }
        fn latency_of(&self, spec: &AdapterSpec) -> Option<f64> {
            Some(1.0 + (spec.rank * spec.scope) as f64 / 10.0 + spec.heads as f64)
        }
    }

    fn toy_accuracy(space: &Space, g: &Genome) -> f64 {
        let s = space.spec(g);
        1.0 - 1.0 / (1.0 + (s.rank * s.scope) as f64 / 8.0 + s.heads as f64 / 4.0)
    }

    fn test_ctx<'a>(
        space: &'a Space,
        objectives: &'a dyn Objectives,
        reinforce: &'a ReinforceConfig,
        seed: u64,
        population: usize,
    ) -> Ctx<'a> {
        Ctx {
            space,
            seed,
            population,
            reinforce,
            objectives,
        }
    }

    pub(super) fn space() -> Space {
        let genes = Genes {
            heads: vec![1, 2, 4],
            rank: vec![4, 8, 16],
            scope: vec![1, 2, 3],
            blocks: vec![1],
            attention: vec![AttentionKind::LinAtten],
            norm: vec![NormKind::Affine, NormKind::None],
            activation: vec![Activation::Relu],
            scale: vec![0.5],
        };
        Space::new(&genes, &BackboneSpec::test_small(), 3).unwrap()
    }

    /// Runs `kind` to exhaustion (or `limit` proposals), answering from the toy table.
    fn drive(kind: StrategyKind, space: &Space, seed: u64, limit: usize) -> Vec<Record> {
        let toy = Toy(space);
        let rc = ReinforceConfig::default();
        let ctx = test_ctx(space, &toy, &rc, seed, 6);
        let mut h = Vec::new();
        while h.len() < limit {
            match propose(kind, &ctx, &h) {
                Step::Evaluate(g) => h.push(Record {
                    genome: g,
                    outcome: Outcome::Accuracy(toy_accuracy(space, &g)),
                }),
                Step::Skip(g) => h.push(Record {
                    genome: g,
                    outcome: Outcome::Skipped,
                }),
                Step::Wait => panic!("nothing is pending"),
                Step::Done => break,
            }
        }
        h
    }

    #[test]
    fn no_strategy_proposes_a_configuration_twice_and_all_stay_valid() {
        let space = space();
        let n = space.valid().len();
        for kind in [
            StrategyKind::EhviFront,
            StrategyKind::Ehvi,
            StrategyKind::Nsga2,
            StrategyKind::Random,
            StrategyKind::Grid,
        ] {
            let h = drive(kind, &space, 1, 10 * n);
            assert_eq!(h.len(), n, "{kind} should exhaust the space exactly once");
            let set: std::collections::HashSet<_> = h.iter().map(|r| r.genome).collect();
            assert_eq!(set.len(), n);
        }
        for kind in [StrategyKind::Reinforce, StrategyKind::ReinforcePaper] {
            let h = drive(kind, &space, 1, 10 * n);
            let set: std::collections::HashSet<_> = h.iter().map(|r| r.genome).collect();
            assert_eq!(set.len(), h.len(), "{kind} re-records a configuration");
            assert!(h.iter().all(|r| space.is_valid(&r.genome)));
        }
    }

    #[test]
    fn proposals_depend_only_on_seed_and_history() {
        let space = space();
        for kind in [
            StrategyKind::EhviFront,
            StrategyKind::Ehvi,
            StrategyKind::Nsga2,
            StrategyKind::Reinforce,
            StrategyKind::Random,
        ] {
            assert_eq!(
                drive(kind, &space, 7, 20),
                drive(kind, &space, 7, 20),
                "{kind}"
            );
            assert_ne!(
                drive(kind, &space, 7, 20),
                drive(kind, &space, 8, 20),
                "{kind}"
            );
        }
    }

    #[test]
    fn nsga2_waits_for_the_previous_generation() {
        let space = space();
        let toy = Toy(&space);
        let rc = ReinforceConfig::default();
        let ctx = test_ctx(&space, &toy, &rc, 0, 2);
        let mut h = drive(StrategyKind::Nsga2, &space, 0, 2);
        h[1].outcome = Outcome::Pending;
        assert_eq!(propose(StrategyKind::Nsga2, &ctx, &h), Step::Wait);
    }

    #[test]
    fn the_controller_skips_candidates_over_the_latency_target() {
        let space = space();
        let toy = Toy(&space);
        let rc = ReinforceConfig {
            latency_target_s: Some(4.0),
            ..ReinforceConfig::default()
        };
        let ctx = test_ctx(&space, &toy, &rc, 3, 6);
        let mut h = Vec::new();
        for _ in 0..40 {
            match propose(StrategyKind::Reinforce, &ctx, &h) {
                Step::Evaluate(g) => {
                    assert!(toy.point(&g, None).seconds <= 4.0);
                    h.push(Record {
                        genome: g,
                        outcome: Outcome::Accuracy(0.5),
                    })
                }
                Step::Skip(g) => {
                    assert!(toy.point(&g, None).seconds > 4.0);
                    h.push(Record {
                        genome: g,
                        outcome: Outcome::Skipped,
                    })
                }
                _ => break,
            }
        }
        assert!(h.iter().any(|r| r.outcome == Outcome::Skipped));
    }

    #[test]
    fn the_papers_controller_samples_heads_and_rank_in_one_pass_over_the_scopes() {
        let space = space();
        let h = drive(StrategyKind::ReinforcePaper, &space, 2, 1000);
        assert!(
            !h.is_empty() && h.len() < space.valid().len(),
            "{}",
            h.len()
        );
        // Norm is the only other gene with a choice: always its first.
        assert!(h.iter().all(|r| r.genome[5] == 0));
        let scopes: Vec<u16> = h.iter().map(|r| r.genome[SCOPE_GENE]).collect();
        assert!(scopes.windows(2).all(|w| w[0] <= w[1]), "{scopes:?}");
    }

    /// Nadir hypervolume fraction `kind` reaches on the toy table in `budget` trainings,
    /// averaged over 10 seeds (the toy's many ties make front shares a lottery).
    fn toy_hypervolume(kind: StrategyKind, budget: usize) -> f64 {
        let space = space();
        let toy = Toy(&space);
        let scored = |g: &Genome| (*g, toy.point(g, Some(toy_accuracy(&space, g))));
        let table: Vec<(Genome, Point)> = space.valid().iter().map(scored).collect();
        let truth = crate::metrics::Truth::new(&table);
        let sum: f64 = (0..10)
            .map(|seed| {
                let h = drive(kind, &space, seed, budget);
                let found: Vec<(Genome, Point)> = h.iter().map(|r| scored(&r.genome)).collect();
                truth.score(&found).nadir_hv
            })
            .sum();
        sum / 10.0
    }

    #[test]
    fn the_surrogate_reaches_more_hypervolume_than_random_search() {
        let random = toy_hypervolume(StrategyKind::Random, 12);
        // ehvi-front spends half its trainings on the front's members, not its area.
        for (kind, margin) in [(StrategyKind::Ehvi, 0.05), (StrategyKind::EhviFront, 0.025)] {
            let hv = toy_hypervolume(kind, 12);
            assert!(hv > random + margin, "{kind} {hv}, random {random}");
        }
    }

    #[test]
    fn running_trials_are_never_repeated_and_every_worker_proposes_alike() {
        let space = space();
        let toy = Toy(&space);
        let rc = ReinforceConfig::default();
        let ctx = test_ctx(&space, &toy, &rc, 4, 6);
        // Both of ehvi-front's steps: EHVI after 10 records, the front share after 11.
        for (kind, n) in [
            (StrategyKind::Ehvi, 10),
            (StrategyKind::EhviFront, 10),
            (StrategyKind::EhviFront, 11),
        ] {
            let mut h = drive(kind, &space, 4, n);
            for r in &mut h[7..] {
                r.outcome = Outcome::Pending;
            }
            let Step::Evaluate(g) = propose(kind, &ctx, &h) else {
                panic!("{kind} waits or stops with trials running");
            };
            assert!(
                h.iter().all(|r| r.genome != g),
                "{kind} repeats a running trial"
            );
            assert_eq!(propose(kind, &ctx, &h), Step::Evaluate(g));
        }
    }

    /// Toy objectives with a latency budget: the slowest configurations are infeasible.
    struct Capped<'a>(Toy<'a>, f64);
    impl Objectives for Capped<'_> {
        fn point(&self, g: &Genome, accuracy: Option<f64>) -> Point {
            let mut p = self.0.point(g, accuracy);
            p.violation = (p.seconds / self.1 - 1.0).max(0.0);
            p
        }
        fn latency_of(&self, spec: &AdapterSpec) -> Option<f64> {
            self.0.latency_of(spec)
        }
    }

    #[test]
    fn the_surrogate_never_trains_what_the_price_rules_out() {
        let space = space();
        let capped = Capped(Toy(&space), 5.0);
        let rc = ReinforceConfig::default();
        let ctx = test_ctx(&space, &capped, &rc, 0, 6);
        let feasible = space
            .valid()
            .iter()
            .filter(|g| capped.point(g, None).violation == 0.0)
            .count();
        assert!(feasible > 3 && feasible < space.valid().len());
        for kind in [StrategyKind::EhviFront, StrategyKind::Ehvi] {
            let mut h = Vec::new();
            while let Step::Evaluate(g) = propose(kind, &ctx, &h) {
                assert_eq!(capped.point(&g, None).violation, 0.0, "{kind}");
                h.push(Record {
                    genome: g,
                    outcome: Outcome::Accuracy(toy_accuracy(&space, &g)),
                });
            }
            assert_eq!(
                h.len(),
                feasible,
                "{kind} stops once the feasible part is done"
            );
        }
    }
}
