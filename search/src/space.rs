//! The space file (YAML): what to search, on what data, judged how, for how long.
//! Unknown keys and bad values fail naming the key and its line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cryptpeft_train::data::DataConfig;
use cryptpeft_train::states::Precision;
use cryptpeft_train::{DeviceChoice, OptimizerConfig};
use cryptpeft_types::{Activation, AttentionKind, NetworkProfile, NormKind};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The default space: digits on the shipped `vit-mini` (the README's first command).
pub const DEFAULT_SPACE: &str = include_str!("../../experiments/spaces/digits.yaml");

/// A whole space file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpaceFile {
    /// Names the run directory and the plots.
    pub name: String,
    /// `vit-mini` (the shipped backbone) or a torchvision-layout safetensors path.
    pub backbone: String,
    /// The trainer's dataset section (dataset, path, classes, max_train, max_test, ...).
    pub data: DataConfig,
    /// Fraction of the training split held out for selection (the test split is never
    /// seen by the search).
    #[serde(default = "d_validation")]
    pub validation: f64,
    pub genes: Genes,
    #[serde(default)]
    pub fidelity: Fidelity,
    /// Network profiles to report a front for: `lan`, `wan`, `custom:mbit=..,delay_ms=..`.
    #[serde(default = "d_networks")]
    pub networks: Vec<String>,
    /// The profile whose predicted seconds the strategy minimises (default: the last).
    #[serde(default)]
    pub select: Option<String>,
    #[serde(default)]
    pub constraints: Constraints,
    #[serde(default)]
    pub strategy: StrategyKind,
    /// NSGA-II population (default 12).
    #[serde(default = "d_population")]
    pub population: usize,
    #[serde(default)]
    pub reinforce: ReinforceConfig,
    #[serde(default)]
    pub budget: Budget,
    /// Seed of the data split (validation part), and of training initialisation and
    /// batch order unless `train_seed` is given.
    #[serde(default)]
    pub seed: u64,
    /// Seed of training initialisation and batch order alone (default: `seed`): a grid
    /// re-run under another training seed, on the same split, measures how much of a
    /// tabulated accuracy is training noise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_seed: Option<u64>,
    /// Seed of the strategy's proposals (default: `seed`), so that a study's spread
    /// over strategy seeds is the strategy's alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy_seed: Option<u64>,
    /// Cost-model constants: `calibrate` (default: measured on this machine at the
    /// study's first run and kept with it), `shipped`, or a YAML path.
    #[serde(default = "d_constants")]
    pub constants: String,
    /// What trains the candidates and builds the feature cache: `cpu` (default) or
    /// `wgpu` (a build with the `wgpu` feature). Per machine: workers of one study may
    /// differ, so it is not part of the study's identity.
    #[serde(default)]
    pub device: DeviceChoice,
    /// Where the feature cache lives and in what precision.
    #[serde(default)]
    pub cache: CacheConfig,
}

/// The feature cache: in memory, or memory-mapped from disk, in f32 or f16, or none
/// (population training). Where it lives and the group size are per machine (not the
/// study's identity); its precision moves accuracies, so it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    #[serde(default)]
    pub store: CacheStore,
    #[serde(default)]
    pub precision: Precision,
    /// Memory the cache may take, in GB (default: what the machine has available).
    #[serde(default)]
    pub memory_gb: Option<f64>,
    /// Without a cache: candidates trained together per backbone pass (default:
    /// `population`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<usize>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheStore {
    /// In memory when it fits (80% of the memory), else on disk when that fits (90% of
    /// the free space) and the backbone runs on the CPU, else none.
    #[default]
    Auto,
    Memory,
    Disk,
    /// No cache: population training. Candidates proposed together train together, and
    /// each batch of images runs through the backbone once for the whole group.
    None,
}

/// The genes and their choices (docs/DESIGN.md section 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genes {
    pub heads: Vec<usize>,
    pub rank: Vec<usize>,
    pub scope: Vec<usize>,
    #[serde(default = "d_blocks")]
    pub blocks: Vec<usize>,
    #[serde(default = "d_attention")]
    pub attention: Vec<AttentionKind>,
    #[serde(default = "d_norm")]
    pub norm: Vec<NormKind>,
    #[serde(default = "d_activation")]
    pub activation: Vec<Activation>,
    #[serde(default = "d_scale")]
    pub scale: Vec<f64>,
}

/// How hard each candidate is trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fidelity {
    pub epochs: usize,
    /// Successive halving: epochs per rung, e.g. `[5, 15, 30]`; every candidate runs the
    /// first rung and the best `1/eta` of each rung move up.
    #[serde(default)]
    pub ladder: Option<Vec<usize>>,
    #[serde(default = "d_eta")]
    pub eta: usize,
    #[serde(default = "d_batch")]
    pub batch_size: usize,
    #[serde(default)]
    pub optimizer: OptimizerConfig,
    /// Augment every training batch afresh (random resized crop + flip): needs images,
    /// so it trains without a cache (`cache.store: none` or `auto`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub augment: bool,
}

impl Default for Fidelity {
    fn default() -> Self {
        Self {
            epochs: 10,
            ladder: None,
            eta: d_eta(),
            batch_size: d_batch(),
            optimizer: OptimizerConfig::default(),
            augment: false,
        }
    }
}

impl Fidelity {
    /// Epochs per rung (one rung without a ladder).
    pub fn rungs(&self) -> Vec<usize> {
        self.ladder.clone().unwrap_or_else(|| vec![self.epochs])
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Constraints {
    /// Latency budget (predicted online seconds) per profile name.
    #[serde(default)]
    pub latency_s: BTreeMap<String, f64>,
    /// Validation-accuracy floor in `[0, 1]`.
    #[serde(default)]
    pub min_accuracy: Option<f64>,
    /// Dealer material per inference (both parties), in MB: what a deployment moves
    /// besides the online phase.
    #[serde(default)]
    pub offline_mb: Option<f64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StrategyKind {
    /// A Gaussian process of accuracy over the genes, proposing the largest expected
    /// hypervolume improvement at each candidate's priced latency.
    #[default]
    Ehvi,
    /// EHVI alternating with the configuration likeliest to be on the front: more of
    /// the front's members, less hypervolume in the worst runs.
    EhviFront,
    Nsga2,
    /// The paper's controller generalised to every gene, restarting over the scopes.
    Reinforce,
    /// The paper's controller as published (docs/DESIGN.md section 5).
    ReinforcePaper,
    Random,
    /// Every valid configuration, in order.
    Grid,
}

impl std::str::FromStr for StrategyKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        serde_yaml::from_str(s).map_err(|_| {
            format!(
                "unknown strategy `{s}` (ehvi, ehvi-front, nsga2, reinforce, reinforce-paper, random, \
                 grid)"
            )
        })
    }
}

impl std::fmt::Display for StrategyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = serde_yaml::to_string(self).unwrap_or_default();
        f.write_str(s.trim())
    }
}

/// The paper's REINFORCE controller settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReinforceConfig {
    /// Candidates predicted slower than this (seconds, selection profile) are not
    /// trained (paper: 2.7 s). Default: the selection profile's latency constraint.
    #[serde(default)]
    pub latency_target_s: Option<f64>,
    /// Samples without a new best accuracy before moving to the next scope (paper: 3).
    #[serde(default = "d_patience")]
    pub patience: usize,
    /// Adam learning rate of the policies (paper: 0.001).
    #[serde(default = "d_lr")]
    pub lr: f64,
}

impl Default for ReinforceConfig {
    fn default() -> Self {
        Self {
            latency_target_s: None,
            patience: d_patience(),
            lr: d_lr(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Trainings (all rungs); default: every valid configuration once.
    #[serde(default)]
    pub evaluations: Option<usize>,
    /// Wall-clock minutes of this run, after which no new trial starts.
    #[serde(default)]
    pub minutes: Option<f64>,
}

fn d_validation() -> f64 {
    0.2
}
fn d_networks() -> Vec<String> {
    vec!["lan".into(), "wan".into()]
}
fn d_population() -> usize {
    12
}
fn d_constants() -> String {
    "calibrate".into()
}
fn d_blocks() -> Vec<usize> {
    vec![1]
}
fn d_attention() -> Vec<AttentionKind> {
    vec![AttentionKind::LinAtten]
}
fn d_norm() -> Vec<NormKind> {
    vec![NormKind::Affine]
}
fn d_activation() -> Vec<Activation> {
    vec![Activation::Relu]
}
fn d_scale() -> Vec<f64> {
    vec![0.5]
}
fn d_eta() -> usize {
    3
}
fn d_batch() -> usize {
    50
}
fn d_patience() -> usize {
    3
}
fn d_lr() -> f64 {
    0.001
}

/// The shipped backbone's file.
pub fn vit_mini_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../train/assets/vit_mini_fmnist04.safetensors")
}

/// 1-based line of the key at `path` (each segment searched below the previous one).
fn line_of(text: &str, path: &[&str]) -> Option<usize> {
    let mut from = 0;
    let mut found = None;
    for seg in path {
        let hit = text.lines().enumerate().skip(from).find(|(_, l)| {
            let t = l.trim_start().trim_start_matches("- ");
            t.starts_with(&format!("{seg}:"))
        })?;
        from = hit.0 + 1;
        found = Some(hit.0 + 1);
    }
    found
}

impl SpaceFile {
    /// Parses and checks a space file; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let space: SpaceFile = serde_yaml::from_str(text).map_err(|e| Error::Space {
            origin: origin.into(),
            key: String::new(),
            line: e.location().map(|l| l.line()),
            problem: e.to_string(),
        })?;
        space.check(text, origin)?;
        Ok(space)
    }

    /// Reads a space file from disk.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, &path.display().to_string())
    }

    fn check(&self, text: &str, origin: &str) -> Result<()> {
        let bad = |path: &[&str], problem: String| Error::Space {
            origin: origin.into(),
            key: path.join("."),
            line: line_of(text, path),
            problem,
        };
        let g = &self.genes;
        let lists: [(&str, usize); 8] = [
            ("heads", g.heads.len()),
            ("rank", g.rank.len()),
            ("scope", g.scope.len()),
            ("blocks", g.blocks.len()),
            ("attention", g.attention.len()),
            ("norm", g.norm.len()),
            ("activation", g.activation.len()),
            ("scale", g.scale.len()),
        ];
        for (name, len) in lists {
            if len == 0 {
                return Err(bad(&["genes", name], "needs at least one choice".into()));
            }
        }
        for (name, vals) in [
            ("heads", &g.heads),
            ("rank", &g.rank),
            ("scope", &g.scope),
            ("blocks", &g.blocks),
        ] {
            if let Some(v) = vals.iter().find(|&&v| v == 0) {
                return Err(bad(
                    &["genes", name],
                    format!("choice {v} must be positive"),
                ));
            }
            let mut sorted = vals.clone();
            sorted.sort_unstable();
            sorted.dedup();
            if sorted.len() != vals.len() {
                return Err(bad(&["genes", name], "repeated choice".into()));
            }
        }
        if let Some(v) = g.scale.iter().find(|v| !v.is_finite()) {
            return Err(bad(
                &["genes", "scale"],
                format!("choice {v} is not finite"),
            ));
        }
        if !(self.validation > 0.0 && self.validation < 1.0) {
            return Err(bad(
                &["validation"],
                format!("{} must be a fraction in (0, 1)", self.validation),
            ));
        }
        let f = &self.fidelity;
        if f.epochs == 0 || f.batch_size == 0 {
            return Err(bad(
                &["fidelity"],
                "epochs and batch_size must be positive".into(),
            ));
        }
        if let Some(l) = &f.ladder {
            if l.is_empty() || l.contains(&0) || l.windows(2).any(|w| w[0] >= w[1]) {
                return Err(bad(
                    &["fidelity", "ladder"],
                    format!("{l:?} must be increasing positive epochs"),
                ));
            }
            if f.eta < 2 {
                return Err(bad(&["fidelity", "eta"], "must be at least 2".into()));
            }
        }
        if self.networks.is_empty() {
            return Err(bad(&["networks"], "needs at least one profile".into()));
        }
        for n in &self.networks {
            n.parse::<NetworkProfile>()
                .map_err(|e| bad(&["networks"], format!("`{n}`: {e}")))?;
        }
        if let Some(s) = &self.select {
            if !self.networks.contains(s) {
                return Err(bad(&["select"], format!("`{s}` is not one of `networks`")));
            }
        }
        for (name, v) in &self.constraints.latency_s {
            if !self.networks.contains(name) {
                return Err(bad(
                    &["constraints", "latency_s", name],
                    format!("`{name}` is not one of `networks`"),
                ));
            }
            if v.is_nan() || *v <= 0.0 {
                return Err(bad(
                    &["constraints", "latency_s", name],
                    format!("{v} must be positive"),
                ));
            }
        }
        if let Some(mb) = self.constraints.offline_mb {
            if mb.is_nan() || mb <= 0.0 {
                return Err(bad(
                    &["constraints", "offline_mb"],
                    format!("{mb} must be positive"),
                ));
            }
        }
        if let Some(a) = self.constraints.min_accuracy {
            if !(0.0..=1.0).contains(&a) {
                return Err(bad(
                    &["constraints", "min_accuracy"],
                    format!("{a} must be in [0, 1]"),
                ));
            }
        }
        if let Some(m) = self.cache.memory_gb {
            if m.is_nan() || m <= 0.0 {
                return Err(bad(
                    &["cache", "memory_gb"],
                    format!("{m} must be positive"),
                ));
            }
        }
        if self.cache.group == Some(0) {
            return Err(bad(&["cache", "group"], "must be positive".into()));
        }
        if self.fidelity.augment
            && matches!(self.cache.store, CacheStore::Memory | CacheStore::Disk)
        {
            return Err(bad(
                &["fidelity", "augment"],
                "draws new views every batch, which a feature cache cannot hold: set \
                 `cache.store: none` (or `auto`)"
                    .into(),
            ));
        }
        if self.population < 2 {
            return Err(bad(&["population"], "must be at least 2".into()));
        }
        if self.budget.evaluations == Some(0) {
            return Err(bad(&["budget", "evaluations"], "must be positive".into()));
        }
        if let Some(m) = self.budget.minutes {
            if m.is_nan() || m <= 0.0 {
                return Err(bad(&["budget", "minutes"], format!("{m} must be positive")));
            }
        }
        if !matches!(self.constants.as_str(), "calibrate" | "shipped")
            && !Path::new(&self.constants).exists()
        {
            return Err(bad(
                &["constants"],
                format!(
                    "{}: no such file (calibrate, shipped or a path)",
                    self.constants
                ),
            ));
        }
        let bb = self.backbone_path();
        if !bb.is_file() {
            return Err(bad(
                &["backbone"],
                format!(
                    "{}: no such file (vit-mini or a safetensors path)",
                    bb.display()
                ),
            ));
        }
        let data = self.data.path();
        if !data.exists() {
            return Err(bad(
                &["data", "path"],
                format!("{}: no such file or directory", data.display()),
            ));
        }
        Ok(())
    }

    pub fn backbone_path(&self) -> PathBuf {
        match self.backbone.as_str() {
            "vit-mini" => vit_mini_path(),
            p => PathBuf::from(p),
        }
    }

    /// The profiles, in file order.
    pub fn profiles(&self) -> Vec<NetworkProfile> {
        self.networks
            .iter()
            .map(|n| n.parse().expect("checked at parse time"))
            .collect()
    }

    /// The seed candidates are trained with.
    pub fn train_seed(&self) -> u64 {
        self.train_seed.unwrap_or(self.seed)
    }

    /// The seed the strategy proposes with.
    pub fn strategy_seed(&self) -> u64 {
        self.strategy_seed.unwrap_or(self.seed)
    }

    /// Index of the selection profile in [`Self::profiles`].
    pub fn select_index(&self) -> usize {
        self.select
            .as_ref()
            .and_then(|s| self.networks.iter().position(|n| n == s))
            .unwrap_or(self.networks.len() - 1)
    }

    /// The space without its budget, as stored: a study resumes only under the same
    /// space, while its budget may grow.
    pub fn identity(&self) -> String {
        let mut s = self.clone();
        s.budget = Budget::default();
        s.device = DeviceChoice::default();
        s.cache.store = CacheStore::default();
        s.cache.memory_gb = None;
        s.cache.group = None;
        serde_json::to_string(&s).expect("a space serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_space_parses() {
        let s = SpaceFile::parse(DEFAULT_SPACE, "default").unwrap();
        assert_eq!(s.name, "digits");
        assert!(s.networks.contains(&"wan".to_string()));
    }

    #[test]
    fn a_training_seed_trains_apart_from_the_split_and_is_another_study() {
        let s = SpaceFile::parse(DEFAULT_SPACE, "default").unwrap();
        let t = SpaceFile::parse(&format!("{DEFAULT_SPACE}\ntrain_seed: 3\n"), "x").unwrap();
        assert_eq!(
            (s.train_seed(), t.train_seed(), t.seed),
            (s.seed, 3, s.seed)
        );
        let spec = "h=1,r=8,s=1".parse().unwrap();
        assert_eq!(crate::eval::recipe(&t, &spec, 1).seed, 3);
        assert_ne!(s.identity(), t.identity());
    }

    #[test]
    fn unknown_key_and_bad_value_name_key_and_line() {
        let text = DEFAULT_SPACE.replace("genes:\n", "genes:\n  hedas: [1]\n");
        let e = SpaceFile::parse(&text, "x.yaml").unwrap_err().to_string();
        assert!(e.contains("hedas") && e.contains("line"), "{e}");
        let text = DEFAULT_SPACE.replace("validation: 0.2", "validation: 1.5");
        let e = SpaceFile::parse(&text, "x.yaml").unwrap_err().to_string();
        let line = DEFAULT_SPACE
            .lines()
            .position(|l| l.starts_with("validation:"))
            .unwrap()
            + 1;
        assert!(
            e.contains("`validation`") && e.contains(&format!("line {line}")),
            "{e}"
        );
    }

    #[test]
    fn the_paper_space_is_well_formed() {
        // Its weights and data are the user's to bring, so only the format is checked.
        let text = include_str!("../../experiments/spaces/paper-vit-b16.yaml");
        let s: SpaceFile = serde_yaml::from_str(text).unwrap();
        assert_eq!(s.genes.heads, [1, 2, 4, 6, 10, 12]);
        assert_eq!(s.genes.rank.len() * s.genes.scope.len(), 30);
        assert_eq!(s.constraints.latency_s.get("wan"), Some(&2.7));
        // Without the files, the error names what is missing.
        if let Err(e) = SpaceFile::parse(text, "paper") {
            let e = e.to_string();
            assert!(e.contains("`backbone`") || e.contains("`data.path`"), "{e}");
        }
    }

    #[test]
    fn bad_choice_names_the_gene() {
        let text =
            DEFAULT_SPACE.replace("norm: [affine, layernorm, none]", "norm: [affine, bogus]");
        let e = SpaceFile::parse(&text, "x.yaml").unwrap_err().to_string();
        assert!(e.contains("bogus") && e.contains("line"), "{e}");
    }
}
