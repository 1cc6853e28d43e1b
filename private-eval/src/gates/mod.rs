//! One module per kind of plan step (a gate), each owning its whole life: what a peer's
//! plan may carry for it, what the dealer draws from each party's seed and corrects,
//! what goes on the wire (frames and their bytes), the online computation on shares,
//! the plaintext meaning, the operations the cost model prices, and the frames a fused
//! protocol could do without (the dependency-depth bound).
//!
//! The dealer ([`crate::preprocessing::dealer`]), the material's length
//! ([`crate::online::comm::material_bytes`]), the frames and rounds
//! ([`crate::online::comm::simulate`]), the executor ([`crate::online::exec`]), the
//! plaintext interpreter ([`plain`]), the plan check and the cost model walk a plan and
//! ask `gate` for each step's module; none of them knows a step kind. The cryptographic
//! building blocks the gates share (DCF keys, comparison, exact truncation, fused
//! products, their material) are in [`crate::protocols`].
//!
//! Adding a gate: a `Step` variant in [`crate::plan`] (its fields, `reads` and `name`),
//! a module here implementing `Gate`, its arm in `gate`, and, if it draws material, a
//! [`StepMat`] variant with the fields that travel listed in
//! [`crate::preprocessing::material::corrections`].

mod check;
mod head_matmul;
pub mod keys;
mod linear;
mod local;
pub mod meter;
mod norm;
mod open;
pub mod plain;
mod relu;
mod reveal;
mod row_max;
mod spline;
mod square;
pub(crate) mod state;
mod truncate;

use serde::Serialize;

use crate::arith::prg::Prg;
use crate::party::Party;
use crate::plan::{CmpWidth, SecurePlan, Step};
use crate::protocols::correlations::{CmpMat, ReluMat, Triple};
use crate::protocols::dcf::{Cws, Pair};
use crate::protocols::fused::{PairMat, SquareMat};
use crate::protocols::trunc::TruncMat;
use crate::transport::{Channel, TransportError, HEADER_LEN};

pub use keys::ModelMasks;
use meter::{DealerWork, Meter};
use state::State;

/// One party's material for one step, as its gate draws and consumes it.
#[derive(Debug, Clone, PartialEq)]
pub enum StepMat {
    /// Steps without material, and the server's side of an opening.
    Nothing,
    /// Client's mask for an opening.
    Mask(Vec<u64>),
    /// Shares of `A_open * B_weight` for each private term, in term order.
    Linear(Vec<Vec<u64>>),
    /// One triple per head.
    Beaver(Vec<Triple>),
    Relu(ReluMat),
    /// A square pair `(a, a^2)` (`b` unused).
    Square(Triple),
    /// Comparison material, one key per value (evaluated at every threshold).
    Spline(CmpMat),
    /// Comparison material for each level of a row maximum's tree.
    RowMax(Vec<CmpMat>),
    /// Square triple (`b` unused), comparison material, the multiplication triples,
    /// then one truncation per internal truncation (none under local truncation).
    LayerNorm {
        square: Triple,
        cmp: CmpMat,
        mults: Vec<Triple>,
        truncs: Vec<TruncMat>,
    },
    /// Truncations by `f` and (wide wires) by `2f`.
    Truncate([TruncMat; 2]),
    /// A square of an input truncated in its opening (rows of one value).
    FusedSquare(SquareMat),
    /// A fused norm ([`crate::plan::SecurePlan::fused_norm`]): its square, comparison,
    /// products and the numerator's truncation (riding on the comparison) if it has one;
    /// for a [`crate::plan::NormMix`], one triple per head of its product.
    FusedNorm {
        square: SquareMat,
        cmp: CmpMat,
        products: Vec<PairMat>,
        z_trunc: Option<TruncMat>,
        mix: Vec<Triple>,
    },
}

/// A kind of plan step, as every phase sees it.
pub(crate) trait Gate {
    /// What a peer's plan may carry for this step: wires, openings and weights that
    /// exist, and parameters this release runs exactly.
    fn check(&self, plan: &SecurePlan) -> Result<(), String>;

    /// The frames the step sends, in order (a local step: none).
    fn messages(&self, _plan: &SecurePlan) -> Vec<Msg> {
        Vec::new()
    }

    /// Whether frame `msg` is one a fused protocol could do without (a truncation's
    /// exchange, ReLU's select, the reveal): the dependency-depth bound leaves it out.
    fn fusable(&self, _plan: &SecurePlan, _msg: &Msg) -> bool {
        false
    }

    /// Bytes of `party`'s corrections in its seeded half (what travels beyond the seed).
    fn material_bytes(&self, _plan: &SecurePlan, _party: Party) -> u64 {
        0
    }

    /// `party`'s material with every random part drawn from `prg` and every correction
    /// zero: the dealer fills the corrections, a party reads them (none by default).
    fn draw(&self, _plan: &SecurePlan, _party: Party, _prg: &mut Prg) -> StepMat {
        StepMat::Nothing
    }

    /// The dealer's corrections of both halves (drawn by `Gate::draw`).
    fn fill(&self, _dealer: &mut Dealing<'_>, _m: [&mut StepMat; 2]) -> Result<(), String> {
        Ok(())
    }

    /// This party's half of the step on shares; the client's `Some` is the revealed
    /// value.
    fn run(
        &self,
        st: &mut State<'_>,
        chan: &mut dyn Channel,
        mat: StepMat,
    ) -> Result<Option<Vec<u64>>, GateError>;

    /// The step in f64.
    fn plain(&self, ev: &mut plain::Values<'_>);

    /// Each party's work and frames, in the executor's order (`zero`: the wires whose
    /// server share is known to be zero).
    fn meter(&self, plan: &SecurePlan, zero: &[bool], m: &mut dyn Meter);

    /// What the dealer computes for the step (nothing by default).
    fn dealer_work(&self, _plan: &SecurePlan, _w: &mut DealerWork) {}
}

/// Each party's work and frames in `step`, for the cost model (`Gate::meter`).
pub fn meter(plan: &SecurePlan, step: &Step, zero: &[bool], m: &mut dyn Meter) {
    gate(step).meter(plan, zero, m)
}

/// The wires whose server share is zero: the client's inputs, and slices of them. The
/// server skips its products with them (each gate's `meter` prices that), as the executor
/// does when it runs the plan.
pub fn zero_wires(plan: &SecurePlan) -> Vec<bool> {
    let mut z: Vec<bool> = plan
        .wires
        .iter()
        .map(|w| matches!(w.kind, crate::plan::WireKind::ClientInput { .. }))
        .collect();
    for s in &plan.steps {
        if let Step::Slice { out, x, .. } = s {
            z[*out] = z[*x];
        }
    }
    z
}

/// What the dealer computes for a whole session of `plan`.
pub fn dealer_work(plan: &SecurePlan) -> DealerWork {
    let mut w = DealerWork::default();
    for s in &plan.steps {
        gate(s).dealer_work(plan, &mut w);
    }
    w
}

/// The registration: the module of each kind of step.
pub(crate) fn gate(step: &Step) -> Box<dyn Gate + '_> {
    match step {
        Step::Open { open } => Box::new(open::Open { open: *open }),
        Step::Linear {
            out,
            terms,
            bias,
            shift,
        } => Box::new(linear::Linear {
            step,
            out: *out,
            terms,
            bias: *bias,
            shift: *shift,
        }),
        Step::HeadMatMul {
            out,
            a,
            b,
            heads,
            kind,
        } => Box::new(head_matmul::HeadMatMul {
            out: *out,
            a: *a,
            b: *b,
            heads: *heads,
            kind: *kind,
        }),
        Step::Relu {
            out,
            x,
            bits,
            shift,
        } => Box::new(relu::Relu {
            out: *out,
            x: *x,
            bits: *bits,
            shift: *shift,
        }),
        Step::Square { out, x, shift } => Box::new(square::Square {
            out: *out,
            x: *x,
            shift: *shift,
        }),
        Step::Spline { out, x, func, bits } => Box::new(spline::Spline {
            out: *out,
            x: *x,
            func: *func,
            bits: *bits,
        }),
        Step::RowMax { out, x, bits } => Box::new(row_max::RowMax {
            out: *out,
            x: *x,
            bits: *bits,
        }),
        Step::Shift { out, x, by } => Box::new(local::Shift {
            out: *out,
            x: *x,
            by: *by,
        }),
        Step::Slice { out, x, from, to } => Box::new(local::Slice {
            out: *out,
            x: *x,
            from: *from,
            to: *to,
        }),
        Step::LayerNorm {
            out,
            x,
            z,
            eps,
            inv_sqrt,
            shifts,
            mix,
        } => Box::new(norm::Norm {
            out: *out,
            x: *x,
            z: *z,
            eps: *eps,
            inv_sqrt,
            shifts: *shifts,
            mix: *mix,
        }),
        Step::Truncate { wires, wide } => Box::new(truncate::Truncate { wires, wide }),
        Step::Reveal { wire, shift } => Box::new(reveal::Reveal {
            wire: *wire,
            shift: *shift,
        }),
    }
}

/// Why a step failed on one party: its peer or link, or dealer material that does not
/// fit the plan.
#[derive(Debug)]
pub(crate) enum GateError {
    Transport(TransportError),
    Material(String),
}

impl From<TransportError> for GateError {
    fn from(e: TransportError) -> Self {
        GateError::Transport(e)
    }
}

/// What the dealer knows across steps of one session: the model's weight masks and the
/// client's input masks of every opening so far (a linear step's correlations read them).
pub(crate) struct Dealing<'a> {
    pub plan: &'a SecurePlan,
    pub masks: &'a ModelMasks,
    pub open_masks: Vec<Vec<u64>>,
}

/// One frame of a step. Frames of the same `wave` are sent by their parties before
/// either receives the other's (a simultaneous exchange); waves run in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Msg {
    pub from: Party,
    pub payload_bytes: u64,
    pub wave: u32,
}

impl Msg {
    /// Bytes on the wire, header included.
    pub fn wire_bytes(&self) -> u64 {
        self.payload_bytes + HEADER_LEN as u64
    }
}

/// Bytes of a ring element on the wire.
const ELEM: u64 = 8;

/// One exact truncation of groups of `n` values by `shift` bits: both parties send a
/// masked bit per value, in `ceil(shift / 8)` bytes, every group in one frame.
fn trunc_msgs(groups: &[(usize, u32)]) -> [Msg; 2] {
    let payload_bytes = groups
        .iter()
        .map(|&(n, shift)| (n * crate::protocols::trunc::wire_bytes(shift)) as u64)
        .sum();
    [Party::Client, Party::Server].map(|from| Msg {
        from,
        payload_bytes,
        wave: 0,
    })
}

/// A simultaneous exchange of `elems` ring elements each way in wave `wave`.
fn both(wave: u32, elems: usize) -> [Msg; 2] {
    let payload_bytes = elems as u64 * ELEM;
    [Party::Client, Party::Server].map(|from| Msg {
        from,
        payload_bytes,
        wave,
    })
}

/// The sizes of one party's corrections: only the server receives shares of products
/// and truncation gammas; both receive DCF correction words.
#[derive(Clone, Copy)]
struct Corrections {
    server: bool,
}

impl Corrections {
    fn of(party: Party) -> Self {
        Corrections {
            server: party == Party::Server,
        }
    }

    /// `n` ring elements (the server's shares).
    fn ring(self, n: usize) -> u64 {
        if self.server {
            8 * n as u64
        } else {
            0
        }
    }

    /// `n` values mod `2^bits`, in `ceil(bits / 8)` bytes each (the server's shares).
    fn low(self, n: usize, bits: u32) -> u64 {
        if self.server {
            (n * crate::protocols::trunc::wire_bytes(bits)) as u64
        } else {
            0
        }
    }

    /// Comparison material of `n` values: the server's shares of `b` and `b r`, and
    /// every key.
    fn cmp(self, n: usize, w: CmpWidth) -> u64 {
        self.ring(2 * n) + (n * Cws::<Pair>::bytes(w.domain())) as u64
    }
}

/// The elements of wire `w`.
fn size(plan: &SecurePlan, w: crate::plan::WireId) -> usize {
    plan.wires[w].rows * plan.wires[w].cols
}

/// That every wire of `ws` exists.
fn wires_exist(plan: &SecurePlan, ws: &[crate::plan::WireId]) -> Result<(), String> {
    match ws.iter().find(|&&w| w >= plan.wires.len()) {
        Some(w) => Err(format!("step names wire {w} of {}", plan.wires.len())),
        None => Ok(()),
    }
}

/// A comparison's width: at least `f + 2` bits, at most the ring.
fn check_width(plan: &SecurePlan, bits: u32) -> Result<(), String> {
    match (plan.frac_bits + 2..=64).contains(&bits) {
        true => Ok(()),
        false => Err(format!("comparison width {bits} bits")),
    }
}

/// The error of material that does not fit its step.
fn bad(what: &str) -> GateError {
    GateError::Material(what.into())
}

/// The error of a dealer handed material of another kind than its step draws.
fn mismatch(step: &str) -> String {
    format!("{step}: drawn material of another kind")
}
