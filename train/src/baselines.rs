//! Baselines: linear probe, SFT of the last `k` layers, PEFT-LoRA and PEFT-AdaptFormer
//! (two-way: adapters inside every backbone layer), full fine-tuning (the [`Vit`] itself).

use burn::prelude::*;
use burn::tensor::activation::{relu, softmax};

use crate::backbone::{EncoderLayer, Vit};
use crate::nn::{fresh_copy, merge_heads, split_heads, Init, Linear, Norm};

/// The last `k` backbone layers (trainable copies), the final norm and a new head, reading
/// `x_{L-k}`. `k = 0` is the linear probe.
#[derive(Module, Debug)]
pub struct TailModel {
    pub layers: Vec<EncoderLayer>,
    pub ln: Norm,
    pub head: Linear,
}

impl TailModel {
    pub fn new(vit: &Vit, k: usize, classes: usize, seed: u64, device: &Device) -> Self {
        let mut init = Init::new(seed);
        let l = vit.spec.layers;
        let d = vit.spec.hidden_dim;
        let layers = vit.layers[l - k..]
            .iter()
            .map(|x| fresh_copy(x, device))
            .collect();
        // Linear probe (k = 0): the norm's affine part composes with the head into one
        // linear map of the normalized features, so it is trained with the head.
        let ln = fresh_copy(&vit.ln, device);
        Self {
            layers,
            ln,
            head: Linear::init(d, classes, true, &mut init, device),
        }
    }

    pub fn forward(&self, x: Tensor<3>) -> Tensor<2> {
        let mut x = x;
        for l in &self.layers {
            x = l.forward(x);
        }
        let z = self.ln.forward(x);
        let [b, _, d] = z.dims();
        self.head.forward(z.narrow(1, 0, 1).reshape([b, d]))
    }
}

/// Which parameter-efficient method sits inside every backbone layer.
#[derive(Module, Debug)]
pub struct LoraPair {
    /// `A: [r, d]` then `B: [d, r]` (zero-initialized), on q and on v.
    pub a_q: Linear,
    pub b_q: Linear,
    pub a_v: Linear,
    pub b_v: Linear,
    pub scale: f64,
}

/// AdaptFormer's parallel bottleneck beside the MLP: `s * Up(ReLU(Down(x)))`.
#[derive(Module, Debug)]
pub struct ParallelAdapter {
    pub down: Linear,
    pub up: Linear,
    pub scale: f64,
}

/// Frozen backbone layers with LoRA (on q, v) or AdaptFormer adapters in every layer;
/// final norm and head trained. Reads `x_0` (the frozen patch embedding's output).
#[derive(Module, Debug)]
pub struct PeftModel {
    pub layers: Vec<EncoderLayer>,
    pub lora: Vec<LoraPair>,
    pub adapt: Vec<ParallelAdapter>,
    pub ln: Norm,
    pub head: Linear,
}

impl PeftModel {
    /// LoRA of rank `r` (alpha = r, i.e. scale 1) on the query and value projections.
    pub fn lora(vit: &Vit, r: usize, classes: usize, seed: u64, device: &Device) -> Self {
        let mut init = Init::new(seed);
        let d = vit.spec.hidden_dim;
        let lora = (0..vit.spec.layers)
            .map(|_| LoraPair {
                a_q: Linear::init(d, r, false, &mut init, device),
                b_q: Linear::zeros(r, d, device).no_bias(),
                a_v: Linear::init(d, r, false, &mut init, device),
                b_v: Linear::zeros(r, d, device).no_bias(),
                scale: 1.0,
            })
            .collect();
        Self::build(vit, lora, vec![], classes, &mut init, device)
    }

    /// AdaptFormer with bottleneck `r` and scale 0.1 beside every MLP.
    pub fn adaptformer(vit: &Vit, r: usize, classes: usize, seed: u64, device: &Device) -> Self {
        let mut init = Init::new(seed);
        let d = vit.spec.hidden_dim;
        let adapt = (0..vit.spec.layers)
            .map(|_| ParallelAdapter {
                down: Linear::init(d, r, true, &mut init, device),
                up: Linear::zeros(r, d, device),
                scale: 0.1,
            })
            .collect();
        Self::build(vit, vec![], adapt, classes, &mut init, device)
    }

    fn build(
        vit: &Vit,
        lora: Vec<LoraPair>,
        adapt: Vec<ParallelAdapter>,
        classes: usize,
        init: &mut Init,
        device: &Device,
    ) -> Self {
        let d = vit.spec.hidden_dim;
        let layers: Vec<EncoderLayer> = vit
            .layers
            .iter()
            .map(|l| fresh_copy(l, device).freeze())
            .collect();
        Self {
            layers,
            lora,
            adapt,
            ln: fresh_copy(&vit.ln, device),
            head: Linear::init(d, classes, true, init, device),
        }
    }

    fn attention(&self, i: usize, l: &EncoderLayer, y: Tensor<3>) -> Tensor<3> {
        let d = y.dims()[2];
        let mut qkv = l.in_proj.forward(y.clone());
        if let Some(p) = self.lora.get(i) {
            let dq = p.b_q.forward(p.a_q.forward(y.clone())).mul_scalar(p.scale);
            let dv = p.b_v.forward(p.a_v.forward(y)).mul_scalar(p.scale);
            let zeros = dq.zeros_like();
            qkv = qkv + Tensor::cat(vec![dq, zeros, dv], 2);
        }
        let q = split_heads(qkv.clone().narrow(2, 0, d), l.heads);
        let k = split_heads(qkv.clone().narrow(2, d, d), l.heads);
        let v = split_heads(qkv.narrow(2, 2 * d, d), l.heads);
        let dh = (d / l.heads) as f64;
        let s = q.matmul(k.swap_dims(2, 3)).div_scalar(dh.sqrt());
        l.out_proj.forward(merge_heads(softmax(s, 3).matmul(v)))
    }

    pub fn forward(&self, x0: Tensor<3>) -> Tensor<2> {
        let mut x = x0;
        for (i, l) in self.layers.iter().enumerate() {
            x = x.clone() + self.attention(i, l, l.ln_1.forward(x));
            let mut out = x.clone() + l.mlp(l.ln_2.forward(x.clone()));
            if let Some(a) = self.adapt.get(i) {
                out = out + a.up.forward(relu(a.down.forward(x))).mul_scalar(a.scale);
            }
            x = out;
        }
        let z = self.ln.forward(x);
        let [b, _, d] = z.dims();
        self.head.forward(z.narrow(1, 0, 1).reshape([b, d]))
    }
}

impl Linear {
    /// The same map without its bias.
    pub fn no_bias(mut self) -> Self {
        self.bias = None;
        self
    }
}

/// A backbone for full fine-tuning: the pretrained [`Vit`] with a new `classes`-way head.
pub fn full_finetune_model(vit: &Vit, classes: usize, seed: u64, device: &Device) -> Vit {
    let mut init = Init::new(seed);
    let mut v = fresh_copy(vit, device);
    v.head = Some(Linear::init(
        vit.spec.hidden_dim,
        classes,
        true,
        &mut init,
        device,
    ));
    v
}
