//! Seeded dealer material: a half expanded from its seed and corrections is
//! bit-identical to the one the dealer built, its length is the closed form the cost
//! model prices, and a damaged half is refused.

use std::time::Duration;

use cryptpeft_private_eval::arith::prg::Prg;
use cryptpeft_private_eval::online::comm;
use cryptpeft_private_eval::online::exec::{self, Keys, ServerKeys};
use cryptpeft_private_eval::party::Party;
use cryptpeft_private_eval::plan::SecurePlan;
use cryptpeft_private_eval::preprocessing::dealer::{self, ModelMasks};
use cryptpeft_private_eval::preprocessing::material::Material;
use cryptpeft_private_eval::transport::memory_pair;
use cryptpeft_private_eval::{gates::plain, hidden, model::OwcModel, online::local, plan::lower};
use cryptpeft_types::{
    Activation, AdapterSpec, AttentionKind, BackboneSpec, NetworkProfile, NormKind,
};

fn specs() -> Vec<AdapterSpec> {
    let mut out = Vec::new();
    for norm in [NormKind::Affine, NormKind::LayerNorm] {
        for attention in [
            AttentionKind::LinAtten,
            AttentionKind::TwoQuad,
            AttentionKind::ReluSoftmax,
            AttentionKind::None,
        ] {
            for (h, r, s) in [(1, 4, 1), (2, 8, 2)] {
                out.push(AdapterSpec {
                    attention,
                    norm,
                    activation: [Activation::Relu, Activation::Square, Activation::Gelu]
                        [out.len() % 3],
                    ..AdapterSpec::paper(h, r, s)
                });
            }
        }
    }
    out
}

fn plan_of(spec: &AdapterSpec, exact: bool, seed: u64) -> (OwcModel, SecurePlan) {
    let model = OwcModel::random(spec.clone(), BackboneSpec::test_small(), 5, seed);
    let opts = lower::LowerOptions {
        exact_truncation: exact,
        // Narrow, default and full-width ReLU comparisons.
        relu_bits: [18, lower::RELU_BITS, 64][seed as usize % 3],
        ..Default::default()
    };
    let plan = lower::lower(&model, opts).unwrap().0;
    (model, plan)
}

#[test]
fn expanded_halves_equal_the_dealers_and_have_the_priced_length() {
    for (i, spec) in specs().iter().enumerate() {
        for exact in [true, false] {
            let (_, plan) = plan_of(spec, exact, i as u64);
            let masks = ModelMasks { seed: 77 };
            let halves = dealer::generate(&plan, &masks, 9, &mut Prg::new(i as u128));
            for (m, party) in halves.iter().zip([Party::Client, Party::Server]) {
                let bytes = m.to_bytes();
                assert_eq!(
                    bytes.len() as u64,
                    comm::material_bytes(&plan, party),
                    "{} {party:?}",
                    spec.label()
                );
                let back = Material::from_bytes(&plan, &bytes).unwrap();
                assert!(back == *m, "{} {party:?}: expansion differs", spec.label());
            }
        }
    }
}

/// The online phase on the dealer's explicit halves and on the expanded seeded ones:
/// the same logits, bit for bit, and the plaintext plan's within fixed-point error.
#[test]
fn seeded_halves_give_bit_identical_online_results() {
    let spec = AdapterSpec {
        norm: NormKind::LayerNorm,
        ..AdapterSpec::paper(2, 8, 2)
    };
    let (model, _) = plan_of(&spec, true, 3);
    let (plan, w) = lower::lower(&model, Default::default()).unwrap();
    let bb = BackboneSpec::test_small();
    let x = hidden::random(spec.scope + 1, bb.tokens(), bb.hidden_dim, 4);
    let masks = ModelMasks { seed: 5 };
    let halves = dealer::generate(&plan, &masks, 0, &mut Prg::new(6));
    let expanded = halves
        .clone()
        .map(|m| Material::from_bytes(&plan, &m.to_bytes()).unwrap());
    let run = |[m0, m1]: [Material; 2]| {
        let (mut c, mut s) = memory_pair(NetworkProfile::none(), Duration::from_secs(20));
        let server_keys = ServerKeys::new(&plan, &w, &masks);
        std::thread::scope(|sc| {
            let h = sc.spawn(|| {
                exec::server_setup(&server_keys, &mut s).unwrap();
                exec::run(&plan, Keys::Server(&server_keys), m1, None, &mut s).unwrap();
            });
            let keys = exec::client_setup(&plan, &mut c).unwrap();
            let out = exec::run(&plan, Keys::Client(&keys), m0, Some(&x), &mut c).unwrap();
            h.join().unwrap();
            out.logits.unwrap()
        })
    };
    let explicit = run(halves);
    let seeded = run(expanded);
    assert_eq!(
        explicit.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        seeded.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    let want = plain::eval(&plan, &w, &x);
    let err = want
        .iter()
        .zip(&seeded)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(err < 1e-2, "max abs err {err}");
    // And the in-process harness counts the seeded length.
    let (c, s) = memory_pair(NetworkProfile::none(), Duration::from_secs(20));
    let inf = local::infer(&plan, &w, &x, c, s, 8).unwrap();
    assert_eq!(inf.offline_bytes, comm::offline_bytes(&plan));
}

#[test]
fn damaged_or_mismatched_halves_are_refused() {
    let spec = AdapterSpec::paper(1, 4, 1);
    let (_, plan) = plan_of(&spec, true, 1);
    let m = &dealer::generate(&plan, &ModelMasks { seed: 1 }, 2, &mut Prg::new(3))[1];
    let bytes = m.to_bytes();
    let err = |b: &[u8]| Material::from_bytes(&plan, b).unwrap_err().to_string();
    assert!(
        err(&bytes[..bytes.len() - 1]).contains("truncated"),
        "{}",
        err(&bytes[..bytes.len() - 1])
    );
    let mut long = bytes.clone();
    long.push(0);
    assert!(err(&long).contains("trailing"));
    let (_, other) = plan_of(&AdapterSpec::paper(2, 8, 2), true, 1);
    let e = Material::from_bytes(&other, &bytes)
        .unwrap_err()
        .to_string();
    assert!(e.contains("another plan"), "{e}");
    let mut bad = bytes.clone();
    bad[24] = 7; // party
    assert!(err(&bad).contains("party 7"));
}
