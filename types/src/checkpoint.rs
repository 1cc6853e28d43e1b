//! The adapter checkpoint's schema (`train/CHECKPOINT.md`): its format tag, metadata
//! keys and tensor names, in one place for the trainer that writes checkpoints and the
//! evaluator that reads them, so the two cannot drift apart.

/// The `format` metadata value of an adapter checkpoint.
pub const FORMAT: &str = "cryptpeft-adapter-v1";

/// Metadata keys: the format tag, the `AdapterSpec` and the `BackboneSpec` (JSON).
pub const META_FORMAT: &str = "format";
pub const META_ADAPTER_SPEC: &str = "adapter_spec";
pub const META_BACKBONE: &str = "backbone";

/// The final norm and the classification head (`.weight`, `.bias`).
pub const FINAL_NORM: &str = "final_norm";
pub const HEAD: &str = "head";

/// Adapter `j`'s parameters, by role.
pub struct AdapterNames(String);

/// The names under adapter `j` (0 reads the earliest layer of the scope).
pub fn adapter(j: usize) -> AdapterNames {
    AdapterNames(format!("adapter.{j}"))
}

impl AdapterNames {
    /// The down projection `d -> r`.
    pub fn down(&self) -> String {
        format!("{}.down", self.0)
    }
    /// The up projection `r -> d`.
    pub fn up(&self) -> String {
        format!("{}.up", self.0)
    }
    /// Transformer block `b` inside the adapter.
    pub fn block(&self, b: usize) -> BlockNames {
        BlockNames(format!("{}.block.{b}", self.0))
    }
}

/// One adapter block's parameters.
pub struct BlockNames(String);

impl BlockNames {
    pub fn norm1(&self) -> String {
        format!("{}.norm1", self.0)
    }
    /// The attention's fused query/key/value weight (no bias).
    pub fn qkv(&self) -> String {
        format!("{}.attn.qkv", self.0)
    }
    /// LinAtten's token-mixing map over the sequence.
    pub fn token_mix(&self) -> String {
        format!("{}.attn.token_mix", self.0)
    }
    pub fn proj(&self) -> String {
        format!("{}.attn.proj", self.0)
    }
    pub fn norm2(&self) -> String {
        format!("{}.norm2", self.0)
    }
    pub fn fc1(&self) -> String {
        format!("{}.mlp.fc1", self.0)
    }
    pub fn fc2(&self) -> String {
        format!("{}.mlp.fc2", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_documented_layout() {
        let a = adapter(2);
        assert_eq!(a.down(), "adapter.2.down");
        assert_eq!(a.up(), "adapter.2.up");
        let b = a.block(1);
        assert_eq!(b.qkv(), "adapter.2.block.1.attn.qkv");
        assert_eq!(b.token_mix(), "adapter.2.block.1.attn.token_mix");
        assert_eq!(b.fc2(), "adapter.2.block.1.mlp.fc2");
        assert_eq!(b.norm1(), "adapter.2.block.1.norm1");
    }
}
