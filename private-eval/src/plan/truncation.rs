//! Where a plan's truncations ride (docs/secure-evaluation.md): after lowering, every
//! value above `f` fractional bits is truncated by the first reader that can absorb it,
//! and only where none can does the plan get a `Truncate` step, one exchange shared by
//! every value pending then.

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
    let reads: Vec<Vec<WireId>> = steps.iter().map(|s| s.reads(openings)).collect();
    let opened: Vec<WireId> = openings.iter().map(|o| o.wire).collect();
    // Whether a step from `i` on reads `w` other than through opening `o`'s maps.
    let read_later = |i: usize, w: WireId, o: Option<OpenId>| {
        steps[i..].iter().zip(&reads[i..]).any(|(s, r)| match s {
            Step::Linear { terms, .. } if o.is_some() => terms.iter().any(|t| match t {
                Term::Public { wire, .. } => *wire == w,
                Term::Private { open, .. } => opened[*open] == w && Some(*open) != o,
            }),
            _ => r.contains(&w),
        })
    };
    // Whether a linear step maps a wide opening (its output lands at `3f`).
    let maps_wide = |openings: &[Opening], terms: &[Term]| {
        terms
            .iter()
            .any(|t| matches!(t, Term::Private { open, .. } if openings[*open].wide))
    };
    // Pending wires with the bits they carry above `f`.
    let mut pending: Vec<(WireId, u32)> = Vec::new();
    let shift_of = |pending: &[(WireId, u32)], w: WireId| {
        pending.iter().find(|(p, _)| *p == w).map(|(_, s)| *s)
    };
    let mut out = Vec::with_capacity(steps.len());
    for (i, mut step) in steps.iter().cloned().enumerate() {
        let mut step_reads = reads[i].clone();
        let pending_before = pending.clone();
        let keeps = step.keeps_scale();
        // A linear step of public terms only: it adds `f` to its inputs' bits (`keeps`: 0).
        let public = matches!(&step, Step::Linear { terms, .. }
            if terms.iter().all(|t| matches!(t, Term::Public { .. })));
        let room = if keeps { 2 * frac_bits } else { frac_bits };
        match &mut step {
            Step::Linear { shift, .. } if public => {
                let s = step_reads.first().and_then(|w| shift_of(&pending, *w));
                let same = step_reads.iter().all(|w| shift_of(&pending, *w) == s);
                if let (Some(s), true) = (s.filter(|s| *s <= room), same) {
                    *shift = s;
                    for w in &step_reads {
                        if !read_later(i + 1, *w, None) {
                            pending.retain(|(p, _)| p != w);
                        }
                    }
                    step_reads.clear();
                }
            }
            // A square truncates its input in its opening.
            Step::Square { x, shift, .. } => {
                if let Some(s) = shift_of(&pending, *x).filter(|s| *s <= 2 * frac_bits) {
                    *shift = s;
                    if !read_later(i + 1, *x, None) {
                        pending.retain(|(p, _)| p != &*x);
                    }
                    step_reads.clear();
                }
            }
            // Columns of a pending wire carry its bits.
            Step::Slice { x, .. } if shift_of(&pending, *x).is_some() => {
                if !read_later(i + 1, *x, None) {
                    pending.retain(|(p, _)| p != &*x);
                }
                step_reads.clear();
            }
            Step::Reveal { wire, shift } => {
                *shift = shift_of(&pending, *wire).unwrap_or(0);
                pending.retain(|(w, _)| w != &*wire);
                step_reads.clear();
            }
            Step::Relu { x, bits, shift, .. } => {
                if let Some(s) = shift_of(&pending, *x).filter(|s| *bits + s <= 64) {
                    *shift = s;
                    if !read_later(i + 1, *x, None) {
                        pending.retain(|(w, _)| w != &*x);
                    }
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
                let sx = shift_of(&pending, *x);
                let sz = if mix.is_some() {
                    sx
                } else {
                    shift_of(&pending, *z)
                };
                // The square truncates `x` by `f` or `2f`; a row total of `x` at `2f` is
                // compared as it is, one at `3f` could not be; `z` by either, in the
                // comparison's frame.
                let fits = |s: Option<u32>, most: u32| s.is_none_or(|s| s <= most);
                let most_x = if inv_sqrt.squares { 2 } else { 1 } * frac_bits;
                if fits(sx, most_x) && fits(sz, 2 * frac_bits) {
                    *shifts = [sx.unwrap_or(0), sz.unwrap_or(0)];
                    for w in [*x, *z] {
                        if !read_later(i + 1, w, None) {
                            pending.retain(|(p, _)| *p != w);
                        }
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
                && steps[i + 1..]
                    .iter()
                    .zip(&reads[i + 1..])
                    .all(|(s, r)| matches!(s, Step::Reveal { .. }) || !r.contains(o)) =>
            {
                *shift = match maps_wide(openings, terms) {
                    true => WIDE_LOGIT_BITS,
                    false => frac_bits,
                };
            }
            Step::Open { open } => {
                let w = openings[*open].wire;
                if wide_allowed
                    && shift_of(&pending, w) == Some(frac_bits)
                    && !read_later(i + 1, w, Some(*open))
                {
                    openings[*open].wide = true;
                    pending.retain(|(p, _)| *p != w);
                    step_reads.clear();
                }
            }
            _ => {}
        }
        if step_reads.iter().any(|w| shift_of(&pending, *w).is_some()) {
            let (wide, wires): (Vec<_>, Vec<_>) = std::mem::take(&mut pending)
                .into_iter()
                .partition(|(_, s)| *s > frac_bits);
            out.push(Step::Truncate {
                wires: wires.into_iter().map(|(w, _)| w).collect(),
                wide: wide.into_iter().map(|(w, _)| w).collect(),
            });
        }
        match &step {
            Step::Linear { out: o, shift, .. } if keeps && *shift > 0 => pending.push((*o, *shift)),
            Step::Linear { .. } if keeps => {}
            Step::Linear { out: o, shift, .. } if public => pending.push((*o, frac_bits + *shift)),
            Step::Slice { out: o, x, .. } => {
                if let Some(s) = shift_of(&pending_before, *x) {
                    pending.push((*o, s));
                }
            }
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
                pending.push((*o, bits));
            }
            Step::LayerNorm {
                out: o, inv_sqrt, ..
            } if inv_sqrt.fusable() => pending.push((*o, inv_sqrt.power * frac_bits)),
            Step::HeadMatMul { out: o, .. }
            | Step::Square { out: o, .. }
            | Step::Spline { out: o, .. } => pending.push((*o, frac_bits)),
            _ => {}
        }
        out.push(step);
    }
    out
}
