//! Dealer material: the correlated randomness each step of a plan consumes, one party's
//! half, bound to a session and a plan digest.
//!
//! A half travels seeded: a 128-bit seed the party expands with AES-CTR into everything
//! random in its half (input masks, triple shares `a`, `b`, the client's shares of
//! products, DCF root seeds, masking bits), followed by the corrections only the dealer
//! can compute (the server's shares of products, DCF correction words for both). So a
//! Beaver triple costs one vector (`c` for the server) instead of six, and an exact
//! truncation 2 bytes instead of 32. Each gate's `draw` ([`crate::gates`]) says what a
//! half derives from its seed, and in which order; [`corrections`] lists what travels.
//! Lengths come from the plan, so a malformed or mismatched stream is an error.

use crate::arith::prg::Prg;
use crate::party::Party;
use crate::plan::SecurePlan;
use crate::protocols::correlations::low;
use crate::protocols::dcf::{Bit, Cws, DcfKey, Group, Pair};
use crate::protocols::fused::{Operand, PairMat, SquareMat};
use std::io::Read;

pub use crate::gates::StepMat;
pub use crate::protocols::correlations::{CmpMat, ReluMat, Triple};

/// One party's material for one session, expanded.
#[derive(Debug, Clone, PartialEq)]
pub struct Material {
    pub binding: Binding,
    /// What this half's random parts were drawn from.
    pub seed: u128,
    pub steps: Vec<StepMat>,
}

#[derive(Debug, thiserror::Error)]
#[error("malformed dealer material: {0}")]
pub struct MaterialError(pub String);

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

/// A fused square's corrections: its operand's, then the squares' and cross terms.
fn square_corrections<'a>(square: &'a mut SquareMat, out: &mut Vec<Correction<'a>>) {
    let s = square.x.shift;
    operand_corrections(&mut square.x, out);
    out.push(Correction::Ring(&mut square.c));
    out.push(Correction::Low(&mut square.cross, s));
}

/// A fused operand's corrections: its shares of `omega` and `msb(r)`.
fn operand_corrections<'a>(o: &'a mut Operand, out: &mut Vec<Correction<'a>>) {
    out.push(Correction::Low(&mut o.omega, o.shift));
    out.push(Correction::Low(&mut o.top, o.shift));
}

/// The fields of `m` that travel for `party`, in order.
pub fn corrections(m: &mut StepMat, party: Party) -> Vec<Correction<'_>> {
    use Correction::*;
    let server = party == Party::Server;
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
                if m.shift > 0 {
                    out.push(Ring(&mut m.hi));
                    out.push(Low(&mut m.wrap, m.shift));
                    out.push(Low(&mut m.rho_wrap, m.shift));
                }
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
                out.extend(truncs.iter_mut().map(|t| Low(&mut t.gamma, t.bits)));
            }
        }
        StepMat::FusedSquare(square) => {
            if server {
                square_corrections(square, &mut out);
            }
        }
        StepMat::FusedNorm {
            square,
            cmp,
            products,
            z_trunc,
            mix,
        } => {
            if server {
                square_corrections(square, &mut out);
                out.push(Ring(&mut cmp.b));
                out.push(Ring(&mut cmp.br));
            }
            out.push(PairKeys(&mut cmp.keys, cmp.width.domain()));
            if server {
                for PairMat {
                    product: m,
                    square_c,
                    square_cross,
                } in products
                {
                    let (sa, sb) = (m.a.shift, m.b.shift);
                    operand_corrections(&mut m.a, &mut out);
                    operand_corrections(&mut m.b, &mut out);
                    out.push(Ring(&mut m.c));
                    out.push(Low(&mut m.cross_a, sb));
                    out.push(Low(&mut m.cross_b, sa));
                    out.push(Ring(square_c));
                    out.push(Low(square_cross, sb));
                }
                if let Some(t) = z_trunc {
                    out.push(Low(&mut t.gamma, t.bits));
                }
                out.extend(mix.iter_mut().map(|t| Ring(&mut t.c)));
            }
        }
        StepMat::Truncate(ts) => {
            if server {
                out.extend(ts.iter_mut().map(|t| Low(&mut t.gamma, t.bits)));
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

/// Appends what travels of one step's material for `party`.
pub fn write_step(m: &mut StepMat, party: Party, out: &mut Vec<u8>) {
    for c in corrections(m, party) {
        write(&c, out);
    }
}

/// Reads a half's bytes from any source: a slice, or a dealer connection as it arrives.
struct Reader<R> {
    r: R,
    buf: Vec<u8>,
}

impl<R: Read> Reader<R> {
    fn take(&mut self, n: usize) -> Result<&[u8], MaterialError> {
        self.buf.resize(n, 0);
        self.r
            .read_exact(&mut self.buf)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => {
                    MaterialError(format!("truncated: {n} bytes wanted, fewer left"))
                }
                _ => MaterialError(e.to_string()),
            })?;
        Ok(&self.buf)
    }
    fn u64(&mut self) -> Result<u64, MaterialError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn keys<G: Group>(&mut self, keys: &mut [DcfKey<G>], bits: usize) -> Result<(), MaterialError> {
        for k in keys {
            let b = self.take(Cws::<G>::bytes(bits))?;
            k.cws = Cws::read(b, bits).map_err(MaterialError)?.0;
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
            // A truncation by 0 bits carries nothing (and has no values).
            Correction::Low(_, 0) => {}
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

/// What a half is bound to: both parties check it before the online phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    pub session: u64,
    /// Random id shared by the two halves of one generation: the parties compare it
    /// before the online phase, so halves of different generations never mix.
    pub pair: u64,
    pub plan_digest: u64,
    pub party: Party,
}

impl Binding {
    /// The seeded encoding's header for a half drawn from `seed`.
    pub fn header(&self, seed: u128) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES);
        for v in [
            self.session,
            self.pair,
            self.plan_digest,
            self.party.index() as u64,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&seed.to_le_bytes());
        out
    }
}

/// A party's material as the executor consumes it, step by step, so that a half need
/// never be whole in memory.
pub trait Source {
    fn binding(&self) -> Binding;
    /// The next step's material (steps in plan order).
    fn next_step(&mut self, plan: &SecurePlan) -> Result<StepMat, MaterialError>;
    /// Checks that the material ended with the plan.
    fn finish(self) -> Result<(), MaterialError>;
}

/// A seeded half expanded as it is read: the random parts redrawn from the seed and the
/// corrections read, one step at a time.
pub struct Expander<R> {
    binding: Binding,
    seed: u128,
    prg: Prg,
    reader: Reader<R>,
    next: usize,
}

impl<R: Read> Expander<R> {
    /// Reads the header of a half of a session of `plan`.
    pub fn new(plan: &SecurePlan, r: R) -> Result<Self, MaterialError> {
        let mut reader = Reader { r, buf: Vec::new() };
        let session = reader.u64()?;
        let pair = reader.u64()?;
        let plan_digest = reader.u64()?;
        let bit = reader.u64()?;
        let party = Party::from_bit(bit).ok_or_else(|| MaterialError(format!("party {bit}")))?;
        if plan_digest != plan.digest() {
            return Err(MaterialError(
                "material for another plan (digest differs)".into(),
            ));
        }
        let seed = u128::from_le_bytes(reader.take(16)?.try_into().unwrap());
        Ok(Self {
            binding: Binding {
                session,
                pair,
                plan_digest,
                party,
            },
            seed,
            prg: Prg::new(seed),
            reader,
            next: 0,
        })
    }

    /// Reads and expands every step, and checks that nothing follows.
    pub fn expand_all(mut self, plan: &SecurePlan) -> Result<Material, MaterialError> {
        let steps = (0..plan.steps.len())
            .map(|_| self.next_step(plan))
            .collect::<Result<Vec<_>, _>>()?;
        let (binding, seed) = (self.binding, self.seed);
        self.finish()?;
        Ok(Material {
            binding,
            seed,
            steps,
        })
    }
}

impl<R: Read> Source for Expander<R> {
    fn binding(&self) -> Binding {
        self.binding
    }

    fn next_step(&mut self, plan: &SecurePlan) -> Result<StepMat, MaterialError> {
        let step = plan.steps.get(self.next).ok_or_else(|| {
            MaterialError(format!("the plan has only {} steps", plan.steps.len()))
        })?;
        let party = self.binding.party;
        let mut m = crate::gates::gate(step).draw(plan, party, &mut self.prg);
        for c in corrections(&mut m, party) {
            self.reader
                .read(c)
                .map_err(|e| MaterialError(format!("step {}: {}", self.next, e.0)))?;
        }
        self.next += 1;
        Ok(m)
    }

    fn finish(mut self) -> Result<(), MaterialError> {
        let mut rest = Vec::new();
        match self.reader.r.read_to_end(&mut rest) {
            Ok(0) => Ok(()),
            Ok(n) => Err(MaterialError(format!("{n} trailing bytes"))),
            Err(e) => Err(MaterialError(e.to_string())),
        }
    }
}

impl Material {
    /// The seeded encoding: the header, then the corrections of every step. The random
    /// parts must have been drawn from `self.seed` by the gates' `draw` (the dealer's way).
    pub fn into_bytes(mut self) -> Vec<u8> {
        let mut out = self.binding.header(self.seed);
        for s in &mut self.steps {
            write_step(s, self.binding.party, &mut out);
        }
        out
    }

    /// [`Material::into_bytes`] of a copy.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.clone().into_bytes()
    }

    /// Expands a seeded half of a session of `plan`: redraws its random parts and
    /// reads the corrections.
    pub fn from_bytes(plan: &SecurePlan, bytes: &[u8]) -> Result<Self, MaterialError> {
        Expander::new(plan, bytes)?.expand_all(plan)
    }
}

/// An expanded half, consumed from the front.
impl Source for Material {
    fn binding(&self) -> Binding {
        self.binding
    }

    fn next_step(&mut self, _: &SecurePlan) -> Result<StepMat, MaterialError> {
        match self.steps.is_empty() {
            true => Err(MaterialError("fewer steps than the plan".into())),
            false => Ok(self.steps.remove(0)),
        }
    }

    fn finish(self) -> Result<(), MaterialError> {
        match self.steps.len() {
            0 => Ok(()),
            n => Err(MaterialError(format!("{n} steps more than the plan"))),
        }
    }
}
