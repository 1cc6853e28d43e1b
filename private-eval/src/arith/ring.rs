//! Element-wise helpers on ring vectors (`Z_2^64`, wrapping).

pub const MSB: u64 = 1 << 63;
pub const LOW63: u64 = MSB - 1;

pub fn add(a: &[u64], b: &[u64]) -> Vec<u64> {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| x.wrapping_add(*y)).collect()
}

pub fn sub(a: &[u64], b: &[u64]) -> Vec<u64> {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| x.wrapping_sub(*y)).collect()
}

pub fn add_assign(a: &mut [u64], b: &[u64]) {
    assert_eq!(a.len(), b.len());
    a.iter_mut()
        .zip(b)
        .for_each(|(x, y)| *x = x.wrapping_add(*y));
}

pub fn scale(a: &[u64], c: u64) -> Vec<u64> {
    a.iter().map(|x| x.wrapping_mul(c)).collect()
}

/// Element-wise product of `a` (`rows x a_cols`) and `b` (`rows x b_cols`), where a
/// side with one column is broadcast across the other's columns.
pub fn mul_bcast(a: &[u64], a_cols: usize, b: &[u64], b_cols: usize, rows: usize) -> Vec<u64> {
    let cols = a_cols.max(b_cols);
    assert!(a_cols == cols || a_cols == 1);
    assert!(b_cols == cols || b_cols == 1);
    assert_eq!(a.len(), rows * a_cols);
    assert_eq!(b.len(), rows * b_cols);
    let mut out = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        for c in 0..cols {
            let x = a[r * a_cols + if a_cols == 1 { 0 } else { c }];
            let y = b[r * b_cols + if b_cols == 1 { 0 } else { c }];
            out.push(x.wrapping_mul(y));
        }
    }
    out
}

/// Sums each row of a `rows x cols` matrix.
pub fn row_sums(a: &[u64], cols: usize) -> Vec<u64> {
    a.chunks(cols)
        .map(|r| r.iter().fold(0u64, |s, v| s.wrapping_add(*v)))
        .collect()
}

/// Rows `0..1` or all rows of a row-major matrix.
pub fn first_row(a: &[u64], cols: usize) -> Vec<u64> {
    a[..cols].to_vec()
}
