//! Affine forms over wires: what lowering keeps symbolic and folds offline until a
//! nonlinear step needs a value.

use crate::arith::tensor::Mat;
use crate::plan::*;

#[derive(Debug, Clone)]
pub(super) enum Map {
    /// Public `coef * x[:, from..to]`.
    Scalar { coef: f64, from: usize, to: usize },
    /// Server-private `x * M`, `M` spanning the wire's full width.
    Matrix(Mat),
}

#[derive(Debug, Clone)]
pub(super) struct FTerm {
    pub(super) wire: WireId,
    pub(super) rows: Rows,
    pub(super) map: Map,
}

/// An affine function of wires: `sum_t map_t(wire_t[rows_t]) + bias`; the bias is a
/// `1 x cols` row, `None` where no bias reaches the form (decided by structure, not by
/// value, so that lowering shapes alone gives the same plan).
#[derive(Debug, Clone)]
pub(super) struct Form {
    pub(super) rows: usize,
    pub(super) cols: usize,
    pub(super) terms: Vec<FTerm>,
    pub(super) bias: Option<Mat>,
}

/// A vector as a `1 x n` row; an empty vector is a symbolic one (a weightless model).
pub(super) fn row(v: &[f64], n: usize) -> Mat {
    if v.is_empty() {
        Mat::symbolic(1, n)
    } else {
        Mat::new(1, n, v.to_vec())
    }
}

/// `diag(v)`, symbolic for an empty `v`.
pub(super) fn diag(v: &[f64], n: usize) -> Mat {
    if v.is_empty() {
        Mat::symbolic(n, n)
    } else {
        Mat::diag(v)
    }
}

impl Form {
    pub(super) fn wire(w: &Wire, id: WireId, rows: Rows) -> Form {
        Form {
            rows: rows.count(w.rows),
            cols: w.cols,
            terms: vec![FTerm {
                wire: id,
                rows,
                map: Map::Scalar {
                    coef: 1.0,
                    from: 0,
                    to: w.cols,
                },
            }],
            bias: None,
        }
    }

    /// `self * m`, with `m` = `[cols, out]`.
    pub(super) fn right_mul(&self, m: &Mat, wires: &[Wire]) -> Form {
        assert_eq!(m.rows, self.cols, "form width mismatch");
        let terms = self
            .terms
            .iter()
            .map(|t| FTerm {
                wire: t.wire,
                rows: t.rows,
                map: Map::Matrix(match &t.map {
                    Map::Scalar { coef, from, .. } => {
                        m.map(|v| v * coef).pad_rows(*from, wires[t.wire].cols)
                    }
                    Map::Matrix(a) => a.matmul(m),
                }),
            })
            .collect();
        let bias = self.bias.as_ref().map(|b| b.matmul(m));
        Form {
            rows: self.rows,
            cols: m.cols,
            terms,
            bias,
        }
    }

    pub(super) fn plus_bias(mut self, b: Mat) -> Form {
        self.bias = Some(match self.bias {
            Some(a) => a.add(&b),
            None => b,
        });
        self
    }

    pub(super) fn scale(mut self, c: f64) -> Form {
        for t in self.terms.iter_mut() {
            match &mut t.map {
                Map::Scalar { coef, .. } => *coef *= c,
                Map::Matrix(m) => *m = m.map(|v| v * c),
            }
        }
        self.bias = self.bias.map(|b| b.map(|v| v * c));
        self
    }

    /// Public column slice `from..to`.
    pub(super) fn cols(&self, from: usize, to: usize) -> Form {
        let terms = self
            .terms
            .iter()
            .map(|t| FTerm {
                wire: t.wire,
                rows: t.rows,
                map: match &t.map {
                    Map::Scalar { coef, from: f, .. } => Map::Scalar {
                        coef: *coef,
                        from: f + from,
                        to: f + to,
                    },
                    Map::Matrix(m) => Map::Matrix(m.cols_range(from, to)),
                },
            })
            .collect();
        Form {
            rows: self.rows,
            cols: to - from,
            terms,
            bias: self.bias.as_ref().map(|b| b.cols_range(from, to)),
        }
    }

    /// Only the CLS row.
    pub(super) fn cls(&self) -> Form {
        let mut f = self.clone();
        f.rows = 1;
        f.terms.iter_mut().for_each(|t| t.rows = Rows::Cls);
        f
    }

    pub(super) fn add(&self, other: &Form) -> Form {
        assert_eq!(
            (self.rows, self.cols),
            (other.rows, other.cols),
            "form shape mismatch"
        );
        let mut terms = self.terms.clone();
        for t in &other.terms {
            let same = terms.iter_mut().find(|u| {
                u.wire == t.wire
                    && u.rows == t.rows
                    && match (&u.map, &t.map) {
                        (Map::Matrix(_), Map::Matrix(_)) => true,
                        (
                            Map::Scalar { from: a, to: b, .. },
                            Map::Scalar { from: c, to: d, .. },
                        ) => (a, b) == (c, d),
                        _ => false,
                    }
            });
            match same {
                Some(u) => match (&mut u.map, &t.map) {
                    (Map::Matrix(a), Map::Matrix(b)) => *a = a.add(b),
                    (Map::Scalar { coef: a, .. }, Map::Scalar { coef: b, .. }) => *a += b,
                    _ => unreachable!(),
                },
                None => terms.push(t.clone()),
            }
        }
        let bias = match (&self.bias, &other.bias) {
            (Some(a), Some(b)) => Some(a.add(b)),
            (a, b) => a.clone().or(b.clone()),
        };
        Form {
            rows: self.rows,
            cols: self.cols,
            terms,
            bias,
        }
    }
}
