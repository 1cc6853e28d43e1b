//! What each party holds once per model: the server its encoded weights and the masks
//! `B` it shares with the dealer, the client `E = W - B` for every masked weight
//! (private terms of a linear step read them).

use crate::arith::fixed::encode_at;
use crate::arith::prg::{FixedKeyAes, Prg};
use crate::arith::ring;
use crate::plan::shapes::{masked_weights, weight_bits};
use crate::plan::{PlanWeights, SecurePlan, WeightId};

/// The per-model weight masks `B_w`, derived from a seed the dealer and server share.
#[derive(Debug, Clone, Copy)]
pub struct ModelMasks {
    pub seed: u128,
}

impl ModelMasks {
    pub fn weight_mask(&self, w: WeightId, len: usize) -> Vec<u64> {
        let mut h = [self.seed ^ ((w as u128) << 1 | 1)];
        FixedKeyAes::default().hash_in_place(&mut h);
        Prg::new(h[0]).gen(len)
    }
}

/// What the server holds: encoded weights (`f` bits; biases at `2f`) and weight masks.
pub struct ServerKeys {
    pub(crate) w: Vec<Vec<u64>>,
    pub(crate) b: Vec<Option<Vec<u64>>>,
}

impl ServerKeys {
    pub fn new(plan: &SecurePlan, weights: &PlanWeights, masks: &ModelMasks) -> Self {
        let masked = masked_weights(plan);
        let w = weights
            .mats
            .iter()
            .zip(weight_bits(plan))
            .map(|(m, bits)| m.data.iter().map(|&v| encode_at(v, bits)).collect())
            .collect();
        let b = masked
            .iter()
            .enumerate()
            .map(|(i, &mk)| {
                mk.then(|| masks.weight_mask(i, plan.weights[i].rows * plan.weights[i].cols))
            })
            .collect();
        Self { w, b }
    }

    /// `E = W - B` for every masked weight, concatenated: the client's setup message.
    pub fn setup_message(&self) -> Vec<u64> {
        let mut out = Vec::new();
        for (w, b) in self.w.iter().zip(&self.b) {
            if let Some(b) = b {
                out.extend(ring::sub(w, b));
            }
        }
        out
    }
}

/// What the client holds after setup: `E = W - B` per masked weight.
pub struct ClientKeys {
    pub(crate) e: Vec<Option<Vec<u64>>>,
}

impl ClientKeys {
    pub fn setup_len(plan: &SecurePlan) -> usize {
        masked_weights(plan)
            .iter()
            .zip(&plan.weights)
            .filter(|(m, _)| **m)
            .map(|(_, s)| s.rows * s.cols)
            .sum()
    }

    pub fn from_message(plan: &SecurePlan, msg: &[u64]) -> Self {
        let mut at = 0;
        let e = masked_weights(plan)
            .iter()
            .zip(&plan.weights)
            .map(|(&m, s)| {
                m.then(|| {
                    let n = s.rows * s.cols;
                    at += n;
                    msg[at - n..at].to_vec()
                })
            })
            .collect();
        Self { e }
    }
}

/// Either party's keys.
pub enum Keys<'a> {
    Client(&'a ClientKeys),
    Server(&'a ServerKeys),
}
