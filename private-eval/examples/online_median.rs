//! Median online seconds of the paper's CIFAR-100 adapter (1,300,1) at ViT-B/16, in one
//! process without a network (no TLS, no shaping): the executor's own time, for
//! before/after comparisons (`experiments/refactor-online.sh`). Argument: inferences (15).

use std::time::Duration;

use cryptpeft_private_eval::{
    hidden, model::OwcModel, online::local, plan::lower, transport::memory_pair,
};
use cryptpeft_types::{AdapterSpec, BackboneSpec, NetworkProfile};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(15);
    let bb = BackboneSpec::vit_b16();
    let spec = AdapterSpec::paper(1, 300, 1);
    let model = OwcModel::random(spec, bb.clone(), 100, 7);
    let x = hidden::random(2, bb.tokens(), bb.hidden_dim, 7);
    let (plan, w) = lower::lower(&model, Default::default()).unwrap();
    let mut t: Vec<f64> = (0..n)
        .map(|i| {
            let (c, s) = memory_pair(NetworkProfile::none(), Duration::from_secs(60));
            local::infer(&plan, &w, &x, c, s, i as u128)
                .unwrap()
                .online_s
        })
        .collect();
    t.sort_by(f64::total_cmp);
    println!("{:.5}", t[n / 2]);
}
