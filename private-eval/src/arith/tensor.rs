//! A minimal row-major f64 matrix for the plaintext side: weights, folding, reference.
//! A *symbolic* matrix has a shape and no values: lowering a spec without weights (to
//! price it) runs the very same folding code on shapes alone.

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Mat {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f64>,
}

impl Mat {
    pub fn new(rows: usize, cols: usize, data: Vec<f64>) -> Self {
        assert_eq!(
            data.len(),
            rows * cols,
            "matrix data does not match its shape"
        );
        Self { rows, cols, data }
    }

    /// A shape without values.
    pub fn symbolic(rows: usize, cols: usize) -> Self {
        Self {
            rows,
            cols,
            data: Vec::new(),
        }
    }

    pub fn is_symbolic(&self) -> bool {
        self.data.is_empty() && self.rows * self.cols > 0
    }

    pub fn zeros(rows: usize, cols: usize) -> Self {
        Self::new(rows, cols, vec![0.0; rows * cols])
    }

    pub fn identity(n: usize) -> Self {
        let mut m = Self::zeros(n, n);
        for i in 0..n {
            m.data[i * n + i] = 1.0;
        }
        m
    }

    pub fn diag(d: &[f64]) -> Self {
        let mut m = Self::zeros(d.len(), d.len());
        for (i, &v) in d.iter().enumerate() {
            m.data[i * d.len() + i] = v;
        }
        m
    }

    /// `I - 11^T / n`: subtracts each row's mean.
    pub fn centering(n: usize) -> Self {
        let mut m = Self::identity(n);
        for v in m.data.iter_mut() {
            *v -= 1.0 / n as f64;
        }
        m
    }

    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    pub fn rows_range(&self, from: usize, to: usize) -> Mat {
        if self.is_symbolic() {
            return Mat::symbolic(to - from, self.cols);
        }
        Mat::new(
            to - from,
            self.cols,
            self.data[from * self.cols..to * self.cols].to_vec(),
        )
    }

    pub fn cols_range(&self, from: usize, to: usize) -> Mat {
        if self.is_symbolic() {
            return Mat::symbolic(self.rows, to - from);
        }
        let mut out = Vec::with_capacity(self.rows * (to - from));
        for i in 0..self.rows {
            out.extend_from_slice(&self.row(i)[from..to]);
        }
        Mat::new(self.rows, to - from, out)
    }

    pub fn transpose(&self) -> Mat {
        if self.is_symbolic() {
            return Mat::symbolic(self.cols, self.rows);
        }
        let mut out = Mat::zeros(self.cols, self.rows);
        for i in 0..self.rows {
            for j in 0..self.cols {
                out.data[j * self.rows + i] = self.data[i * self.cols + j];
            }
        }
        out
    }

    pub fn matmul(&self, other: &Mat) -> Mat {
        assert_eq!(self.cols, other.rows, "matmul shape mismatch");
        if self.is_symbolic() || other.is_symbolic() {
            return Mat::symbolic(self.rows, other.cols);
        }
        let mut out = Mat::zeros(self.rows, other.cols);
        if self.rows == 0 || other.cols == 0 || self.cols == 0 {
            return out;
        }
        // SAFETY: the pointers and strides describe the row-major buffers checked above.
        unsafe {
            matrixmultiply::dgemm(
                self.rows,
                self.cols,
                other.cols,
                1.0,
                self.data.as_ptr(),
                self.cols as isize,
                1,
                other.data.as_ptr(),
                other.cols as isize,
                1,
                0.0,
                out.data.as_mut_ptr(),
                out.cols as isize,
                1,
            );
        }
        out
    }

    /// Zero-pads the rows of `self` so it acts on columns `from..` of a `width`-wide input.
    pub fn pad_rows(&self, from: usize, width: usize) -> Mat {
        if self.is_symbolic() {
            return Mat::symbolic(width, self.cols);
        }
        let mut out = Mat::zeros(width, self.cols);
        out.data[from * self.cols..(from + self.rows) * self.cols].copy_from_slice(&self.data);
        out
    }

    pub fn add(&self, other: &Mat) -> Mat {
        assert_eq!((self.rows, self.cols), (other.rows, other.cols));
        self.zip(other, |a, b| a + b)
    }

    pub fn zip(&self, other: &Mat, f: impl Fn(f64, f64) -> f64) -> Mat {
        if self.is_symbolic() || other.is_symbolic() {
            return Mat::symbolic(self.rows, self.cols);
        }
        Mat::new(
            self.rows,
            self.cols,
            self.data
                .iter()
                .zip(&other.data)
                .map(|(&a, &b)| f(a, b))
                .collect(),
        )
    }

    pub fn map(&self, f: impl Fn(f64) -> f64) -> Mat {
        if self.is_symbolic() {
            return self.clone();
        }
        Mat::new(
            self.rows,
            self.cols,
            self.data.iter().map(|&a| f(a)).collect(),
        )
    }

    /// Adds `b` to every row.
    pub fn add_row(&self, b: &[f64]) -> Mat {
        assert_eq!(b.len(), self.cols);
        let mut out = self.clone();
        for r in out.data.chunks_mut(self.cols) {
            for (v, &bb) in r.iter_mut().zip(b) {
                *v += bb;
            }
        }
        out
    }

    /// `self * other^T + b`: PyTorch's linear layer with `other` = weight `[out, in]`.
    pub fn linear(&self, weight: &Mat, bias: Option<&[f64]>) -> Mat {
        let y = self.matmul(&weight.transpose());
        match bias {
            Some(b) => y.add_row(b),
            None => y,
        }
    }

    pub fn max_abs_diff(&self, other: &Mat) -> f64 {
        max_abs_diff(&self.data, &other.data)
    }
}

/// Largest `|a_i - b_i|` (0 for empty input): how far secure logits stray from a
/// reference's.
pub fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}
