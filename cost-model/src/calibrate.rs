//! Microbenchmarks that measure [`Constants`] on this machine (a few seconds). Each
//! figure is the median of repeated runs of the executor's own primitives.

use std::time::{Duration, Instant};

use cryptpeft_private_eval::arith::matmul::{matmul, Kernel};
use cryptpeft_private_eval::arith::prg::Prg;
use cryptpeft_private_eval::arith::ring;
use cryptpeft_private_eval::party::Party;
use cryptpeft_private_eval::plan::{CmpWidth, SplineFn};
use cryptpeft_private_eval::preprocessing::dealer::{cmp_material, relu_material};
use cryptpeft_private_eval::protocols::compare::relu;
use cryptpeft_private_eval::protocols::dcf::{self, DcfKey};
use cryptpeft_private_eval::transport::{
    bytes_to_u64s, memory_pair, u64s_to_bytes, Channel, ChannelExt, MsgKind,
};
use cryptpeft_types::NetworkProfile;

use crate::constants::Constants;

/// The median of a non-empty list of timings.
fn median(xs: Vec<f64>) -> f64 {
    cryptpeft_types::stats::median(&xs).expect("at least one timing")
}

/// Median seconds of `f` over `reps` runs (after one warm-up).
fn time<T>(reps: usize, mut f: impl FnMut() -> T) -> f64 {
    std::hint::black_box(f());
    median(
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(f());
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

fn single_thread<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a one-thread pool")
        .install(f)
}

/// This CPU's model name and the pool size.
pub fn machine_description() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!(
        "{cpu}; {} rayon threads; ring kernel {}",
        rayon::current_num_threads(),
        Kernel::detect().name()
    )
}

/// Runs the microbenchmarks (a few seconds) and returns this machine's constants.
pub fn calibrate() -> Constants {
    let machine = machine_description();
    let mut rng = Prg::new(7);
    let threads = rayon::current_num_threads();
    let (matmul_tile, matmul_call_s, matmul_gops, matmul_pack_per_s) = matmul_speed(&mut rng);
    let dcf = dcf_speed(&mut rng);
    let (relu_level_s, relu_value_s, relu_keygen_levels_per_s) = relu_speed(&mut rng);
    let (elementwise_per_s, serialize_bytes_per_s, prg_words_per_s) = local_speed(&mut rng);
    let (frame_latency_s, socket_bytes_per_s) = socket_speed();
    Constants {
        machine,
        threads,
        matmul_gops,
        matmul_call_s,
        matmul_tile,
        matmul_pack_per_s,
        dcf_levels_per_s: dcf[0],
        dcf_pool_levels_per_s: dcf[1],
        dcf_pool_points_per_s: dcf[2],
        dcf_keygen_levels_per_s: dcf[3],
        relu_value_s,
        relu_level_s,
        relu_keygen_levels_per_s,
        elementwise_per_s,
        serialize_bytes_per_s,
        socket_bytes_per_s,
        frame_latency_s,
        step_overhead_s: 2e-6,
        prg_words_per_s,
    }
}

/// The ring matmul's micro-tile, the cost of a tiny call, its multiply-add rate and its
/// packing rate: a tiny call, an 8-row call (packing-dominated) and a large one.
fn matmul_speed(rng: &mut Prg) -> ([usize; 2], f64, f64, f64) {
    let matmul_tile = match Kernel::detect() {
        Kernel::Avx512 => [8, 16],
        Kernel::Avx2 => [4, 4],
        Kernel::Portable => [4, 8],
    };
    let (k, n) = (768, 304);
    let a = rng.gen(200 * k);
    let b = rng.gen(k * n);
    let call = time(200, || matmul(&a[..1], &b[..1], 1, 1, 1));
    let t8 = time(30, || matmul(&a[..8 * k], &b, 8, k, n));
    let t200 = time(15, || matmul(&a, &b, 200, k, n));
    let (ops8, ops200) = (2.0 * (8 * k * n) as f64, 2.0 * (200 * k * n) as f64);
    let matmul_gops = (ops200 - ops8) / (t200 - t8).max(1e-9) / 1e9;
    let pack = (t8 - call - ops8 / (matmul_gops * 1e9)).max(1e-7);
    let matmul_pack_per_s = (k * n) as f64 / pack;
    (matmul_tile, call, matmul_gops, matmul_pack_per_s)
}

/// The comparisons' DCF rates: levels per second on one thread, per level and per point
/// over the pool, and key generation.
fn dcf_speed(rng: &mut Prg) -> [f64; 4] {
    // Comparisons' DCF: 256 keys at one point each, one thread (cache-resident keys) ...
    let pair = |rng: &mut Prg| dcf::Pair([rng.next_u64(), rng.next_u64()]);
    let key = |bits: usize, rng: &mut Prg| {
        let (alpha, beta) = (rng.next_u64() & ((1 << bits) - 1), pair(rng));
        dcf::gen_keys(alpha, beta, bits, rng)[0].clone()
    };
    let full = CmpWidth::FULL.domain();
    let keys: Vec<DcfKey<dcf::Pair>> = (0..256).map(|_| key(full, rng)).collect();
    let pts: Vec<Vec<u64>> = (0..256).map(|_| vec![rng.next_u64() >> 1]).collect();
    let t_eval = single_thread(|| time(9, || DcfKey::eval_batch(&keys, &pts, full)));
    let dcf_levels_per_s = (256 * full) as f64 / t_eval;
    // ... and over the pool, two batches as the plans make them, to separate the cost
    // per tree level from the cost per point: LayerNorm's rows (197 keys at 224
    // thresholds on the whole ring: few shared levels) and exp's values (2048 keys at its
    // 56 thresholds on the default narrow width: most levels shared).
    let exp = CmpWidth::spline(cryptpeft_private_eval::plan::lower::RELU_BITS, 16);
    let fx = cryptpeft_private_eval::arith::fixed::Fixed::new(16);
    let exp_ts: Vec<u64> = fx
        .encode_all(&SplineFn::Exp.thresholds())
        .iter()
        .map(|t| t >> exp.shift)
        .collect();
    let batch = |keys: usize, bits: usize, pts: &mut dyn FnMut(&mut Prg) -> Vec<u64>| {
        let mut rng = Prg::new(keys as u128);
        let ks: Vec<_> = (0..keys).map(|_| key(bits, &mut rng)).collect();
        let ps: Vec<Vec<u64>> = (0..keys).map(|_| pts(&mut rng)).collect();
        let levels: usize = ps
            .iter()
            .map(|p| dcf::walk_levels::<dcf::Pair>(p, bits))
            .sum();
        let t = time(7, || DcfKey::eval_batch(&ks, &ps, bits));
        (levels as f64, (keys * ps[0].len()) as f64, t)
    };
    let (l1, p1, t1) = batch(197, full, &mut |r| {
        (0..224).map(|_| r.next_u64() >> 1).collect()
    });
    let low = (1u64 << exp.domain()) - 1;
    let (l2, p2, t2) = batch(2048, exp.domain(), &mut |r| {
        let c = r.next_u64();
        exp_ts.iter().map(|t| c.wrapping_sub(*t) & low).collect()
    });
    // t = levels / L + points / P, solved for both batches (clamped to be positive).
    let det = l1 * p2 - l2 * p1;
    let per_level = ((t1 * p2 - t2 * p1) / det).max(1e-12);
    let per_point = ((l1 * t2 - l2 * t1) / det).max(1e-12);
    let dcf_pool_levels_per_s = 1.0 / per_level;
    let dcf_pool_points_per_s = 1.0 / per_point;
    let t_gen = time(5, || cmp_material(1024, CmpWidth::FULL, &mut Prg::new(3)));
    let dcf_keygen_levels_per_s = (1024 * full) as f64 / t_gen;
    [
        dcf_levels_per_s,
        dcf_pool_levels_per_s,
        dcf_pool_points_per_s,
        dcf_keygen_levels_per_s,
    ]
}

/// ReLU's calibrated two-party time per tree level and per value, and its key
/// generation rate: a large batch at four widths separates the two.
fn relu_speed(rng: &mut Prg) -> (f64, f64, f64) {
    let big_n = 24_000;
    // The whole ReLU, both parties at once over a local pair (as they run here):
    // masking, the opening, the DCF, the bit exchange and the select.
    let relu_t = |bits: u32, rng: &mut Prg| {
        let [m0, m1] = relu_material(big_n, bits, 0, &mut Prg::new(9));
        let s0 = rng.gen(big_n);
        let s1 = rng.gen(big_n);
        let (mut c0, mut c1) = memory_pair(NetworkProfile::none(), Duration::from_secs(30));
        let t_relu = std::thread::scope(|s| {
            let peer = s.spawn(|| {
                for _ in 0..6 {
                    relu(Party::Server, &mut c1, &s1, &m1).unwrap();
                }
            });
            let t = time(5, || relu(Party::Client, &mut c0, &s0, &m0).unwrap());
            peer.join().unwrap();
            t
        });
        let t_gen = time(3, || relu_material(4096, bits, 0, &mut Prg::new(3)));
        (t_relu, t_gen)
    };
    let levels = |bits: u32| dcf::levels::<dcf::Bit>(bits as usize - 1) as f64;
    let runs: Vec<(f64, f64, f64)> = [16u32, 32, 48, 64]
        .into_iter()
        .map(|b| {
            let (e, g) = relu_t(b, rng);
            (levels(b), e, g)
        })
        .collect();
    // Least squares of time against levels: slope per level, intercept per value.
    let fit = |ys: &dyn Fn(&(f64, f64, f64)) -> f64| {
        let n = runs.len() as f64;
        let mx = runs.iter().map(|r| r.0).sum::<f64>() / n;
        let my = runs.iter().map(ys).sum::<f64>() / n;
        let sxy: f64 = runs.iter().map(|r| (r.0 - mx) * (ys(r) - my)).sum();
        let sxx: f64 = runs.iter().map(|r| (r.0 - mx).powi(2)).sum();
        let slope = (sxy / sxx).max(1e-15);
        (slope, (my - slope * mx).max(0.0))
    };
    let (per_level, per_value) = fit(&|r| r.1);
    let relu_level_s = per_level / big_n as f64;
    let relu_value_s = per_value / big_n as f64;
    let relu_keygen_levels_per_s = 4096.0 / fit(&|r| r.2).0;
    (relu_level_s, relu_value_s, relu_keygen_levels_per_s)
}

/// One thread's element-wise ring work (add, sub, copy and truncate on 1M elements),
/// byte conversion and PRG rates.
fn local_speed(rng: &mut Prg) -> (f64, f64, f64) {
    let m = 1 << 20;
    let x = rng.gen(m);
    let y = rng.gen(m);
    let fx = cryptpeft_private_eval::arith::fixed::Fixed::new(16);
    let t_elem = time(15, || {
        let mut s = ring::sub(&x, &y);
        ring::add_assign(&mut s, &x);
        let mut c = s.to_vec();
        fx.truncate_shares(&mut c, Party::Server);
        c
    });
    let elementwise_per_s = 4.0 * m as f64 / t_elem;
    // Byte conversion (both directions), one thread.
    let t_ser = time(15, || bytes_to_u64s(&u64s_to_bytes(&x)));
    let serialize_bytes_per_s = 2.0 * 8.0 * m as f64 / t_ser;
    let prg_words_per_s = m as f64 / time(9, || Prg::new(5).gen(m));
    (elementwise_per_s, serialize_bytes_per_s, prg_words_per_s)
}

/// A local socket pair under profile none: the per-frame latency from tiny ping-pongs
/// and the socket's rate from a large frame one way.
fn socket_speed() -> (f64, f64) {
    let (mut c0, mut c1) = memory_pair(NetworkProfile::none(), Duration::from_secs(30));
    let big = 4 << 20;
    let payload = vec![7u8; big];
    let reps = 9;
    let (t_big, t_ping) = std::thread::scope(|s| {
        let echo = s.spawn(move || {
            for _ in 0..reps + 1 {
                let m = c1.recv(MsgKind::Open).unwrap();
                c1.send(MsgKind::Open, &m[..8]).unwrap();
            }
            for _ in 0..201 {
                let m = c1.recv_u64s(MsgKind::Open, 1).unwrap();
                c1.send_u64s(MsgKind::Open, &m).unwrap();
            }
            c1.flush().unwrap();
        });
        let mut big_t = Vec::new();
        for i in 0..reps + 1 {
            let t = Instant::now();
            c0.send(MsgKind::Open, &payload).unwrap();
            c0.recv(MsgKind::Open).unwrap();
            if i > 0 {
                big_t.push(t.elapsed().as_secs_f64());
            }
        }
        let mut ping = Vec::new();
        for i in 0..201 {
            let t = Instant::now();
            c0.send_u64s(MsgKind::Open, &[i]).unwrap();
            c0.recv_u64s(MsgKind::Open, 1).unwrap();
            if i > 0 {
                ping.push(t.elapsed().as_secs_f64());
            }
        }
        echo.join().unwrap();
        (median(big_t), median(ping))
    });
    let frame_latency_s = t_ping / 2.0;
    let socket_bytes_per_s = big as f64 / (t_big - t_ping).max(1e-7);
    (frame_latency_s, socket_bytes_per_s)
}

/// Calibrates and writes the constants to `path` as YAML (with a header naming the
/// machine and date), returning them.
pub fn calibrate_to(
    path: impl AsRef<std::path::Path>,
) -> Result<Constants, crate::constants::ConstantsError> {
    let c = calibrate();
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    c.save(
        path,
        &format!("Cost-model constants from cryptpeft_cost_model::calibrate() (unix time {secs})."),
    )?;
    Ok(c)
}
