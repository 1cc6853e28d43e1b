//! The dependency-depth bound of a plan: the openings on its longest chain of
//! dependent steps, counted as if every truncation, ReLU's select exchange and the
//! final reveal were fused into a neighbouring opening. No protocol built from this
//! plan's gates can take fewer rounds, so measured rounds over this bound is what
//! truncation, selects and reveals cost in round trips.

use super::shapes::{layernorm_waves, rowmax_pairs, LnWave};
use super::{SecurePlan, Step, Term, WireId};

impl SecurePlan {
    /// Openings on the plan's critical path. Client inputs are ready at 0; an
    /// opening, a Beaver product, a square, a spline and a ReLU each add 1 to the
    /// deepest input they read; a row maximum adds its tree's levels, a norm its
    /// non-truncating exchanges (square, comparison, products); linear, slice and
    /// shift steps add nothing, and neither do truncations and reveals (fused).
    pub fn depth_bound(&self) -> u64 {
        let mut wire = vec![0u64; self.wires.len()];
        let mut open = vec![0u64; self.openings.len()];
        let mut deepest = 0u64;
        for step in &self.steps {
            let at = |w: &WireId| wire[*w];
            let (out, depth) = match step {
                Step::Open { open: o } => {
                    open[*o] = at(&self.openings[*o].wire) + 1;
                    deepest = deepest.max(open[*o]);
                    continue;
                }
                Step::Linear { out, terms, .. } => {
                    let d = terms.iter().map(|t| match t {
                        Term::Public { wire: w, .. } => at(w),
                        Term::Private { open: o, .. } => open[*o],
                    });
                    (*out, d.max().unwrap_or(0))
                }
                Step::Slice { out, x, .. } => (*out, at(x)),
                Step::Shift { out, x, by } => (*out, at(x).max(at(by))),
                Step::HeadMatMul { out, a, b, .. } => (*out, at(a).max(at(b)) + 1),
                Step::Relu { out, x, .. }
                | Step::Square { out, x }
                | Step::Spline { out, x, .. } => (*out, at(x) + 1),
                Step::RowMax { out, x, .. } => {
                    (*out, at(x) + rowmax_pairs(&self.wires[*x]).count() as u64)
                }
                Step::LayerNorm {
                    out,
                    x,
                    z,
                    inv_sqrt,
                    shifts,
                    ..
                } => {
                    let (rows, d, c) = self.norm_shape(*x, *z);
                    let exchanges = layernorm_waves(self, rows, d, c, inv_sqrt, *shifts)
                        .iter()
                        .filter(|w| !matches!(w, LnWave::Truncate(_)))
                        .count() as u64;
                    // The numerator joins only the last product.
                    (*out, (at(x) + exchanges).max(at(z) + 1))
                }
                Step::Truncate { .. } | Step::Reveal { .. } => continue,
            };
            wire[out] = depth;
            deepest = deepest.max(depth);
        }
        deepest
    }
}

#[cfg(test)]
mod tests {
    use crate::model::OwcModel;
    use crate::plan::lower::{lower, LowerOptions};
    use cryptpeft_types::{AdapterSpec, BackboneSpec};

    fn bound(spec: &str) -> (u64, u64) {
        let spec: AdapterSpec = spec.parse().unwrap();
        let model = OwcModel::symbolic(spec, BackboneSpec::vit_b16(), 100);
        let plan = lower(&model, LowerOptions::default()).unwrap().0;
        (
            plan.depth_bound(),
            crate::online::comm::simulate(&plan).rounds,
        )
    }

    #[test]
    fn the_papers_cifar_adapter_needs_seven_openings() {
        // Input, scores product, scores opening, mix product, its opening, ReLU,
        // the head's opening; the reveal rides on the last.
        let (bound, rounds) = bound("h=1,r=300,s=1");
        assert_eq!((bound, rounds), (7, 8));
    }

    #[test]
    fn no_plan_takes_fewer_rounds_than_its_bound() {
        for attn in ["linatten", "softmax", "relu-softmax", "2quad", "none"] {
            for norm in ["affine", "layernorm", "none"] {
                for act in ["relu", "gelu", "square"] {
                    let spec = format!("h=2,r=32,s=2,k=2,attn={attn},norm={norm},act={act}");
                    let (bound, rounds) = bound(&spec);
                    assert!(0 < bound && bound <= rounds, "{spec}: {bound} > {rounds}");
                }
            }
        }
    }

    #[test]
    fn parallel_chains_count_once() {
        // Two scopes open their hidden states at once: one more adapter block adds
        // its own products, not another input opening.
        let (one, _) = bound("h=1,r=64,s=1,attn=none");
        let (two, _) = bound("h=1,r=64,s=2,attn=none");
        assert!(two > one && two < 2 * one, "{one} {two}");
    }
}
