//! Hidden-state files: the client's input when it ran the backbone itself.
//! A safetensors file with `hidden.{i}` (F32, `[N, d]` or `[1, N, d]`) for the states
//! entering layers `L-s .. L-1` and the last layer's output (`i = s`).

use std::collections::HashMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use crate::arith::tensor::Mat;

pub fn load(path: &Path, count: usize) -> Result<Vec<Mat>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| format!("{}: not a safetensors file: {e}", path.display()))?;
    (0..count)
        .map(|i| {
            let name = format!("hidden.{i}");
            let t = st.tensor(&name).map_err(|_| {
                format!(
                    "{}: tensor `{name}` is missing (need hidden.0..hidden.{})",
                    path.display(),
                    count - 1
                )
            })?;
            if t.dtype() != Dtype::F32 {
                return Err(format!(
                    "{}: `{name}` has dtype {:?}, expected F32",
                    path.display(),
                    t.dtype()
                ));
            }
            let shape = t.shape();
            let (n, d) = match shape {
                [n, d] | [1, n, d] => (*n, *d),
                _ => {
                    return Err(format!(
                        "{}: `{name}` has shape {shape:?}, expected [N, d] or [1, N, d]",
                        path.display()
                    ))
                }
            };
            let data = t
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64)
                .collect();
            Ok(Mat::new(n, d, data))
        })
        .collect()
}

pub fn save(path: &Path, hidden: &[Mat]) -> Result<(), String> {
    let tensors = hidden
        .iter()
        .enumerate()
        .map(|(i, m)| {
            (
                format!("hidden.{i}"),
                vec![m.rows, m.cols],
                m.data.iter().map(|&v| v as f32).collect(),
            )
        })
        .collect();
    let out = crate::model::f32_safetensors(tensors, HashMap::new());
    std::fs::write(path, out).map_err(|e| format!("{}: {e}", path.display()))
}

/// Random hidden states with the spread of a ViT's residual stream (unit scale).
pub fn random(count: usize, tokens: usize, dim: usize, seed: u64) -> Vec<Mat> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..count)
        .map(|_| {
            Mat::new(
                tokens,
                dim,
                (0..tokens * dim)
                    .map(|_| rng.random_range(-1.5..1.5))
                    .collect(),
            )
        })
        .collect()
}
