//! Prints the per-step cost table of one spec at ViT-B/16 scale, the paper's surrogate
//! and the baselines' prices (their plans, as the executor runs them).
//!
//! `cargo run --release -p cryptpeft-cost-model --example explain -- [h r s] [lan|wan|none]`

use cryptpeft_cost_model::{
    baselines, cost, paper_linear, plan_shape_only, print_table, Constants, PaperNetwork,
};
use cryptpeft_types::{AdapterSpec, BackboneSpec, NetworkProfile};

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, d: usize| a.get(i).and_then(|v| v.parse().ok()).unwrap_or(d);
    let (h, r, s) = (num(0, 1), num(1, 300), num(2, 1));
    let net: NetworkProfile = a
        .get(3)
        .map_or("wan", |s| s.as_str())
        .parse()
        .expect("network");
    let bb = BackboneSpec::vit_b16();
    let c = Constants::shipped();
    let plan = plan_shape_only(&AdapterSpec::paper(h, r, s), &bb, 100).expect("plan");
    let report = cost(&plan, &net, &c);
    print_table(&report);
    if let Some(p) = PaperNetwork::from_profile(&net) {
        println!(
            "paper's linear surrogate: {:.3} s",
            paper_linear(h, r, s, p)
        );
    }
    println!(
        "{:<18} {:>14} {:>8} {:>12} {:>12}",
        "baseline", "bytes", "rounds", "compute s", "predicted s"
    );
    for b in baselines::all(&bb, 100, &net, &c).expect("ViT-B/16 has the baselines' layers") {
        println!(
            "{:<18} {:>14} {:>8} {:>12.3} {:>12.3}",
            b.name, b.online_bytes, b.rounds, b.compute_s, b.predicted_online_s
        );
    }
}
