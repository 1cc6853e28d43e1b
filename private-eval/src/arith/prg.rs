//! Seeded pseudorandom generators: AES-128 in counter mode (the `aes` crate uses AES-NI
//! where the CPU has it), and the fixed-key AES expansion that DCF keys are built on.

use aes::cipher::{generic_array::GenericArray, BlockEncrypt, KeyInit};
use aes::Aes128;

/// AES-128-CTR stream of `u64`s from a 128-bit seed.
pub struct Prg {
    cipher: Aes128,
    counter: u128,
    buf: [u64; 16],
    pos: usize,
}

impl Prg {
    pub fn new(seed: u128) -> Self {
        Self {
            cipher: Aes128::new(&seed.to_le_bytes().into()),
            counter: 0,
            buf: [0; 16],
            pos: 16,
        }
    }

    /// A fresh seed from the operating system's randomness.
    pub fn os_seed() -> u128 {
        rand::random()
    }

    fn refill(&mut self) {
        let mut blocks = [GenericArray::default(); 8];
        for b in blocks.iter_mut() {
            *b = self.counter.to_le_bytes().into();
            self.counter = self.counter.wrapping_add(1);
        }
        self.cipher.encrypt_blocks(&mut blocks);
        for (i, b) in blocks.iter().enumerate() {
            let v = u128::from_le_bytes((*b).into());
            self.buf[2 * i] = v as u64;
            self.buf[2 * i + 1] = (v >> 64) as u64;
        }
        self.pos = 0;
    }

    pub fn next_u64(&mut self) -> u64 {
        if self.pos == self.buf.len() {
            self.refill();
        }
        self.pos += 1;
        self.buf[self.pos - 1]
    }

    pub fn next_u128(&mut self) -> u128 {
        self.next_u64() as u128 | ((self.next_u64() as u128) << 64)
    }

    pub fn gen(&mut self, n: usize) -> Vec<u64> {
        (0..n).map(|_| self.next_u64()).collect()
    }
}

/// Fixed-key AES in Matyas-Meyer-Oseas mode, `h(x) = AES_k(x) xor x`: the
/// correlation-robust hash that expands DCF seeds (as in Orca and SIGMA).
pub struct FixedKeyAes {
    cipher: Aes128,
}

impl Default for FixedKeyAes {
    fn default() -> Self {
        // A public constant: the security of the expansion does not rest on this key.
        Self {
            cipher: Aes128::new(
                &0x43727970_74504546_54444346_4b657930u128
                    .to_le_bytes()
                    .into(),
            ),
        }
    }
}

impl FixedKeyAes {
    /// Hashes every block in place: `x -> AES_k(x) xor x`.
    pub fn hash_in_place(&self, xs: &mut [u128]) {
        let mut blocks: Vec<_> = xs
            .iter()
            .map(|x| GenericArray::from(x.to_le_bytes()))
            .collect();
        self.cipher.encrypt_blocks(&mut blocks);
        for (x, b) in xs.iter_mut().zip(&blocks) {
            *x ^= u128::from_le_bytes((*b).into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_streams_differ() {
        let a = Prg::new(7).gen(100);
        assert_eq!(a, Prg::new(7).gen(100));
        assert_ne!(a, Prg::new(8).gen(100));
        // Crude balance check: about half of the bits are set.
        let ones: u32 = Prg::new(1).gen(1000).iter().map(|v| v.count_ones()).sum();
        assert!((30_000..34_000).contains(&ones), "{ones}");
    }
}
