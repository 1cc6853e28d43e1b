//! Per-epoch wall time of OWC adapter training on cached hidden states versus running the
//! frozen backbone on every batch (same data, same model, same seed).
//!
//! `cargo run --release -p cryptpeft-train --example bench_cache -- BACKBONE.safetensors [TRAIN_IMAGES] [EPOCHS]`

use std::path::PathBuf;

use cryptpeft_train::data::{DataConfig, DatasetKind};
use cryptpeft_train::{train_adapter, Method, TrainConfig};
use cryptpeft_types::AdapterSpec;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let backbone = PathBuf::from(
        args.get(1)
            .expect("usage: bench_cache BACKBONE [N] [EPOCHS]"),
    );
    let n: usize = args.get(2).map(|s| s.parse().expect("N")).unwrap_or(5000);
    let epochs: usize = args.get(3).map(|s| s.parse().expect("EPOCHS")).unwrap_or(2);
    let mut data = DataConfig::new(DatasetKind::FashionMnist).with_classes(&[5, 6, 7, 8, 9]);
    data.max_train = Some(n);
    data.max_test = Some(1000);
    let spec: AdapterSpec = "h=2,r=32,s=2".parse().expect("spec");
    let mut rows = Vec::new();
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
        let cache_s = r.cache_train.as_ref().map(|c| c.seconds).unwrap_or(0.0)
            + r.cache_test.as_ref().map(|c| c.seconds).unwrap_or(0.0);
        println!(
            "use_cache={use_cache} train_images={} epochs={} mean_epoch_s={:.3} cache_build_s={:.2} test_acc={:.4}",
            r.train_images, epochs, r.mean_epoch_seconds, cache_s, r.test_accuracy
        );
        rows.push((use_cache, r.mean_epoch_seconds, cache_s, r.test_accuracy));
    }
    println!("speedup per epoch: {:.1}x", rows[1].1 / rows[0].1);
}
