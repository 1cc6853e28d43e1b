//! ViT backbone with torchvision's `VisionTransformer` key layout (any size).

use std::path::Path;

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::activation::{gelu, softmax};
use cryptpeft_types::{BackboneSpec, NormKind};

use crate::error::{Result, TrainError};
use crate::nn::{merge_heads, param, split_heads, Init, Linear, Norm};
use crate::st::{HostTensor, TensorFile};

/// One pre-norm encoder layer: `x + MHA(ln_1(x))`, then `x + MLP(ln_2(x))` (GELU, exact).
#[derive(Module, Debug)]
pub struct EncoderLayer {
    pub ln_1: Norm,
    pub in_proj: Linear,
    pub out_proj: Linear,
    pub ln_2: Norm,
    pub mlp_0: Linear,
    pub mlp_3: Linear,
    pub heads: usize,
}

impl EncoderLayer {
    fn init(spec: &BackboneSpec, init: &mut Init, device: &Device) -> Self {
        let d = spec.hidden_dim;
        let ln = || Norm::new(NormKind::LayerNorm, d, spec.norm_eps, None, device);
        // torchvision: xavier-uniform in_proj, zero biases.
        let xavier = (6.0 / (d + 3 * d) as f64).sqrt();
        let in_proj = Linear::from_host(
            &init.uniform(&[3 * d, d], xavier),
            Some(&crate::nn::constant(&[3 * d], 0.0)),
            device,
        );
        Self {
            ln_1: ln(),
            in_proj,
            out_proj: Linear::init(d, d, true, init, device),
            ln_2: ln(),
            mlp_0: Linear::init(d, spec.mlp_dim, true, init, device),
            mlp_3: Linear::init(spec.mlp_dim, d, true, init, device),
            heads: spec.heads,
        }
    }

    fn load(
        file: &mut TensorFile,
        path: &Path,
        i: usize,
        spec: &BackboneSpec,
        device: &Device,
    ) -> Result<Self> {
        let p = format!("encoder.layers.encoder_layer_{i}");
        let (d, m, eps) = (spec.hidden_dim, spec.mlp_dim, spec.norm_eps);
        let ln = NormKind::LayerNorm;
        let w = file.take(
            path,
            &format!("{p}.self_attention.in_proj_weight"),
            &[3 * d, d],
        )?;
        let b = file.take(path, &format!("{p}.self_attention.in_proj_bias"), &[3 * d])?;
        Ok(Self {
            ln_1: Norm::load(file, path, &format!("{p}.ln_1"), ln, d, eps, device)?,
            in_proj: Linear::from_host(&w, Some(&b), device),
            out_proj: Linear::load(
                file,
                path,
                &format!("{p}.self_attention.out_proj"),
                d,
                d,
                true,
                device,
            )?,
            ln_2: Norm::load(file, path, &format!("{p}.ln_2"), ln, d, eps, device)?,
            mlp_0: Linear::load(file, path, &format!("{p}.mlp.0"), d, m, true, device)?,
            mlp_3: Linear::load(file, path, &format!("{p}.mlp.3"), m, d, true, device)?,
            heads: spec.heads,
        })
    }

    fn export(&self, i: usize, out: &mut TensorFile) {
        let p = format!("encoder.layers.encoder_layer_{i}");
        self.ln_1.export(&format!("{p}.ln_1"), out);
        out.insert(
            format!("{p}.self_attention.in_proj_weight"),
            HostTensor::from_tensor(&self.in_proj.weight.val()),
        );
        let b = self.in_proj.bias.as_ref().expect("in_proj bias");
        out.insert(
            format!("{p}.self_attention.in_proj_bias"),
            HostTensor::from_tensor(&b.val()),
        );
        self.out_proj
            .export(&format!("{p}.self_attention.out_proj"), out);
        self.ln_2.export(&format!("{p}.ln_2"), out);
        self.mlp_0.export(&format!("{p}.mlp.0"), out);
        self.mlp_3.export(&format!("{p}.mlp.3"), out);
    }

    /// Multi-head self-attention on `[B, N, d]` (no norm, no residual).
    pub fn attention(&self, y: Tensor<3>) -> Tensor<3> {
        let d = y.dims()[2];
        let qkv = self.in_proj.forward(y);
        let q = split_heads(qkv.clone().narrow(2, 0, d), self.heads);
        let k = split_heads(qkv.clone().narrow(2, d, d), self.heads);
        let v = split_heads(qkv.narrow(2, 2 * d, d), self.heads);
        let dh = (d / self.heads) as f64;
        let s = q.matmul(k.swap_dims(2, 3)).div_scalar(dh.sqrt());
        self.out_proj.forward(merge_heads(softmax(s, 3).matmul(v)))
    }

    pub fn mlp(&self, y: Tensor<3>) -> Tensor<3> {
        self.mlp_3.forward(gelu(self.mlp_0.forward(y)))
    }

    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let x = x.clone() + self.attention(self.ln_1.forward(x));
        x.clone() + self.mlp(self.ln_2.forward(x))
    }
}

/// torchvision's `VisionTransformer`: patch embedding, class token, position embedding,
/// `L` encoder layers, final LayerNorm `encoder.ln` and (optionally) `heads.head`.
#[derive(Module, Debug)]
pub struct Vit {
    /// `conv_proj.weight` `[d, C, p, p]`.
    pub conv_w: Param<Tensor<4>>,
    pub conv_b: Param<Tensor<1>>,
    pub class_token: Param<Tensor<3>>,
    pub pos_embedding: Param<Tensor<3>>,
    pub layers: Vec<EncoderLayer>,
    pub ln: Norm,
    pub head: Option<Linear>,
    #[module(skip)]
    pub spec: BackboneSpec,
}

impl Vit {
    /// A freshly initialized backbone (for pretraining), with a `classes`-way head.
    pub fn init(spec: &BackboneSpec, classes: usize, seed: u64, device: &Device) -> Self {
        let mut init = Init::new(seed);
        let (d, c, p) = (spec.hidden_dim, spec.channels, spec.patch_size);
        let fan_in = (c * p * p) as f64;
        Self {
            conv_w: param(&init.normal(&[d, c, p, p], (1.0 / fan_in).sqrt()), device),
            conv_b: param(&crate::nn::constant(&[d], 0.0), device),
            class_token: param(&crate::nn::constant(&[1, 1, d], 0.0), device),
            pos_embedding: param(&init.normal(&[1, spec.tokens(), d], 0.02), device),
            layers: (0..spec.layers)
                .map(|_| EncoderLayer::init(spec, &mut init, device))
                .collect(),
            ln: Norm::new(NormKind::LayerNorm, d, spec.norm_eps, None, device),
            head: Some(Linear::zeros(d, classes, device)),
            spec: spec.clone(),
        }
    }

    /// Loads torchvision-layout weights from `path`. With `spec = None` the shape comes from
    /// the file's metadata (`backbone`: a BackboneSpec JSON, or torchvision's `config`).
    pub fn load(path: &Path, spec: Option<&BackboneSpec>, device: &Device) -> Result<Self> {
        let mut file = TensorFile::load(path)?;
        let spec = match spec {
            Some(s) => s.clone(),
            None => spec_from_metadata(path, &file)?,
        };
        spec.validate()?;
        let (d, c, p, n) = (
            spec.hidden_dim,
            spec.channels,
            spec.patch_size,
            spec.tokens(),
        );
        let f = &mut file;
        let conv_w = f.take(path, "conv_proj.weight", &[d, c, p, p])?;
        let conv_b = f.take(path, "conv_proj.bias", &[d])?;
        let class_token = f.take(path, "class_token", &[1, 1, d])?;
        let pos = f.take(path, "encoder.pos_embedding", &[1, n, d])?;
        let layers = (0..spec.layers)
            .map(|i| EncoderLayer::load(f, path, i, &spec, device))
            .collect::<Result<Vec<_>>>()?;
        if f.tensors.contains_key(&format!(
            "encoder.layers.encoder_layer_{}.ln_1.weight",
            spec.layers
        )) {
            return Err(TrainError::format(
                path,
                format!("file has more than the {} layers of the spec", spec.layers),
            ));
        }
        let ln = Norm::load(
            f,
            path,
            "encoder.ln",
            NormKind::LayerNorm,
            d,
            spec.norm_eps,
            device,
        )?;
        let head = match f.tensors.get("heads.head.weight") {
            Some(w) if w.shape.len() == 2 => {
                let classes = w.shape[0];
                Some(Linear::load(
                    f,
                    path,
                    "heads.head",
                    d,
                    classes,
                    true,
                    device,
                )?)
            }
            _ => None,
        };
        Ok(Self {
            conv_w: param(&conv_w, device),
            conv_b: param(&conv_b, device),
            class_token: param(&class_token, device),
            pos_embedding: param(&pos, device),
            layers,
            ln,
            head,
            spec,
        })
    }

    /// Exports in torchvision's layout with `backbone` (our spec) and `config` metadata.
    pub fn export(&self) -> TensorFile {
        let mut out = TensorFile::default();
        out.insert(
            "conv_proj.weight",
            HostTensor::from_tensor(&self.conv_w.val()),
        );
        out.insert(
            "conv_proj.bias",
            HostTensor::from_tensor(&self.conv_b.val()),
        );
        out.insert(
            "class_token",
            HostTensor::from_tensor(&self.class_token.val()),
        );
        out.insert(
            "encoder.pos_embedding",
            HostTensor::from_tensor(&self.pos_embedding.val()),
        );
        for (i, l) in self.layers.iter().enumerate() {
            l.export(i, &mut out);
        }
        self.ln.export("encoder.ln", &mut out);
        if let Some(h) = &self.head {
            h.export("heads.head", &mut out);
        }
        let s = &self.spec;
        out.metadata.insert(
            "backbone".into(),
            serde_json::to_string(s).expect("spec json"),
        );
        let classes = self.head.as_ref().map(|h| h.weight.dims()[0]).unwrap_or(0);
        out.metadata.insert(
            "config".into(),
            serde_json::json!({
                "image_size": s.image_size, "patch_size": s.patch_size,
                "num_layers": s.layers, "num_heads": s.heads, "hidden_dim": s.hidden_dim,
                "mlp_dim": s.mlp_dim, "num_classes": classes,
            })
            .to_string(),
        );
        out
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        self.export().save(path)
    }

    /// Patch embedding + class token + position embedding: the hidden state `x_0`.
    /// `images: [B, C, H, W]`, already normalized.
    pub fn embed(&self, images: Tensor<4>) -> Tensor<3> {
        let [b, c, h, w] = images.dims();
        let p = self.spec.patch_size;
        let d = self.spec.hidden_dim;
        let (gh, gw) = (h / p, w / p);
        let patches: Tensor<6> = images.reshape([b, c, gh, p, gw, p]);
        let patches: Tensor<3> =
            patches
                .permute([0, 2, 4, 1, 3, 5])
                .reshape([b, gh * gw, c * p * p]);
        let w2: Tensor<2> = self.conv_w.val().reshape([d, c * p * p]);
        let x = burn::tensor::module::linear(patches, w2.transpose(), Some(self.conv_b.val()));
        let cls = self.class_token.val().expand([b, 1, d]);
        Tensor::cat(vec![cls, x], 1) + self.pos_embedding.val()
    }

    /// Runs layers `from..to` on the hidden state entering layer `from`.
    pub fn run_layers(&self, mut x: Tensor<3>, from: usize, to: usize) -> Tensor<3> {
        for l in &self.layers[from..to] {
            x = l.forward(x);
        }
        x
    }

    /// The hidden states `x_0 .. x_L` (`x_L`: last layer's output, before the final norm).
    pub fn hidden_states(&self, images: Tensor<4>) -> Vec<Tensor<3>> {
        let mut states = vec![self.embed(images)];
        for l in &self.layers {
            let next = l.forward(states.last().expect("x_0").clone());
            states.push(next);
        }
        states
    }

    /// Final norm then head on token 0 of `x_L`.
    pub fn classify(&self, x_l: Tensor<3>) -> Tensor<2> {
        let z = self.ln.forward(x_l);
        let [b, _, d] = z.dims();
        let cls: Tensor<2> = z.narrow(1, 0, 1).reshape([b, d]);
        self.head
            .as_ref()
            .expect("backbone has no head")
            .forward(cls)
    }

    /// Logits of the backbone's own head.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x = self.embed(images);
        let x = self.run_layers(x, 0, self.spec.layers);
        self.classify(x)
    }
}

fn spec_from_metadata(path: &Path, file: &TensorFile) -> Result<BackboneSpec> {
    if let Some(json) = file.metadata.get("backbone") {
        return serde_json::from_str(json)
            .map_err(|e| TrainError::format(path, format!("bad `backbone` metadata: {e}")));
    }
    let json = file.metadata.get("config").ok_or_else(|| {
        TrainError::format(
            path,
            "no `backbone` or `config` metadata; pass a BackboneSpec",
        )
    })?;
    let v: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| TrainError::format(path, format!("bad `config` metadata: {e}")))?;
    let get = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_u64())
            .map(|x| x as usize)
            .ok_or_else(|| {
                TrainError::format(path, format!("`config` metadata lacks integer `{k}`"))
            })
    };
    let channels = file
        .tensors
        .get("conv_proj.weight")
        .map(|t| t.shape[1])
        .unwrap_or(3);
    Ok(BackboneSpec {
        name: path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        image_size: get("image_size")?,
        patch_size: get("patch_size")?,
        channels,
        hidden_dim: get("hidden_dim")?,
        layers: get("num_layers")?,
        heads: get("num_heads")?,
        mlp_dim: get("mlp_dim")?,
        norm_eps: 1e-6,
    })
}
