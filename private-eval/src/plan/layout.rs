//! Where a wire's values sit: row selections, the per-head operands of a product and
//! their reassembly, row-major grids. Shared by the executor (on shares) and the
//! plaintext interpreter (on f64), so neither imports the other.

use crate::arith::tensor::Mat;
use crate::plan::*;

/// Rows `rows` of `m`.
pub fn select_rows(m: &Mat, rows: Rows) -> Mat {
    match rows {
        Rows::All => m.clone(),
        Rows::Cls => m.rows_range(0, 1),
    }
}

/// Head-wise operands of a `HeadMatMul`: `(A_i, B_i)` with `A_i B_i` the i-th product.
pub fn head_operands<T: Clone>(
    kind: HeadProduct,
    heads: usize,
    a: &Grid<T>,
    b: &Grid<T>,
) -> Vec<(Grid<T>, Grid<T>)> {
    let dh = b.cols / heads;
    (0..heads)
        .map(|i| match kind {
            HeadProduct::Scores => (
                a.cols_range(i * dh, (i + 1) * dh),
                b.cols_range(i * dh, (i + 1) * dh).transpose(),
            ),
            HeadProduct::Mix => {
                let rq = a.rows / heads;
                (
                    a.rows_range(i * rq, (i + 1) * rq),
                    b.cols_range(i * dh, (i + 1) * dh),
                )
            }
        })
        .collect()
}

/// Assembles the head-wise products into the step's output.
pub fn head_assemble<T: Clone + Default>(kind: HeadProduct, parts: Vec<Grid<T>>) -> Grid<T> {
    match kind {
        HeadProduct::Scores => {
            let cols = parts[0].cols;
            let rows = parts.iter().map(|p| p.rows).sum();
            Grid {
                rows,
                cols,
                data: parts.into_iter().flat_map(|p| p.data).collect(),
            }
        }
        HeadProduct::Mix => {
            let rows = parts[0].rows;
            let dh = parts[0].cols;
            let cols = dh * parts.len();
            let mut data = vec![T::default(); rows * cols];
            for (i, p) in parts.iter().enumerate() {
                for r in 0..rows {
                    data[r * cols + i * dh..r * cols + (i + 1) * dh]
                        .clone_from_slice(&p.data[r * dh..(r + 1) * dh]);
                }
            }
            Grid { rows, cols, data }
        }
    }
}

/// A generic row-major grid, for index plumbing shared by plaintext and shares.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid<T> {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<T>,
}

impl<T: Clone> Grid<T> {
    pub fn rows_range(&self, from: usize, to: usize) -> Grid<T> {
        Grid {
            rows: to - from,
            cols: self.cols,
            data: self.data[from * self.cols..to * self.cols].to_vec(),
        }
    }
    pub fn cols_range(&self, from: usize, to: usize) -> Grid<T> {
        let mut data = Vec::with_capacity(self.rows * (to - from));
        for r in 0..self.rows {
            data.extend_from_slice(&self.data[r * self.cols + from..r * self.cols + to]);
        }
        Grid {
            rows: self.rows,
            cols: to - from,
            data,
        }
    }
    pub fn transpose(&self) -> Grid<T> {
        let mut data = Vec::with_capacity(self.data.len());
        for c in 0..self.cols {
            for r in 0..self.rows {
                data.push(self.data[r * self.cols + c].clone());
            }
        }
        Grid {
            rows: self.cols,
            cols: self.rows,
            data,
        }
    }
}
