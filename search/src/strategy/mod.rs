//! Strategies propose the next configuration from the history of the study. A proposal
//! is a pure function of (seed, history), so a resumed or shared study proposes exactly
//! what an uninterrupted one would, and the same code replays on a tabulated benchmark.

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
        StrategyKind::Nsga2 => nsga2::propose(ctx, history),
        StrategyKind::Reinforce => reinforce::propose(ctx, history),
        StrategyKind::Random => simple::random(ctx, history),
        StrategyKind::Grid => simple::grid(ctx, history),
    }
}
