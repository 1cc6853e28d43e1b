//! Where a plan's truncations ride (docs/secure-evaluation.md): after lowering, every
//! value above `f` fractional bits is truncated by the first reader that can absorb it,
//! and only where none can does the plan get a `Truncate` step, one exchange shared by
//! every value pending then.

use crate::plan::shapes::reciprocal;
use crate::plan::*;

/// Under exact truncation: `Linear` (unless it keeps its inputs' scale), `HeadMatMul`,
/// `Square`, `Spline` and fused norm outputs stay at `2f` bits, and every such wire is truncated,
/// together with all others pending, just before the first step that reads it, so
/// independent layers share one exchange. Five readers take the value untruncated
/// instead, which spares the exchange:
///
/// * a reveal: the client truncates in the clear;
/// * a linear step of public coefficients whose inputs all carry the same bits: its
///   output carries them too (whole coefficients, as a residual sum or a norm's output
///   plus its bias) or `f` more (at most `2f` above `f` in all); a slice likewise;
/// * a ReLU whose width leaves the room (`bits + shift <= 64`): it truncates in its own
///   opening ([`crate::protocols::compare::relu`]);
/// * a fused norm ([`SecurePlan::fused_norm`]): it truncates its input and numerator
///   in its own exchanges (and leaves its output at `2f`);
/// * an opening of a wire at `2f` that nothing else reads later, where
///   [`SecurePlan::wide_allowed`]: the server's linear maps of it give `3f`, and
///   their outputs are truncated by `2f` at their first reader (or revealed, or ReLU'd).
pub(super) fn insert_truncations(
    steps: Vec<Step>,
    openings: &mut [Opening],
    frac_bits: u32,
    wide_allowed: bool,
) -> Vec<Step> {
    let pass = Pass {
        reads: steps.iter().map(|s| s.reads(openings)).collect(),
        opened: openings.iter().map(|o| o.wire).collect(),
        steps: &steps,
        frac_bits,
        wide_allowed,
    };
    // Pending wires with the bits they carry above `f`.
    let mut pending: Vec<(WireId, u32)> = Vec::new();
    let mut out = Vec::with_capacity(steps.len());
    for (i, mut step) in steps.iter().cloned().enumerate() {
        let pending_before = pending.clone();
        let keeps = step.keeps_scale();
        // A linear step of public terms only: it adds `f` to its inputs' bits (`keeps`: 0).
        let public = matches!(&step, Step::Linear { terms, .. }
            if terms.iter().all(|t| matches!(t, Term::Public { .. })));
        let step_reads = pass.absorb(i, &mut step, (keeps, public), &mut pending, openings);
        if step_reads.iter().any(|w| shift_of(&pending, *w).is_some()) {
            let (wide, wires): (Vec<_>, Vec<_>) = std::mem::take(&mut pending)
                .into_iter()
                .partition(|(_, s)| *s > frac_bits);
            out.push(Step::Truncate {
                wires: wires.into_iter().map(|(w, _)| w).collect(),
                wide: wide.into_iter().map(|(w, _)| w).collect(),
            });
        }
        let carried = output_bits(&step, (keeps, public), frac_bits, &pending_before, openings);
        pending.extend(carried);
        out.push(step);
    }
    out
}

/// The plan being rewritten: what each step reads, the wire of each opening.
struct Pass<'a> {
    steps: &'a [Step],
    reads: Vec<Vec<WireId>>,
    opened: Vec<WireId>,
    frac_bits: u32,
    wide_allowed: bool,
}

/// The bits above `f` that pending wire `w` carries, if it is pending.
fn shift_of(pending: &[(WireId, u32)], w: WireId) -> Option<u32> {
    pending.iter().find(|(p, _)| *p == w).map(|(_, s)| *s)
}

/// Whether a linear step maps a wide opening (its output lands at `3f`).
fn maps_wide(openings: &[Opening], terms: &[Term]) -> bool {
    terms
        .iter()
        .any(|t| matches!(t, Term::Private { open, .. } if openings[*open].wide))
}

impl Pass<'_> {
    /// Whether a step from `i` on reads `w` other than through opening `o`'s maps.
    fn read_later(&self, i: usize, w: WireId, o: Option<OpenId>) -> bool {
        self.steps[i..]
            .iter()
            .zip(&self.reads[i..])
            .any(|(s, r)| match s {
                Step::Linear { terms, .. } if o.is_some() => terms.iter().any(|t| match t {
                    Term::Public { wire, .. } => *wire == w,
                    Term::Private { open, .. } => self.opened[*open] == w && Some(*open) != o,
                }),
                _ => r.contains(&w),
            })
    }

    /// Drops `w` from the pending wires unless a step after `i` still reads it.
    fn settle(&self, i: usize, w: WireId, pending: &mut Vec<(WireId, u32)>) {
        if !self.read_later(i + 1, w, None) {
            pending.retain(|(p, _)| *p != w);
        }
    }

    /// Step `i` takes what it can of the pending truncations untruncated (setting its
    /// shifts); returns the wires it still reads, which must be truncated before it.
    fn absorb(
        &self,
        i: usize,
        step: &mut Step,
        (keeps, public): (bool, bool),
        pending: &mut Vec<(WireId, u32)>,
        openings: &mut [Opening],
    ) -> Vec<WireId> {
        let frac_bits = self.frac_bits;
        let mut step_reads = self.reads[i].clone();
        let room = if keeps { 2 * frac_bits } else { frac_bits };
        match step {
            Step::Linear { shift, .. } if public => {
                let s = step_reads.first().and_then(|w| shift_of(pending, *w));
                let same = step_reads.iter().all(|w| shift_of(pending, *w) == s);
                if let (Some(s), true) = (s.filter(|s| *s <= room), same) {
                    *shift = s;
                    for w in &step_reads {
                        self.settle(i, *w, pending);
                    }
                    step_reads.clear();
                }
            }
            // A square truncates its input in its opening.
            Step::Square { x, shift, .. } => {
                if let Some(s) = shift_of(pending, *x).filter(|s| *s <= 2 * frac_bits) {
                    *shift = s;
                    self.settle(i, *x, pending);
                    step_reads.clear();
                }
            }
            // Columns of a pending wire carry its bits.
            Step::Slice { x, .. } if shift_of(pending, *x).is_some() => {
                self.settle(i, *x, pending);
                step_reads.clear();
            }
            Step::Reveal { wire, shift } => {
                *shift = shift_of(pending, *wire).unwrap_or(0);
                pending.retain(|(w, _)| w != &*wire);
                step_reads.clear();
            }
            Step::Relu { x, bits, shift, .. } => {
                if let Some(s) = shift_of(pending, *x).filter(|s| *bits + s <= 64) {
                    *shift = s;
                    self.settle(i, *x, pending);
                    step_reads.clear();
                }
            }
            Step::LayerNorm {
                x,
                z,
                inv_sqrt,
                shifts,
                mix,
                ..
            } if inv_sqrt.fusable() => {
                // A norm that mixes truncates its weights `x` for the product.
                let sx = shift_of(pending, *x);
                let sz = if mix.is_some() {
                    sx
                } else {
                    shift_of(pending, *z)
                };
                // The square truncates `x` by `f` or `2f`; a row total of `x` at `2f` is
                // compared as it is, one at `3f` could not be; `z` by either, in the
                // comparison's frame.
                let fits = |s: Option<u32>, most: u32| s.is_none_or(|s| s <= most);
                let most_x = if inv_sqrt.squares { 2 } else { 1 } * frac_bits;
                if fits(sx, most_x) && fits(sz, 2 * frac_bits) {
                    *shifts = [sx.unwrap_or(0), sz.unwrap_or(0)];
                    for w in [*x, *z] {
                        self.settle(i, w, pending);
                    }
                    // The values of a mixing norm are multiplied at `f`.
                    step_reads.retain(|w| mix.is_some_and(|m| m.v == *w));
                }
            }
            // The logits: server weights whose output only the reveal reads are encoded
            // `f` bits finer (`WIDE_LOGIT_BITS` on a wide opening, whose maps are at `3f`
            // already); the client truncates the result in the clear.
            Step::Linear {
                out: o,
                terms,
                shift,
                ..
            } if !public
                && self.steps[i + 1..]
                    .iter()
                    .zip(&self.reads[i + 1..])
                    .all(|(s, r)| matches!(s, Step::Reveal { .. }) || !r.contains(o)) =>
            {
                *shift = match maps_wide(openings, terms) {
                    true => WIDE_LOGIT_BITS,
                    false => frac_bits,
                };
            }
            Step::Open { open } => {
                let w = openings[*open].wire;
                if self.wide_allowed
                    && shift_of(pending, w) == Some(frac_bits)
                    && !self.read_later(i + 1, w, Some(*open))
                {
                    openings[*open].wide = true;
                    pending.retain(|(p, _)| *p != w);
                    step_reads.clear();
                }
            }
            _ => {}
        }
        step_reads
    }
}

/// The bits above `f` that `step`'s output carries, if any: it is pending from then on.
fn output_bits(
    step: &Step,
    (keeps, public): (bool, bool),
    frac_bits: u32,
    pending_before: &[(WireId, u32)],
    openings: &[Opening],
) -> Option<(WireId, u32)> {
    match step {
        Step::Linear { out: o, shift, .. } if keeps && *shift > 0 => Some((*o, *shift)),
        Step::Linear { .. } if keeps => None,
        Step::Linear { out: o, shift, .. } if public => Some((*o, frac_bits + *shift)),
        Step::Slice { out: o, x, .. } => shift_of(pending_before, *x).map(|s| (*o, s)),
        Step::Linear {
            out: o,
            terms,
            shift,
            ..
        } => {
            let bits = match maps_wide(openings, terms) {
                true => 2 * frac_bits + shift,
                false => frac_bits + shift,
            };
            Some((*o, bits))
        }
        // A fused norm's output is at `2f`, a row normalization's at `3f` unless it splits
        // or takes Newton's step on `1/v`.
        Step::LayerNorm {
            out: o,
            inv_sqrt,
            shifts,
            mix,
            ..
        } if inv_sqrt.fusable() => {
            let split = inv_sqrt.power == 1
                || inv_sqrt.row_split(frac_bits).is_some()
                || reciprocal(frac_bits, inv_sqrt, *shifts, mix.is_some()).is_some();
            Some((*o, if split { frac_bits } else { 2 * frac_bits }))
        }
        Step::HeadMatMul { out: o, .. }
        | Step::Square { out: o, .. }
        | Step::Spline { out: o, .. } => Some((*o, frac_bits)),
        _ => None,
    }
}
