//! The client from images: the public backbone runs here in burn (CPU) on each image,
//! preprocessed like the trainer's data, and its hidden states go into the secure
//! part with the server. Each image is its own session; the model's setup `E` comes
//! from the setup cache after the first.

use std::path::{Path, PathBuf};
use std::time::Instant;

use cryptpeft_train::backbone::Vit;
use cryptpeft_train::cpu;
use cryptpeft_train::data::{image_files, read_images, DataConfig, DatasetKind, Preprocess};
use private_eval::model::OwcModel;
use private_eval::reference;
use private_eval::roles::{self, RoleConfig};
use private_eval::tensor::Mat;
use serde::Serialize;

/// One image's private inference.
#[derive(Debug, Serialize)]
pub struct ImageReport {
    pub image: PathBuf,
    pub predicted: usize,
    pub logits: Vec<f64>,
    /// The backbone on this machine, from the file to the hidden states.
    pub backbone_s: f64,
    pub online_s: f64,
    /// From reading the file to the logits (connection and offline fetch included).
    pub end_to_end_s: f64,
    pub online_bytes: u64,
    pub rounds: u64,
    /// The plaintext model's class on the same states (`--check-against`).
    pub plaintext: Option<usize>,
}

fn argmax(v: &[f64]) -> usize {
    (0..v.len())
        .max_by(|&a, &b| v[a].total_cmp(&v[b]))
        .unwrap_or(0)
}

/// PNG and JPEG files of `dir` (sorted), or the one file.
pub fn image_paths(path: &Path, dir: bool) -> Result<Vec<PathBuf>, String> {
    match dir {
        true => image_files(path).map_err(|e| e.to_string()),
        false => Ok(vec![path.to_path_buf()]),
    }
}

/// Runs the backbone on one image: all its hidden states, `[tokens, d]` each.
fn states(vit: &Vit, pre: &Preprocess, path: &Path) -> Result<Vec<Mat>, String> {
    let s = vit.spec.image_size;
    let set = read_images(&[(path.to_path_buf(), 0)], s).map_err(|e| e.to_string())?;
    let pixels = pre.apply_set(&set, None);
    let images = burn::tensor::Tensor::<4>::from_data(
        burn::tensor::TensorData::new(pixels, [1, vit.spec.channels, s, s]),
        &cpu(),
    );
    vit.hidden_states(images)
        .into_iter()
        .map(|t| {
            let [_, n, d] = t.dims();
            let v: Vec<f32> = t
                .into_data()
                .try_to_vec::<f32>()
                .map_err(|e| format!("{e:?}"))?;
            Ok(Mat::new(n, d, v.into_iter().map(f64::from).collect()))
        })
        .collect()
}

/// Classifies every image privately, with a progress bar for more than one.
pub fn run(
    backbone: &Path,
    paths: &[PathBuf],
    server: &str,
    dealer: &str,
    config: &RoleConfig,
    check: Option<&OwcModel>,
) -> Result<Vec<ImageReport>, String> {
    let vit = Vit::load(backbone, None, &cpu()).map_err(|e| e.to_string())?;
    // The trainer's normalization (its default mean and std of 0.5).
    let pre = Preprocess::new(
        vit.spec.image_size,
        vit.spec.channels,
        &DataConfig::new(DatasetKind::ImageFolder),
    );
    let bar = (paths.len() > 1).then(|| indicatif::ProgressBar::new(paths.len() as u64));
    let mut out = Vec::with_capacity(paths.len());
    // One connection for every image: one TLS handshake, the setup with the first
    // (whose end-to-end time includes connecting).
    let mut first = Some(Instant::now());
    let mut conn = roles::ClientConnection::open(server, config).map_err(|e| e.to_string())?;
    for p in paths {
        let t = first.take().unwrap_or_else(Instant::now);
        // The backbone runs while the client connects, gets the plan and fetches its
        // half from the dealer; the online phase waits for its states.
        let mut backbone_s = 0.0;
        let mut states_kept = Vec::new();
        let r = std::thread::scope(|sc| {
            let job = sc.spawn(|| {
                let t0 = Instant::now();
                states(&vit, &pre, p).map(|s| (s, t0.elapsed().as_secs_f64()))
            });
            let get = || {
                let (s, secs) = job
                    .join()
                    .map_err(|_| "the backbone panicked".to_string())??;
                backbone_s = secs;
                if check.is_some() {
                    states_kept = s.clone();
                }
                Ok(s)
            };
            conn.run(dealer, get, config)
        })
        .map_err(|e| format!("{}: {e}", p.display()))?;
        let hidden = states_kept;
        let plaintext = check.map(|m| {
            let states = &hidden[hidden.len().saturating_sub(m.spec.scope + 1)..];
            argmax(&reference::forward(m, states))
        });
        out.push(ImageReport {
            image: p.clone(),
            predicted: r.predicted,
            logits: r.logits,
            backbone_s,
            online_s: r.online_s,
            end_to_end_s: t.elapsed().as_secs_f64(),
            online_bytes: r.online_bytes,
            rounds: r.rounds,
            plaintext,
        });
        if let Some(b) = &bar {
            b.inc(1);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(out)
}

/// Arguments of `random-backbone`.
#[derive(clap::Args)]
pub struct RandomBackboneArgs {
    /// Backbone shape (vit-b16, vit-mini, ...).
    #[arg(long, default_value = "vit-b16")]
    backbone: String,
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Writes a freshly initialised backbone in torchvision's layout: a stand-in for a
/// pretrained one where only its time matters.
pub fn random_backbone(a: RandomBackboneArgs) -> Result<(), String> {
    let spec = cryptpeft_types::BackboneSpec::by_name(&a.backbone).map_err(|e| e.to_string())?;
    Vit::init(&spec, 1000, a.seed, &cpu())
        .save(&a.out)
        .map_err(|e| e.to_string())
}
