//! Every point of the adapter search space: the burn model against a naive f64 reference
//! written from the checkpoint format (CHECKPOINT.md), and checkpoint round trips.

#![allow(clippy::needless_range_loop)] // the reference is written index by index, like the math

use std::path::Path;

use cryptpeft_train::nn::Init;
use cryptpeft_train::owc::OwcModel;
use cryptpeft_train::st::{HostTensor, TensorFile};
use cryptpeft_types::{
    Activation, AdapterSpec, AttentionKind, BackboneSpec, NormKind, RELU_SOFTMAX_EPS,
};

type M = Vec<Vec<f64>>; // [N][C]

fn get<'a>(f: &'a TensorFile, k: &str) -> &'a HostTensor {
    f.tensors.get(k).unwrap_or_else(|| panic!("missing {k}"))
}

fn linear(f: &TensorFile, p: &str, x: &M, bias: bool) -> M {
    let w = get(f, &format!("{p}.weight"));
    let (o, i) = (w.shape[0], w.shape[1]);
    let b = bias.then(|| get(f, &format!("{p}.bias")));
    x.iter()
        .map(|row| {
            (0..o)
                .map(|r| {
                    let mut s = b.map(|b| b.data[r] as f64).unwrap_or(0.0);
                    for c in 0..i {
                        s += w.data[r * i + c] as f64 * row[c];
                    }
                    s
                })
                .collect()
        })
        .collect()
}

fn norm(f: &TensorFile, p: &str, kind: NormKind, x: &M, eps: f64) -> M {
    match kind {
        NormKind::None => x.clone(),
        NormKind::LayerNorm => {
            let (w, b) = (get(f, &format!("{p}.weight")), get(f, &format!("{p}.bias")));
            x.iter()
                .map(|r| {
                    let n = r.len() as f64;
                    let m = r.iter().sum::<f64>() / n;
                    let v = r.iter().map(|a| (a - m).powi(2)).sum::<f64>() / n;
                    r.iter()
                        .enumerate()
                        .map(|(c, a)| {
                            (a - m) / (v + eps).sqrt() * w.data[c] as f64 + b.data[c] as f64
                        })
                        .collect()
                })
                .collect()
        }
        NormKind::Affine => {
            let g = |n: &str| get(f, &format!("{p}.{n}"));
            let (w, b, m, v) = (g("weight"), g("bias"), g("running_mean"), g("running_var"));
            x.iter()
                .map(|r| {
                    r.iter()
                        .enumerate()
                        .map(|(c, a)| {
                            (a - m.data[c] as f64) / (v.data[c] as f64 + eps).sqrt()
                                * w.data[c] as f64
                                + b.data[c] as f64
                        })
                        .collect()
                })
                .collect()
        }
    }
}

fn attention(f: &TensorFile, q: &str, spec: &AdapterSpec, y: &M) -> M {
    let r = spec.rank;
    let (h, dh) = (spec.heads, spec.rank / spec.heads);
    let qkv = linear(f, &format!("{q}.attn.qkv"), y, false);
    let n = y.len();
    let mut out = vec![vec![0.0; r]; n];
    for head in 0..h {
        let col = |t: usize, which: usize, j: usize| qkv[t][which * r + head * dh + j];
        let mut s = vec![vec![0.0; n]; n];
        for i in 0..n {
            for k in 0..n {
                s[i][k] = (0..dh)
                    .map(|j| col(i, 0, j) / (dh as f64).sqrt() * col(k, 1, j))
                    .sum();
            }
        }
        let p: M = match spec.attention {
            AttentionKind::LinAtten => linear(f, &format!("{q}.attn.token_mix"), &s, true),
            AttentionKind::Softmax => s
                .iter()
                .map(|row| {
                    let mx = row.iter().cloned().fold(f64::MIN, f64::max);
                    let e: Vec<f64> = row.iter().map(|v| (v - mx).exp()).collect();
                    let z: f64 = e.iter().sum();
                    e.iter().map(|v| v / z).collect()
                })
                .collect(),
            AttentionKind::ReluSoftmax => s
                .iter()
                .map(|row| {
                    let e: Vec<f64> = row.iter().map(|v| v.max(0.0)).collect();
                    let z: f64 = e.iter().sum::<f64>() + RELU_SOFTMAX_EPS;
                    e.iter().map(|v| v / z).collect()
                })
                .collect(),
            AttentionKind::TwoQuad => s
                .iter()
                .map(|row| {
                    let e: Vec<f64> = row.iter().map(|v| (v + 5.0).powi(2)).collect();
                    let z: f64 = e.iter().sum();
                    e.iter().map(|v| v / z).collect()
                })
                .collect(),
            AttentionKind::None => unreachable!(),
        };
        for i in 0..n {
            for j in 0..dh {
                out[i][head * dh + j] = (0..n).map(|k| p[i][k] * col(k, 2, j)).sum();
            }
        }
    }
    linear(f, &format!("{q}.attn.proj"), &out, true)
}

fn add(a: &M, b: &M) -> M {
    a.iter()
        .zip(b)
        .map(|(x, y)| x.iter().zip(y).map(|(p, q)| p + q).collect())
        .collect()
}

/// Reference logits for one sample: `states[k]` is `x_{L-s+k}` as `[N][d]`.
fn reference(f: &TensorFile, spec: &AdapterSpec, states: &[M], eps: f64) -> Vec<f64> {
    let mut a: Option<M> = None;
    for j in 0..spec.scope {
        let u = match &a {
            Some(a) => add(a, &states[j]),
            None => states[j].clone(),
        };
        let p = format!("adapter.{j}");
        let mut y = linear(f, &format!("{p}.down"), &u, true);
        for b in 0..spec.blocks {
            let q = format!("{p}.block.{b}");
            if spec.attention != AttentionKind::None {
                let t = norm(f, &format!("{q}.norm1"), spec.norm, &y, eps);
                y = add(&y, &attention(f, &q, spec, &t));
            }
            let t = norm(f, &format!("{q}.norm2"), spec.norm, &y, eps);
            let mut hdn = linear(f, &format!("{q}.mlp.fc1"), &t, true);
            for row in &mut hdn {
                for v in row.iter_mut() {
                    *v = match spec.activation {
                        Activation::Relu => v.max(0.0),
                        Activation::Square => *v * *v,
                        Activation::Gelu => 0.5 * *v * (1.0 + erf(*v / 2f64.sqrt())),
                    };
                }
            }
            y = add(&y, &linear(f, &format!("{q}.mlp.fc2"), &hdn, true));
        }
        let up = linear(f, &format!("{p}.up"), &y, true);
        let ad: M = up
            .iter()
            .map(|r| r.iter().map(|v| v * spec.scale).collect())
            .collect();
        a = Some(add(&ad, &u));
    }
    let z = add(&states[spec.scope], a.as_ref().unwrap());
    let z = norm(f, "final_norm", spec.norm, &z, eps);
    linear(f, "head", &z[..1].to_vec(), true).remove(0)
}

/// Abramowitz-Stegun 7.1.26 is too coarse; use a series/continued fraction via libm-free erf.
fn erf(x: f64) -> f64 {
    // High-precision erf (W. J. Cody's rational approximations would be longer); the
    // Taylor series converges fast for |x| < 3, and erf saturates beyond.
    if x.abs() > 5.0 {
        return x.signum();
    }
    let mut sum = 0.0;
    let mut term = x;
    let mut n = 0.0;
    while term.abs() > 1e-17 || n < 5.0 {
        sum += term / (2.0 * n + 1.0);
        n += 1.0;
        term *= -x * x / n;
        if n > 200.0 {
            break;
        }
    }
    2.0 / std::f64::consts::PI.sqrt() * sum
}

fn tiny_backbone() -> BackboneSpec {
    BackboneSpec::vit_tiny_fixture()
}

#[test]
fn every_point_matches_the_reference_and_round_trips() {
    let device = cryptpeft_train::cpu();
    let bb = tiny_backbone();
    let (n, d, batch) = (bb.tokens(), bb.hidden_dim, 2);
    let mut init = Init::new(7);
    let states_host: Vec<HostTensor> = (0..=bb.layers)
        .map(|_| init.normal(&[batch, n, d], 1.0))
        .collect();
    let dir = std::env::temp_dir().join(format!("cryptpeft-space-{}", std::process::id()));
    let mut checked = 0;
    for attention in AttentionKind::ALL {
        for activation in Activation::ALL {
            for norm in NormKind::ALL {
                let blocks = if activation == Activation::Gelu { 2 } else { 1 };
                let scope = 1 + checked % bb.layers;
                let spec = AdapterSpec {
                    scope,
                    heads: 2,
                    rank: 8,
                    blocks,
                    attention,
                    activation,
                    norm,
                    scale: 0.5,
                };
                let model = OwcModel::init(&spec, &bb, 5, None, checked as u64, &device).unwrap();
                // Randomize everything (the init zeroes `up` and sets running stats to 0/1).
                let mut file = model.export();
                for (name, t) in file.tensors.iter_mut() {
                    let v = init.normal(&t.shape, 0.15);
                    *t = if name.ends_with("running_var") {
                        HostTensor::new(
                            t.shape.clone(),
                            v.data.iter().map(|x| 0.5 + x.abs()).collect(),
                        )
                    } else {
                        v
                    };
                }
                let path = dir.join(format!("{}.safetensors", spec.label()));
                file.save(&path).unwrap();
                let model = OwcModel::load(&path, &device).unwrap();
                let first = bb.layers - scope;
                let states: Vec<_> = states_host[first..]
                    .iter()
                    .map(|h| h.to_tensor::<3>(&device))
                    .collect();
                let got = HostTensor::from_tensor(&model.forward(&states));
                for bi in 0..batch {
                    let per: Vec<M> = states_host[first..]
                        .iter()
                        .map(|h| {
                            (0..n)
                                .map(|t| {
                                    (0..d)
                                        .map(|c| h.data[(bi * n + t) * d + c] as f64)
                                        .collect()
                                })
                                .collect()
                        })
                        .collect();
                    let want = reference(&file, &spec, &per, bb.norm_eps);
                    for (c, w) in want.iter().enumerate() {
                        let g = got.data[bi * 5 + c] as f64;
                        let tol = 1e-4 * w.abs().max(1.0);
                        assert!(
                            (g - w).abs() <= tol,
                            "{}: logit {c}: {g} vs {w}",
                            spec.label()
                        );
                    }
                }
                // Names: exactly what the spec implies.
                let has = |k: &str| file.tensors.keys().any(|n| n.contains(k));
                assert_eq!(
                    has("token_mix"),
                    attention == AttentionKind::LinAtten,
                    "{}",
                    spec.label()
                );
                assert_eq!(has("attn.qkv"), attention != AttentionKind::None);
                assert_eq!(
                    has("norm1"),
                    attention != AttentionKind::None && norm != NormKind::None
                );
                assert_eq!(has("running_mean"), norm == NormKind::Affine);
                assert_eq!(has("final_norm"), norm != NormKind::None);
                // Checkpoint round trip is bit-exact.
                let again = model.export();
                assert_eq!(again.tensors, file.tensors);
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 45);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn bad_checkpoints_are_rejected_with_the_path() {
    let device = cryptpeft_train::cpu();
    let dir = std::env::temp_dir().join(format!("cryptpeft-badckpt-{}", std::process::id()));
    let spec = AdapterSpec::paper(2, 8, 1);
    let model = OwcModel::init(&spec, &tiny_backbone(), 3, None, 0, &device).unwrap();
    let mut f = model.export();
    f.tensors.remove("adapter.0.up.bias");
    let p = dir.join("missing.safetensors");
    f.save(&p).unwrap();
    let e = OwcModel::load(&p, &device).unwrap_err().to_string();
    assert!(
        e.contains("missing.safetensors") && e.contains("adapter.0.up.bias"),
        "{e}"
    );
    let p2 = dir.join("garbage.safetensors");
    std::fs::write(&p2, b"not a safetensors file").unwrap();
    let e = OwcModel::load(&p2, &device).unwrap_err().to_string();
    assert!(e.contains("garbage.safetensors"), "{e}");
    let e = OwcModel::load(Path::new("/nonexistent/x.safetensors"), &device)
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/x.safetensors"), "{e}");
    std::fs::remove_dir_all(dir).ok();
}
