//! Measures this machine's constants and writes them as YAML.
//!
//! `cargo run --release -p cryptpeft-cost-model --example calibrate -- [OUT.yaml]`
//! (default `cost-model/constants.yaml`, the file embedded as the shipped default).

fn main() {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/constants.yaml").to_string());
    let t = std::time::Instant::now();
    let c = cryptpeft_cost_model::calibrate();
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let header = format!(
        "Cost-model constants measured by\n  cargo run --release -p cryptpeft-cost-model --example calibrate\nat commit {commit} in {:.1} s.",
        t.elapsed().as_secs_f64()
    );
    c.save(&out, &header).expect("writing the constants");
    print!("{}", c.to_yaml());
    eprintln!("wrote {out}");
}
