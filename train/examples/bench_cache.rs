//! Per-epoch wall time of OWC adapter training on cached hidden states versus running the
//! frozen backbone on every batch (same data, model, seed and recipe; no augmentation, so
//! both train the same adapter).
//!
//! ```text
//! cargo run --release -p cryptpeft-train --example bench_cache -- BACKBONE.safetensors [TRAIN_IMAGES] [EPOCHS] [SPEC]
//! cargo run --release -p cryptpeft-train --example bench_cache -- vit-ti [TRAIN_IMAGES] [EPOCHS] [SPEC]
//! ```
//!
//! `vit-ti` is a randomly initialized ViT-Tiny-shaped backbone (28x28 grey input, patch 4,
//! 50 tokens, d = 192, 12 layers, 3 heads, MLP 768): weights do not change the timing.

use std::path::PathBuf;

use cryptpeft_train::backbone::Vit;
use cryptpeft_train::data::{DataConfig, DatasetKind};
use cryptpeft_train::{train_adapter, Method, TrainConfig};
use cryptpeft_types::{AdapterSpec, BackboneSpec};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let which = args
        .get(1)
        .expect("usage: bench_cache BACKBONE|vit-ti [N] [EPOCHS] [SPEC]");
    let n: usize = args.get(2).map(|s| s.parse().expect("N")).unwrap_or(2000);
    let epochs: usize = args.get(3).map(|s| s.parse().expect("EPOCHS")).unwrap_or(1);
    let spec: AdapterSpec = args
        .get(4)
        .map(String::as_str)
        .unwrap_or("h=2,r=32,s=2")
        .parse()
        .expect("spec");
    let backbone = if which == "vit-ti" {
        let spec = BackboneSpec {
            name: "vit-ti-random".into(),
            image_size: 28,
            patch_size: 4,
            channels: 1,
            hidden_dim: 192,
            layers: 12,
            heads: 3,
            mlp_dim: 768,
            norm_eps: 1e-6,
        };
        let path = std::env::temp_dir().join("cryptpeft-bench-vit-ti.safetensors");
        Vit::init(&spec, 10, 0, &cryptpeft_train::cpu())
            .save(&path)
            .expect("write backbone");
        path
    } else {
        PathBuf::from(which)
    };
    let mut data = DataConfig::new(DatasetKind::FashionMnist).with_classes(&[5, 6, 7, 8, 9]);
    data.max_train = Some(n);
    data.max_test = Some(500);
    let mut times = Vec::new();
    for use_cache in [true, false] {
        let mut cfg = TrainConfig::new(
            Some(backbone.clone()),
            data.clone(),
            Method::Owc { spec: spec.clone() },
        );
        cfg.epochs = epochs;
        cfg.use_cache = use_cache;
        cfg.progress = false;
        let r = train_adapter(&cfg).expect("training");
        let cache_s = r.cache_train.as_ref().map(|c| c.seconds).unwrap_or(0.0);
        println!(
            "backbone={which} spec={} use_cache={use_cache} train_images={} epochs={epochs} \
             mean_epoch_s={:.3} cache_build_s={cache_s:.2} final_loss={:.4} test_acc={:.4}",
            spec.label(),
            r.train_images,
            r.mean_epoch_seconds,
            r.epochs.last().map(|e| e.loss).unwrap_or(f64::NAN),
            r.test_accuracy
        );
        times.push(r.mean_epoch_seconds);
    }
    println!(
        "speedup per epoch (backbone every step / cached): {:.1}x",
        times[1] / times[0]
    );
}
