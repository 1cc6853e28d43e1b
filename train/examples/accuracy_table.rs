//! Accuracy of every method on both downstream tasks of the tiny public backbone
//! (Fashion-MNIST classes 5-9, digits), as CSV on stdout (one row per finished run).
//!
//! ```text
//! cargo run --release -p cryptpeft-train --example accuracy_table -- \
//!     BACKBONE.safetensors FM_EPOCHS FM_MAX_TRAIN DIGITS_EPOCHS [CACHE_DIR]
//! ```

use std::io::Write;
use std::path::PathBuf;

use cryptpeft_train::data::{DataConfig, DatasetKind};
use cryptpeft_train::{train_adapter, Method, TrainConfig};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: accuracy_table BACKBONE FM_EPOCHS FM_MAX_TRAIN DIGITS_EPOCHS [CACHE_DIR]";
    let backbone = PathBuf::from(args.get(1).expect(usage));
    let num = |i: usize| -> usize { args.get(i).expect(usage).parse().expect(usage) };
    let (fm_epochs, fm_max, digits_epochs) = (num(2), num(3), num(4));
    let cache_dir = args.get(5).map(PathBuf::from);
    let mut fm = DataConfig::new(DatasetKind::FashionMnist).with_classes(&[5, 6, 7, 8, 9]);
    fm.max_train = Some(fm_max);
    let digits = DataConfig::new(DatasetKind::Digits);
    let mut methods: Vec<(Method, usize)> = vec![
        (Method::LinearProbe, 0),
        (Method::Sft { layers: 1 }, 0),
        (Method::Sft { layers: 2 }, 0),
        (Method::Lora { rank: 8 }, 0),
        (Method::Adaptformer { rank: 16 }, 0),
        (Method::Full, 0),
    ];
    for s in [
        "h=1,r=16,s=1",
        "h=1,r=32,s=1",
        "h=2,r=32,s=2",
        "h=4,r=64,s=2",
        "h=2,r=64,s=3",
        "h=2,r=32,s=2,norm=layernorm",
        "h=2,r=32,s=2,attention=softmax",
    ] {
        methods.push((
            Method::Owc {
                spec: s.parse().expect("spec"),
            },
            0,
        ));
    }
    // Augmented views in the cache (accuracy and disk cost of caching augmentation).
    methods.push((
        Method::Owc {
            spec: "h=2,r=32,s=2".parse().expect("spec"),
        },
        4,
    ));
    println!(
        "task,method,views,trainable_params,train_images,test_images,epochs,test_accuracy,mean_epoch_s,cache_train_bytes"
    );
    for (task, data, epochs) in [
        ("fashion-mnist-5-9", &fm, fm_epochs),
        ("digits", &digits, digits_epochs),
    ] {
        for (m, views) in &methods {
            let mut cfg = TrainConfig::new(Some(backbone.clone()), data.clone(), m.clone());
            cfg.epochs = epochs;
            cfg.progress = false;
            cfg.views = *views;
            cfg.cache_dir = cache_dir.clone();
            if let Method::Owc { .. } = m {
                cfg.cache_scope = Some(3);
            }
            let r = match train_adapter(&cfg) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("{task} {}: {e}", m.label());
                    continue;
                }
            };
            println!(
                "{task},{},{views},{},{},{},{epochs},{:.4},{:.3},{}",
                r.method,
                r.trainable_params,
                r.train_images,
                r.test_images,
                r.test_accuracy,
                r.mean_epoch_seconds,
                r.cache_train.map(|c| c.bytes).unwrap_or(0)
            );
            std::io::stdout().flush().ok();
        }
    }
}
