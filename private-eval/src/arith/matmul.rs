//! Matrix multiplication over the ring Z_2^64 (wrapping `u64`), row-major.
//!
//! Shares of fixed-point tensors live in Z_2^64, so every linear layer of the
//! secure evaluation is a wrapping `u64` matmul. ndarray's integer matmul is a
//! naive loop; this module is a small GotoBLAS-style GEMM:
//!
//! * B is packed once into column panels of `NR` columns (zero padded), for both
//!   `B` ([`matmul`]) and `B^T` ([`matmul_bt`]), so one kernel serves both.
//! * The output is split into tasks (row blocks x column groups) run on the
//!   current rayon pool; each task packs its rows of A into `MR`-row micro-panels
//!   and walks `KC`-deep slices of k so a B micro-panel stays in L1.
//! * The micro-kernel keeps an `MR x NR` accumulator tile in registers. It is one
//!   AVX-512 (`vpmullq` on zmm, tile 8x16), AVX2 (64-bit product from three
//!   `vpmuludq`, tile 4x4) or portable scalar (tile 4x8); the choice is made at
//!   run time with `is_x86_feature_detected!`, so no `-C target-cpu=native` is
//!   needed. (A plain generic loop under `target_feature` was tried first: LLVM
//!   spilled the tile and used gathers, 3 GOP/s.)
//!
//! [`sgemm_f32`] is the f32 GEMM of the same shape (matrixmultiply's `sgemm`,
//! split over rows on the same rayon pool) used as the speed reference.

use rayon::prelude::*;

/// Depth of one k slice: an 8x256 A micro-panel (16 KiB) and a 256x16 B
/// micro-panel (32 KiB) fit in L1 together.
const KC: usize = 256;

/// Which micro-kernel the dispatcher picks on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    Avx512,
    Avx2,
    Portable,
}

impl Kernel {
    /// The best kernel this CPU supports.
    pub fn detect() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512dq")
            {
                return Kernel::Avx512;
            }
            if std::is_x86_feature_detected!("avx2") {
                return Kernel::Avx2;
            }
        }
        Kernel::Portable
    }

    /// Whether this CPU can run the kernel.
    pub fn is_supported(self) -> bool {
        match self {
            Kernel::Portable => true,
            Kernel::Avx2 => Kernel::detect() != Kernel::Portable,
            Kernel::Avx512 => Kernel::detect() == Kernel::Avx512,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kernel::Avx512 => "avx512",
            Kernel::Avx2 => "avx2",
            Kernel::Portable => "portable",
        }
    }
}

/// `A [m x k] * B [k x n]` over Z_2^64, all row-major.
///
/// # Panics
/// If `a.len() != m * k` or `b.len() != k * n` (a caller bug, not a data error).
pub fn matmul(a: &[u64], b: &[u64], m: usize, k: usize, n: usize) -> Vec<u64> {
    matmul_with(Kernel::detect(), a, b, m, k, n, BLayout::KxN)
}

/// `A [m x k] * B^T` over Z_2^64 where `b` is `[n x k]` row-major (the layout of
/// a linear layer's weight `[out x in]`).
///
/// # Panics
/// If `a.len() != m * k` or `b.len() != n * k`.
pub fn matmul_bt(a: &[u64], b: &[u64], m: usize, k: usize, n: usize) -> Vec<u64> {
    matmul_with(Kernel::detect(), a, b, m, k, n, BLayout::NxK)
}

/// Reference triple loop, for tests.
pub fn matmul_naive(a: &[u64], b: &[u64], m: usize, k: usize, n: usize) -> Vec<u64> {
    check_dims(a, b, m, k, n);
    let mut c = vec![0u64; m * n];
    for i in 0..m {
        for p in 0..k {
            let x = a[i * k + p];
            for j in 0..n {
                c[i * n + j] = c[i * n + j].wrapping_add(x.wrapping_mul(b[p * n + j]));
            }
        }
    }
    c
}

/// Like [`matmul`] / [`matmul_bt`] with an explicit kernel (tests and benchmarks).
/// A kernel the CPU lacks falls back to [`Kernel::Portable`].
pub fn matmul_kernel(
    kernel: Kernel,
    a: &[u64],
    b: &[u64],
    m: usize,
    k: usize,
    n: usize,
    b_transposed: bool,
) -> Vec<u64> {
    let kernel = if kernel.is_supported() {
        kernel
    } else {
        Kernel::Portable
    };
    let layout = if b_transposed {
        BLayout::NxK
    } else {
        BLayout::KxN
    };
    matmul_with(kernel, a, b, m, k, n, layout)
}

/// f32 GEMM `A [m x k] * B [k x n]` (row-major) with matrixmultiply's `sgemm`,
/// split over row blocks on the current rayon pool exactly like the ring GEMM,
/// so the two are compared at the same thread count.
pub fn sgemm_f32(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    assert_eq!(a.len(), m * k, "A must be m x k");
    assert_eq!(b.len(), k * n, "B must be k x n");
    let mut c = vec![0f32; m * n];
    if m == 0 || n == 0 {
        return c;
    }
    let rows = block_rows(m, 1, rayon::current_num_threads());
    c.par_chunks_mut(rows * n)
        .enumerate()
        .for_each(|(blk, cblk)| {
            let i0 = blk * rows;
            let r = cblk.len() / n;
            // SAFETY: the strides describe the row-major slices, whose lengths
            // were checked above (`a` rows i0..i0+r, all of `b`, `cblk` r x n).
            unsafe {
                matrixmultiply::sgemm(
                    r,
                    k,
                    n,
                    1.0,
                    a[i0 * k..].as_ptr(),
                    k as isize,
                    1,
                    b.as_ptr(),
                    n as isize,
                    1,
                    0.0,
                    cblk.as_mut_ptr(),
                    n as isize,
                    1,
                );
            }
        });
    c
}

#[derive(Clone, Copy)]
enum BLayout {
    /// `b` is `[k x n]`.
    KxN,
    /// `b` is `[n x k]` (we multiply by its transpose).
    NxK,
}

fn check_dims(a: &[u64], b: &[u64], m: usize, k: usize, n: usize) {
    assert_eq!(
        a.len(),
        m * k,
        "A has {} elements, expected m*k = {m}*{k}",
        a.len()
    );
    assert_eq!(
        b.len(),
        k * n,
        "B has {} elements, expected k*n = {k}*{n}",
        b.len()
    );
}

fn matmul_with(
    kernel: Kernel,
    a: &[u64],
    b: &[u64],
    m: usize,
    k: usize,
    n: usize,
    layout: BLayout,
) -> Vec<u64> {
    check_dims(a, b, m, k, n);
    if m == 0 || n == 0 || k == 0 {
        return vec![0; m * n];
    }
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => gemm::<8, 16>(a, b, m, k, n, layout, kernel_avx512),
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => gemm::<4, 4>(a, b, m, k, n, layout, kernel_avx2),
        _ => gemm::<4, 8>(a, b, m, k, n, layout, kernel_portable),
    }
}

/// A micro-kernel: `out = sum_p ap[p*MR..][i] * bp[p*NR..][j]` over `kc` steps.
/// `unsafe` because the SIMD variants need their CPU feature (checked by the
/// dispatcher before it hands one out).
type MicroKernel<const MR: usize, const NR: usize> =
    unsafe fn(usize, &[u64], &[u64], &mut [[u64; NR]; MR]);

#[inline(always)]
fn kernel_body<const MR: usize, const NR: usize>(
    kc: usize,
    ap: &[u64],
    bp: &[u64],
    out: &mut [[u64; NR]; MR],
) {
    let mut acc = [[0u64; NR]; MR];
    for (a, b) in ap.chunks_exact(MR).zip(bp.chunks_exact(NR)).take(kc) {
        for i in 0..MR {
            let x = a[i];
            for j in 0..NR {
                acc[i][j] = acc[i][j].wrapping_add(x.wrapping_mul(b[j]));
            }
        }
    }
    *out = acc;
}

/// 8x16 tile in 16 zmm accumulators: per k step two loads of B, eight
/// broadcasts of A and sixteen `vpmullq` + `vpaddq`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
unsafe fn kernel_avx512(kc: usize, ap: &[u64], bp: &[u64], out: &mut [[u64; 16]; 8]) {
    use std::arch::x86_64::*;
    assert!(ap.len() >= kc * 8 && bp.len() >= kc * 16);
    let mut acc = [[_mm512_setzero_si512(); 2]; 8];
    let (a, b) = (ap.as_ptr(), bp.as_ptr());
    for p in 0..kc {
        // SAFETY: p < kc and the lengths were checked above.
        unsafe {
            let b0 = _mm512_loadu_si512(b.add(p * 16).cast());
            let b1 = _mm512_loadu_si512(b.add(p * 16 + 8).cast());
            for (i, row) in acc.iter_mut().enumerate() {
                let x = _mm512_set1_epi64(*a.add(p * 8 + i) as i64);
                row[0] = _mm512_add_epi64(row[0], _mm512_mullo_epi64(x, b0));
                row[1] = _mm512_add_epi64(row[1], _mm512_mullo_epi64(x, b1));
            }
        }
    }
    for (o, row) in out.iter_mut().zip(&acc) {
        // SAFETY: each output row holds 16 u64 = two zmm stores.
        unsafe {
            _mm512_storeu_si512(o.as_mut_ptr().cast(), row[0]);
            _mm512_storeu_si512(o.as_mut_ptr().add(8).cast(), row[1]);
        }
    }
}

/// 4x4 tile without a 64-bit vector multiply: with a = ah*2^32 + al,
/// a*b mod 2^64 = al*bl + ((ah*bl + al*bh) << 32), each term one `vpmuludq`.
/// The low and cross terms are accumulated apart and combined once at the end.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn kernel_avx2(kc: usize, ap: &[u64], bp: &[u64], out: &mut [[u64; 4]; 4]) {
    use std::arch::x86_64::*;
    assert!(ap.len() >= kc * 4 && bp.len() >= kc * 4);
    let mut lo = [_mm256_setzero_si256(); 4];
    let mut cross = [_mm256_setzero_si256(); 4];
    let (a, b) = (ap.as_ptr(), bp.as_ptr());
    for p in 0..kc {
        // SAFETY: p < kc and the lengths were checked above.
        unsafe {
            let bv = _mm256_loadu_si256(b.add(p * 4).cast());
            let bh = _mm256_srli_epi64::<32>(bv);
            for i in 0..4 {
                let xl = _mm256_set1_epi64x(*a.add(p * 4 + i) as i64);
                let xh = _mm256_srli_epi64::<32>(xl);
                lo[i] = _mm256_add_epi64(lo[i], _mm256_mul_epu32(xl, bv));
                let c = _mm256_add_epi64(_mm256_mul_epu32(xh, bv), _mm256_mul_epu32(xl, bh));
                cross[i] = _mm256_add_epi64(cross[i], c);
            }
        }
    }
    for i in 0..4 {
        let v = _mm256_add_epi64(lo[i], _mm256_slli_epi64::<32>(cross[i]));
        // SAFETY: each output row holds 4 u64 = one ymm store.
        unsafe { _mm256_storeu_si256(out[i].as_mut_ptr().cast(), v) };
    }
}

unsafe fn kernel_portable(kc: usize, ap: &[u64], bp: &[u64], out: &mut [[u64; 8]; 4]) {
    kernel_body::<4, 8>(kc, ap, bp, out)
}

/// Rows per task, a multiple of `mr`, aiming at about 4 tasks per thread.
fn block_rows(m: usize, mr: usize, threads: usize) -> usize {
    let panels = m.div_ceil(mr);
    let want = (4 * threads).max(1);
    panels.div_ceil(want.min(panels)) * mr
}

/// Packs B into `ceil(n/NR)` panels, each `k x NR` (row p holds columns
/// `j0..j0+NR` of row p of B), zero padded past column n.
fn pack_b<const NR: usize>(b: &[u64], k: usize, n: usize, layout: BLayout) -> Vec<u64> {
    let panels = n.div_ceil(NR);
    let mut packed = vec![0u64; panels * k * NR];
    packed
        .par_chunks_mut(k * NR)
        .enumerate()
        .for_each(|(jp, panel)| {
            let j0 = jp * NR;
            let w = NR.min(n - j0);
            match layout {
                BLayout::KxN => {
                    for (p, row) in panel.chunks_exact_mut(NR).enumerate() {
                        row[..w].copy_from_slice(&b[p * n + j0..p * n + j0 + w]);
                    }
                }
                BLayout::NxK => {
                    for jj in 0..w {
                        let src = &b[(j0 + jj) * k..(j0 + jj + 1) * k];
                        for (p, &v) in src.iter().enumerate() {
                            panel[p * NR + jj] = v;
                        }
                    }
                }
            }
        });
    packed
}

/// Packs rows `i0..i0+rows` of A into `ceil(rows/MR)` micro-panels, each
/// `k x MR` (step p holds column p of the MR rows), zero padded.
fn pack_a<const MR: usize>(a: &[u64], k: usize, i0: usize, rows: usize) -> Vec<u64> {
    let panels = rows.div_ceil(MR);
    let mut packed = vec![0u64; panels * k * MR];
    for (ip, panel) in packed.chunks_exact_mut(k * MR).enumerate() {
        let h = MR.min(rows - ip * MR);
        for ii in 0..h {
            let r = i0 + ip * MR + ii;
            let src = &a[r * k..(r + 1) * k];
            for (p, &v) in src.iter().enumerate() {
                panel[p * MR + ii] = v;
            }
        }
    }
    packed
}

fn gemm<const MR: usize, const NR: usize>(
    a: &[u64],
    b: &[u64],
    m: usize,
    k: usize,
    n: usize,
    layout: BLayout,
    kernel: MicroKernel<MR, NR>,
) -> Vec<u64> {
    let bpack = pack_b::<NR>(b, k, n, layout);
    let threads = rayon::current_num_threads();
    let panels_n = n.div_ceil(NR);

    // Tasks: row blocks first; if there are too few rows (e.g. m = 1), split
    // the columns too.
    let rows = block_rows(m, MR, threads);
    let row_blocks = m.div_ceil(rows);
    let want = 4 * threads;
    let col_groups = want.div_ceil(row_blocks).min(panels_n).max(1);
    let panels_per_group = panels_n.div_ceil(col_groups);
    let col_groups = panels_n.div_ceil(panels_per_group);

    let tiles: Vec<(usize, usize, Vec<u64>)> = (0..row_blocks * col_groups)
        .into_par_iter()
        .map(|t| {
            let (rb, cg) = (t / col_groups, t % col_groups);
            let i0 = rb * rows;
            let h = rows.min(m - i0);
            let p0 = cg * panels_per_group;
            let p1 = (p0 + panels_per_group).min(panels_n);
            let j0 = p0 * NR;
            let w = (p1 * NR).min(n) - j0;
            let apack = pack_a::<MR>(a, k, i0, h);
            let mut c = vec![0u64; h * w];
            let mut tile = [[0u64; NR]; MR];
            for kb in (0..k).step_by(KC) {
                let kc = KC.min(k - kb);
                for jp in p0..p1 {
                    let bpan = &bpack[jp * k * NR + kb * NR..][..kc * NR];
                    let jc = jp * NR - j0;
                    let cw = NR.min(w - jc);
                    for ip in 0..h.div_ceil(MR) {
                        let apan = &apack[ip * k * MR + kb * MR..][..kc * MR];
                        // SAFETY: the dispatcher only passes a SIMD kernel
                        // after detecting its CPU feature.
                        unsafe { kernel(kc, apan, bpan, &mut tile) };
                        let ch = MR.min(h - ip * MR);
                        for (ii, trow) in tile.iter().enumerate().take(ch) {
                            let crow = &mut c[(ip * MR + ii) * w + jc..][..cw];
                            for (cv, tv) in crow.iter_mut().zip(trow) {
                                *cv = cv.wrapping_add(*tv);
                            }
                        }
                    }
                }
            }
            (i0, j0, c)
        })
        .collect();

    let mut c = vec![0u64; m * n];
    for (i0, j0, tile) in tiles {
        let w = tile.len() / rows.min(m - i0);
        for (r, src) in tile.chunks_exact(w).enumerate() {
            c[(i0 + r) * n + j0..][..w].copy_from_slice(src);
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    /// splitmix64, so the tests need no RNG crate.
    fn random(len: usize, seed: u64) -> Vec<u64> {
        let mut s = seed;
        (0..len)
            .map(|_| {
                s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = s;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^ (z >> 31)
            })
            .collect()
    }

    fn transpose(b: &[u64], k: usize, n: usize) -> Vec<u64> {
        let mut t = vec![0; k * n];
        for p in 0..k {
            for j in 0..n {
                t[j * k + p] = b[p * n + j];
            }
        }
        t
    }

    const SHAPES: &[(usize, usize, usize)] = &[
        (1, 1, 1),
        (1, 37, 53),
        (53, 37, 1),
        (1, 300, 1),
        (7, 3, 5),
        (9, 17, 33),
        (17, 259, 31),
        (33, 513, 15),
        (65, 300, 97),
    ];

    fn all_kernels() -> Vec<Kernel> {
        let mut ks = vec![Kernel::Portable];
        match Kernel::detect() {
            Kernel::Avx512 => ks.extend([Kernel::Avx2, Kernel::Avx512]),
            Kernel::Avx2 => ks.push(Kernel::Avx2),
            Kernel::Portable => {}
        }
        ks
    }

    #[test]
    fn matches_naive_on_odd_shapes_with_wrapping() {
        for (s, &(m, k, n)) in SHAPES.iter().enumerate() {
            let a = random(m * k, 2 * s as u64);
            let b = random(k * n, 2 * s as u64 + 1);
            let want = matmul_naive(&a, &b, m, k, n);
            assert_eq!(matmul(&a, &b, m, k, n), want, "matmul {m}x{k}x{n}");
            let bt = transpose(&b, k, n);
            assert_eq!(matmul_bt(&a, &bt, m, k, n), want, "matmul_bt {m}x{k}x{n}");
            for kern in all_kernels() {
                assert_eq!(
                    matmul_kernel(kern, &a, &b, m, k, n, false),
                    want,
                    "{kern:?}"
                );
                assert_eq!(
                    matmul_kernel(kern, &a, &bt, m, k, n, true),
                    want,
                    "{kern:?} bt"
                );
            }
        }
    }

    #[test]
    fn wrapping_is_exercised() {
        // (2^63 + 1) * 2 + (2^64 - 1) * 3 = 2 + (-3) = -1 mod 2^64.
        let a = [(1u64 << 63) + 1, u64::MAX];
        let b = [2u64, 3];
        assert_eq!(matmul(&a, &b, 1, 2, 1), vec![u64::MAX]);
        assert_eq!(matmul_bt(&a, &b, 1, 2, 1), vec![u64::MAX]);
    }

    #[test]
    fn empty_dimensions() {
        assert_eq!(matmul(&[], &[], 0, 3, 0), Vec::<u64>::new());
        assert_eq!(matmul(&[], &[], 2, 0, 3), vec![0; 6]);
        assert_eq!(matmul_bt(&[], &[], 2, 0, 3), vec![0; 6]);
    }

    #[test]
    fn single_thread_pool_gives_same_result() {
        let (m, k, n) = (41, 130, 70);
        let a = random(m * k, 7);
        let b = random(k * n, 8);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let one = pool.install(|| matmul(&a, &b, m, k, n));
        assert_eq!(one, matmul_naive(&a, &b, m, k, n));
    }

    #[test]
    fn sgemm_matches_naive() {
        let (m, k, n) = (13, 9, 11);
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 - 3.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 - 2.0).collect();
        let c = sgemm_f32(&a, &b, m, k, n);
        for i in 0..m {
            for j in 0..n {
                let want: f32 = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
                assert_eq!(c[i * n + j], want);
            }
        }
    }
}
