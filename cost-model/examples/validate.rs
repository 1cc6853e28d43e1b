//! Validates the cost model at ViT-B/16 scale: for each spec and network, predicted
//! online seconds against the median of measured `local::infer` runs (both parties in
//! this process over a shaped local socket pair), exact bytes and rounds, and what
//! pricing one candidate costs.
//!
//! `cargo run --release -p cryptpeft-cost-model --example validate -- [--runs 3] [--out results/cost_validation.csv] [--constants FILE | --calibrate | --calibrate-each] [--only I]`

use std::io::Write as _;
use std::time::{Duration, Instant};

use cryptpeft_cost_model::{cost, plan_shape_only, Constants};
use cryptpeft_private_eval::{
    arith::tensor::Mat, model::OwcModel, online::local, plan::lower, transport::memory_pair,
};
use cryptpeft_types::{AdapterSpec, AttentionKind, BackboneSpec, NetworkProfile, NormKind};
use rand::{Rng, SeedableRng};

fn spec(
    h: usize,
    r: usize,
    s: usize,
    norm: NormKind,
    attention: AttentionKind,
    blocks: usize,
) -> AdapterSpec {
    AdapterSpec {
        norm,
        attention,
        blocks,
        ..AdapterSpec::paper(h, r, s)
    }
}

fn median(xs: Vec<f64>) -> f64 {
    cryptpeft_types::stats::median(&xs).expect("at least one run")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let runs: usize = arg("--runs").map_or(3, |v| v.parse().expect("--runs N"));
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = arg("--out").unwrap_or_else(|| format!("{root}/results/cost_validation.csv"));
    // `--calibrate`: measure the constants now, under the same machine load as the runs.
    // `--calibrate-each`: recalibrate before every spec (this machine is shared with
    // other jobs whose load drifts within a run).
    let each = args.iter().any(|a| a == "--calibrate-each");
    let mut consts = if each || args.iter().any(|a| a == "--calibrate") {
        cryptpeft_cost_model::calibrate()
    } else {
        match arg("--constants") {
            Some(p) => Constants::load(p).expect("loading constants"),
            None => Constants::shipped(),
        }
    };
    let calibrated = args.iter().any(|a| a == "--calibrate");
    let mode = if each {
        " --calibrate-each"
    } else if calibrated {
        " --calibrate"
    } else {
        ""
    };
    let only: Option<usize> = arg("--only").map(|v| v.parse().unwrap());
    let bb = BackboneSpec::vit_b16();
    use AttentionKind::{LinAtten, None as NoAttn};
    use NormKind::{Affine, LayerNorm};
    let specs = [
        spec(1, 300, 1, Affine, LinAtten, 1),
        spec(2, 120, 2, Affine, LinAtten, 1),
        spec(2, 300, 2, Affine, LinAtten, 1),
        spec(4, 60, 3, Affine, LinAtten, 1),
        spec(6, 180, 1, Affine, LinAtten, 1),
        spec(12, 240, 2, Affine, LinAtten, 1),
        spec(10, 300, 4, Affine, LinAtten, 1),
        spec(1, 300, 1, LayerNorm, LinAtten, 1),
        spec(2, 120, 2, LayerNorm, LinAtten, 1),
        spec(4, 120, 2, Affine, NoAttn, 1),
        spec(2, 60, 1, Affine, LinAtten, 2),
        spec(6, 300, 6, Affine, LinAtten, 1),
        spec(1, 60, 1, Affine, LinAtten, 1),
        spec(3, 180, 1, Affine, LinAtten, 1),
        spec(4, 240, 1, LayerNorm, LinAtten, 1),
        spec(1, 120, 3, Affine, LinAtten, 1),
    ];
    let nets = [NetworkProfile::lan(), NetworkProfile::wan()];
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let mut csv = String::new();
    csv.push_str(&format!(
        "# cargo run --release -p cryptpeft-cost-model --example validate -- --runs {runs}{}; commit {commit}; constants: {}\n",
        mode,
        consts.machine
    ));
    csv.push_str("spec,network,predicted_s,measured_s,rel_err,runs,online_bytes,measured_bytes,rounds,measured_rounds,lower_ms,shape_plan_ms,price_us\n");
    let mut worst: f64 = 0.0;
    let mut within = 0;
    let mut total = 0;
    for (i, sp) in specs.iter().enumerate() {
        if only.is_some_and(|o| o != i) {
            continue;
        }
        if each && i > 0 {
            consts = cryptpeft_cost_model::calibrate();
        }
        let model = OwcModel::random(sp.clone(), bb.clone(), 100, 1000 + i as u64);
        let t = Instant::now();
        let (plan, w) = lower::lower(&model, Default::default()).expect("lowering");
        let lower_ms = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let shape_plan = plan_shape_only(sp, &bb, 100).expect("shape-only plan");
        let shape_ms = t.elapsed().as_secs_f64() * 1e3;
        assert_eq!(shape_plan.steps, plan.steps);
        let mut rng = rand::rngs::StdRng::seed_from_u64(i as u64);
        let hidden: Vec<Mat> = (0..=sp.scope)
            .map(|_| {
                Mat::new(
                    bb.tokens(),
                    bb.hidden_dim,
                    (0..bb.tokens() * bb.hidden_dim)
                        .map(|_| rng.random_range(-2.0..2.0))
                        .collect(),
                )
            })
            .collect();
        // Runs alternate between the networks, so both see the same machine load.
        let mut times = vec![Vec::new(); nets.len()];
        let mut measured = vec![None; nets.len()];
        for run in 0..runs {
            for (ni, net) in nets.iter().enumerate() {
                let (c, s) = memory_pair(net.clone(), Duration::from_secs(120));
                let got = local::infer(&plan, &w, &hidden, c, s, (run + 7) as u128)
                    .expect("secure inference");
                times[ni].push(got.online_s);
                measured[ni] = Some(got);
            }
        }
        for (ni, net) in nets.iter().enumerate() {
            // Pricing cost: mean over repetitions of `cost` on a ready plan.
            let reps = 200;
            let t = Instant::now();
            for _ in 0..reps {
                std::hint::black_box(cost(std::hint::black_box(&plan), net, &consts));
            }
            let price_us = t.elapsed().as_secs_f64() / reps as f64 * 1e6;
            let report = cost(&plan, net, &consts);
            let got = measured[ni].take().expect("at least one run");
            let m = median(times[ni].clone());
            let rel = (report.predicted_online_s - m) / m;
            worst = worst.max(rel.abs());
            total += 1;
            within += (rel.abs() <= 0.15) as usize;
            let line = format!(
                "{},{},{:.6},{:.6},{:.4},{},{},{},{},{},{:.2},{:.3},{:.1}\n",
                sp.label(),
                net.name,
                report.predicted_online_s,
                m,
                rel,
                runs,
                report.online_bytes,
                got.online.total_bytes(),
                report.rounds,
                got.online.rounds,
                lower_ms,
                shape_ms,
                price_us
            );
            print!("{line}");
            std::io::stdout().flush().ok();
            csv.push_str(&line);
            if std::env::var_os("VERBOSE").is_some() {
                print!("{}", cryptpeft_cost_model::format_table(&report));
                for (st, tr) in report.steps.iter().zip(&got.steps) {
                    println!(
                        "  {:<14} {:<22} predicted {:>9.3} ms measured {:>9.3} ms",
                        st.name,
                        st.shape,
                        st.seconds * 1e3,
                        tr.seconds * 1e3
                    );
                }
            }
        }
    }
    eprintln!(
        "{within}/{total} within 15%, worst |rel err| {:.1}%",
        worst * 100.0
    );
    if only.is_none() {
        if let Some(dir) = std::path::Path::new(&out).parent() {
            std::fs::create_dir_all(dir).ok();
        }
        std::fs::write(&out, csv).expect("writing the CSV");
        eprintln!("wrote {out}");
    }
}
