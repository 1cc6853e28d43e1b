//! Prints each wire's largest magnitude in a plaintext run of the plan (where fixed-point
//! headroom is spent). `cargo run --release -p cryptpeft-private-eval --example magnitudes -- h=1,r=180,s=2`
use cryptpeft_private_eval::{gates::plain, hidden, model::OwcModel, plan::lower};
use cryptpeft_types::{AdapterSpec, BackboneSpec};

fn main() {
    let spec: AdapterSpec = std::env::args()
        .nth(1)
        .unwrap_or("h=1,r=180,s=2".into())
        .parse()
        .unwrap();
    let bb = BackboneSpec::vit_b16();
    let model = OwcModel::random(spec.clone(), bb.clone(), 100, 1);
    let (plan, w) = lower::lower(&model, Default::default()).unwrap();
    let x = hidden::random(spec.scope + 1, bb.tokens(), bb.hidden_dim, 17);
    for (i, (name, max)) in plain::wire_magnitudes(&plan, &w, &x)
        .into_iter()
        .enumerate()
    {
        println!("{i:3} {name:<32} {max:>12.3}");
    }
}
