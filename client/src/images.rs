//! From image files to private logits: the public backbone runs here in burn (CPU or
//! wgpu) on each image, preprocessed like the trainer's data, and each hidden state goes
//! into the online phase with the server as soon as its layer has run. Each image is its
//! own session over one connection; the model's setup `E` comes from the setup cache
//! after the first.

use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::time::Instant;

use cryptpeft_deploy::roles::{self, RoleConfig};
use cryptpeft_private_eval::arith::tensor::Mat;
use cryptpeft_private_eval::model::OwcModel;
use cryptpeft_private_eval::reference;
use cryptpeft_train::backbone::Vit;
use cryptpeft_train::burn;
use cryptpeft_train::burn::prelude::Device;
use cryptpeft_train::data::{image_files, read_images, DataConfig, DatasetKind, Preprocess};
use cryptpeft_train::DeviceChoice;
use serde::Serialize;

/// One image's private inference.
#[derive(Debug, Serialize)]
pub struct ImageReport {
    pub image: PathBuf,
    pub predicted: usize,
    pub logits: Vec<f64>,
    /// The backbone on this machine, from the file to the hidden states.
    pub backbone_s: f64,
    /// The online phase, from its start to the logits: it starts once the dealer's half
    /// is in, so it includes waiting for the backbone's states it reads.
    pub online_s: f64,
    /// From reading the file to the logits (connection and offline fetch included).
    pub end_to_end_s: f64,
    /// What the private part adds after the backbone's last state: `end_to_end_s -
    /// backbone_s`.
    pub after_backbone_s: f64,
    pub online_bytes: u64,
    pub rounds: u64,
    /// The plaintext model's class on the same states (`--check-against`).
    pub plaintext: Option<usize>,
}

/// PNG and JPEG files of `dir` (sorted), or the one file.
pub fn image_paths(path: &Path, dir: bool) -> Result<Vec<PathBuf>, String> {
    match dir {
        true => image_files(path).map_err(|e| e.to_string()),
        false => Ok(vec![path.to_path_buf()]),
    }
}

/// What the backbone's thread sends: each state as it exists, then the end.
enum FromBackbone {
    State(Mat),
    Failed(String),
    Done { seconds: f64 },
}

/// Runs the backbone on one image and sends every hidden state (`[tokens, d]`, `x_0`
/// first) as soon as its layer has run.
fn send_states(
    (vit, device): (&Vit, &Device),
    pre: &Preprocess,
    path: &Path,
    tx: &Sender<FromBackbone>,
) {
    let t0 = Instant::now();
    let s = vit.spec.image_size;
    let set = match read_images(&[(path.to_path_buf(), 0)], s) {
        Ok(set) => set,
        Err(e) => {
            let _ = tx.send(FromBackbone::Failed(e.to_string()));
            return;
        }
    };
    let pixels = pre.apply_set(&set, None);
    let images = burn::tensor::Tensor::<4>::from_data(
        burn::tensor::TensorData::new(pixels, [1, vit.spec.channels, s, s]),
        device,
    );
    let mut x = vit.embed(images);
    for l in 0..=vit.layers.len() {
        if l > 0 {
            x = vit.layers[l - 1].forward(x);
        }
        let [_, n, d] = x.dims();
        let msg = match x.clone().into_data().try_to_vec::<f32>() {
            Ok(v) => FromBackbone::State(Mat::new(n, d, v.into_iter().map(f64::from).collect())),
            Err(e) => FromBackbone::Failed(format!("{e:?}")),
        };
        if tx.send(msg).is_err() {
            return;
        }
    }
    let _ = tx.send(FromBackbone::Done {
        seconds: t0.elapsed().as_secs_f64(),
    });
}

/// Classifies every image privately, with a progress bar for more than one.
pub fn run(
    backbone: &Path,
    paths: &[PathBuf],
    (server, dealer): (&str, &str),
    config: &RoleConfig,
    check: Option<&OwcModel>,
    at_once: bool,
    device: DeviceChoice,
) -> Result<Vec<ImageReport>, String> {
    let device = device.device().map_err(|e| e.to_string())?;
    let vit = Vit::load(backbone, None, &device).map_err(|e| e.to_string())?;
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
        // half from the dealer; each state goes to the online phase as it exists, so an
        // early state's opening leaves while the last layers still run.
        let mut backbone_s = 0.0;
        let mut states_kept: Vec<Mat> = Vec::new();
        let r = std::thread::scope(|sc| {
            let (tx, rx) = std::sync::mpsc::channel();
            let (v, d, pr) = (&vit, &device, &pre);
            sc.spawn(move || send_states((v, d), pr, p, &tx));
            let total = vit.spec.layers + 1;
            let take = |kept: &mut Vec<Mat>, secs: &mut f64, msg| match msg {
                FromBackbone::State(m) => {
                    kept.push(m);
                    Ok(())
                }
                FromBackbone::Failed(e) => Err(e),
                FromBackbone::Done { seconds } => {
                    *secs = seconds;
                    Ok(())
                }
            };
            let mut get = |k: usize, count: usize| -> Result<Mat, String> {
                let want = total
                    .checked_sub(count)
                    .map(|first| first + k)
                    .ok_or_else(|| format!("the plan needs {count} states of {total}"))?;
                // `at_once` (a benchmark aid): wait for every state before the first.
                let upto = if at_once { total - 1 } else { want };
                while states_kept.len() <= upto {
                    let msg = rx.recv().map_err(|_| "the backbone stopped early")?;
                    take(&mut states_kept, &mut backbone_s, msg)?;
                }
                Ok(states_kept[want].clone())
            };
            let r = conn.run(dealer, &mut get, config);
            // The rest of the states (for --check-against) and the backbone's time.
            let rest: Result<(), String> = rx
                .iter()
                .try_for_each(|msg| take(&mut states_kept, &mut backbone_s, msg));
            let r = r.map_err(|e| e.to_string())?;
            rest.map(|()| r)
        })
        .map_err(|e| format!("{}: {e}", p.display()))?;
        let hidden = states_kept;
        let plaintext = check.map(|m| {
            let states = &hidden[hidden.len().saturating_sub(m.spec.scope + 1)..];
            reference::argmax(&reference::forward(m, states))
        });
        out.push(ImageReport {
            image: p.clone(),
            predicted: r.predicted,
            logits: r.logits,
            backbone_s,
            online_s: r.online_s,
            end_to_end_s: t.elapsed().as_secs_f64(),
            after_backbone_s: t.elapsed().as_secs_f64() - backbone_s,
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
