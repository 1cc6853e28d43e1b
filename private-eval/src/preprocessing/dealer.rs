//! The dealer's preprocessing: walks a plan and generates, per session, the correlated
//! randomness of every step for both parties. It never sees weights or inputs: weight
//! masks `B` come from a per-model seed it shares with the server (the server sends the
//! client `E = W - B` once per model), input masks are fresh per session.

use crate::arith::prg::Prg;
use crate::gates::{gate, Dealing};
use crate::party::Party;
use crate::plan::*;
use crate::preprocessing::material::{Binding, Material, StepMat};

pub use crate::gates::keys::ModelMasks;
pub use crate::protocols::compare::{cmp_material, relu_material};

/// The dealer's walk over a plan for one session, a step at a time: each half's random
/// parts drawn from its own seed (each gate's `draw`, [`crate::gates`]), then the corrections filled in. A step's
/// material is dropped once handed on, so a session can stream out in bounded memory.
pub struct Generator<'a> {
    plan: &'a SecurePlan,
    dealing: Dealing<'a>,
    binding: [Binding; 2],
    seeds: [u128; 2],
    prgs: [Prg; 2],
    next: usize,
}

impl<'a> Generator<'a> {
    pub fn new(plan: &'a SecurePlan, masks: &'a ModelMasks, session: u64, rng: &mut Prg) -> Self {
        let pair = rng.next_u64();
        let seeds = [rng.next_u128(), rng.next_u128()];
        Self {
            plan,
            dealing: Dealing {
                plan,
                masks,
                open_masks: vec![Vec::new(); plan.openings.len()],
            },
            binding: Party::BOTH.map(|party| Binding {
                session,
                pair,
                plan_digest: plan.digest(),
                party,
            }),
            seeds,
            prgs: seeds.map(Prg::new),
            next: 0,
        }
    }

    /// Party `party`'s header in the seeded encoding.
    pub fn header(&self, party: Party) -> Vec<u8> {
        self.binding[party.index()].header(self.seeds[party.index()])
    }

    /// Both halves of the next step, `None` after the last.
    pub fn next_step(&mut self) -> Option<[StepMat; 2]> {
        let plan = self.plan;
        let step = plan.steps.get(self.next)?;
        self.next += 1;
        let g = gate(step);
        let mut m0 = g.draw(plan, Party::Client, &mut self.prgs[0]);
        let mut m1 = g.draw(plan, Party::Server, &mut self.prgs[1]);
        if let Err(e) = g.fill(&mut self.dealing, [&mut m0, &mut m1]) {
            unreachable!("{e}: a gate fills what it draws");
        }
        Some([m0, m1])
    }
}

/// Generates both parties' material for one session of `plan`, whole.
pub fn generate(
    plan: &SecurePlan,
    masks: &ModelMasks,
    session: u64,
    rng: &mut Prg,
) -> [Material; 2] {
    generate_while(plan, masks, session, rng, || true).expect("never stopped")
}

/// [`generate`], asking `go_on` before each step: None once it says no (the
/// requester has left, say), so nobody waits for material no one will take.
pub fn generate_while(
    plan: &SecurePlan,
    masks: &ModelMasks,
    session: u64,
    rng: &mut Prg,
    go_on: impl Fn() -> bool,
) -> Option<[Material; 2]> {
    let mut g = Generator::new(plan, masks, session, rng);
    let mut out = [0, 1].map(|p| Material {
        binding: g.binding[p],
        seed: g.seeds[p],
        steps: Vec::with_capacity(plan.steps.len()),
    });
    while go_on() {
        let Some([m0, m1]) = g.next_step() else {
            return Some(out);
        };
        out[0].steps.push(m0);
        out[1].steps.push(m1);
    }
    None
}
