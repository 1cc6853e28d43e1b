//! The OWC adapter model of docs/DESIGN.md section 1, for every point of the search space, and
//! its checkpoint format (see `train/CHECKPOINT.md`).

use std::path::Path;

use burn::prelude::*;
use burn::tensor::activation::{gelu, relu, softmax};
use cryptpeft_types::checkpoint;
use cryptpeft_types::{Activation, AdapterSpec, AttentionKind, BackboneSpec, NormKind};

use crate::error::{Result, TrainError};
use crate::nn::{merge_heads, split_heads, Init, Linear, Norm};
use crate::st::{HostTensor, TensorFile};

/// Checkpoint `format` metadata value.
pub use cryptpeft_types::checkpoint::FORMAT;
/// `eps` of ReLU-softmax: `relu(S) / (sum relu(S) + eps)`.
pub use cryptpeft_types::RELU_SOFTMAX_EPS;
/// Shift `c` of 2Quad: `(S + c)^2 / sum (S + c)^2`.
pub const TWO_QUAD_SHIFT: f64 = 5.0;

/// Adapter attention of width `r` with `h` heads.
#[derive(Module, Debug)]
pub struct Attn {
    /// `[3r, r]`, no bias; rows q, k, v.
    pub qkv: Linear,
    /// LinAtten's learned map over the key axis, `[N, N]`.
    pub token_mix: Option<Linear>,
    pub proj: Linear,
    pub heads: usize,
    #[module(skip)]
    pub kind: AttentionKind,
}

impl Attn {
    pub fn forward(&self, y: Tensor<3>) -> Tensor<3> {
        self.forward_rows(y, false)
    }

    /// With `cls_only`, only token 0's output row is computed (`[B, 1, r]`): keys and values
    /// still come from every token.
    pub fn forward_rows(&self, y: Tensor<3>, cls_only: bool) -> Tensor<3> {
        let r = y.dims()[2];
        let w = self.qkv.weight.val();
        let wq: Tensor<2> = w.clone().narrow(0, 0, r);
        let wkv: Tensor<2> = w.narrow(0, r, 2 * r);
        let yq = if cls_only {
            y.clone().narrow(1, 0, 1)
        } else {
            y.clone()
        };
        let dh = (r / self.heads) as f64;
        let q = split_heads(
            Linear::apply(yq, wq, None).mul_scalar(dh.powf(-0.5)),
            self.heads,
        );
        let kv = Linear::apply(y, wkv, None);
        let k = split_heads(kv.clone().narrow(2, 0, r), self.heads);
        let v = split_heads(kv.narrow(2, r, r), self.heads);
        let s = q.matmul(k.swap_dims(2, 3)); // [B, h, N, N]
        let p = match self.kind {
            AttentionKind::LinAtten => self
                .token_mix
                .as_ref()
                .expect("LinAtten has token_mix")
                .forward(s),
            AttentionKind::Softmax => softmax(s, 3),
            AttentionKind::ReluSoftmax => {
                let e = relu(s);
                let sum = e.clone().sum_dim(3).add_scalar(RELU_SOFTMAX_EPS);
                e / sum
            }
            AttentionKind::TwoQuad => {
                let e = s.add_scalar(TWO_QUAD_SHIFT).powi_scalar(2);
                let sum = e.clone().sum_dim(3);
                e / sum
            }
            AttentionKind::None => unreachable!("no attention sub-layer"),
        };
        self.proj.forward(merge_heads(p.matmul(v)))
    }
}

/// One transformer block of width `r`: `y + Attn(Norm1(y))`, then `y + MLP(Norm2(y))`.
#[derive(Module, Debug)]
pub struct Block {
    pub norm1: Norm,
    pub attn: Option<Attn>,
    pub norm2: Norm,
    pub fc1: Linear,
    pub fc2: Linear,
    #[module(skip)]
    pub activation: Activation,
}

impl Block {
    pub fn forward(&self, y: Tensor<3>) -> Tensor<3> {
        self.forward_rows(y, false)
    }

    /// With `cls_only` the output is token 0's row only (`[B, 1, r]`).
    pub fn forward_rows(&self, y: Tensor<3>, cls_only: bool) -> Tensor<3> {
        let cls = |t: Tensor<3>| if cls_only { t.narrow(1, 0, 1) } else { t };
        let y = match &self.attn {
            Some(a) => cls(y.clone()) + a.forward_rows(self.norm1.forward(y), cls_only),
            None => cls(y),
        };
        let h = self.fc1.forward(self.norm2.forward(y.clone()));
        let h = match self.activation {
            Activation::Relu => relu(h),
            Activation::Gelu => gelu(h),
            Activation::Square => h.powi_scalar(2),
        };
        y + self.fc2.forward(h)
    }
}

/// `Adapter(u) = scale * Up(Blocks(Down(u)))`.
#[derive(Module, Debug)]
pub struct Adapter {
    pub down: Linear,
    pub blocks: Vec<Block>,
    pub up: Linear,
    pub scale: f64,
}

impl Adapter {
    pub fn forward(&self, u: Tensor<3>) -> Tensor<3> {
        self.forward_rows(u, false)
    }

    /// With `cls_only` only token 0's row is computed (`[B, 1, d]`): the last block's query,
    /// MLP and the up-projection run on one token (dead-token elimination, exact).
    pub fn forward_rows(&self, u: Tensor<3>, cls_only: bool) -> Tensor<3> {
        let mut y = self.down.forward(u);
        let k = self.blocks.len();
        for (i, b) in self.blocks.iter().enumerate() {
            y = b.forward_rows(y, cls_only && i + 1 == k);
        }
        self.up.forward(y).mul_scalar(self.scale)
    }
}

/// The trainable part of an OWC model: adapters on layers `L-s .. L-1`, final norm, head.
#[derive(Module, Debug)]
pub struct OwcModel {
    pub adapters: Vec<Adapter>,
    pub final_norm: Norm,
    pub head: Linear,
    #[module(skip)]
    pub spec: AdapterSpec,
    #[module(skip)]
    pub backbone: BackboneSpec,
}

impl OwcModel {
    /// A fresh model. `final_norm` = the backbone's pretrained final LayerNorm
    /// (weight, bias), which the final norm starts from whatever its kind.
    pub fn init(
        spec: &AdapterSpec,
        backbone: &BackboneSpec,
        classes: usize,
        final_norm: Option<(&HostTensor, &HostTensor)>,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        spec.validate(backbone.layers)?;
        let mut init = Init::new(seed);
        let (d, r, n, eps) = (
            backbone.hidden_dim,
            spec.rank,
            backbone.tokens(),
            backbone.norm_eps,
        );
        let norm = |kind| Norm::new(kind, r, eps, None, device);
        let adapters = (0..spec.scope)
            .map(|_| {
                let down = Linear::init(d, r, true, &mut init, device);
                let blocks = (0..spec.blocks)
                    .map(|_| {
                        let attn = (spec.attention != AttentionKind::None).then(|| Attn {
                            qkv: Linear::init(r, 3 * r, false, &mut init, device),
                            token_mix: (spec.attention == AttentionKind::LinAtten)
                                .then(|| Linear::init(n, n, true, &mut init, device)),
                            proj: Linear::init(r, r, true, &mut init, device),
                            heads: spec.heads,
                            kind: spec.attention,
                        });
                        Block {
                            norm1: if attn.is_some() {
                                norm(spec.norm)
                            } else {
                                Norm::identity()
                            },
                            attn,
                            norm2: norm(spec.norm),
                            fc1: Linear::init(r, r, true, &mut init, device),
                            fc2: Linear::init(r, r, true, &mut init, device),
                            activation: spec.activation,
                        }
                    })
                    .collect();
                // Zero-initialized up-projection: each adapter starts as the identity residual.
                let up = Linear::zeros(r, d, device);
                Adapter {
                    down,
                    blocks,
                    up,
                    scale: spec.scale,
                }
            })
            .collect();
        Ok(Self {
            adapters,
            final_norm: Norm::new(spec.norm, d, eps, final_norm, device),
            head: Linear::init(d, classes, true, &mut init, device),
            spec: spec.clone(),
            backbone: backbone.clone(),
        })
    }

    pub fn classes(&self) -> usize {
        self.head.weight.dims()[0]
    }

    /// Index of the first backbone hidden state the model reads: `L - s`.
    pub fn first_state(&self) -> usize {
        self.backbone.layers - self.spec.scope
    }

    /// `states` = `[x_{L-s}, ..., x_L]` (each `[B, N, d]`) -> logits `[B, C]`.
    pub fn forward(&self, states: &[Tensor<3>]) -> Tensor<2> {
        let s = self.spec.scope;
        assert_eq!(states.len(), s + 1, "need x_(L-s) .. x_L");
        // Only token 0 of z reaches the head: the last adapter computes its CLS row only
        // (exact; see `Adapter::forward_rows`).
        let cls = |t: &Tensor<3>| t.clone().narrow(1, 0, 1);
        let mut a: Option<Tensor<3>> = None;
        for (j, (adapter, x)) in self.adapters.iter().zip(states).enumerate() {
            let u = match a {
                Some(a) => a + x.clone(),
                None => x.clone(),
            };
            a = Some(if j + 1 == s {
                adapter.forward_rows(u.clone(), true) + cls(&u)
            } else {
                adapter.forward(u.clone()) + u
            });
        }
        let x_l = cls(&states[s]);
        let z = match a {
            Some(a) => x_l + a,
            None => x_l,
        };
        self.classify(z)
    }

    /// `Head(FinalNorm(z)[token 0])`; `z` may hold token 0 only (`[B, 1, d]`). In training an
    /// affine final norm takes its batch statistics over the rows it is given (token 0,
    /// from `forward`), the rows it is applied to at inference.
    pub fn classify(&self, z: Tensor<3>) -> Tensor<2> {
        let [b, _, d] = z.dims();
        let z = self.final_norm.forward(z.narrow(1, 0, 1));
        self.head.forward(z.reshape([b, d]))
    }

    /// The checkpoint: tensors named as in `fixtures/owc_adapter_*.safetensors`, plus
    /// metadata `format`, `adapter_spec`, `backbone`.
    pub fn export(&self) -> TensorFile {
        let mut out = TensorFile::default();
        for (j, a) in self.adapters.iter().enumerate() {
            let p = checkpoint::adapter(j);
            a.down.export(&p.down(), &mut out);
            for (b, blk) in a.blocks.iter().enumerate() {
                let q = p.block(b);
                if let Some(attn) = &blk.attn {
                    blk.norm1.export(&q.norm1(), &mut out);
                    attn.qkv.export(&q.qkv(), &mut out);
                    if let Some(t) = &attn.token_mix {
                        t.export(&q.token_mix(), &mut out);
                    }
                    attn.proj.export(&q.proj(), &mut out);
                }
                blk.norm2.export(&q.norm2(), &mut out);
                blk.fc1.export(&q.fc1(), &mut out);
                blk.fc2.export(&q.fc2(), &mut out);
            }
            a.up.export(&p.up(), &mut out);
        }
        self.final_norm.export(checkpoint::FINAL_NORM, &mut out);
        self.head.export(checkpoint::HEAD, &mut out);
        out.metadata
            .insert(checkpoint::META_FORMAT.into(), FORMAT.into());
        out.metadata.insert(
            checkpoint::META_ADAPTER_SPEC.into(),
            serde_json::to_string(&self.spec).expect("spec json"),
        );
        out.metadata.insert(
            checkpoint::META_BACKBONE.into(),
            serde_json::to_string(&self.backbone).expect("backbone json"),
        );
        out
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        self.export().save(path)
    }

    /// Loads a checkpoint written by [`OwcModel::save`] (spec and backbone from metadata).
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let mut file = TensorFile::load(path)?;
        match file
            .metadata
            .get(checkpoint::META_FORMAT)
            .map(String::as_str)
        {
            Some(FORMAT) => {}
            other => {
                return Err(TrainError::format(
                    path,
                    format!("metadata `format` is {other:?}, expected {FORMAT:?}"),
                ))
            }
        }
        let meta = |k: &str| {
            file.metadata
                .get(k)
                .cloned()
                .ok_or_else(|| TrainError::format(path, format!("missing metadata `{k}`")))
        };
        let spec: AdapterSpec = serde_json::from_str(&meta(checkpoint::META_ADAPTER_SPEC)?)
            .map_err(|e| TrainError::format(path, format!("bad `adapter_spec`: {e}")))?;
        let backbone: BackboneSpec = serde_json::from_str(&meta(checkpoint::META_BACKBONE)?)
            .map_err(|e| TrainError::format(path, format!("bad `backbone`: {e}")))?;
        Self::from_tensors(&mut file, path, &spec, &backbone, device)
    }

    /// Builds the model from named tensors (checkpoint or fixture layout) for a known spec.
    pub fn from_tensors(
        file: &mut TensorFile,
        path: &Path,
        spec: &AdapterSpec,
        backbone: &BackboneSpec,
        device: &Device,
    ) -> Result<Self> {
        spec.validate(backbone.layers)?;
        let (d, r, n, eps) = (
            backbone.hidden_dim,
            spec.rank,
            backbone.tokens(),
            backbone.norm_eps,
        );
        let classes = file
            .tensors
            .get(&format!("{}.weight", checkpoint::HEAD))
            .filter(|t| t.shape.len() == 2)
            .map(|t| t.shape[0])
            .ok_or_else(|| TrainError::format(path, "missing 2-D tensor `head.weight`"))?;
        let mut adapters = Vec::new();
        for j in 0..spec.scope {
            let p = checkpoint::adapter(j);
            let down = Linear::load(file, path, &p.down(), d, r, true, device)?;
            let mut blocks = Vec::new();
            for b in 0..spec.blocks {
                let q = p.block(b);
                let (norm1, attn) = if spec.attention == AttentionKind::None {
                    (Norm::identity(), None)
                } else {
                    let norm1 = Norm::load(file, path, &q.norm1(), spec.norm, r, eps, device)?;
                    let qkv = Linear::load(file, path, &q.qkv(), r, 3 * r, false, device)?;
                    let token_mix = if spec.attention == AttentionKind::LinAtten {
                        let name = q.token_mix();
                        Some(Linear::load(file, path, &name, n, n, true, device)?)
                    } else {
                        None
                    };
                    let proj = Linear::load(file, path, &q.proj(), r, r, true, device)?;
                    let attn = Attn {
                        qkv,
                        token_mix,
                        proj,
                        heads: spec.heads,
                        kind: spec.attention,
                    };
                    (norm1, Some(attn))
                };
                blocks.push(Block {
                    norm1,
                    attn,
                    norm2: Norm::load(file, path, &q.norm2(), spec.norm, r, eps, device)?,
                    fc1: Linear::load(file, path, &q.fc1(), r, r, true, device)?,
                    fc2: Linear::load(file, path, &q.fc2(), r, r, true, device)?,
                    activation: spec.activation,
                });
            }
            let up = Linear::load(file, path, &p.up(), r, d, true, device)?;
            adapters.push(Adapter {
                down,
                blocks,
                up,
                scale: spec.scale,
            });
        }
        let final_norm = Norm::load(
            file,
            path,
            checkpoint::FINAL_NORM,
            spec.norm,
            d,
            eps,
            device,
        )?;
        let head = Linear::load(file, path, checkpoint::HEAD, d, classes, true, device)?;
        if let Some(extra) = file
            .tensors
            .keys()
            .find(|k| k.starts_with("adapter.") || k.starts_with("final_norm."))
        {
            return Err(TrainError::format(
                path,
                format!("unexpected tensor `{extra}` for spec {}", spec.label()),
            ));
        }
        Ok(Self {
            adapters,
            final_norm,
            head,
            spec: spec.clone(),
            backbone: backbone.clone(),
        })
    }

    /// Is the final norm a BatchNorm-style affine map? (Convenience for callers.)
    pub fn norm_kind(&self) -> NormKind {
        self.final_norm.kind()
    }
}
