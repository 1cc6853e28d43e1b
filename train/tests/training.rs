//! End-to-end training on the real digits file with the tiny fixture backbone (small and
//! fast: a few hundred images, one or two epochs).

use std::path::PathBuf;

use cryptpeft_train::data::{DataConfig, DatasetKind};
use cryptpeft_train::owc::OwcModel;
use cryptpeft_train::{train_adapter, Method, OptimizerConfig, TrainConfig};

fn backbone() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/vit_tiny_torchvision.safetensors")
}

fn config(method: Method) -> TrainConfig {
    let mut data = DataConfig::new(DatasetKind::Digits);
    data.max_train = Some(300);
    data.max_test = Some(100);
    let mut c = TrainConfig::new(Some(backbone()), data, method);
    c.epochs = 2;
    c.progress = false;
    c
}

#[test]
fn owc_trains_caches_and_exports() {
    let dir = std::env::temp_dir().join(format!("cryptpeft-train-{}", std::process::id()));
    let mut c = config(Method::Owc {
        spec: std::env::var("SPEC")
            .unwrap_or("h=2,r=8,s=2".into())
            .parse()
            .unwrap(),
    });
    c.cache_dir = Some(dir.join("cache"));
    c.checkpoint = Some(dir.join("owc.safetensors"));
    c.epochs = 8;
    c.optimizer = OptimizerConfig::Adamw {
        lr: 3e-3,
        weight_decay: 1e-4,
    };
    let r1 = train_adapter(&c).unwrap();
    eprintln!("{:?}", r1.epochs);
    assert!(!r1.cache_train.as_ref().unwrap().hit);
    assert!(r1.epochs[7].loss < r1.epochs[0].loss, "{:?}", r1.epochs);
    assert!(r1.test_accuracy > 0.3, "{:?}", r1.epochs);
    // Second run: cache hit, identical result.
    let r2 = train_adapter(&c).unwrap();
    assert!(r2.cache_train.as_ref().unwrap().hit && r2.cache_test.as_ref().unwrap().hit);
    assert_eq!(r1.test_accuracy, r2.test_accuracy);
    // Running the backbone every step gives the same training (no augmentation).
    c.use_cache = false;
    let r3 = train_adapter(&c).unwrap();
    assert!(
        (r3.epochs[7].loss - r1.epochs[7].loss).abs() < 1e-3,
        "{} vs {}",
        r3.epochs[7].loss,
        r1.epochs[7].loss
    );
    // A changed input (another subset) is another key.
    c.use_cache = true;
    c.data.max_train = Some(299);
    let r4 = train_adapter(&c).unwrap();
    assert!(!r4.cache_train.as_ref().unwrap().hit);
    assert_ne!(r4.cache_train.unwrap().key, r1.cache_train.unwrap().key);
    let m = OwcModel::load(c.checkpoint.as_ref().unwrap(), &cryptpeft_train::cpu()).unwrap();
    assert_eq!(m.classes(), 10);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn baselines_train() {
    for m in [
        Method::LinearProbe,
        Method::Sft { layers: 1 },
        Method::Lora { rank: 4 },
        Method::Adaptformer { rank: 4 },
        Method::Full,
    ]
    .into_iter()
    .filter(|m| {
        std::env::var("ONLY")
            .map(|o| m.label().starts_with(&o))
            .unwrap_or(true)
    }) {
        let mut c = config(m.clone());
        c.epochs = 1;
        if m == Method::Full {
            c.optimizer = OptimizerConfig::Adamw {
                lr: 1e-3,
                weight_decay: 0.01,
            };
        }
        let r = train_adapter(&c).unwrap();
        assert!(r.epochs[0].loss.is_finite(), "{}", r.method);
        assert!(r.trainable_params > 0, "{}", r.method);
        eprintln!(
            "{}: {} params, acc {:.3}",
            r.method, r.trainable_params, r.test_accuracy
        );
    }
}

#[test]
fn yaml_config_with_defaults_and_errors() {
    let c = TrainConfig::from_yaml(
        "backbone: b.safetensors\ndata: {dataset: fashion-mnist, classes: [5,6,7,8,9]}\nmethod: {kind: owc, spec: {heads: 1, rank: 300, scope: 1}}\n",
    )
    .unwrap();
    assert_eq!((c.epochs, c.batch_size, c.optimizer.lr()), (10, 50, 0.01));
    assert!(
        TrainConfig::from_yaml("data: {dataset: digits}\nmethod: {kind: full}\nbogus: 1\n")
            .is_err()
    );
    let mut bad = config(Method::Owc {
        spec: "h=3,r=8,s=1".parse().unwrap(),
    });
    bad.epochs = 1;
    let e = train_adapter(&bad).unwrap_err().to_string();
    assert!(e.contains("`r`"), "{e}");
}

#[test]
fn augmented_views_multiply_the_cache() {
    let mut c = config(Method::Owc {
        spec: "h=1,r=8,s=1".parse().unwrap(),
    });
    c.epochs = 1;
    let plain = train_adapter(&c).unwrap();
    c.views = 3;
    let aug = train_adapter(&c).unwrap();
    let (p, a) = (plain.cache_train.unwrap(), aug.cache_train.unwrap());
    assert_eq!(a.bytes, 3 * p.bytes);
    assert_ne!(a.key, p.key);
    assert_eq!(aug.train_images, plain.train_images);
    assert!(aug.epochs[0].loss.is_finite());
}
