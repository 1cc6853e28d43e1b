//! `train` and `demo`: the accuracy half, and the whole pipeline on the embedded default.
//! The demo fine-tunes an OWC adapter on the digits set over the committed tiny public
//! backbone, exports it, then serves it with a dealer and classifies test images
//! privately: the client runs the backbone in plaintext and only the adapter runs under
//! MPC. Secure predictions are compared with the plaintext model's.

use crate::say::say;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::Args;
use cryptpeft_deploy::roles;
use cryptpeft_deploy::security::Role;
use cryptpeft_private_eval::{arith::tensor::Mat, model::OwcModel, reference, transport};
use cryptpeft_train::data::{DataConfig, DatasetKind};
use cryptpeft_train::{train_adapter, Method, TrainConfig};
use cryptpeft_types::{AdapterSpec, NetworkProfile};

type Res = Result<(), String>;

/// The committed tiny public backbone, relative to the repository root.
const DEFAULT_BACKBONE: &str = "train/assets/vit_mini_fmnist04.safetensors";

#[derive(Args)]
pub struct TrainArgs {
    /// YAML training configuration (see train/README.md); flags below are ignored with it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Backbone safetensors (torchvision layout).
    #[arg(long, default_value = DEFAULT_BACKBONE)]
    backbone: PathBuf,
    /// digits, fashion-mnist, cifar10, cifar100, image-folder (one folder per class of
    /// PNG/JPEG files under train/ and test/ or val/)
    #[arg(long, default_value = "digits")]
    dataset: String,
    /// Where the dataset is (default: the dataset's usual place).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Keep only these classes, e.g. 5,6,7,8,9.
    #[arg(long, value_delimiter = ',')]
    classes: Option<Vec<u32>>,
    #[arg(long, default_value = "h=1,r=32,s=1")]
    adapter: AdapterSpec,
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn dataset(name: &str) -> Result<DatasetKind, String> {
    serde_yaml::from_str(name).map_err(|_| {
        format!("unknown dataset `{name}` (digits, fashion-mnist, cifar10, cifar100, image-folder)")
    })
}

fn config(a: &TrainArgs) -> Result<TrainConfig, String> {
    if let Some(p) = &a.config {
        let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
        return TrainConfig::from_yaml(&text).map_err(|e| format!("{}: {e}", p.display()));
    }
    let mut data = DataConfig::new(dataset(&a.dataset)?);
    data.classes = a.classes.clone();
    data.path = a.data.clone();
    let mut c = TrainConfig::new(
        Some(a.backbone.clone()),
        data,
        Method::Owc {
            spec: a.adapter.clone(),
        },
    );
    c.epochs = a.epochs;
    c.checkpoint = a.checkpoint.clone();
    c.seed = a.seed;
    Ok(c)
}

pub fn train(a: TrainArgs) -> Res {
    let report = train_adapter(&config(&a)?).map_err(|e| e.to_string())?;
    say!("{}", serde_json::to_string_pretty(&report).unwrap());
    Ok(())
}

#[derive(Args)]
pub struct DemoArgs {
    #[command(flatten)]
    train: TrainArgs,
    /// Test images to classify privately.
    #[arg(long, default_value_t = 100)]
    images: usize,
    #[arg(long, default_value = "lan")]
    network: NetworkProfile,
    #[arg(long, default_value = "target/demo")]
    out: PathBuf,
}

pub fn demo(mut a: DemoArgs) -> Res {
    std::fs::create_dir_all(&a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
    let ckpt = a.out.join("adapter.safetensors");
    a.train.checkpoint = Some(ckpt.clone());
    let cfg = config(&a.train)?;
    eprintln!(
        "1/3 training {} on {} over {}",
        cfg.method.label(),
        a.train.dataset,
        a.train.backbone.display()
    );
    let report = train_adapter(&cfg).map_err(|e| e.to_string())?;
    say!(
        "plaintext test accuracy: {:.2}% ({} test images)",
        100.0 * report.test_accuracy,
        report.test_images
    );

    eprintln!(
        "2/3 client: backbone in plaintext on {} test images",
        a.images
    );
    let model = OwcModel::load(&ckpt).map_err(|e| e.to_string())?;
    let backbone = cfg.backbone.clone().unwrap();
    let (per_image, labels) =
        cryptpeft_client::hidden_states(&backbone, &cfg.data, cfg.seed, &model, a.images)?;
    let n = per_image.len();

    eprintln!(
        "3/3 private inference: dealer, server and client over loopback TLS ({})",
        a.network
    );
    let (plan, weights) = cryptpeft_private_eval::plan::lower::lower(&model, Default::default())
        .map_err(|e| e.to_string())?;
    // TLS on every link, with a throwaway CA made for this run.
    let keys = cryptpeft_deploy::keys::Deployment::generate(&["127.0.0.1".into()], 1)
        .map_err(|e| e.to_string())?;
    let role = |r| roles::RoleConfig {
        network: a.network.clone(),
        security: keys.security(r),
        ..Default::default()
    };
    let config = role(Role::Client);
    let dl = transport::listen("127.0.0.1:0").map_err(|e| e.to_string())?;
    let sl = transport::listen("127.0.0.1:0").map_err(|e| e.to_string())?;
    let (daddr, saddr) = (
        dl.local_addr().unwrap().to_string(),
        sl.local_addr().unwrap().to_string(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let result = std::thread::scope(|s| {
        let (st, cfg2) = (stop.clone(), role(Role::Dealer));
        s.spawn(move || {
            cryptpeft_deploy::dealer_service::run_dealer(dl, cfg2, || st.load(Ordering::Relaxed))
        });
        let (st, cfg2, d2) = (stop.clone(), role(Role::Server), daddr.clone());
        let server = s.spawn(move || -> Result<(), String> {
            let srv = roles::Server::new(plan, &weights, &d2, cfg2).map_err(|e| e.to_string())?;
            srv.serve(sl, || st.load(Ordering::Relaxed))
                .map_err(|e| e.to_string())
        });
        let out: Result<Vec<roles::ClientReport>, String> = per_image
            .iter()
            .map(|h| roles::run_client(&saddr, &daddr, h, &config).map_err(|e| e.to_string()))
            .collect();
        stop.store(true, Ordering::Relaxed);
        server.join().expect("server thread")?;
        out
    })?;
    let argmax = reference::argmax;
    let (mut agree, mut correct, mut err) = (0, 0, 0.0f64);
    for (i, r) in result.iter().enumerate() {
        let plain = reference::forward(&model, &per_image[i]);
        agree += (argmax(&plain) == r.predicted) as usize;
        correct += (r.predicted == labels[i] as usize) as usize;
        err = err.max(
            plain
                .iter()
                .zip(&r.logits)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f64::max),
        );
    }
    let online: Vec<f64> = result.iter().map(|r| r.online_s).collect();
    let r0 = &result[0];
    say!(
        "private accuracy on {n} test images: {:.2}% ({correct}/{n})",
        100.0 * correct as f64 / n as f64
    );
    say!("secure vs plaintext: {agree}/{n} predictions agree, max |logit difference| {err:.2e}");
    say!(
        "per inference ({}): online {} bytes, {} rounds, median {:.4} s; offline (dealer to client) {} bytes",
        a.network,
        r0.online_bytes,
        r0.rounds,
        cryptpeft_types::stats::median(&online).unwrap_or(f64::NAN),
        r0.offline_bytes
    );
    say!("checkpoint: {}", ckpt.display());
    Ok(())
}

/// Hidden states of digits test images through the shipped backbone.
pub fn digits_hidden_states(
    model: &OwcModel,
    n: usize,
) -> Result<(Vec<Vec<Mat>>, Vec<u32>), String> {
    let data = DataConfig::new(dataset("digits")?);
    let backbone = std::path::Path::new(DEFAULT_BACKBONE);
    cryptpeft_client::hidden_states(backbone, &data, 0, model, n)
}
