//! Genomes: one choice index per gene. The space enumerates every combination once and
//! keeps the valid ones, so invalid points (rank not divisible by heads, kinds the secure
//! evaluator refuses) never reach training.

use std::collections::HashMap;

use cryptpeft_cost_model::plan_shape_only;
use cryptpeft_types::{AdapterSpec, AttentionKind, BackboneSpec};

use crate::error::{Error, Result};
use crate::space::Genes;

/// Gene names, in genome order.
pub const GENES: [&str; 8] = [
    "heads",
    "rank",
    "scope",
    "blocks",
    "attention",
    "norm",
    "activation",
    "scale",
];
/// Index of the scope gene (the paper's controller loops over it).
pub const SCOPE: usize = 2;

/// One choice index per gene of [`GENES`].
pub type Genome = [u16; 8];

/// Most combinations a space may enumerate.
const MAX_COMBINATIONS: usize = 2_000_000;

pub struct Space {
    genes: Genes,
    arity: [usize; 8],
    valid: Vec<Genome>,
    index: HashMap<Genome, usize>,
    /// Invalid combinations: how many, and a few distinct reasons.
    pub invalid: usize,
    pub invalid_reasons: Vec<String>,
}

/// Why a genome repeats another one's model, if it does: without attention the heads
/// gene has no effect, so only its first choice is kept.
fn redundant(spec: &AdapterSpec, g: &Genome) -> Option<String> {
    (spec.attention == AttentionKind::None && g[0] != 0)
        .then(|| "heads have no effect without attention (the first choice stands for all)".into())
}

impl Space {
    /// Enumerates the genes' combinations on `backbone`, keeping those the trainer
    /// accepts and the secure evaluator can lower.
    pub fn new(genes: &Genes, backbone: &BackboneSpec, classes: usize) -> Result<Self> {
        let arity = [
            genes.heads.len(),
            genes.rank.len(),
            genes.scope.len(),
            genes.blocks.len(),
            genes.attention.len(),
            genes.norm.len(),
            genes.activation.len(),
            genes.scale.len(),
        ];
        let total: usize = arity.iter().product();
        if total > MAX_COMBINATIONS {
            return Err(Error::Other(format!(
                "the space has {total} combinations; at most {MAX_COMBINATIONS} are supported"
            )));
        }
        let mut space = Space {
            genes: genes.clone(),
            arity,
            valid: Vec::new(),
            index: HashMap::new(),
            invalid: 0,
            invalid_reasons: Vec::new(),
        };
        for i in 0..total {
            let mut g = [0u16; 8];
            let mut rest = i;
            for k in (0..8).rev() {
                g[k] = (rest % arity[k]) as u16;
                rest /= arity[k];
            }
            let spec = space.spec(&g);
            let check = redundant(&spec, &g)
                .map_or(Ok(()), Err)
                .and_then(|_| spec.validate(backbone.layers).map_err(|e| e.to_string()))
                .and_then(|_| {
                    plan_shape_only(&spec, backbone, classes)
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                });
            match check {
                Ok(()) => {
                    space.index.insert(g, space.valid.len());
                    space.valid.push(g);
                }
                Err(reason) => {
                    space.invalid += 1;
                    if space.invalid_reasons.len() < 3 && !space.invalid_reasons.contains(&reason) {
                        space.invalid_reasons.push(reason);
                    }
                }
            }
        }
        // Trials are keyed by label: two configurations may not share one.
        let mut labels = HashMap::new();
        for g in &space.valid {
            if let Some(other) = labels.insert(space.spec(g).label(), *g) {
                return Err(Error::Other(format!(
                    "two configurations share the label `{}` ({other:?}, {g:?}); repeated choices?",
                    space.spec(g).label()
                )));
            }
        }
        if space.valid.is_empty() {
            return Err(Error::Other(format!(
                "no valid configuration in the space ({})",
                space.invalid_reasons.join("; ")
            )));
        }
        Ok(space)
    }

    /// The spec a genome stands for.
    pub fn spec(&self, g: &Genome) -> AdapterSpec {
        let c = &self.genes;
        let i = |k: usize| g[k] as usize;
        AdapterSpec {
            heads: c.heads[i(0)],
            rank: c.rank[i(1)],
            scope: c.scope[i(2)],
            blocks: c.blocks[i(3)],
            attention: c.attention[i(4)],
            norm: c.norm[i(5)],
            activation: c.activation[i(6)],
            scale: c.scale[i(7)],
        }
    }

    /// The genome of a spec, when every value is one of the choices.
    pub fn genome_of(&self, s: &AdapterSpec) -> Option<Genome> {
        fn pos<T: PartialEq>(v: &[T], x: &T) -> Option<u16> {
            v.iter().position(|c| c == x).map(|p| p as u16)
        }
        let c = &self.genes;
        Some([
            pos(&c.heads, &s.heads)?,
            pos(&c.rank, &s.rank)?,
            pos(&c.scope, &s.scope)?,
            pos(&c.blocks, &s.blocks)?,
            pos(&c.attention, &s.attention)?,
            pos(&c.norm, &s.norm)?,
            pos(&c.activation, &s.activation)?,
            pos(&c.scale, &s.scale)?,
        ])
    }

    pub fn arity(&self, gene: usize) -> usize {
        self.arity[gene]
    }

    pub fn is_valid(&self, g: &Genome) -> bool {
        self.index.contains_key(g)
    }

    /// Valid genomes in enumeration order (the grid's order).
    pub fn valid(&self) -> &[Genome] {
        &self.valid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_points_are_left_out_with_a_reason() {
        let genes = Genes {
            heads: vec![1, 3],
            rank: vec![8, 9],
            scope: vec![1, 2],
            blocks: vec![1],
            attention: vec![AttentionKind::LinAtten, AttentionKind::Softmax],
            norm: vec![cryptpeft_types::NormKind::Affine],
            activation: vec![cryptpeft_types::Activation::Relu],
            scale: vec![0.5],
        };
        let space = Space::new(&genes, &BackboneSpec::test_small(), 3).unwrap();
        // (1,8), (1,9), (3,9) of 4 pairs, for both attentions and both scopes.
        assert_eq!(space.valid().len(), 3 * 2 * 2);
        assert_eq!(space.invalid, 16 - 12);
        assert!(space
            .invalid_reasons
            .iter()
            .any(|r| r.contains("divisible")));
        for g in space.valid() {
            let s = space.spec(g);
            assert_eq!(s.rank % s.heads, 0);
            assert_eq!(space.genome_of(&s), Some(*g));
        }
    }
}
