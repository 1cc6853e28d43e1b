//! The OWC adapter's weights (adapters, final norm, head) and the checkpoint format:
//! safetensors with the tensor names of `train/CHECKPOINT.md` and the `AdapterSpec` and
//! `BackboneSpec` as JSON in the metadata. The loader checks every tensor's presence and
//! shape against the spec and names what is missing or wrong.

use std::collections::HashMap;
use std::path::Path;

use cryptpeft_types::checkpoint;
use cryptpeft_types::{AdapterSpec, AttentionKind, BackboneSpec, NormKind};
use safetensors::{tensor::TensorView, Dtype, SafeTensors};

use crate::arith::tensor::Mat;

pub use cryptpeft_types::checkpoint::FORMAT;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {why}")]
    File { path: String, why: String },
    #[error("checkpoint tensor `{name}` is missing")]
    Missing { name: String },
    #[error("checkpoint tensor `{name}` has shape {got:?}, the spec needs {want:?}")]
    Shape {
        name: String,
        got: Vec<usize>,
        want: Vec<usize>,
    },
    #[error("checkpoint tensor `{name}`: {why}")]
    Tensor { name: String, why: String },
    #[error("checkpoint metadata: {0}")]
    Metadata(String),
}

/// PyTorch linear layer: `y = x W^T + b`, `weight` is `[out, in]`.
#[derive(Debug, Clone)]
pub struct Linear {
    pub weight: Mat,
    pub bias: Vec<f64>,
}

/// A norm as its parameters; affine (BatchNorm at inference) keeps its running stats.
#[derive(Debug, Clone)]
pub enum Norm {
    LayerNorm {
        gamma: Vec<f64>,
        beta: Vec<f64>,
        eps: f64,
    },
    Affine {
        weight: Vec<f64>,
        bias: Vec<f64>,
        mean: Vec<f64>,
        var: Vec<f64>,
        eps: f64,
    },
    None,
}

impl Norm {
    /// The affine map `x * a + c` of a BatchNorm-style norm (None for LayerNorm).
    pub fn as_affine(&self, width: usize) -> Option<(Vec<f64>, Vec<f64>)> {
        match self {
            Norm::Affine {
                weight,
                bias,
                mean,
                var,
                eps,
            } => {
                let a: Vec<f64> = weight
                    .iter()
                    .zip(var)
                    .map(|(w, v)| w / (v + eps).sqrt())
                    .collect();
                let c = bias
                    .iter()
                    .zip(mean)
                    .zip(&a)
                    .map(|((b, m), a)| b - m * a)
                    .collect();
                Some((a, c))
            }
            Norm::None => Some((vec![1.0; width], vec![0.0; width])),
            Norm::LayerNorm { .. } => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Attention {
    /// `[3r, r]`, rows q, k, v.
    pub qkv: Mat,
    /// The backbone's layers have a `[3r]` bias; OWC adapters do not.
    pub qkv_bias: Option<Vec<f64>>,
    /// LinAtten's token-mixing map `[N, N]` and bias `[N]`.
    pub token_mix: Option<Linear>,
    pub proj: Linear,
}

#[derive(Debug, Clone)]
pub struct Block {
    pub norm1: Norm,
    pub attn: Option<Attention>,
    pub norm2: Norm,
    pub fc1: Linear,
    pub fc2: Linear,
    /// AdaptFormer's bottleneck beside the MLP (baselines only).
    pub parallel: Option<ParallelAdapter>,
}

/// AdaptFormer's `scale * up(relu(down(x)))` on the block's residual `x`, added to the
/// MLP's output (as the trainer's `PeftModel`).
#[derive(Debug, Clone)]
pub struct ParallelAdapter {
    pub down: Linear,
    pub up: Linear,
    pub scale: f64,
}

#[derive(Debug, Clone)]
pub struct Adapter {
    pub down: Linear,
    pub blocks: Vec<Block>,
    pub up: Linear,
}

/// Everything the server holds: spec, backbone shape, adapters, final norm, head.
#[derive(Debug, Clone)]
pub struct OwcModel {
    pub spec: AdapterSpec,
    pub backbone: BackboneSpec,
    pub classes: usize,
    pub adapters: Vec<Adapter>,
    pub final_norm: Norm,
    pub head: Linear,
}

/// Reads tensors by name, checking dtype and shape.
pub(crate) struct Reader<'a> {
    pub(crate) st: SafeTensors<'a>,
}

impl<'a> Reader<'a> {
    pub(crate) fn view(&self, name: &str) -> Result<TensorView<'a>, CheckpointError> {
        self.st
            .tensor(name)
            .map_err(|_| CheckpointError::Missing { name: name.into() })
    }

    pub(crate) fn get(&self, name: &str, want: &[usize]) -> Result<Vec<f64>, CheckpointError> {
        let t = self.view(name)?;
        if t.shape() != want {
            return Err(CheckpointError::Shape {
                name: name.into(),
                got: t.shape().to_vec(),
                want: want.to_vec(),
            });
        }
        if t.dtype() != Dtype::F32 {
            return Err(CheckpointError::Tensor {
                name: name.into(),
                why: format!("dtype {:?}, expected F32", t.dtype()),
            });
        }
        let vals: Vec<f64> = t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64)
            .collect();
        if let Some(i) = vals.iter().position(|v| !v.is_finite()) {
            return Err(CheckpointError::Tensor {
                name: name.into(),
                why: format!("element {i} is not finite"),
            });
        }
        Ok(vals)
    }

    pub(crate) fn mat(&self, name: &str, rows: usize, cols: usize) -> Result<Mat, CheckpointError> {
        Ok(Mat::new(rows, cols, self.get(name, &[rows, cols])?))
    }

    pub(crate) fn linear(
        &self,
        prefix: &str,
        out: usize,
        inp: usize,
    ) -> Result<Linear, CheckpointError> {
        Ok(Linear {
            weight: self.mat(&format!("{prefix}.weight"), out, inp)?,
            bias: self.get(&format!("{prefix}.bias"), &[out])?,
        })
    }

    pub(crate) fn norm(
        &self,
        prefix: &str,
        kind: NormKind,
        d: usize,
        eps: f64,
    ) -> Result<Norm, CheckpointError> {
        let g = |s: &str| self.get(&format!("{prefix}.{s}"), &[d]);
        Ok(match kind {
            NormKind::LayerNorm => Norm::LayerNorm {
                gamma: g("weight")?,
                beta: g("bias")?,
                eps,
            },
            NormKind::Affine => Norm::Affine {
                weight: g("weight")?,
                bias: g("bias")?,
                mean: g("running_mean")?,
                var: g("running_var")?,
                eps,
            },
            NormKind::None => Norm::None,
        })
    }
}

impl OwcModel {
    /// Loads a checkpoint file in this project's format.
    pub fn load(path: &Path) -> Result<Self, CheckpointError> {
        let bytes = std::fs::read(path).map_err(|e| CheckpointError::File {
            path: path.display().to_string(),
            why: e.to_string(),
        })?;
        Self::from_bytes(&bytes).map_err(|e| match e {
            CheckpointError::File { why, .. } => CheckpointError::File {
                path: path.display().to_string(),
                why,
            },
            other => other,
        })
    }

    /// Parses a checkpoint: spec and backbone from the metadata, then every tensor.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CheckpointError> {
        let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| CheckpointError::File {
            path: String::new(),
            why: format!("not a safetensors file: {e}"),
        })?;
        let meta = meta.metadata().clone().unwrap_or_default();
        let field = |k: &str| {
            meta.get(k)
                .ok_or_else(|| CheckpointError::Metadata(format!("missing key `{k}`")))
        };
        if field(checkpoint::META_FORMAT)? != FORMAT {
            return Err(CheckpointError::Metadata(format!(
                "format is `{}`, expected `{FORMAT}`",
                field(checkpoint::META_FORMAT)?
            )));
        }
        let spec: AdapterSpec = serde_json::from_str(field(checkpoint::META_ADAPTER_SPEC)?)
            .map_err(|e| CheckpointError::Metadata(format!("adapter_spec: {e}")))?;
        let backbone: BackboneSpec = serde_json::from_str(field(checkpoint::META_BACKBONE)?)
            .map_err(|e| CheckpointError::Metadata(format!("backbone: {e}")))?;
        Self::from_tensors(bytes, spec, backbone)
    }

    /// Reads the tensors of `spec` from a safetensors buffer (also used for the golden
    /// fixtures, whose metadata has another layout).
    pub fn from_tensors(
        bytes: &[u8],
        spec: AdapterSpec,
        backbone: BackboneSpec,
    ) -> Result<Self, CheckpointError> {
        backbone
            .validate()
            .map_err(|e| CheckpointError::Metadata(e.to_string()))?;
        spec.validate(backbone.layers)
            .map_err(|e| CheckpointError::Metadata(e.to_string()))?;
        let st = SafeTensors::deserialize(bytes).map_err(|e| CheckpointError::File {
            path: String::new(),
            why: format!("not a safetensors file: {e}"),
        })?;
        let rd = Reader { st };
        let (d, r, n, eps) = (
            backbone.hidden_dim,
            spec.rank,
            backbone.tokens(),
            backbone.norm_eps,
        );
        let head_view = rd.view(&format!("{}.weight", checkpoint::HEAD))?;
        let classes = *head_view
            .shape()
            .first()
            .ok_or_else(|| CheckpointError::Tensor {
                name: "head.weight".into(),
                why: "has no dimensions".into(),
            })?;
        let mut adapters = Vec::new();
        for j in 0..spec.scope {
            let p = checkpoint::adapter(j);
            let mut blocks = Vec::new();
            for b in 0..spec.blocks {
                let bp = p.block(b);
                let attn = match spec.attention {
                    AttentionKind::None => None,
                    kind => Some(Attention {
                        qkv: rd.mat(&format!("{}.weight", bp.qkv()), 3 * r, r)?,
                        qkv_bias: None,
                        token_mix: if kind == AttentionKind::LinAtten {
                            Some(rd.linear(&bp.token_mix(), n, n)?)
                        } else {
                            None
                        },
                        proj: rd.linear(&bp.proj(), r, r)?,
                    }),
                };
                let norm1 = if attn.is_some() {
                    rd.norm(&bp.norm1(), spec.norm, r, eps)?
                } else {
                    Norm::None
                };
                blocks.push(Block {
                    norm1,
                    attn,
                    norm2: rd.norm(&bp.norm2(), spec.norm, r, eps)?,
                    fc1: rd.linear(&bp.fc1(), r, r)?,
                    fc2: rd.linear(&bp.fc2(), r, r)?,
                    parallel: None,
                });
            }
            adapters.push(Adapter {
                down: rd.linear(&p.down(), r, d)?,
                blocks,
                up: rd.linear(&p.up(), d, r)?,
            });
        }
        Ok(Self {
            final_norm: rd.norm(checkpoint::FINAL_NORM, spec.norm, d, eps)?,
            head: rd.linear(checkpoint::HEAD, classes, d)?,
            spec,
            backbone,
            classes,
            adapters,
        })
    }

    /// All tensors under their checkpoint names, as f32.
    pub fn tensors(&self) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        let mut out = Vec::new();
        let mut put = |name: String, shape: Vec<usize>, v: &[f64]| {
            out.push((name, shape, v.iter().map(|&x| x as f32).collect()));
        };
        fn lin(put: &mut impl FnMut(String, Vec<usize>, &[f64]), p: &str, l: &Linear) {
            put(
                format!("{p}.weight"),
                vec![l.weight.rows, l.weight.cols],
                &l.weight.data,
            );
            put(format!("{p}.bias"), vec![l.bias.len()], &l.bias);
        }
        fn norm(put: &mut impl FnMut(String, Vec<usize>, &[f64]), p: &str, n: &Norm) {
            match n {
                Norm::LayerNorm { gamma, beta, .. } => {
                    put(format!("{p}.weight"), vec![gamma.len()], gamma);
                    put(format!("{p}.bias"), vec![beta.len()], beta);
                }
                Norm::Affine {
                    weight,
                    bias,
                    mean,
                    var,
                    ..
                } => {
                    for (s, v) in [
                        ("weight", weight),
                        ("bias", bias),
                        ("running_mean", mean),
                        ("running_var", var),
                    ] {
                        put(format!("{p}.{s}"), vec![v.len()], v);
                    }
                }
                Norm::None => {}
            }
        }
        for (j, a) in self.adapters.iter().enumerate() {
            lin(&mut put, &checkpoint::adapter(j).down(), &a.down);
            lin(&mut put, &checkpoint::adapter(j).up(), &a.up);
            for (b, blk) in a.blocks.iter().enumerate() {
                let bp = checkpoint::adapter(j).block(b);
                norm(&mut put, &bp.norm1(), &blk.norm1);
                norm(&mut put, &bp.norm2(), &blk.norm2);
                if let Some(at) = &blk.attn {
                    put(
                        format!("{}.weight", bp.qkv()),
                        vec![at.qkv.rows, at.qkv.cols],
                        &at.qkv.data,
                    );
                    if let Some(tm) = &at.token_mix {
                        lin(&mut put, &bp.token_mix(), tm);
                    }
                    lin(&mut put, &bp.proj(), &at.proj);
                }
                lin(&mut put, &bp.fc1(), &blk.fc1);
                lin(&mut put, &bp.fc2(), &blk.fc2);
            }
        }
        norm(&mut put, checkpoint::FINAL_NORM, &self.final_norm);
        lin(&mut put, checkpoint::HEAD, &self.head);
        out
    }

    /// Serializes in the checkpoint format.
    pub fn to_bytes(&self) -> Vec<u8> {
        let meta = HashMap::from([
            (checkpoint::META_FORMAT.to_string(), FORMAT.to_string()),
            (
                checkpoint::META_ADAPTER_SPEC.to_string(),
                serde_json::to_string(&self.spec).unwrap(),
            ),
            (
                checkpoint::META_BACKBONE.to_string(),
                serde_json::to_string(&self.backbone).unwrap(),
            ),
        ]);
        f32_safetensors(self.tensors(), meta)
    }

    /// A weightless model of `spec`: every matrix symbolic, every vector empty. Lowering it
    /// gives the plan (shapes, steps, openings) of any model of this spec, in microseconds;
    /// the cost model prices candidates this way.
    pub fn symbolic(spec: AdapterSpec, backbone: BackboneSpec, classes: usize) -> Self {
        let (kind, eps) = (spec.norm, backbone.norm_eps);
        let lin = |out: usize, inp: usize| Linear {
            weight: Mat::symbolic(out, inp),
            bias: Vec::new(),
        };
        let norm = move |_: usize| match kind {
            NormKind::LayerNorm => Norm::LayerNorm {
                gamma: Vec::new(),
                beta: Vec::new(),
                eps,
            },
            NormKind::Affine => Norm::Affine {
                weight: Vec::new(),
                bias: Vec::new(),
                mean: Vec::new(),
                var: Vec::new(),
                eps,
            },
            NormKind::None => Norm::None,
        };
        Self::build(spec, backbone, classes, lin, norm)
    }

    /// Random weights of trained-like scale (Kaiming-uniform linears, norms near identity),
    /// for benchmarks and tests.
    pub fn random(spec: AdapterSpec, backbone: BackboneSpec, classes: usize, seed: u64) -> Self {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let (kind, eps) = (spec.norm, backbone.norm_eps);
        let mut uni = |len: usize, bound: f64| -> Vec<f64> {
            (0..len).map(|_| rng.random_range(-bound..bound)).collect()
        };
        let lin = |out: usize, inp: usize| {
            let bound = 1.0 / (inp as f64).sqrt();
            Linear {
                weight: Mat::new(out, inp, uni(out * inp, bound)),
                bias: uni(out, bound),
            }
        };
        let mut rng2 = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5eed);
        let norm = move |w: usize| match kind {
            NormKind::LayerNorm => Norm::LayerNorm {
                gamma: (0..w).map(|_| rng2.random_range(0.8..1.2)).collect(),
                beta: (0..w).map(|_| rng2.random_range(-0.1..0.1)).collect(),
                eps,
            },
            NormKind::Affine => Norm::Affine {
                weight: (0..w).map(|_| rng2.random_range(0.8..1.2)).collect(),
                bias: (0..w).map(|_| rng2.random_range(-0.1..0.1)).collect(),
                mean: (0..w).map(|_| rng2.random_range(-0.2..0.2)).collect(),
                var: (0..w).map(|_| rng2.random_range(0.5..2.0)).collect(),
                eps,
            },
            NormKind::None => Norm::None,
        };
        Self::build(spec, backbone, classes, lin, norm)
    }

    /// Assembles a model of `spec` from a linear-layer maker (`out`, `in`) and a norm
    /// maker (width), called in a fixed order so seeded weights are reproducible.
    fn build(
        spec: AdapterSpec,
        backbone: BackboneSpec,
        classes: usize,
        mut lin: impl FnMut(usize, usize) -> Linear,
        mut norm: impl FnMut(usize) -> Norm,
    ) -> Self {
        let (d, r, n) = (backbone.hidden_dim, spec.rank, backbone.tokens());
        let adapters = (0..spec.scope)
            .map(|_| Adapter {
                down: lin(r, d),
                blocks: (0..spec.blocks)
                    .map(|_| {
                        let attn = (spec.attention != AttentionKind::None).then(|| Attention {
                            qkv: lin(3 * r, r).weight,
                            qkv_bias: None,
                            token_mix: (spec.attention == AttentionKind::LinAtten)
                                .then(|| lin(n, n)),
                            proj: lin(r, r),
                        });
                        Block {
                            norm1: if attn.is_some() { norm(r) } else { Norm::None },
                            attn,
                            norm2: norm(r),
                            fc1: lin(r, r),
                            fc2: lin(r, r),
                            parallel: None,
                        }
                    })
                    .collect(),
                up: lin(d, r),
            })
            .collect();
        Self {
            final_norm: norm(d),
            head: lin(classes, d),
            spec,
            backbone,
            classes,
            adapters,
        }
    }
}

/// Writes `(name, shape, values)` tensors as an F32 safetensors buffer with `meta`.
pub fn f32_safetensors(
    tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
    meta: HashMap<String, String>,
) -> Vec<u8> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(n, s, v)| (n, s, v.iter().flat_map(|x| x.to_le_bytes()).collect()))
        .collect();
    let views: Vec<(String, TensorView)> = bytes
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), b).expect("shape matches the data"),
            )
        })
        .collect();
    safetensors::serialize(views, Some(meta)).expect("F32 tensors with consistent shapes serialize")
}
