//! One cached hidden state of every image, `[M, N, d]`: in memory as f32 (the
//! safetensors cache), or as raw little-endian f32 or f16 rows, read into memory or
//! memory-mapped from disk, so a cache larger than RAM still trains: the kernel pages
//! in the rows a batch gathers.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use half::f16;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::st::HostTensor;

/// How a cached value is stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    /// Half the bytes; about 3 decimal digits, which the adapters' training tolerates
    /// (measured in `docs/results.md`).
    F16,
}

impl Precision {
    pub fn bytes(self) -> usize {
        match self {
            Precision::F32 => 4,
            Precision::F16 => 2,
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
        }
    }

    fn encode(self, v: &[f32], out: &mut Vec<u8>) {
        match self {
            Precision::F32 => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            Precision::F16 => v
                .iter()
                .for_each(|x| out.extend(f16::from_f32(*x).to_le_bytes())),
        }
    }

    fn decode(self, bytes: &[u8], out: &mut Vec<f32>) {
        match self {
            Precision::F32 => out.extend(
                bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            ),
            Precision::F16 => out.extend(
                bytes
                    .chunks_exact(2)
                    .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()),
            ),
        }
    }
}

enum Bytes {
    Owned(Vec<u8>),
    Mapped(memmap2::Mmap),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Owned(v) => v,
            Bytes::Mapped(m) => m,
        }
    }
}

enum Data {
    F32(HostTensor),
    Raw { bytes: Bytes, precision: Precision },
}

/// One hidden state of every image.
pub struct States {
    shape: [usize; 3],
    data: Data,
}

impl std::fmt::Debug for States {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = match &self.data {
            Data::F32(_) => "in memory, f32",
            Data::Raw {
                bytes: Bytes::Owned(_),
                precision,
            } => match precision {
                Precision::F32 => "raw in memory, f32",
                Precision::F16 => "raw in memory, f16",
            },
            Data::Raw { precision, .. } => match precision {
                Precision::F32 => "mapped from disk, f32",
                Precision::F16 => "mapped from disk, f16",
            },
        };
        write!(f, "States({:?}, {how})", self.shape)
    }
}

impl States {
    pub fn memory(t: HostTensor) -> Self {
        let shape = [t.shape[0], t.shape[1], t.shape[2]];
        States {
            shape,
            data: Data::F32(t),
        }
    }

    /// `[M, N, d]`.
    pub fn shape(&self) -> [usize; 3] {
        self.shape
    }

    /// Bytes held (in memory, or mapped).
    pub fn bytes(&self) -> usize {
        match &self.data {
            Data::F32(t) => t.data.len() * 4,
            Data::Raw { bytes, .. } => bytes.len(),
        }
    }

    /// Rows `idx`, in order, appended to `out` as f32.
    pub fn gather(&self, idx: &[usize], out: &mut Vec<f32>) {
        let row = self.shape[1] * self.shape[2];
        match &self.data {
            Data::F32(t) => {
                for &i in idx {
                    out.extend_from_slice(&t.data[i * row..(i + 1) * row]);
                }
            }
            Data::Raw { bytes, precision } => {
                let w = row * precision.bytes();
                for &i in idx {
                    precision.decode(&bytes[i * w..(i + 1) * w], out);
                }
            }
        }
    }

    /// The file of hidden state `layer` in a raw cache directory.
    fn path(dir: &Path, layer: usize, precision: Precision) -> PathBuf {
        dir.join(format!("hidden.{layer}.{}", precision.extension()))
    }

    /// Opens hidden state `layer` of a raw cache directory: mapped, or read into memory.
    pub fn open(
        dir: &Path,
        layer: usize,
        shape: [usize; 3],
        precision: Precision,
        mapped: bool,
    ) -> Result<Self> {
        let path = Self::path(dir, layer, precision);
        let want = shape.iter().product::<usize>() * precision.bytes();
        let file = File::open(&path).map_err(|e| TrainError::io(&path, e))?;
        let bytes = if mapped {
            // SAFETY: the cache's files are written whole under a temporary name and
            // renamed, never modified after; a file truncated behind our back is the
            // one way to fault, as with any mapped file.
            let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| TrainError::io(&path, e))?;
            Bytes::Mapped(map)
        } else {
            Bytes::Owned(std::fs::read(&path).map_err(|e| TrainError::io(&path, e))?)
        };
        if bytes.len() != want {
            return Err(TrainError::format(
                &path,
                format!("{} bytes, want {want} for {shape:?}", bytes.len()),
            ));
        }
        Ok(States {
            shape,
            data: Data::Raw { bytes, precision },
        })
    }
}

/// Writes every hidden state of a raw cache directory batch by batch, so that memory
/// holds one batch, not the cache.
pub struct Writer {
    files: Vec<(PathBuf, BufWriter<File>)>,
    precision: Precision,
    buf: Vec<u8>,
}

impl Writer {
    /// Files for states `layers` in `dir` (created).
    pub fn create(
        dir: &Path,
        layers: impl Iterator<Item = usize>,
        precision: Precision,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
        let files = layers
            .map(|l| {
                let p = States::path(dir, l, precision);
                let f = File::create(&p).map_err(|e| TrainError::io(&p, e))?;
                Ok((p, BufWriter::with_capacity(1 << 20, f)))
            })
            .collect::<Result<_>>()?;
        Ok(Writer {
            files,
            precision,
            buf: Vec::new(),
        })
    }

    /// Appends a batch of state `k` (the `k`-th of `layers`).
    pub fn append(&mut self, k: usize, values: &[f32]) -> Result<()> {
        self.buf.clear();
        self.precision.encode(values, &mut self.buf);
        let (p, w) = &mut self.files[k];
        w.write_all(&self.buf).map_err(|e| TrainError::io(p, e))
    }

    /// Flushes and syncs every file.
    pub fn finish(self) -> Result<()> {
        for (p, w) in self.files {
            let f = w
                .into_inner()
                .map_err(|e| TrainError::io(&p, e.into_error()))?;
            f.sync_all().map_err(|e| TrainError::io(&p, e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_rows_read_back_mapped_or_owned_in_either_precision() {
        let tmp = tempfile::tempdir().unwrap();
        let shape = [3, 2, 4];
        let data: Vec<f32> = (0..24).map(|i| (i as f32 - 11.5) * 0.37).collect();
        for precision in [Precision::F32, Precision::F16] {
            let dir = tmp.path().join(precision.extension());
            let mut w = Writer::create(&dir, [5].into_iter(), precision).unwrap();
            w.append(0, &data[..8]).unwrap();
            w.append(0, &data[8..]).unwrap();
            w.finish().unwrap();
            for mapped in [false, true] {
                let s = States::open(&dir, 5, shape, precision, mapped).unwrap();
                assert_eq!(s.bytes(), 24 * precision.bytes());
                let mut out = Vec::new();
                s.gather(&[2, 0], &mut out);
                let want: Vec<f32> = data[16..24].iter().chain(&data[..8]).copied().collect();
                for (a, b) in out.iter().zip(&want) {
                    // f16 keeps 11 significant bits.
                    let tol = if precision == Precision::F16 {
                        2e-3 * b.abs().max(1.0)
                    } else {
                        0.0
                    };
                    assert!((a - b).abs() <= tol, "{a} vs {b}");
                }
            }
            // A file of the wrong length is refused, naming it.
            let e = States::open(&dir, 5, [4, 2, 4], precision, true).unwrap_err();
            assert!(e.to_string().contains("hidden.5"), "{e}");
        }
    }
}
