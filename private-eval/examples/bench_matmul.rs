//! Ring (Z_2^64) matmul vs f32 GEMM at the shapes of a ViT-B adapter layer.
//!
//! `cargo run --release -p cryptpeft-private-eval --example bench_matmul`
//!
//! For each shape and thread count (1, and all cores) it prints the median time
//! of repeated runs, GOP/s (2*m*k*n per product) and ring/f32 ratio, and writes
//! `results/matmul.csv` (shape,kernel,threads,median_s,gops). Both kernels run on
//! the same rayon pool, split over row blocks the same way.

use std::fmt::Write as _;
use std::time::Instant;

use cryptpeft_private_eval::arith::matmul::{matmul, matmul_bt, matmul_kernel, sgemm_f32, Kernel};

const SHAPES: &[(usize, usize, usize)] = &[(197, 768, 300), (197, 300, 197)];

fn median_s(mut f: impl FnMut()) -> f64 {
    f(); // warm up (page faults, pool start)
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < 7 || (start.elapsed().as_secs_f64() < 1.0 && times.len() < 200) {
        let t = Instant::now();
        f();
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() -> std::io::Result<()> {
    let kernel = Kernel::detect();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut thread_counts = vec![1];
    if cores > 1 {
        thread_counts.push(cores);
    }
    println!("ring kernel: {}, cores: {cores}", kernel.name());
    let mut csv = String::from("shape,kernel,threads,median_s,gops\n");
    for &(m, k, n) in SHAPES {
        let mut s = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let a: Vec<u64> = (0..m * k).map(|_| next()).collect();
        let b: Vec<u64> = (0..k * n).map(|_| next()).collect();
        let af: Vec<f32> = a.iter().map(|&x| (x >> 40) as f32 / 1e7).collect();
        let bf: Vec<f32> = b.iter().map(|&x| (x >> 40) as f32 / 1e7).collect();
        let ops = 2.0 * (m * k * n) as f64;
        let shape = format!("{m}x{k}x{n}");
        for &threads in &thread_counts {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("rayon pool");
            let (ring, ring_bt, f32_t) = pool.install(|| {
                (
                    median_s(|| drop(std::hint::black_box(matmul(&a, &b, m, k, n)))),
                    median_s(|| drop(std::hint::black_box(matmul_bt(&a, &b, m, k, n)))),
                    median_s(|| drop(std::hint::black_box(sgemm_f32(&af, &bf, m, k, n)))),
                )
            });
            let g = |t: f64| ops / t / 1e9;
            println!(
                "[{m}x{k}]x[{k}x{n}] threads={threads}: ring {:.3} ms {:.1} GOP/s | ring_bt {:.3} ms {:.1} GOP/s | f32 {:.3} ms {:.1} GFLOP/s | ring/f32 = {:.3}",
                ring * 1e3,
                g(ring),
                ring_bt * 1e3,
                g(ring_bt),
                f32_t * 1e3,
                g(f32_t),
                f32_t / ring,
            );
            for (name, t) in [
                (format!("ring_{}", kernel.name()), ring),
                (format!("ring_bt_{}", kernel.name()), ring_bt),
                ("f32_matrixmultiply".to_string(), f32_t),
            ] {
                writeln!(csv, "{shape},{name},{threads},{t:.6e},{:.3}", g(t)).unwrap();
            }
        }
        // The fallback kernels, single-threaded, for reference.
        for other in [Kernel::Avx2, Kernel::Portable] {
            if other == kernel || !other.is_supported() {
                continue;
            }
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()
                .expect("rayon pool");
            let t = pool.install(|| {
                median_s(|| {
                    drop(std::hint::black_box(matmul_kernel(
                        other, &a, &b, m, k, n, false,
                    )))
                })
            });
            let gops = ops / t / 1e9;
            println!(
                "  fallback {} threads=1: {:.3} ms {gops:.1} GOP/s",
                other.name(),
                t * 1e3
            );
            writeln!(csv, "{shape},ring_{},1,{t:.6e},{gops:.3}", other.name()).unwrap();
        }
    }
    // The example runs from the package directory under cargo; write next to
    // the workspace's results/ folder.
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = manifest.parent().unwrap_or(manifest).join("results");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("matmul.csv");
    std::fs::write(&path, csv)?;
    println!("wrote {}", path.display());
    Ok(())
}
