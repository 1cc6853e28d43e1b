//! The paper's search (its `search_adapter`, docs/DESIGN.md section 5), with the cost model
//! in place of its linear latency fit: an outer loop over scope; for each scope a fresh
//! controller with one categorical policy per other gene (Adam, lr 0.001); a sampled
//! candidate slower than the latency target, or than (first heads, first rank, s + 4),
//! is not trained and earns `1 / latency`; otherwise it is trained and earns
//! `accuracy + 1 / latency`; loss `-sum(log p) * reward`; after `patience` samples
//! without a new best accuracy, the next scope. A failed training earns nothing.
//!
//! Two variants. `reinforce-paper` is the paper's controller: policies over heads and
//! rank only (every other gene at its first choice), one pass over the scopes, then done.
//! `reinforce` generalises it to the project's spaces: a policy over every gene but
//! scope, and a new pass over the scopes while the budget lasts, so that budgets compare.
//! The controller is replayed from the history at every proposal.

use rand::Rng;

use super::{Ctx, Outcome, Record, Step};
use crate::genes::{Genome, GENES, SCOPE};

/// The genes the paper's controller samples: heads and rank.
const PAPER_GENES: [usize; 2] = [0, 1];

/// Samples per scope at most (guards against a policy that keeps re-sampling).
const MAX_SAMPLES_PER_SCOPE: usize = 200;
/// Passes over the scopes without any new configuration before giving up.
const MAX_IDLE_PASSES: usize = 3;

/// One categorical policy with Adam on its logits.
struct Policy {
    logits: Vec<f64>,
    m: Vec<f64>,
    v: Vec<f64>,
    t: i32,
}

impl Policy {
    fn new(k: usize) -> Self {
        Self {
            logits: vec![0.0; k],
            m: vec![0.0; k],
            v: vec![0.0; k],
            t: 0,
        }
    }

    fn probs(&self) -> Vec<f64> {
        let max = self
            .logits
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = self.logits.iter().map(|l| (l - max).exp()).collect();
        let z: f64 = e.iter().sum();
        e.into_iter().map(|x| x / z).collect()
    }

    fn sample(&self, rng: &mut impl Rng) -> usize {
        let u: f64 = rng.random();
        let mut acc = 0.0;
        let p = self.probs();
        for (i, pi) in p.iter().enumerate() {
            acc += pi;
            if u < acc {
                return i;
            }
        }
        p.len() - 1
    }

    /// One Adam step on `-log p(action) * reward`.
    fn step(&mut self, action: usize, reward: f64, lr: f64) {
        let (b1, b2, eps) = (0.9, 0.999, 1e-8);
        self.t += 1;
        let p = self.probs();
        for (i, pi) in p.iter().enumerate() {
            let onehot = if i == action { 1.0 } else { 0.0 };
            let g = (pi - onehot) * reward;
            self.m[i] = b1 * self.m[i] + (1.0 - b1) * g;
            self.v[i] = b2 * self.v[i] + (1.0 - b2) * g * g;
            let mh = self.m[i] / (1.0 - b1.powi(self.t));
            let vh = self.v[i] / (1.0 - b2.powi(self.t));
            self.logits[i] -= lr * mh / (vh.sqrt() + eps);
        }
    }
}

/// `paper`: the paper's controller; otherwise the generalisation (module doc).
pub fn propose(ctx: &Ctx, history: &[Record], paper: bool) -> Step {
    let sampled = |k: usize| k != SCOPE && (!paper || PAPER_GENES.contains(&k));
    let cfg = ctx.reinforce;
    let scopes = ctx.space.arity(SCOPE);
    let mut next = 0usize; // history entries consumed by the replay
    let mut sample_no = 0usize;
    let mut idle = 0usize;
    loop {
        let before = next;
        for s in 0..scopes {
            let mut policies: Vec<Policy> = (0..GENES.len())
                .map(|k| Policy::new(ctx.space.arity(k)))
                .collect();
            let base = {
                let mut g: Genome = [0; 8];
                g[SCOPE] = s as u16;
                ctx.space.spec(&g)
            };
            let bound = {
                let mut b = base.clone();
                b.scope += 4;
                ctx.objectives.latency_of(&b)
            };
            let (mut best, mut stale) = (f64::NEG_INFINITY, 0usize);
            for _ in 0..MAX_SAMPLES_PER_SCOPE {
                let mut rng = ctx.rng(sample_no);
                sample_no += 1;
                let mut g: Genome = [0; 8];
                for (k, p) in policies.iter().enumerate() {
                    g[k] = if k == SCOPE {
                        s as u16
                    } else if sampled(k) {
                        p.sample(&mut rng) as u16
                    } else {
                        0
                    };
                }
                let reward = if !ctx.space.is_valid(&g) {
                    0.0
                } else {
                    let lat = ctx.objectives.point(&g, None).seconds;
                    let slow = cfg.latency_target_s.is_some_and(|t| lat > t)
                        || bound.is_some_and(|b| lat > b);
                    // The outcome: from an earlier sample of the same genome, else the
                    // next history entry, else this is the proposal.
                    let known = history[..next].iter().find(|r| r.genome == g);
                    let outcome = match known {
                        Some(r) => r.outcome,
                        None if next < history.len() => {
                            if history[next].genome != g {
                                // The history was not made by this controller.
                                return Step::Done;
                            }
                            next += 1;
                            history[next - 1].outcome
                        }
                        None => {
                            return if slow {
                                Step::Skip(g)
                            } else {
                                Step::Evaluate(g)
                            }
                        }
                    };
                    match outcome {
                        Outcome::Pending => return Step::Wait,
                        Outcome::Accuracy(acc) if !slow => {
                            if acc > best {
                                (best, stale) = (acc, 0);
                            } else {
                                stale += 1;
                            }
                            acc + 1.0 / lat
                        }
                        Outcome::Failed => {
                            stale += 1;
                            0.0
                        }
                        _ => {
                            stale += 1;
                            1.0 / lat
                        }
                    }
                };
                if !ctx.space.is_valid(&g) {
                    stale += 1;
                }
                for (k, p) in policies.iter_mut().enumerate() {
                    if sampled(k) {
                        p.step(g[k] as usize, reward, cfg.lr);
                    }
                }
                if stale >= cfg.patience {
                    break;
                }
            }
        }
        idle = if next == before { idle + 1 } else { 0 };
        if paper || idle >= MAX_IDLE_PASSES {
            return Step::Done;
        }
    }
}
