use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use crate::error::{field, SpecError};
use crate::{parse_kv, parse_num};

/// Token mixing inside an adapter block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttentionKind {
    /// The paper's LinAtten: a learned `[N, N]` map over the key axis replaces softmax.
    #[serde(rename = "linatten", alias = "lin-atten")]
    LinAtten,
    Softmax,
    /// MPCViT's ReLU-softmax: `relu(S) / sum(relu(S))`.
    ReluSoftmax,
    /// MPCFormer's 2Quad: `(S + c)^2 / sum((S + c)^2)`.
    #[serde(rename = "2quad", alias = "two-quad")]
    TwoQuad,
    /// No attention sub-layer.
    None,
}

/// What ReLU-softmax adds to each row's sum before dividing, `2^-8`: a whole unit in the
/// last place at any fixed point of 8 or more fractional bits, and the bottom of the
/// secure row normalization's range of sums (`InvSqrtParams::min_exp`), so a row whose
/// few positive scores sum to almost nothing divides by the same number in the model
/// and under MPC. (It was `1e-6`, below `2^-16`: such rows left the range and their
/// weights were off by up to a few percent.)
pub const RELU_SOFTMAX_EPS: f64 = 1.0 / 256.0;

/// Activation between the adapter MLP's two linear layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Activation {
    Relu,
    Gelu,
    Square,
}

/// Normalization inside adapter blocks and before the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NormKind {
    #[serde(rename = "layernorm", alias = "layer-norm")]
    LayerNorm,
    /// BatchNorm with running statistics: an affine map at inference.
    Affine,
    None,
}

impl AttentionKind {
    /// Every kind, so tests and tables that cover the space cannot miss one.
    pub const ALL: [AttentionKind; 5] = [
        AttentionKind::LinAtten,
        AttentionKind::Softmax,
        AttentionKind::ReluSoftmax,
        AttentionKind::TwoQuad,
        AttentionKind::None,
    ];
}

impl Activation {
    pub const ALL: [Activation; 3] = [Activation::Relu, Activation::Gelu, Activation::Square];
}

impl NormKind {
    pub const ALL: [NormKind; 3] = [NormKind::Affine, NormKind::LayerNorm, NormKind::None];
}

/// One point of the search space: the shape of the OWC adapters (docs/DESIGN.md section 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterSpec {
    /// Scope `s`: adapters attach to backbone layers `L-s .. L-1`.
    pub scope: usize,
    /// Attention heads `h`; must divide `rank`.
    pub heads: usize,
    /// Rank `r`: the adapter's inner width.
    pub rank: usize,
    /// Transformer blocks `k` per adapter (paper: 1).
    #[serde(default = "one")]
    pub blocks: usize,
    #[serde(default = "linatten")]
    pub attention: AttentionKind,
    #[serde(default = "relu")]
    pub activation: Activation,
    #[serde(default = "affine")]
    pub norm: NormKind,
    /// Output scale of each adapter (paper's evaluation scripts: 0.5).
    #[serde(default = "half")]
    pub scale: f64,
}

fn one() -> usize {
    1
}
fn linatten() -> AttentionKind {
    AttentionKind::LinAtten
}
fn relu() -> Activation {
    Activation::Relu
}
fn affine() -> NormKind {
    NormKind::Affine
}
fn half() -> f64 {
    0.5
}

/// The configurations `(h, r, s)` the paper's search selected for ViT-B/16, as in
/// `experiments/paper_configs.yaml`: wan then lan, utility then efficiency first, and
/// CIFAR-10, CIFAR-100, Flowers102, SVHN, Food101 in each.
pub const PAPER_SELECTED: [(usize, usize, usize); 20] = [
    (10, 180, 2),
    (2, 300, 2),
    (1, 300, 1),
    (12, 180, 3),
    (12, 300, 1),
    (2, 120, 2),
    (1, 300, 1),
    (1, 180, 1),
    (12, 300, 1),
    (4, 180, 1),
    (1, 180, 2),
    (1, 300, 2),
    (1, 300, 1),
    (12, 120, 3),
    (10, 300, 1),
    (4, 120, 1),
    (1, 240, 1),
    (1, 120, 1),
    (12, 60, 1),
    (6, 180, 1),
];

impl AdapterSpec {
    /// The paper's adapter `(h, r, s)` with its defaults (1 block, LinAtten, ReLU, affine, 0.5).
    pub fn paper(heads: usize, rank: usize, scope: usize) -> Self {
        Self {
            scope,
            heads,
            rank,
            blocks: 1,
            attention: AttentionKind::LinAtten,
            activation: Activation::Relu,
            norm: NormKind::Affine,
            scale: 0.5,
        }
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.rank / self.heads
    }

    /// Checks the spec on its own and against a backbone with `layers` encoder layers.
    pub fn validate(&self, layers: usize) -> Result<(), SpecError> {
        if self.rank == 0 {
            return Err(field("r", "rank must be positive"));
        }
        if self.heads == 0 {
            return Err(field("h", "heads must be positive"));
        }
        if !self.rank.is_multiple_of(self.heads) {
            return Err(field(
                "r",
                format!(
                    "rank {} is not divisible by heads {}",
                    self.rank, self.heads
                ),
            ));
        }
        if self.scope == 0 || self.scope > layers {
            return Err(field(
                "s",
                format!("scope {} must be in 1..={layers}", self.scope),
            ));
        }
        if self.blocks == 0 {
            return Err(field("k", "blocks must be positive"));
        }
        if !self.scale.is_finite() {
            return Err(field("scale", "must be finite"));
        }
        Ok(())
    }

    /// Short label such as `h1-r300-s1` (plus non-default kinds and scale), for file
    /// names and tables; distinct specs get distinct labels.
    pub fn label(&self) -> String {
        let mut s = format!("h{}-r{}-s{}", self.heads, self.rank, self.scope);
        if self.blocks != 1 {
            s += &format!("-k{}", self.blocks);
        }
        match self.attention {
            AttentionKind::LinAtten => {}
            AttentionKind::None => s += "-noattn",
            a => s += &format!("-{a}"),
        }
        if self.activation != Activation::Relu {
            s += &format!("-{}", self.activation);
        }
        match self.norm {
            NormKind::Affine => {}
            NormKind::None => s += "-nonorm",
            n => s += &format!("-{n}"),
        }
        if self.scale != 0.5 {
            s += &format!("-x{}", self.scale);
        }
        s
    }
}

impl FromStr for AdapterSpec {
    type Err = SpecError;

    /// Parses `h=1,r=300,s=1[,k=1,attention=linatten,activation=relu,norm=affine,scale=0.5]`.
    fn from_str(text: &str) -> Result<Self, SpecError> {
        let mut spec = AdapterSpec::paper(0, 0, 0);
        let (mut h, mut r, mut s) = (false, false, false);
        for (k, v) in parse_kv(text)? {
            match k.as_str() {
                "h" | "heads" => (spec.heads, h) = (parse_num("h", &v)?, true),
                "r" | "rank" => (spec.rank, r) = (parse_num("r", &v)?, true),
                "s" | "scope" => (spec.scope, s) = (parse_num("s", &v)?, true),
                "k" | "blocks" => spec.blocks = parse_num("k", &v)?,
                "attention" | "attn" => spec.attention = v.parse()?,
                "activation" | "act" => spec.activation = v.parse()?,
                "norm" => spec.norm = v.parse()?,
                "scale" => spec.scale = parse_num("scale", &v)?,
                other => return Err(field(other, "unknown adapter field")),
            }
        }
        for (present, name) in [(h, "h"), (r, "r"), (s, "s")] {
            if !present {
                return Err(field(name, "missing"));
            }
        }
        Ok(spec)
    }
}

macro_rules! kind_names {
    ($ty:ty, $field:literal, $( $variant:path => [$($name:literal),+] ),+ $(,)?) => {
        impl FromStr for $ty {
            type Err = SpecError;
            fn from_str(s: &str) -> Result<Self, SpecError> {
                match s.to_ascii_lowercase().as_str() {
                    $( $($name)|+ => Ok($variant), )+
                    other => Err(field($field, format!("unknown value `{other}`"))),
                }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let name = match self { $( $variant => [$($name),+][0], )+ };
                f.write_str(name)
            }
        }
    };
}

kind_names!(AttentionKind, "attention",
    AttentionKind::LinAtten => ["linatten", "lin-atten", "linear"],
    AttentionKind::Softmax => ["softmax"],
    AttentionKind::ReluSoftmax => ["relu-softmax", "relusoftmax"],
    AttentionKind::TwoQuad => ["2quad", "two-quad"],
    AttentionKind::None => ["none"],
);
kind_names!(Activation, "activation",
    Activation::Relu => ["relu"],
    Activation::Gelu => ["gelu"],
    Activation::Square => ["square", "quad"],
);
kind_names!(NormKind, "norm",
    NormKind::LayerNorm => ["layernorm", "layer-norm", "ln"],
    NormKind::Affine => ["affine", "batchnorm", "bn"],
    NormKind::None => ["none"],
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flags_and_names_bad_fields() {
        let s: AdapterSpec = "h=2,r=120,s=2,norm=layernorm".parse().unwrap();
        assert_eq!((s.heads, s.rank, s.scope), (2, 120, 2));
        assert_eq!(s.norm, NormKind::LayerNorm);
        let err = AdapterSpec::paper(7, 300, 1).validate(12).unwrap_err();
        assert!(err.to_string().contains("`r`"), "{err}");
        let err = "h=1,r=60".parse::<AdapterSpec>().unwrap_err();
        assert!(err.to_string().contains("`s`"), "{err}");
        let err = AdapterSpec::paper(1, 60, 13).validate(12).unwrap_err();
        assert!(err.to_string().contains("`s`"), "{err}");
    }

    #[test]
    fn labels_tell_specs_apart() {
        let mut a = AdapterSpec::paper(1, 8, 1);
        a.attention = AttentionKind::None;
        let mut b = AdapterSpec::paper(1, 8, 1);
        b.norm = NormKind::None;
        let mut c = AdapterSpec::paper(1, 8, 1);
        c.scale = 0.25;
        let labels = [
            a.label(),
            b.label(),
            c.label(),
            AdapterSpec::paper(1, 8, 1).label(),
        ];
        assert_eq!(
            labels,
            [
                "h1-r8-s1-noattn",
                "h1-r8-s1-nonorm",
                "h1-r8-s1-x0.25",
                "h1-r8-s1"
            ]
        );
    }

    #[test]
    fn serde_names_match_the_cli_and_fixture_spelling() {
        for a in [
            AttentionKind::LinAtten,
            AttentionKind::Softmax,
            AttentionKind::ReluSoftmax,
            AttentionKind::TwoQuad,
            AttentionKind::None,
        ] {
            assert_eq!(serde_json::to_string(&a).unwrap(), format!("\"{a}\""));
        }
        assert_eq!(
            serde_json::to_string(&NormKind::LayerNorm).unwrap(),
            "\"layernorm\""
        );
        let old: AttentionKind = serde_json::from_str("\"lin-atten\"").unwrap();
        assert_eq!(old, AttentionKind::LinAtten);
    }

    #[test]
    fn yaml_round_trip_with_defaults() {
        let s: AdapterSpec = serde_yaml::from_str("scope: 1\nheads: 1\nrank: 300\n").unwrap();
        assert_eq!(s, AdapterSpec::paper(1, 300, 1));
        let back: AdapterSpec = serde_yaml::from_str(&serde_yaml::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        assert!(
            serde_yaml::from_str::<AdapterSpec>("scope: 1\nheads: 1\nrank: 3\nbogus: 1\n").is_err()
        );
    }
}
