//! DCF evaluation throughput: `cargo run --release -p cryptpeft-private-eval --example
//! dcf_throughput [values] [points]` evaluates one `Pair` key per value at `points`
//! points (as a multi-threshold comparison does) and reports tree levels per second.

use cryptpeft_private_eval::arith::prg::Prg;
use cryptpeft_private_eval::protocols::dcf::{gen_keys, DcfKey, Pair};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let (n, k) = (
        args.first().copied().unwrap_or(20_000),
        args.get(1).copied().unwrap_or(65),
    );
    let bits = 63;
    let mut rng = Prg::new(1);
    let keys: Vec<DcfKey<Pair>> = (0..n)
        .map(|_| gen_keys(rng.next_u64() >> 1, Pair([1, 2]), bits, &mut rng)[0].clone())
        .collect();
    let points: Vec<Vec<u64>> = (0..n)
        .map(|_| {
            let c = rng.next_u64() >> 1;
            (0..k as u64)
                .map(|j| c.wrapping_sub(j << 13) & (u64::MAX >> 1))
                .collect()
        })
        .collect();
    for _ in 0..3 {
        let t = std::time::Instant::now();
        let out = DcfKey::eval_batch(&keys, &points, bits);
        let s = t.elapsed().as_secs_f64();
        let steps = (n * k * bits) as f64;
        println!(
            "{n} keys x {k} points: {s:.3} s, {:.1} M evaluations/s, {:.1} M levels/s ({})",
            (n * k) as f64 / s / 1e6,
            steps / s / 1e6,
            out.len()
        );
    }
}
