//! Population training: adapters trained together on one backbone pass per batch, each
//! stepped on its own thread, get exactly what each gets trained alone (same seed, same
//! batches, same order), with augmentation and with a feature cache alike.

use cryptpeft_train::backbone::Vit;
use cryptpeft_train::cache::{CacheRequest, FeatureSet};
use cryptpeft_train::data::{DataConfig, DatasetKind, ImageSet, Preprocess};
use cryptpeft_train::fit::{Source, Trained};
use cryptpeft_train::nn::Init;
use cryptpeft_train::owc::OwcModel;
use cryptpeft_train::st::HostTensor;
use cryptpeft_train::{cpu, final_norm_init, fit_owc, TrainConfig};
use cryptpeft_types::{AdapterSpec, BackboneSpec};

fn images(n: usize, seed: u64) -> ImageSet {
    let mut init = Init::new(seed);
    let noise = init.normal(&[n * 3 * 32 * 32], 0.25);
    ImageSet {
        images: noise
            .data
            .iter()
            .map(|v| (0.5 + v).clamp(0.0, 1.0))
            .collect(),
        labels: (0..n as u32).map(|i| i % 3).collect(),
        channels: 3,
        height: 32,
        width: 32,
    }
}

fn recipe(augment: bool) -> TrainConfig {
    let mut c = TrainConfig::new(
        None,
        DataConfig::new(DatasetKind::Digits),
        cryptpeft_train::Method::LinearProbe,
    );
    (c.epochs, c.batch_size, c.seed, c.progress, c.augment) = (2, 8, 5, false, augment);
    // A thread per member (whatever the cores): each steps on a new thread every batch.
    c.threads = 3;
    c
}

fn specs() -> Vec<AdapterSpec> {
    vec![
        AdapterSpec::paper(1, 8, 1),
        AdapterSpec::paper(2, 8, 3),
        AdapterSpec::paper(4, 16, 2),
    ]
}

fn weights(m: &OwcModel) -> Vec<f32> {
    HostTensor::from_tensor(&m.head.weight.val()).data
}

/// Trains `specs` together, then each alone, and asserts equal models and epochs.
fn together_equals_alone(vit: &Vit, train: &Source, val: &Source, cfg: &TrainConfig) {
    let (g, b) = final_norm_init(vit);
    let fit = |specs: &[AdapterSpec]| -> Vec<Trained<OwcModel>> {
        fit_owc(specs, &vit.spec, (&g, &b), 3, train, val, cfg, &[]).unwrap()
    };
    let together = fit(&specs());
    for (spec, t) in specs().iter().zip(&together) {
        let alone = fit(std::slice::from_ref(spec)).pop().unwrap();
        let ((m1, s1), (m2, s2)) = (t.as_ref().unwrap(), alone.as_ref().unwrap());
        assert_eq!(weights(m1), weights(m2), "{}", spec.label());
        for (a, b) in s1.iter().zip(s2) {
            assert_eq!(
                (a.loss, a.train_accuracy, a.test_accuracy),
                (b.loss, b.train_accuracy, b.test_accuracy),
                "{}",
                spec.label()
            );
        }
        assert_eq!(s1.len(), 2);
    }
    // Members differ (the comparison above is not of one model with itself).
    let (a, b) = (
        &together[0].as_ref().unwrap().0,
        &together[1].as_ref().unwrap().0,
    );
    assert_ne!(weights(a)[..8], weights(b)[..8]);
}

fn setup() -> (Vit, ImageSet, ImageSet, Preprocess) {
    let spec = BackboneSpec::vit_tiny_fixture();
    let vit = Vit::init(&spec, 3, 1, &cpu());
    let pre = Preprocess {
        image_size: 32,
        channels: 3,
        mean: vec![0.5],
        std: vec![0.5],
    };
    (vit, images(20, 1), images(9, 2), pre)
}

#[test]
fn a_group_on_streamed_augmented_batches_trains_like_each_alone() {
    let (vit, train, val, pre) = setup();
    let src = |set| Source::Images {
        set,
        pre: &pre,
        frozen: Some(&vit),
    };
    together_equals_alone(&vit, &src(&train), &src(&val), &recipe(true));
}

#[test]
fn a_group_on_a_feature_cache_trains_like_each_alone() {
    let (vit, train, val, pre) = setup();
    let cache = |set: &ImageSet| -> FeatureSet {
        CacheRequest {
            vit: &vit,
            vit_id: "random",
            set,
            describe: "population test",
            pre: &pre,
            first: 0,
            views: 0,
            seed: 0,
            dir: None,
            progress: false,
            storage: Default::default(),
        }
        .get(&cpu())
        .unwrap()
        .0
    };
    let (train, val) = (cache(&train), cache(&val));
    together_equals_alone(
        &vit,
        &Source::Cached(&train),
        &Source::Cached(&val),
        &recipe(false),
    );
    // A cache holds fixed views: augmentation is refused, not ignored.
    let (g, b) = final_norm_init(&vit);
    let e = fit_owc(
        &specs(),
        &vit.spec,
        (&g, &b),
        3,
        &Source::Cached(&train),
        &Source::Cached(&val),
        &recipe(true),
        &[],
    )
    .unwrap_err();
    assert!(e.to_string().contains("augmentation"), "{e}");
}

#[test]
fn a_diverging_training_fails_saying_so_instead_of_reporting_chance() {
    let (vit, train, val, pre) = setup();
    let src = |set| Source::Images {
        set,
        pre: &pre,
        frozen: Some(&vit),
    };
    let mut cfg = recipe(false);
    // A step this large sends the weights, then the loss, to infinity within an epoch.
    cfg.optimizer = cryptpeft_train::OptimizerConfig::Sgd {
        lr: 1e30,
        momentum: 0.9,
        weight_decay: 0.0,
    };
    let (g, b) = final_norm_init(&vit);
    let out = fit_owc(
        &specs(),
        &vit.spec,
        (&g, &b),
        3,
        &src(&train),
        &src(&val),
        &cfg,
        &[],
    )
    .unwrap();
    for (spec, t) in specs().iter().zip(out) {
        let why = t
            .err()
            .unwrap_or_else(|| panic!("{} trained", spec.label()));
        assert!(why.contains("diverged") && why.contains("epoch"), "{why}");
    }
}
