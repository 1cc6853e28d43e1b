use serde::{Deserialize, Serialize};

use crate::error::{field, SpecError};

/// Shape of a ViT backbone (torchvision `VisionTransformer` layout).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackboneSpec {
    pub name: String,
    pub image_size: usize,
    pub patch_size: usize,
    pub channels: usize,
    /// Hidden width `d`.
    pub hidden_dim: usize,
    /// Encoder layers `L`.
    pub layers: usize,
    pub heads: usize,
    pub mlp_dim: usize,
    /// LayerNorm epsilon (torchvision: 1e-6).
    pub norm_eps: f64,
}

impl BackboneSpec {
    /// Tokens `N` = patches + CLS.
    pub fn tokens(&self) -> usize {
        let side = self.image_size / self.patch_size;
        side * side + 1
    }

    pub fn vit_b16() -> Self {
        Self {
            name: "vit-b16".into(),
            image_size: 224,
            patch_size: 16,
            channels: 3,
            hidden_dim: 768,
            layers: 12,
            heads: 12,
            mlp_dim: 3072,
            norm_eps: 1e-6,
        }
    }

    /// The golden fixture's torchvision model (image 32, patch 8, 3 layers, d = 32).
    pub fn vit_tiny_fixture() -> Self {
        Self {
            name: "vit-tiny-fixture".into(),
            image_size: 32,
            patch_size: 8,
            channels: 3,
            hidden_dim: 32,
            layers: 3,
            heads: 4,
            mlp_dim: 64,
            norm_eps: 1e-6,
        }
    }

    /// The small public backbone this project pretrains on Fashion-MNIST classes 0-4.
    pub fn vit_mini() -> Self {
        Self {
            name: "vit-mini".into(),
            image_size: 28,
            patch_size: 7,
            channels: 1,
            hidden_dim: 64,
            layers: 4,
            heads: 4,
            mlp_dim: 128,
            norm_eps: 1e-6,
        }
    }

    /// A 10-token, 16-wide, 4-layer shape for fast tests.
    pub fn test_small() -> Self {
        Self {
            name: "test-small".into(),
            image_size: 12,
            patch_size: 4,
            channels: 3,
            hidden_dim: 16,
            layers: 4,
            heads: 2,
            mlp_dim: 32,
            norm_eps: 1e-6,
        }
    }

    /// Looks a backbone up by name.
    pub fn by_name(name: &str) -> Result<Self, SpecError> {
        match name {
            "vit-b16" => Ok(Self::vit_b16()),
            "vit-tiny-fixture" => Ok(Self::vit_tiny_fixture()),
            "vit-mini" => Ok(Self::vit_mini()),
            other => Err(field(
                "backbone",
                format!("unknown backbone `{other}` (known: vit-b16, vit-mini, vit-tiny-fixture)"),
            )),
        }
    }

    pub fn validate(&self) -> Result<(), SpecError> {
        if self.patch_size == 0 || !self.image_size.is_multiple_of(self.patch_size) {
            return Err(field("patch_size", "must divide image_size"));
        }
        if self.heads == 0 || !self.hidden_dim.is_multiple_of(self.heads) {
            return Err(field("heads", "must divide hidden_dim"));
        }
        if self.layers == 0 {
            return Err(field("layers", "must be positive"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vit_b16_has_197_tokens() {
        assert_eq!(BackboneSpec::vit_b16().tokens(), 197);
        assert_eq!(BackboneSpec::vit_tiny_fixture().tokens(), 17);
        assert!(BackboneSpec::by_name("vit-x").is_err());
    }
}
