//! Building blocks with PyTorch's parameter layout, so weights load and export by name.

use std::path::Path;

use burn::module::{Param, RunningState};
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::prelude::*;
use cryptpeft_types::NormKind;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::error::Result;
use crate::st::{HostTensor, TensorFile};

/// Host-side seeded initializer (backend independent, reproducible).
pub struct Init {
    pub rng: ChaCha8Rng,
}

impl Init {
    pub fn new(seed: u64) -> Self {
        use rand::SeedableRng;
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// `U(-k, k)` values of the given shape.
    pub fn uniform(&mut self, shape: &[usize], k: f64) -> HostTensor {
        let n = shape.iter().product();
        let data = (0..n)
            .map(|_| self.rng.random_range(-k..k) as f32)
            .collect();
        HostTensor::new(shape.to_vec(), data)
    }

    /// Normal(0, std) values (Box-Muller).
    pub fn normal(&mut self, shape: &[usize], std: f64) -> HostTensor {
        let n: usize = shape.iter().product();
        let data = (0..n)
            .map(|_| {
                let u1: f64 = self.rng.random_range(f64::EPSILON..1.0);
                let u2: f64 = self.rng.random_range(0.0..1.0);
                ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos() * std) as f32
            })
            .collect();
        HostTensor::new(shape.to_vec(), data)
    }
}

pub fn param<const D: usize>(t: &HostTensor, device: &Device) -> Param<Tensor<D>> {
    Param::from_tensor(t.to_tensor(device))
}

pub fn constant(shape: &[usize], v: f32) -> HostTensor {
    HostTensor::new(shape.to_vec(), vec![v; shape.iter().product()])
}

/// `y = x W^T + b` with `W: [out, in]` (PyTorch convention).
#[derive(Module, Debug)]
pub struct Linear {
    pub weight: Param<Tensor<2>>,
    pub bias: Option<Param<Tensor<1>>>,
}

impl Linear {
    /// PyTorch's default initialization: `U(-1/sqrt(in), 1/sqrt(in))` for weight and bias.
    pub fn init(d_in: usize, d_out: usize, bias: bool, init: &mut Init, device: &Device) -> Self {
        let k = 1.0 / (d_in as f64).sqrt();
        let w = init.uniform(&[d_out, d_in], k);
        let b = bias.then(|| init.uniform(&[d_out], k));
        Self::from_host(&w, b.as_ref(), device)
    }

    /// All-zero weights and bias.
    pub fn zeros(d_in: usize, d_out: usize, device: &Device) -> Self {
        Self::from_host(
            &constant(&[d_out, d_in], 0.0),
            Some(&constant(&[d_out], 0.0)),
            device,
        )
    }

    pub fn from_host(w: &HostTensor, b: Option<&HostTensor>, device: &Device) -> Self {
        Self {
            weight: param(w, device),
            bias: b.map(|b| param(b, device)),
        }
    }

    /// Loads `{prefix}.weight` `[d_out, d_in]` and (if `bias`) `{prefix}.bias`.
    pub fn load(
        file: &mut TensorFile,
        path: &Path,
        prefix: &str,
        d_in: usize,
        d_out: usize,
        bias: bool,
        device: &Device,
    ) -> Result<Self> {
        let w = file.take(path, &format!("{prefix}.weight"), &[d_out, d_in])?;
        let b = if bias {
            Some(file.take(path, &format!("{prefix}.bias"), &[d_out])?)
        } else {
            None
        };
        Ok(Self::from_host(&w, b.as_ref(), device))
    }

    pub fn export(&self, prefix: &str, out: &mut TensorFile) {
        out.insert(
            format!("{prefix}.weight"),
            HostTensor::from_tensor(&self.weight.val()),
        );
        if let Some(b) = &self.bias {
            out.insert(format!("{prefix}.bias"), HostTensor::from_tensor(&b.val()));
        }
    }

    /// Flattens the leading axes so the product is one GEMM (the ndarray backend runs a
    /// batched matmul as many small ones).
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        Self::apply(x, self.weight.val(), self.bias.as_ref().map(|b| b.val()))
    }

    /// `x W^T + b` for a given `W: [out, in]`.
    pub fn apply<const D: usize>(
        x: Tensor<D>,
        weight: Tensor<2>,
        bias: Option<Tensor<1>>,
    ) -> Tensor<D> {
        let mut dims = x.dims();
        let d_out = weight.dims()[0];
        let rows: usize = dims[..D - 1].iter().product();
        let x2: Tensor<2> = x.reshape([rows, dims[D - 1]]);
        let mut y = x2.matmul(weight.transpose());
        if let Some(b) = bias {
            y = y + b.unsqueeze::<2>();
        }
        dims[D - 1] = d_out;
        y.reshape(dims)
    }
}

/// LayerNorm over the last axis, written out with tensor ops (biased variance, like
/// PyTorch).
#[derive(Module, Debug)]
pub struct LayerNorm {
    pub gamma: Param<Tensor<1>>,
    pub beta: Option<Param<Tensor<1>>>,
    pub eps: f64,
}

impl LayerNorm {
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let (var, mean) = x.clone().var_mean_bias(D - 1);
        let y = (x - mean) / var.add_scalar(self.eps).sqrt();
        let y = y * self.gamma.val().unsqueeze();
        match &self.beta {
            Some(b) => y + b.val().unsqueeze(),
            None => y,
        }
    }
}

/// LayerNorm, BatchNorm-style affine (batch statistics in training, running statistics at
/// inference) or identity, over the last axis of `[batch, tokens, channels]`.
#[derive(Module, Debug)]
pub struct Norm {
    pub ln: Option<LayerNorm>,
    pub bn: Option<BatchNorm>,
}

impl Norm {
    /// A norm of `kind` with weight/bias from `wb` (default ones/zeros), running stats 0/1.
    pub fn new(
        kind: NormKind,
        dim: usize,
        eps: f64,
        wb: Option<(&HostTensor, &HostTensor)>,
        device: &Device,
    ) -> Self {
        let (w, b) = match wb {
            Some((w, b)) => (w.clone(), b.clone()),
            None => (constant(&[dim], 1.0), constant(&[dim], 0.0)),
        };
        match kind {
            NormKind::LayerNorm => {
                let ln = LayerNorm {
                    gamma: param(&w, device),
                    beta: Some(param(&b, device)),
                    eps,
                };
                Self {
                    ln: Some(ln),
                    bn: None,
                }
            }
            NormKind::Affine => {
                let mut bn = BatchNormConfig::new(dim).with_epsilon(eps).init(device);
                bn.gamma = param(&w, device);
                bn.beta = param(&b, device);
                Self {
                    ln: None,
                    bn: Some(bn),
                }
            }
            NormKind::None => Self::identity(),
        }
    }

    pub fn identity() -> Self {
        Self { ln: None, bn: None }
    }

    pub fn kind(&self) -> NormKind {
        match (&self.ln, &self.bn) {
            (Some(_), _) => NormKind::LayerNorm,
            (_, Some(_)) => NormKind::Affine,
            _ => NormKind::None,
        }
    }

    /// Loads `{prefix}.weight`, `.bias` (and `.running_mean`, `.running_var` for affine).
    pub fn load(
        file: &mut TensorFile,
        path: &Path,
        prefix: &str,
        kind: NormKind,
        dim: usize,
        eps: f64,
        device: &Device,
    ) -> Result<Self> {
        if kind == NormKind::None {
            return Ok(Self::identity());
        }
        let w = file.take(path, &format!("{prefix}.weight"), &[dim])?;
        let b = file.take(path, &format!("{prefix}.bias"), &[dim])?;
        let mut norm = Self::new(kind, dim, eps, Some((&w, &b)), device);
        if let Some(bn) = &mut norm.bn {
            let m = file.take(path, &format!("{prefix}.running_mean"), &[dim])?;
            let v = file.take(path, &format!("{prefix}.running_var"), &[dim])?;
            bn.running_mean = RunningState::new(m.to_tensor(device));
            bn.running_var = RunningState::new(v.to_tensor(device));
        }
        Ok(norm)
    }

    pub fn export(&self, prefix: &str, out: &mut TensorFile) {
        if let Some(ln) = &self.ln {
            out.insert(
                format!("{prefix}.weight"),
                HostTensor::from_tensor(&ln.gamma.val()),
            );
            let beta = ln.beta.as_ref().expect("layer norm with bias");
            out.insert(
                format!("{prefix}.bias"),
                HostTensor::from_tensor(&beta.val()),
            );
        }
        if let Some(bn) = &self.bn {
            let put = |out: &mut TensorFile, n: &str, t: Tensor<1>| {
                out.insert(format!("{prefix}.{n}"), HostTensor::from_tensor(&t))
            };
            put(out, "weight", bn.gamma.val());
            put(out, "bias", bn.beta.val());
            put(out, "running_mean", bn.running_mean.value());
            put(out, "running_var", bn.running_var.value());
        }
    }

    /// `x: [batch, tokens, channels]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        if let Some(ln) = &self.ln {
            ln.forward(x)
        } else if let Some(bn) = &self.bn {
            bn.forward(x.swap_dims(1, 2)).swap_dims(1, 2)
        } else {
            x
        }
    }
}

/// `[B, N, h*dh] -> [B, h, N, dh]`.
pub fn split_heads(x: Tensor<3>, heads: usize) -> Tensor<4> {
    let [b, n, c] = x.dims();
    x.reshape([b, n, heads, c / heads]).swap_dims(1, 2)
}

/// `[B, h, N, dh] -> [B, N, h*dh]`.
pub fn merge_heads(x: Tensor<4>) -> Tensor<3> {
    let [b, h, n, dh] = x.dims();
    x.swap_dims(1, 2).reshape([b, n, h * dh])
}

/// Deep copy of a module with new, independent parameter tensors on `device` (host round
/// trip): the copy shares no autodiff history or parameter ids with the original.
pub fn fresh_copy<M: Module>(m: &M, device: &Device) -> M {
    struct Fresh<'a>(&'a Device);
    impl burn::module::ModuleMapper for Fresh<'_> {
        fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let require = p.is_require_grad();
            let t = HostTensor::from_tensor(&p.val()).to_tensor::<D>(self.0);
            Param::from_tensor(t).set_require_grad(require)
        }
    }
    m.clone().map(&mut Fresh(device))
}
