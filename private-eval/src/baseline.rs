//! The paper's baselines under MPC, lowered to plans like the OWC adapters and run by the
//! same executor, so each comparison has both sides measured in one runtime:
//!
//! * `sft-k`: the last `k` backbone layers fine-tuned (server-private), then the final
//!   norm and head, on the client's hidden state `x_{L-k}`; the client runs the first
//!   `L - k` layers in plaintext.
//! * `lora`, `adaptformer`: adapters inside every layer, so every layer runs on shared
//!   data from the client's patch embedding `x_0` (public weights on the client's
//!   plaintext image, computed in the clear). LoRA's update folds into the query and
//!   value weights (the same plan as the frozen layer); AdaptFormer adds its bottleneck
//!   (64, ReLU, scale 0.1) beside every MLP.
//!
//! Every backbone weight is treated as the server's (an opening per linear map): for
//! SFT and LoRA they are private; AdaptFormer's frozen weights are public, and local
//! products on shares would save their openings (not done). The last layer computes
//! only the CLS row (dead-token elimination, as the OWC lowering does).

use std::str::FromStr;

use cryptpeft_types::{BackboneSpec, NormKind};
use rand::{Rng, SeedableRng};
use safetensors::SafeTensors;

use crate::arith::tensor::Mat;
use crate::model::{Attention, Block, CheckpointError, Linear, Norm, ParallelAdapter, Reader};
use crate::plan::lower::{lower_layers, LowerError, LowerOptions};
use crate::plan::{PlanWeights, SecurePlan};

/// AdaptFormer's bottleneck width at ViT-B/16 (`adaptformer`; `adaptformer-rN` picks
/// another) and its scale (the trainer's).
pub const ADAPTFORMER_RANK: usize = 64;
pub const ADAPTFORMER_SCALE: f64 = 0.1;

/// A baseline of the paper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Baseline {
    /// Fine-tuning of the last `k` layers.
    Sft(usize),
    Lora,
    /// With its bottleneck width.
    AdaptFormer(usize),
}

impl FromStr for Baseline {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "lora" => Ok(Baseline::Lora),
            "adaptformer" => Ok(Baseline::AdaptFormer(ADAPTFORMER_RANK)),
            _ if s.starts_with("adaptformer-r") => s["adaptformer-r".len()..]
                .parse()
                .ok()
                .filter(|&r| r >= 1)
                .map(Baseline::AdaptFormer)
                .ok_or_else(|| format!("bad bottleneck width in `{s}`")),
            _ => s
                .strip_prefix("sft-")
                .and_then(|k| k.parse().ok())
                .filter(|&k| k >= 1)
                .map(Baseline::Sft)
                .ok_or_else(|| {
                    format!("unknown baseline `{s}` (sft-K, lora, adaptformer, adaptformer-rN)")
                }),
        }
    }
}

impl std::fmt::Display for Baseline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Baseline::Sft(k) => write!(f, "sft-{k}"),
            Baseline::Lora => write!(f, "lora"),
            Baseline::AdaptFormer(ADAPTFORMER_RANK) => write!(f, "adaptformer"),
            Baseline::AdaptFormer(r) => write!(f, "adaptformer-r{r}"),
        }
    }
}

impl Baseline {
    /// The four baselines the paper compares against.
    pub const PAPER: [Baseline; 4] = [
        Baseline::Sft(1),
        Baseline::Sft(2),
        Baseline::Lora,
        Baseline::AdaptFormer(ADAPTFORMER_RANK),
    ];

    /// The first backbone layer under MPC: the client provides `x_first`.
    pub fn first_layer(self, bb: &BackboneSpec) -> Result<usize, String> {
        match self {
            Baseline::Sft(k) if k > bb.layers => {
                Err(format!("sft-{k} on a backbone of {} layers", bb.layers))
            }
            Baseline::Sft(k) => Ok(bb.layers - k),
            Baseline::Lora | Baseline::AdaptFormer(_) => Ok(0),
        }
    }
}

/// What the server holds for a baseline: its layers, final norm and head.
#[derive(Debug, Clone)]
pub struct BaselineModel {
    pub kind: Baseline,
    pub backbone: BackboneSpec,
    pub classes: usize,
    pub layers: Vec<Block>,
    pub final_norm: Norm,
    pub head: Linear,
}

impl BaselineModel {
    /// A weightless model: its plan is any model's plan of this kind and shape.
    pub fn symbolic(
        kind: Baseline,
        backbone: BackboneSpec,
        classes: usize,
    ) -> Result<Self, String> {
        let lin = |o: usize, i: usize| Linear {
            weight: Mat::symbolic(o, i),
            bias: Vec::new(),
        };
        let eps = backbone.norm_eps;
        Self::build(kind, backbone, classes, lin, |_| Norm::LayerNorm {
            gamma: Vec::new(),
            beta: Vec::new(),
            eps,
        })
    }

    /// Random weights of trained-like scale (Kaiming-uniform linears, LayerNorms near
    /// identity), for benchmarks.
    pub fn random(
        kind: Baseline,
        backbone: BackboneSpec,
        classes: usize,
        seed: u64,
    ) -> Result<Self, String> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut rng2 = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5eed);
        let lin = |o: usize, i: usize| {
            let b = 1.0 / (i as f64).sqrt();
            Linear {
                weight: Mat::new(o, i, (0..o * i).map(|_| rng.random_range(-b..b)).collect()),
                bias: (0..o).map(|_| rng.random_range(-b..b)).collect(),
            }
        };
        let eps = backbone.norm_eps;
        Self::build(kind, backbone, classes, lin, move |d| Norm::LayerNorm {
            gamma: (0..d).map(|_| rng2.random_range(0.8..1.2)).collect(),
            beta: (0..d).map(|_| rng2.random_range(-0.1..0.1)).collect(),
            eps,
        })
    }

    /// The layers and final norm of a torchvision-layout backbone checkpoint (F32
    /// safetensors), with a random head and, for AdaptFormer, random bottlenecks:
    /// the plaintext model of `kind` before fine-tuning.
    pub fn from_backbone(
        kind: Baseline,
        backbone: BackboneSpec,
        bytes: &[u8],
        classes: usize,
        seed: u64,
    ) -> Result<Self, CheckpointError> {
        let bad = |why: String| CheckpointError::Metadata(why);
        let first = kind.first_layer(&backbone).map_err(bad)?;
        let st = SafeTensors::deserialize(bytes).map_err(|e| CheckpointError::File {
            path: String::new(),
            why: format!("not a safetensors file: {e}"),
        })?;
        let rd = Reader { st };
        let (d, m, eps) = (backbone.hidden_dim, backbone.mlp_dim, backbone.norm_eps);
        let mut rest = Self::random(kind, backbone.clone(), classes, seed).map_err(bad)?;
        for (j, blk) in rest.layers.iter_mut().enumerate() {
            let p = format!("encoder.layers.encoder_layer_{}", first + j);
            let ln = |n: &str| rd.norm(&format!("{p}.{n}"), NormKind::LayerNorm, d, eps);
            blk.norm1 = ln("ln_1")?;
            blk.norm2 = ln("ln_2")?;
            let at = blk.attn.as_mut().expect("backbone layers attend");
            at.qkv = rd.mat(&format!("{p}.self_attention.in_proj_weight"), 3 * d, d)?;
            at.qkv_bias = Some(rd.get(&format!("{p}.self_attention.in_proj_bias"), &[3 * d])?);
            at.proj = rd.linear(&format!("{p}.self_attention.out_proj"), d, d)?;
            blk.fc1 = rd.linear(&format!("{p}.mlp.0"), m, d)?;
            blk.fc2 = rd.linear(&format!("{p}.mlp.3"), d, m)?;
        }
        rest.final_norm = rd.norm("encoder.ln", NormKind::LayerNorm, d, eps)?;
        Ok(rest)
    }

    fn build(
        kind: Baseline,
        backbone: BackboneSpec,
        classes: usize,
        mut lin: impl FnMut(usize, usize) -> Linear,
        mut norm: impl FnMut(usize) -> Norm,
    ) -> Result<Self, String> {
        let first = kind.first_layer(&backbone)?;
        let (d, m) = (backbone.hidden_dim, backbone.mlp_dim);
        let layers = (first..backbone.layers)
            .map(|_| {
                let qkv = lin(3 * d, d);
                Block {
                    norm1: norm(d),
                    attn: Some(Attention {
                        qkv: qkv.weight,
                        qkv_bias: Some(qkv.bias),
                        token_mix: None,
                        proj: lin(d, d),
                    }),
                    norm2: norm(d),
                    fc1: lin(m, d),
                    fc2: lin(d, m),
                    parallel: match kind {
                        Baseline::AdaptFormer(rank) => Some(ParallelAdapter {
                            down: lin(rank, d),
                            up: lin(d, rank),
                            scale: ADAPTFORMER_SCALE,
                        }),
                        _ => None,
                    },
                }
            })
            .collect();
        Ok(Self {
            kind,
            final_norm: norm(d),
            head: lin(classes, d),
            backbone,
            classes,
            layers,
        })
    }

    /// The plan and the server's folded weights.
    pub fn lower(&self, opts: LowerOptions) -> Result<(SecurePlan, PlanWeights), LowerError> {
        lower_layers(
            &self.layers,
            &self.backbone,
            &self.final_norm,
            &self.head,
            opts,
        )
    }
}
