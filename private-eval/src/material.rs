//! Dealer material: the correlated randomness each step of a plan consumes, one party's
//! half, bound to a session and a plan digest. Values are typed per step; the binary
//! encoding checks every length so a malformed or mismatched stream is an error.

use crate::dcf::{self, DcfKey};

/// One party's share of a Beaver triple `c = a * b` (matrix or element-wise).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Triple {
    pub a: Vec<u64>,
    pub b: Vec<u64>,
    pub c: Vec<u64>,
}

/// Material for comparisons against a dealer mask `r` (ReLU and LayerNorm's
/// thresholds): shares of `r`, of `b = msb(r)` and of `b * r`, and a DCF key for
/// `x < r mod 2^63` with payload `((1 - 2b), (1 - 2b) r)`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CmpMat {
    pub r: Vec<u64>,
    pub b: Vec<u64>,
    pub br: Vec<u64>,
    pub keys: Vec<DcfKey>,
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
    Relu(CmpMat),
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

/// One party's material for one session.
#[derive(Debug, Clone, PartialEq)]
pub struct Material {
    pub session: u64,
    /// Random id shared by the two halves of one generation: the parties compare it
    /// before the online phase, so halves of different generations never mix.
    pub pair: u64,
    pub plan_digest: u64,
    pub party: u8,
    pub steps: Vec<StepMat>,
}

#[derive(Debug, thiserror::Error)]
#[error("malformed dealer material: {0}")]
pub struct MaterialError(pub String);

struct Writer(Vec<u8>);

impl Writer {
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn vec(&mut self, v: &[u64]) {
        self.u64(v.len() as u64);
        for x in v {
            self.u64(*x);
        }
    }
    fn triple(&mut self, t: &Triple) {
        self.vec(&t.a);
        self.vec(&t.b);
        self.vec(&t.c);
    }
    fn trunc(&mut self, t: &TruncMat) {
        self.vec(&t.mask);
        self.vec(&t.gamma);
    }
    fn cmp(&mut self, c: &CmpMat) {
        self.vec(&c.r);
        self.vec(&c.b);
        self.vec(&c.br);
        self.u64(c.keys.len() as u64);
        self.u64(c.keys.first().map_or(0, |k| k.bits()) as u64);
        for k in &c.keys {
            k.to_bytes(&mut self.0);
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn u64(&mut self) -> Result<u64, MaterialError> {
        if self.0.len() < 8 {
            return Err(MaterialError("truncated".into()));
        }
        let (h, t) = self.0.split_at(8);
        self.0 = t;
        Ok(u64::from_le_bytes(h.try_into().unwrap()))
    }
    fn len(&mut self, unit: usize) -> Result<usize, MaterialError> {
        let n = self.u64()? as usize;
        if n.checked_mul(unit).is_none_or(|b| b > self.0.len()) {
            return Err(MaterialError(format!(
                "length {n} exceeds the {} bytes left",
                self.0.len()
            )));
        }
        Ok(n)
    }
    fn vec(&mut self) -> Result<Vec<u64>, MaterialError> {
        let n = self.len(8)?;
        (0..n).map(|_| self.u64()).collect()
    }
    fn triple(&mut self) -> Result<Triple, MaterialError> {
        Ok(Triple {
            a: self.vec()?,
            b: self.vec()?,
            c: self.vec()?,
        })
    }
    fn trunc(&mut self) -> Result<TruncMat, MaterialError> {
        Ok(TruncMat {
            mask: self.vec()?,
            gamma: self.vec()?,
        })
    }
    fn cmp(&mut self) -> Result<CmpMat, MaterialError> {
        let (r, b, br) = (self.vec()?, self.vec()?, self.vec()?);
        let n = self.len(1)?;
        let bits = self.u64()? as usize;
        if bits > 64 {
            return Err(MaterialError(format!("DCF width {bits}")));
        }
        let mut keys = Vec::with_capacity(n);
        for _ in 0..n {
            let (k, rest) = DcfKey::from_bytes(self.0, bits).map_err(MaterialError)?;
            self.0 = rest;
            keys.push(k);
        }
        Ok(CmpMat { r, b, br, keys })
    }
}

impl Material {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer(Vec::new());
        w.u64(self.session);
        w.u64(self.pair);
        w.u64(self.plan_digest);
        w.u64(self.party as u64);
        w.u64(self.steps.len() as u64);
        for s in &self.steps {
            match s {
                StepMat::Nothing => w.u64(0),
                StepMat::Mask(m) => {
                    w.u64(1);
                    w.vec(m);
                }
                StepMat::Linear(v) => {
                    w.u64(2);
                    w.u64(v.len() as u64);
                    v.iter().for_each(|x| w.vec(x));
                }
                StepMat::Beaver(ts) => {
                    w.u64(3);
                    w.u64(ts.len() as u64);
                    ts.iter().for_each(|t| w.triple(t));
                }
                StepMat::Relu(c) => {
                    w.u64(4);
                    w.cmp(c);
                }
                StepMat::LayerNorm {
                    square,
                    cmp,
                    mults,
                    truncs,
                } => {
                    w.u64(5);
                    w.triple(square);
                    w.cmp(cmp);
                    w.u64(mults.len() as u64);
                    mults.iter().for_each(|t| w.triple(t));
                    w.u64(truncs.len() as u64);
                    truncs.iter().for_each(|t| w.trunc(t));
                }
                StepMat::Truncate(t) => {
                    w.u64(6);
                    w.trunc(t);
                }
            }
        }
        w.0
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MaterialError> {
        let mut r = Reader(bytes);
        let session = r.u64()?;
        let pair = r.u64()?;
        let plan_digest = r.u64()?;
        let party = r.u64()?;
        if party > 1 {
            return Err(MaterialError(format!("party {party}")));
        }
        let n = r.len(8)?;
        let mut steps = Vec::with_capacity(n);
        for _ in 0..n {
            steps.push(match r.u64()? {
                0 => StepMat::Nothing,
                1 => StepMat::Mask(r.vec()?),
                2 => {
                    let k = r.len(8)?;
                    StepMat::Linear((0..k).map(|_| r.vec()).collect::<Result<_, _>>()?)
                }
                3 => {
                    let k = r.len(24)?;
                    StepMat::Beaver((0..k).map(|_| r.triple()).collect::<Result<_, _>>()?)
                }
                4 => StepMat::Relu(r.cmp()?),
                5 => {
                    let square = r.triple()?;
                    let cmp = r.cmp()?;
                    let k = r.len(24)?;
                    let mults = (0..k).map(|_| r.triple()).collect::<Result<_, _>>()?;
                    let k = r.len(16)?;
                    let truncs = (0..k).map(|_| r.trunc()).collect::<Result<_, _>>()?;
                    StepMat::LayerNorm {
                        square,
                        cmp,
                        mults,
                        truncs,
                    }
                }
                6 => StepMat::Truncate(r.trunc()?),
                t => return Err(MaterialError(format!("unknown step tag {t}"))),
            });
        }
        if !r.0.is_empty() {
            return Err(MaterialError(format!("{} trailing bytes", r.0.len())));
        }
        Ok(Self {
            session,
            pair,
            plan_digest,
            party: party as u8,
            steps,
        })
    }
}

/// Bytes of one DCF key on the comparison domain.
pub const CMP_KEY_BYTES: usize = dcf::key_bytes(dcf::DOMAIN_BITS);
