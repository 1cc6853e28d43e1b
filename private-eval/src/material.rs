//! Dealer material: the correlated randomness each step of a plan consumes, one party's
//! half, bound to a session and a plan digest.
//!
//! A half travels seeded: a 128-bit seed the party expands with AES-CTR into everything
//! random in its half (input masks, triple shares `a`, `b`, the client's shares of
//! products, DCF root seeds, masking bits), followed by the corrections only the dealer
//! can compute (the server's shares of products, DCF correction words for both). So a
//! Beaver triple costs one vector (`c` for the server) instead of six, and an exact
//! truncation 2 bytes instead of 32. [`draw`] is the one place that says what a half
//! derives from its seed, and in which order; [`corrections`] lists what travels.
//! Lengths come from the plan, so a malformed or mismatched stream is an error.

use crate::dcf::{Bit, Cws, DcfKey, Group, Pair};
use crate::plan::{CmpWidth, SecurePlan, Step};
use crate::prg::Prg;

/// One party's share of a Beaver triple `c = a * b` (matrix or element-wise).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Triple {
    pub a: Vec<u64>,
    pub b: Vec<u64>,
    pub c: Vec<u64>,
}

/// ReLU material ([`crate::exec::relu`]): shares of the input mask `r`, an XOR share of
/// the masking bit `rho' = rho xor msb(r)`, arithmetic shares of `rho` and of `rho * r`,
/// and a DCF key for `x < r mod 2^(bits-1)` with one-bit output.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReluMat {
    pub bits: u32,
    pub r: Vec<u64>,
    pub rho: Vec<bool>,
    pub rho_a: Vec<u64>,
    pub rho_r: Vec<u64>,
    pub keys: Vec<DcfKey<Bit>>,
}

/// Material for one-round comparisons against several thresholds (LayerNorm, splines,
/// max): shares of `r`, of `b = msb(r')` and of `b * r`, and a DCF key for
/// `x < r' mod 2^(m-1)` with payload `((1 - 2b), (1 - 2b) r)`, where `r'` is `r` without
/// its `width.shift` low bits, as an `m = width.bits - width.shift`-bit value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CmpMat {
    pub width: CmpWidth,
    pub r: Vec<u64>,
    pub b: Vec<u64>,
    pub br: Vec<u64>,
    pub keys: Vec<DcfKey<Pair>>,
}

/// Material for exact truncation ([`crate::trunc`]): this party's bit mask (`alpha`
/// or `beta`) and share of `alpha * beta`, all mod `2^f`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TruncMat {
    pub mask: Vec<u64>,
    pub gamma: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StepMat {
    /// Steps without material, and the server's side of an opening.
    Nothing,
    /// Client's mask for an opening.
    Mask(Vec<u64>),
    /// Shares of `A_open * B_weight` for each private term, in term order.
    Linear(Vec<Vec<u64>>),
    /// One triple per head.
    Beaver(Vec<Triple>),
    Relu(ReluMat),
    /// A square pair `(a, a^2)` (`b` unused).
    Square(Triple),
    /// Comparison material, one key per value (evaluated at every threshold).
    Spline(CmpMat),
    /// Comparison material for each level of a row maximum's tree.
    RowMax(Vec<CmpMat>),
    /// Square triple (`b` unused), comparison material, the multiplication triples,
    /// then one truncation per internal truncation (none under local truncation).
    LayerNorm {
        square: Triple,
        cmp: CmpMat,
        mults: Vec<Triple>,
        truncs: Vec<TruncMat>,
    },
    Truncate(TruncMat),
}

/// One party's material for one session, expanded.
#[derive(Debug, Clone, PartialEq)]
pub struct Material {
    pub session: u64,
    /// Random id shared by the two halves of one generation: the parties compare it
    /// before the online phase, so halves of different generations never mix.
    pub pair: u64,
    pub plan_digest: u64,
    pub party: u8,
    /// What this half's random parts were drawn from.
    pub seed: u128,
    pub steps: Vec<StepMat>,
}

#[derive(Debug, thiserror::Error)]
#[error("malformed dealer material: {0}")]
pub struct MaterialError(pub String);

fn low(v: u64, bits: u32) -> u64 {
    v & ((1u64 << bits) - 1)
}

fn bits_of(prg: &mut Prg, n: usize) -> Vec<bool> {
    let words = prg.gen(n.div_ceil(64));
    (0..n)
        .map(|i| (words[i / 64] >> (i % 64)) & 1 == 1)
        .collect()
}

/// Party 0 draws its share; party 1's is a correction (zeros until filled).
fn share_or_zero(prg: &mut Prg, party: u8, n: usize) -> Vec<u64> {
    if party == 0 {
        prg.gen(n)
    } else {
        vec![0; n]
    }
}

fn triple(prg: &mut Prg, party: u8, a: usize, b: usize, c: usize) -> Triple {
    Triple {
        a: prg.gen(a),
        b: prg.gen(b),
        c: share_or_zero(prg, party, c),
    }
}

fn keys<G: Group>(prg: &mut Prg, party: u8, n: usize, empty: &Cws<G>) -> Vec<DcfKey<G>> {
    (0..n)
        .map(|_| DcfKey {
            party,
            seed: prg.next_u128(),
            cws: empty.clone(),
        })
        .collect()
}

fn trunc(prg: &mut Prg, party: u8, n: usize, f: u32) -> TruncMat {
    let mask = prg.gen(n).into_iter().map(|v| low(v, f)).collect();
    let gamma = share_or_zero(prg, party, n)
        .into_iter()
        .map(|v| low(v, f))
        .collect();
    TruncMat { mask, gamma }
}

/// ReLU material for `n` values with its corrections zero.
pub fn draw_relu(prg: &mut Prg, party: u8, n: usize, bits: u32) -> ReluMat {
    ReluMat {
        bits,
        r: prg.gen(n),
        rho: bits_of(prg, n),
        rho_a: share_or_zero(prg, party, n),
        rho_r: share_or_zero(prg, party, n),
        keys: keys(prg, party, n, &Cws::empty()),
    }
}

/// Comparison material for `n` values with its corrections zero.
pub fn draw_cmp(prg: &mut Prg, party: u8, n: usize, width: CmpWidth) -> CmpMat {
    CmpMat {
        width,
        r: prg.gen(n),
        b: share_or_zero(prg, party, n),
        br: share_or_zero(prg, party, n),
        keys: keys(prg, party, n, &Cws::empty()),
    }
}

/// Party `party`'s material for `step` with every random part drawn from `prg` and
/// every correction zero: the dealer fills the corrections, a party reads them.
pub fn draw(plan: &SecurePlan, step: &Step, party: u8, prg: &mut Prg) -> StepMat {
    use crate::shapes::{
        head_shapes, layernorm_mults, layernorm_scales_output, layernorm_truncs, truncate_len,
    };
    let size = |w: usize| plan.wires[w].rows * plan.wires[w].cols;
    match step {
        Step::Open { open } => match party {
            0 => {
                let (r, c) = plan.opening_shape(*open);
                StepMat::Mask(prg.gen(r * c))
            }
            _ => StepMat::Nothing,
        },
        Step::Linear { terms, .. } => StepMat::Linear(
            crate::shapes::private_terms(plan, terms)
                .map(|n| share_or_zero(prg, party, n))
                .collect(),
        ),
        Step::HeadMatMul {
            a, b, heads, kind, ..
        } => {
            let (m, k, n) = head_shapes(plan, *a, *b, *heads, *kind);
            StepMat::Beaver(
                (0..*heads)
                    .map(|_| triple(prg, party, m * k, k * n, m * n))
                    .collect(),
            )
        }
        Step::Relu { x, bits, .. } => StepMat::Relu(draw_relu(prg, party, size(*x), *bits)),
        Step::Square { x, .. } => StepMat::Square(triple(prg, party, size(*x), 0, size(*x))),
        Step::Spline { x, bits, .. } => StepMat::Spline(draw_cmp(
            prg,
            party,
            size(*x),
            CmpWidth::spline(*bits, plan.frac_bits),
        )),
        Step::RowMax { x, bits, .. } => StepMat::RowMax(
            crate::shapes::rowmax_pairs(&plan.wires[*x])
                .map(|n| draw_cmp(prg, party, n, CmpWidth::exact(*bits)))
                .collect(),
        ),
        Step::LayerNorm { x, z, inv_sqrt, .. } => {
            let (rows, d, c) = plan.norm_shape(*x, *z);
            let sq = if inv_sqrt.squares { rows * d } else { 0 };
            let square = triple(prg, party, sq, 0, sq);
            let cmp = draw_cmp(prg, party, rows, CmpWidth::FULL);
            let n = layernorm_mults(inv_sqrt);
            let mults = (0..n)
                .map(|i| {
                    let cols = if layernorm_scales_output(inv_sqrt, i) {
                        c
                    } else {
                        1
                    };
                    triple(prg, party, rows, rows * cols, rows * cols)
                })
                .collect();
            let truncs = layernorm_truncs(plan, rows, c, inv_sqrt)
                .into_iter()
                .map(|n| trunc(prg, party, n, plan.frac_bits))
                .collect();
            StepMat::LayerNorm {
                square,
                cmp,
                mults,
                truncs,
            }
        }
        Step::Truncate { wires } => {
            StepMat::Truncate(trunc(prg, party, truncate_len(plan, wires), plan.frac_bits))
        }
        Step::Slice { .. } | Step::Shift { .. } | Step::Reveal { .. } => StepMat::Nothing,
    }
}

/// A correction field of a half, as it travels.
pub enum Correction<'a> {
    /// Full ring elements.
    Ring(&'a mut [u64]),
    /// Values mod `2^bits`, in `ceil(bits / 8)` bytes each.
    Low(&'a mut [u64], u32),
    BitKeys(&'a mut [DcfKey<Bit>], usize),
    PairKeys(&'a mut [DcfKey<Pair>], usize),
}

fn cmp_corrections<'a>(cmp: &'a mut CmpMat, server: bool, out: &mut Vec<Correction<'a>>) {
    if server {
        out.push(Correction::Ring(&mut cmp.b));
        out.push(Correction::Ring(&mut cmp.br));
    }
    out.push(Correction::PairKeys(&mut cmp.keys, cmp.width.domain()));
}

/// The fields of `m` that travel for `party`, in order.
pub fn corrections(m: &mut StepMat, party: u8, frac_bits: u32) -> Vec<Correction<'_>> {
    use Correction::*;
    let server = party == 1;
    let mut out = Vec::new();
    match m {
        StepMat::Nothing | StepMat::Mask(_) => {}
        StepMat::Linear(v) => {
            if server {
                out.extend(v.iter_mut().map(|x| Ring(x)));
            }
        }
        StepMat::Beaver(ts) => {
            if server {
                out.extend(ts.iter_mut().map(|t| Ring(&mut t.c)));
            }
        }
        StepMat::Square(t) => {
            if server {
                out.push(Ring(&mut t.c));
            }
        }
        StepMat::Relu(m) => {
            if server {
                out.push(Ring(&mut m.rho_a));
                out.push(Ring(&mut m.rho_r));
            }
            out.push(BitKeys(&mut m.keys, m.bits as usize - 1));
        }
        StepMat::Spline(cmp) => cmp_corrections(cmp, server, &mut out),
        StepMat::RowMax(levels) => {
            for cmp in levels {
                cmp_corrections(cmp, server, &mut out);
            }
        }
        StepMat::LayerNorm {
            square,
            cmp,
            mults,
            truncs,
        } => {
            if server {
                out.push(Ring(&mut square.c));
                out.push(Ring(&mut cmp.b));
                out.push(Ring(&mut cmp.br));
            }
            out.push(PairKeys(&mut cmp.keys, cmp.width.domain()));
            if server {
                out.extend(mults.iter_mut().map(|t| Ring(&mut t.c)));
                out.extend(truncs.iter_mut().map(|t| Low(&mut t.gamma, frac_bits)));
            }
        }
        StepMat::Truncate(t) => {
            if server {
                out.push(Low(&mut t.gamma, frac_bits));
            }
        }
    }
    out
}

/// Bytes a correction field takes on the wire.
pub fn correction_bytes(c: &Correction<'_>) -> usize {
    match c {
        Correction::Ring(v) => 8 * v.len(),
        Correction::Low(v, bits) => v.len() * bits.div_ceil(8) as usize,
        Correction::BitKeys(k, bits) => k.len() * Cws::<Bit>::bytes(*bits),
        Correction::PairKeys(k, bits) => k.len() * Cws::<Pair>::bytes(*bits),
    }
}

fn write(c: &Correction<'_>, out: &mut Vec<u8>) {
    match c {
        Correction::Ring(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Correction::Low(v, bits) => {
            let w = bits.div_ceil(8) as usize;
            v.iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes()[..w]));
        }
        Correction::BitKeys(k, _) => k.iter().for_each(|k| k.cws.write(out)),
        Correction::PairKeys(k, _) => k.iter().for_each(|k| k.cws.write(out)),
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], MaterialError> {
        if self.0.len() < n {
            return Err(MaterialError(format!(
                "truncated: {n} bytes wanted, {} left",
                self.0.len()
            )));
        }
        let (h, t) = self.0.split_at(n);
        self.0 = t;
        Ok(h)
    }
    fn u64(&mut self) -> Result<u64, MaterialError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn keys<G: Group>(&mut self, keys: &mut [DcfKey<G>], bits: usize) -> Result<(), MaterialError> {
        for k in keys {
            let (cws, rest) = Cws::read(self.0, bits).map_err(MaterialError)?;
            k.cws = cws;
            self.0 = rest;
        }
        Ok(())
    }
    fn read(&mut self, c: Correction<'_>) -> Result<(), MaterialError> {
        match c {
            Correction::Ring(v) => {
                let b = self.take(8 * v.len())?;
                for (x, c) in v.iter_mut().zip(b.chunks_exact(8)) {
                    *x = u64::from_le_bytes(c.try_into().unwrap());
                }
            }
            Correction::Low(v, bits) => {
                let w = bits.div_ceil(8) as usize;
                let b = self.take(w * v.len())?;
                for (x, c) in v.iter_mut().zip(b.chunks_exact(w)) {
                    let mut buf = [0u8; 8];
                    buf[..w].copy_from_slice(c);
                    *x = low(u64::from_le_bytes(buf), bits);
                }
            }
            Correction::BitKeys(k, bits) => self.keys(k, bits)?,
            Correction::PairKeys(k, bits) => self.keys(k, bits)?,
        }
        Ok(())
    }
}

/// Header: session, pair id, plan digest, party, then the 16-byte seed.
pub const HEADER_BYTES: usize = 4 * 8 + 16;

impl Material {
    /// The seeded encoding: the header, then the corrections of every step. The random
    /// parts must have been drawn from `self.seed` by [`draw`] (the dealer's way).
    pub fn into_bytes(mut self, plan: &SecurePlan) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES);
        for v in [self.session, self.pair, self.plan_digest, self.party as u64] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.seed.to_le_bytes());
        for s in &mut self.steps {
            for c in corrections(s, self.party, plan.frac_bits) {
                write(&c, &mut out);
            }
        }
        out
    }

    /// [`Material::into_bytes`] of a copy.
    pub fn to_bytes(&self, plan: &SecurePlan) -> Vec<u8> {
        self.clone().into_bytes(plan)
    }

    /// Expands a seeded half of a session of `plan`: redraws its random parts and
    /// reads the corrections.
    pub fn from_bytes(plan: &SecurePlan, bytes: &[u8]) -> Result<Self, MaterialError> {
        let mut r = Reader(bytes);
        let session = r.u64()?;
        let pair = r.u64()?;
        let plan_digest = r.u64()?;
        let party = r.u64()?;
        if party > 1 {
            return Err(MaterialError(format!("party {party}")));
        }
        if plan_digest != plan.digest() {
            return Err(MaterialError(
                "material for another plan (digest differs)".into(),
            ));
        }
        let seed = u128::from_le_bytes(r.take(16)?.try_into().unwrap());
        let party = party as u8;
        let mut prg = Prg::new(seed);
        let mut steps = Vec::with_capacity(plan.steps.len());
        for step in &plan.steps {
            let mut m = draw(plan, step, party, &mut prg);
            for c in corrections(&mut m, party, plan.frac_bits) {
                r.read(c)?;
            }
            steps.push(m);
        }
        if !r.0.is_empty() {
            return Err(MaterialError(format!("{} trailing bytes", r.0.len())));
        }
        Ok(Self {
            session,
            pair,
            plan_digest,
            party,
            seed,
            steps,
        })
    }
}
