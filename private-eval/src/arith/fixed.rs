//! Fixed-point encoding in the ring `Z_2^64`: a real `x` is `round(x * 2^f) mod 2^64`.
//! All arithmetic is wrapping; products carry `2f` fractional bits until truncated.

use crate::party::Party;

/// Fixed-point codec with `frac_bits` fractional bits (default 16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Fixed {
    pub frac_bits: u32,
}

impl Default for Fixed {
    fn default() -> Self {
        Self { frac_bits: 16 }
    }
}

impl Fixed {
    pub fn new(frac_bits: u32) -> Self {
        assert!(
            frac_bits < 31,
            "fractional bits must leave room for products"
        );
        Self { frac_bits }
    }

    pub fn scale(&self) -> f64 {
        (1u64 << self.frac_bits) as f64
    }

    /// Encodes at `f` fractional bits. Values beyond the ring saturate (they cannot occur
    /// for finite model weights; the caller validates inputs are finite).
    pub fn encode(&self, x: f64) -> u64 {
        encode_at(x, self.frac_bits)
    }

    /// Encodes at `2f` fractional bits: the scale of a product before truncation.
    pub fn encode2(&self, x: f64) -> u64 {
        encode_at(x, 2 * self.frac_bits)
    }

    pub fn decode(&self, v: u64) -> f64 {
        v as i64 as f64 / self.scale()
    }

    pub fn encode_all(&self, xs: &[f64]) -> Vec<u64> {
        xs.iter().map(|&x| self.encode(x)).collect()
    }

    pub fn decode_all(&self, vs: &[u64]) -> Vec<f64> {
        vs.iter().map(|&v| self.decode(v)).collect()
    }

    /// Local (SecureML) truncation of one party's share by `f` bits. The reconstructed
    /// value is off by at most 1 ulp, except with probability about `|x| / 2^63`
    /// (a wrap of the shares), where `x` is the value at `2f` bits.
    pub fn truncate_share(&self, share: u64, party: Party) -> u64 {
        truncate_share_by(share, party, self.frac_bits)
    }

    pub fn truncate_shares(&self, shares: &mut [u64], party: Party) {
        for s in shares {
            *s = self.truncate_share(*s, party);
        }
    }
}

/// Encodes at `bits` fractional bits.
pub fn encode_at(x: f64, bits: u32) -> u64 {
    let v = (x * (1u64 << bits) as f64).round();
    (v.clamp(i64::MIN as f64, i64::MAX as f64) as i64) as u64
}

/// Party 0 shifts its share arithmetically; party 1 negates, shifts, negates back, so the
/// two rounding errors cancel to within one unit.
pub fn truncate_share_by(share: u64, party: Party, bits: u32) -> u64 {
    if party == Party::Client {
        ((share as i64) >> bits) as u64
    } else {
        (((share.wrapping_neg()) as i64) >> bits).wrapping_neg() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip() {
        let fx = Fixed::default();
        for x in [0.0, 1.0, -1.0, 3.25, -1234.5, 1.0 / 65536.0] {
            assert_eq!(fx.decode(fx.encode(x)), x);
        }
        assert!((fx.decode(fx.encode(0.1)) - 0.1).abs() <= 0.5 / 65536.0);
    }

    #[test]
    fn local_truncation_within_one_ulp() {
        let fx = Fixed::default();
        let mut state = 0x9e3779b97f4a7c15u64;
        for i in 0..10_000 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let x = ((i as f64) - 5000.0) * 0.37;
            let v = fx.encode2(x);
            let s0 = state;
            let s1 = v.wrapping_sub(s0);
            let t = fx
                .truncate_share(s0, Party::Client)
                .wrapping_add(fx.truncate_share(s1, Party::Server));
            assert!((fx.decode(t) - x).abs() <= 2.0 / 65536.0, "x={x}");
        }
    }
}
