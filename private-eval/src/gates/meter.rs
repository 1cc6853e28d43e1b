//! The work a gate does, as the cost model prices it: each gate states its operations
//! and frames in the executor's order (`Gate::meter`) and what the
//! dealer computes for it (`Gate::dealer_work`); the cost
//! model turns them into seconds with per-machine constants.

use crate::party::Party;
use crate::plan::CmpWidth;
use crate::protocols::compare::compare_walk_levels;
use crate::protocols::trunc::wire_bytes;

/// Operations of one party, and its frames (numbered within the step, in the order of
/// `Gate::messages`).
pub trait Meter {
    /// `n` element-wise ring operations.
    fn elem(&mut self, p: Party, n: f64);
    /// A ring matrix product `[m, k] x [k, n]`.
    fn matmul(&mut self, p: Party, m: usize, k: usize, n: usize);
    /// Encoding or decoding `bytes` of a frame.
    fn ser(&mut self, p: Party, bytes: u64);
    /// DCF walks of `keys` keys at `points` points each, `levels` tree levels per key.
    fn dcf(&mut self, p: Party, keys: usize, points: usize, levels: f64);
    /// ReLU's local work between its two exchanges on `n` values of `bits` bits.
    fn relu_local(&mut self, p: Party, n: usize, bits: u32);
    fn send(&mut self, p: Party, frame: usize);
    fn recv(&mut self, p: Party, frame: usize);

    /// ReLU of `n` values ([`crate::protocols::compare::relu`]): the two exchanges
    /// (frames 0-1, then 2-3) around its local work.
    fn relu(&mut self, n: usize, bits: u32) {
        for p in Party::BOTH {
            let i = p.index();
            self.send(p, i);
            self.recv(p, 1 - i);
            self.relu_local(p, n, bits);
            self.send(p, 2 + i);
            self.recv(p, 3 - i);
        }
    }

    /// A simultaneous exchange of `elems` ring elements per party in frames `frames`.
    fn exchange(&mut self, elems: usize, frames: [usize; 2]) {
        self.exchange_with(elems, 0, frames)
    }

    /// An exchange whose frames also carry `extra` bytes of another protocol.
    fn exchange_with(&mut self, elems: usize, extra: u64, frames: [usize; 2]) {
        let bytes = elems as u64 * 8 + extra;
        for p in Party::BOTH {
            self.elem(p, elems as f64); // x - mask
            self.ser(p, bytes);
            self.send(p, frames[p.index()]);
            self.recv(p, frames[1 - p.index()]);
            self.ser(p, bytes);
            self.elem(p, elems as f64); // mine + theirs
        }
    }

    /// An exact truncation of groups of `(values, shift)`
    /// ([`crate::protocols::trunc`]): top bits, one exchange of masked bits, the
    /// correction.
    fn truncate(&mut self, groups: &[(usize, u32)], frames: [usize; 2]) {
        let n: usize = groups.iter().map(|g| g.0).sum();
        let bytes = groups
            .iter()
            .map(|&(n, bits)| (n * wire_bytes(bits)) as u64)
            .sum();
        for p in Party::BOTH {
            self.elem(p, 3.0 * n as f64);
            self.ser(p, bytes);
            self.send(p, frames[p.index()]);
            self.recv(p, frames[1 - p.index()]);
            self.ser(p, bytes);
            self.elem(p, 4.0 * n as f64);
        }
    }

    /// Each party's Beaver matmuls of a head-wise product once it is opened (the
    /// client adds `e f`), and the assembly of the heads.
    fn head_products(&mut self, heads: usize, (m, k, n): (usize, usize, usize)) {
        for p in Party::BOTH {
            for _ in 0..heads {
                for _ in 0..(if p == Party::Client { 3 } else { 2 }) {
                    self.matmul(p, m, k, n);
                }
                self.elem(p, 5.0 * (m * n) as f64);
            }
            self.elem(p, (heads * m * n) as f64);
        }
    }

    /// A comparison of `values` values against the encoded `ts` on `width`
    /// ([`crate::protocols::compare::compare`]).
    fn compare(&mut self, values: usize, ts: &[u64], width: CmpWidth, frames: [usize; 2]) {
        self.compare_carrying(values, ts, width, None, 0, frames)
    }

    /// [`Meter::compare`] whose frames carry a truncation of `(values, shift)` and
    /// `rides` ring elements of another opening.
    fn compare_carrying(
        &mut self,
        values: usize,
        ts: &[u64],
        width: CmpWidth,
        carries: Option<(usize, u32)>,
        rides: usize,
        frames: [usize; 2],
    ) {
        let t = ts.len();
        let levels = compare_walk_levels(ts, width);
        let (n, shift) = carries.unwrap_or((0, 0));
        let extra = (n * wire_bytes(shift) + 8 * rides) as u64;
        for p in Party::BOTH {
            self.elem(p, values as f64 + 3.0 * n as f64);
        }
        self.exchange_with(values, extra, frames);
        for p in Party::BOTH {
            self.elem(p, 4.0 * n as f64);
        }
        for p in Party::BOTH {
            self.elem(p, (values * t) as f64);
            self.dcf(p, values, t, levels);
            self.elem(p, 8.0 * (values * t) as f64);
        }
    }
}

/// What the dealer computes for one session, summed over the steps.
#[derive(Debug, Clone, Copy, Default)]
pub struct DealerWork {
    /// PRG words drawn (both halves) and touched.
    pub words: f64,
    /// Ring multiply-adds of the products.
    pub ops: f64,
    /// Comparison key tree levels.
    pub key_levels: f64,
    /// ReLU key tree levels.
    pub relu_levels: f64,
}

impl DealerWork {
    /// Comparison keys for `n` values of `w`.
    pub fn keys(&mut self, n: usize, w: CmpWidth) {
        self.key_levels += (n * w.domain()) as f64;
    }
}
