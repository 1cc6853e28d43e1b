//! The online phase: both parties walk the same `SecurePlan`, each with its half of the
//! dealer material, exchanging only masked values over a [`Channel`]. The client ends
//! with the logits; the server learns nothing.

use std::time::Instant;

use crate::arith::fixed::Fixed;
use crate::arith::tensor::Mat;
use crate::gates::state::State;
use crate::gates::{gate, GateError};
use crate::party::Party;
use crate::plan::*;
use crate::preprocessing::material::Source;
use crate::transport::{Channel, ChannelExt, MsgKind, TransportError};

mod setup;
pub use crate::gates::keys::{ClientKeys, Keys, ServerKeys};
pub use setup::{client_setup, client_setup_message, send_setup, server_setup, sync};

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("step {index} ({name}): {source}")]
    Transport {
        index: usize,
        name: &'static str,
        #[source]
        source: TransportError,
    },
    #[error("setup: {0}")]
    Setup(#[source] TransportError),
    #[error("dealer material does not fit the plan: {0}")]
    Material(String),
    #[error("bad input: {0}")]
    Input(String),
}

/// Measured cost of one plan step on this party's channel.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepTrace {
    pub name: &'static str,
    pub shape: String,
    /// Bytes on the wire during the step, both directions, headers included.
    pub bytes: u64,
    pub rounds: u64,
    pub seconds: f64,
}

/// Result of one party's online run.
pub struct RunOutput {
    /// The revealed logits (client only).
    pub logits: Option<Vec<f64>>,
    pub steps: Vec<StepTrace>,
    /// Time spent getting each step's material: expanding it, or waiting for a dealer
    /// that streams it.
    pub material_s: f64,
}

/// Runs the online phase as `party` (the client with the hidden states, or the server).
pub fn run(
    plan: &SecurePlan,
    keys: Keys<'_>,
    material: impl Source,
    hidden: Option<&[Mat]>,
    chan: &mut dyn Channel,
) -> Result<RunOutput, ExecError> {
    match hidden {
        Some(h) => {
            let mut get = |k: usize| {
                h.get(k).cloned().ok_or_else(|| {
                    format!(
                        "hidden state {k} missing: got {} of {}",
                        h.len(),
                        plan.inputs
                    )
                })
            };
            run_with(plan, keys, material, Some(&mut get), chan)
        }
        None => run_with(plan, keys, material, None, chan),
    }
}

/// The client's hidden states as they come: `k` is the plan's input index, asked for
/// in increasing order and only when a step first reads it, so an opening of an early
/// state can leave while the backbone still computes the later ones.
pub type HiddenSource<'a> = &'a mut dyn FnMut(usize) -> Result<Mat, String>;

/// [`run`] with the client's states from `hidden`, each fetched when first needed.
pub fn run_with(
    plan: &SecurePlan,
    keys: Keys<'_>,
    mut material: impl Source,
    mut hidden: Option<HiddenSource<'_>>,
    chan: &mut dyn Channel,
) -> Result<RunOutput, ExecError> {
    let p = match keys {
        Keys::Client(_) => Party::Client,
        Keys::Server(_) => Party::Server,
    };
    let b = material.binding();
    if b.session != chan.session() {
        return Err(ExecError::Material(format!(
            "material is bound to session {:016x}, this channel runs session {:016x}",
            b.session,
            chan.session()
        )));
    }
    if b.party != p || b.plan_digest != plan.digest() {
        return Err(ExecError::Material(format!(
            "material for the {:?} / plan {:x}, expected the {:?} / plan {:x} (a dealer of \
             another release digests plans differently)",
            b.party,
            b.plan_digest,
            p,
            plan.digest(),
        )));
    }
    if p == Party::Client && hidden.is_none() {
        return Err(ExecError::Input("the client needs hidden states".into()));
    }
    let fx = Fixed::new(plan.frac_bits);
    let mut party = State {
        p,
        fx,
        plan,
        keys,
        shares: vec![None; plan.wires.len()],
        zero: crate::gates::zero_wires(plan),
        opened: vec![None; plan.openings.len()],
    };
    for (i, w) in plan.wires.iter().enumerate() {
        if let (WireKind::ClientInput { .. }, Party::Server) = (w.kind, p) {
            party.shares[i] = Some(vec![0; w.rows * w.cols]);
        }
    }
    // The client's states, loaded in input order as steps first read them.
    let mut load_inputs = |party: &mut State<'_>, upto: usize| -> Result<(), ExecError> {
        let Some(src) = hidden.as_mut() else {
            return Ok(());
        };
        for (i, w) in plan.wires.iter().enumerate() {
            let WireKind::ClientInput { hidden: k } = w.kind else {
                continue;
            };
            if k > upto || party.shares[i].is_some() {
                continue;
            }
            let m = src(k).map_err(ExecError::Input)?;
            if (m.rows, m.cols) != (w.rows, w.cols) {
                return Err(ExecError::Input(format!(
                    "hidden state {k} is {}x{}, the plan needs {}x{}",
                    m.rows, m.cols, w.rows, w.cols
                )));
            }
            if let Some(j) = m.data.iter().position(|v| !v.is_finite() || v.abs() > 1e6) {
                return Err(ExecError::Input(format!(
                    "hidden state {k} element {j} is {} (must be finite, |x| <= 1e6)",
                    m.data[j]
                )));
            }
            party.shares[i] = Some(fx.encode_all(&m.data));
        }
        Ok(())
    };
    let mut traces = Vec::with_capacity(plan.steps.len());
    let mut logits = None;
    let mut waited = 0.0;
    for (index, step) in plan.steps.iter().enumerate() {
        let t = Instant::now();
        let mat = material
            .next_step(plan)
            .map_err(|e| ExecError::Material(e.0))?;
        waited += t.elapsed().as_secs_f64();
        let needed = step
            .reads(&plan.openings)
            .iter()
            .filter_map(|&w| match plan.wires[w].kind {
                WireKind::ClientInput { hidden: k } => Some(k),
                WireKind::Shared => None,
            })
            .max();
        if let Some(k) = needed {
            load_inputs(&mut party, k)?;
        }
        let (before, t0) = (chan.stats(), Instant::now());
        let revealed = gate(step).run(&mut party, chan, mat).map_err(|e| match e {
            GateError::Transport(source) => ExecError::Transport {
                index,
                name: step.name(),
                source,
            },
            GateError::Material(what) => {
                ExecError::Material(format!("{} step expects {what}", step.name()))
            }
        })?;
        if let Some(v) = revealed {
            logits = Some(fx.decode_all(&v));
        }
        let after = chan.stats();
        traces.push(StepTrace {
            name: step.name(),
            shape: plan.step_shape(step),
            bytes: after.total_bytes() - before.total_bytes(),
            rounds: after.rounds - before.rounds,
            seconds: t0.elapsed().as_secs_f64(),
        });
    }
    material.finish().map_err(|e| ExecError::Material(e.0))?;
    Ok(RunOutput {
        logits,
        steps: traces,
        material_s: waited,
    })
}
