//! Wall time of population training with the group's members stepped on one thread
//! against one thread per core, side by side (alternating, medians of the repeats), and
//! that both give the same accuracies. The shipped `vit-mini` streams the embedded
//! digits through the frozen backbone once per batch for a group of adapters from the
//! default search space (no cache).
//!
//! ```text
//! cargo run --release -p cryptpeft-train --example bench_group_threads -- [IMAGES] [GROUP] [REPEATS]
//! ```

use std::path::PathBuf;
use std::time::Instant;

use cryptpeft_train::backbone::Vit;
use cryptpeft_train::data::{DataConfig, DatasetKind, Preprocess, Split};
use cryptpeft_train::fit::Source;
use cryptpeft_train::{final_norm_init, fit_owc, Method, TrainConfig};
use cryptpeft_types::AdapterSpec;

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .map_or(default, |s| s.parse().expect("a whole number"))
}

fn median(v: Vec<f64>) -> f64 {
    cryptpeft_types::stats::median(&v).expect("at least one repeat")
}

fn main() {
    let (images, group, repeats) = (arg(1, 1000), arg(2, 12), arg(3, 3));
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let vit = Vit::load(
        &root.join("assets/vit_mini_fmnist04.safetensors"),
        None,
        &cryptpeft_train::cpu(),
    )
    .expect("the shipped vit-mini");
    let mut data = DataConfig::new(DatasetKind::Digits);
    data.max_train = Some(images);
    let train = data.load(Split::Train, 0).expect("digits");
    let val = data.load(Split::Test, 0).expect("digits");
    let pre = Preprocess::new(vit.spec.image_size, vit.spec.channels, &data);
    let src = |set| Source::Images {
        set,
        pre: &pre,
        frozen: Some(&vit),
    };
    // A spread of the default space: every (heads, rank) pair once, scopes cycling.
    let specs: Vec<AdapterSpec> = (0..group)
        .map(|i| AdapterSpec::paper([1, 2, 4][i % 3], [8, 16, 32, 64][i / 3 % 4], 1 + i % 4))
        .collect();
    let (g, b) = final_norm_init(&vit);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut seconds = [Vec::new(), Vec::new()];
    let mut accuracies = [Vec::new(), Vec::new()];
    for _ in 0..repeats {
        for (k, threads) in [1, cores].into_iter().enumerate() {
            let mut cfg = TrainConfig::new(None, data.clone(), Method::LinearProbe);
            (cfg.epochs, cfg.progress, cfg.threads) = (1, false, threads);
            let start = Instant::now();
            let trained = fit_owc(
                &specs,
                &vit.spec,
                (&g, &b),
                data.num_classes(),
                &src(&train),
                &src(&val),
                &cfg,
                &[],
            )
            .expect("training");
            seconds[k].push(start.elapsed().as_secs_f64());
            accuracies[k] = trained
                .into_iter()
                .map(|t| t.expect("a member trains").1[0].test_accuracy)
                .collect();
        }
    }
    assert_eq!(
        accuracies[0], accuracies[1],
        "threads changed the accuracies"
    );
    let (one, all) = (median(seconds[0].clone()), median(seconds[1].clone()));
    println!(
        "{group} adapters, {} training images through vit-mini, 1 epoch, {repeats} repeats",
        train.len()
    );
    println!("1 thread          median {one:.2} s  {:?}", seconds[0]);
    println!(
        "{cores} threads         median {all:.2} s  {:?}",
        seconds[1]
    );
    println!(
        "ratio {:.2}x (same accuracies: {:?})",
        one / all,
        accuracies[0]
    );
}
