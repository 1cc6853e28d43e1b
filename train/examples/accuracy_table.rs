//! Accuracy of every method on both downstream tasks of the tiny public backbone
//! (Fashion-MNIST classes 5-9, digits), written as CSV to stdout.
//!
//! `cargo run --release -p cryptpeft-train --example accuracy_table -- BACKBONE.safetensors EPOCHS MAX_TRAIN [CACHE_DIR]`

use std::path::PathBuf;

use cryptpeft_train::data::{DataConfig, DatasetKind};
use cryptpeft_train::{train_adapter, Method, TrainConfig};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let backbone = PathBuf::from(
        args.get(1)
            .expect("usage: accuracy_table BACKBONE EPOCHS MAX_TRAIN [CACHE_DIR]"),
    );
    let epochs: usize = args
        .get(2)
        .map(|s| s.parse().expect("EPOCHS"))
        .unwrap_or(10);
    let max_train: usize = args
        .get(3)
        .map(|s| s.parse().expect("MAX_TRAIN"))
        .unwrap_or(5000);
    let cache_dir = args.get(4).map(PathBuf::from);
    let mut fm = DataConfig::new(DatasetKind::FashionMnist).with_classes(&[5, 6, 7, 8, 9]);
    fm.max_train = Some(max_train);
    let digits = DataConfig::new(DatasetKind::Digits);
    let mut methods = vec![
        Method::LinearProbe,
        Method::Sft { layers: 1 },
        Method::Sft { layers: 2 },
        Method::Lora { rank: 8 },
        Method::Adaptformer { rank: 16 },
        Method::Full,
    ];
    for s in [
        "h=1,r=32,s=1",
        "h=2,r=32,s=2",
        "h=4,r=64,s=2",
        "h=2,r=64,s=3",
        "h=2,r=32,s=2,norm=layernorm",
    ] {
        methods.push(Method::Owc {
            spec: s.parse().expect("spec"),
        });
    }
    println!(
        "task,method,trainable_params,train_images,test_images,epochs,test_accuracy,mean_epoch_s"
    );
    for (task, data) in [("fashion-mnist-5-9", &fm), ("digits", &digits)] {
        for m in &methods {
            let mut cfg = TrainConfig::new(Some(backbone.clone()), data.clone(), m.clone());
            cfg.epochs = epochs;
            cfg.progress = false;
            cfg.cache_dir = cache_dir.clone();
            cfg.cache_scope = Some(3);
            if matches!(m, Method::Lora { .. } | Method::Adaptformer { .. }) {
                cfg.cache_scope = None;
            }
            let r = train_adapter(&cfg).expect("training");
            println!(
                "{task},{},{},{},{},{},{:.4},{:.3}",
                r.method,
                r.trainable_params,
                r.train_images,
                r.test_images,
                epochs,
                r.test_accuracy,
                r.mean_epoch_seconds
            );
        }
    }
}
