//! The search's hand-written Gaussian process (`search/src/strategy/gp.rs`, compiled
//! here as is) against the friedrich crate's, on a tabulated study's `candidates.csv`:
//! after `n` random configurations (20 seeds), the error (RMSE) and the negative log
//! predictive density (NLPD: how well the predicted spread fits, what EHVI relies on) on
//! every other configuration, and the time to fit and predict.
//!
//! `cargo run --release --manifest-path experiments/surrogates/Cargo.toml -- results/search/digits-table/candidates.csv`
mod genes;
#[path = "../../../search/src/strategy/gp.rs"]
mod gp;
use genes::{Genome, Space};
use rand::{seq::SliceRandom, SeedableRng};
use std::time::Instant;

fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: surrogates CANDIDATES.csv");
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |n: &str| head.iter().position(|h| *h == n).unwrap();
    let cats = ["heads", "rank", "scope", "blocks", "attention", "norm"];
    let rows: Vec<Vec<String>> = lines.map(|l| l.split(',').map(String::from).collect()).collect();
    let mut choices: Vec<Vec<String>> = vec![vec![]; 6];
    for r in &rows { for (k, c) in cats.iter().enumerate() { let v = r[col(c)].clone(); if !choices[k].contains(&v) { choices[k].push(v); } } }
    for (k, c) in choices.iter_mut().enumerate() { if k < 4 { c.sort_by_key(|v| v.parse::<i64>().unwrap()); } }
    let mut arity = [1usize; 8];
    for k in 0..6 { arity[k] = choices[k].len(); }
    let space = Space { arity };
    let data: Vec<(Genome, f64)> = rows.iter().map(|r| {
        let mut g = [0u16; 8];
        for k in 0..6 { g[k] = choices[k].iter().position(|v| *v == r[col(cats[k])]).unwrap() as u16; }
        (g, r[col("val_accuracy")].parse().unwrap())
    }).collect();
    // friedrich's features: ordinal positions in [0,1], categoricals one-hot.
    let feat = |g: &Genome| -> Vec<f64> {
        let mut f = Vec::new();
        for k in 0..4 { f.push(g[k] as f64 / (arity[k] - 1) as f64); }
        for k in 4..6 { for c in 0..arity[k] { f.push((g[k] as usize == c) as u8 as f64); } }
        f
    };
    let enc = gp::Encoding::new(&space);
    for n in [20usize, 40, 60] {
        let (mut e1, mut e2, mut l1, mut l2, mut t1, mut t2) = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
        let seeds = 20;
        for seed in 0..seeds {
            let mut idx: Vec<usize> = (0..data.len()).collect();
            idx.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
            let (tr, te) = idx.split_at(n);
            let x: Vec<Genome> = tr.iter().map(|&i| data[i].0).collect();
            let y: Vec<f64> = tr.iter().map(|&i| data[i].1).collect();
            let s = Instant::now();
            let g = gp::Gp::fit(&enc, &x, &y);
            let preds: Vec<(f64, f64)> = te.iter().map(|&i| g.predict(&data[i].0)).collect();
            t1 += s.elapsed().as_secs_f64();
            let s = Instant::now();
            let xf: Vec<Vec<f64>> = x.iter().map(feat).collect();
            let mut f = friedrich::gaussian_process::GaussianProcess::default(xf, y.clone());
            f.fit_parameters(true, true, 100, 0.05, std::time::Duration::from_secs(10));
            let pf: Vec<(f64, f64)> = te.iter().map(|&i| { let v = feat(&data[i].0); (f.predict(&v), f.predict_variance(&v).max(1e-12).sqrt()) }).collect();
            t2 += s.elapsed().as_secs_f64();
            let score = |p: &[(f64, f64)]| -> (f64, f64) {
                let mut se = 0.0; let mut nl = 0.0;
                for (k, &i) in te.iter().enumerate() {
                    let (m, sd) = p[k]; let sd = sd.max(1e-4); let d = data[i].1 - m;
                    se += d * d; nl += 0.5 * (d / sd).powi(2) + sd.ln() + 0.9189;
                }
                ((se / te.len() as f64).sqrt(), nl / te.len() as f64)
            };
            let (a, b) = score(&preds); e1 += a; l1 += b;
            let (a, b) = score(&pf); e2 += a; l2 += b;
        }
        let s = seeds as f64;
        println!("n={n}: hand-written RMSE {:.4} NLPD {:.3} {:.1} ms | friedrich RMSE {:.4} NLPD {:.3} {:.1} ms", e1/s, l1/s, 1e3*t1/s, e2/s, l2/s, 1e3*t2/s);
    }
}
