//! LayerNorm and row normalization, `out = z / sqrt(sum_j x_j^2 + eps)` per row (or a
//! row total's `v^(-power/2)`): the variance from a square, a first guess of the inverse
//! square root from one comparison against geometric thresholds, Newton's steps and the
//! scaling of `z`. Fused ([`SecurePlan::fused_norm`]) every product truncates its
//! operands in its own opening; a norm that mixes ([`crate::plan::NormMix`]) also makes
//! attention's product with the values inside its exchanges. The online half is in
//! [`online`].

mod online;

use super::head_matmul::fill_triple;
use super::state::State;
use super::*;
use crate::arith::fixed::encode_at;
use crate::arith::matmul::matmul;
use crate::arith::ring;
use crate::arith::tensor::Mat;
use crate::plan::layout::{head_assemble, head_operands, Grid};
use crate::plan::shapes::{
    layernorm_mults, layernorm_scales_output, layernorm_truncs, layernorm_waves, norm_products,
    numerator_len, reciprocal, variance_shift, LnWave, MixShape,
};
use crate::plan::{HeadProduct, InvSqrtParams, NormMix, WireId};
use crate::protocols::compare::fill_cmp;
use crate::protocols::correlations::{draw_cmp, draw_pair, draw_square, triple, trunc};
use crate::protocols::{fused, trunc as exact};
use online::FusedNorm;

pub(super) struct Norm<'a> {
    pub out: WireId,
    pub x: WireId,
    pub z: WireId,
    pub eps: f64,
    pub inv_sqrt: &'a InvSqrtParams,
    pub shifts: [u32; 2],
    pub mix: Option<NormMix>,
}

impl Norm<'_> {
    fn mix(&self, plan: &SecurePlan) -> Option<MixShape> {
        MixShape::of(plan, self.x, &self.mix)
    }

    /// Whether Newton's step runs on `1/v` itself ([`reciprocal`]).
    fn newton_on_reciprocal(&self, plan: &SecurePlan) -> bool {
        plan.fused_norm(self.inv_sqrt)
            && reciprocal(
                plan.frac_bits,
                self.inv_sqrt,
                self.shifts,
                self.mix.is_some(),
            )
            .is_some()
    }

    fn waves(&self, plan: &SecurePlan) -> Vec<LnWave> {
        layernorm_waves(
            plan,
            plan.norm_shape(self.x, self.z),
            self.inv_sqrt,
            self.shifts,
            self.mix(plan),
        )
    }
}

impl Norm<'_> {
    /// A [`NormMix`]'s shapes: `x` is `[heads * rq, n]`, `v` `[n, r]`, `z` the stacked
    /// product `[heads * rq, r / heads]` and `out` `[rq, r]`; only a fused norm mixes.
    fn check_mix(&self, plan: &SecurePlan, m: &NormMix, fused: bool) -> Result<(), String> {
        if m.v >= plan.wires.len() {
            return Err(format!("wire {} out of range", m.v));
        }
        let [o, x, z, v] = [self.out, self.x, self.z, m.v].map(|w| &plan.wires[w]);
        let h = m.heads;
        let fits = fused
            && h > 0
            && x.rows % h == 0
            && v.cols % h == 0
            && x.cols == v.rows
            && (z.rows, z.cols) == (x.rows, v.cols / h)
            && (o.rows, o.cols) == (x.rows / h, v.cols);
        match fits {
            true => Ok(()),
            false => Err(format!(
                "a row normalization mixing {}x{} by {}x{} in {h} heads into {}x{}",
                x.rows, x.cols, v.rows, v.cols, o.rows, o.cols
            )),
        }
    }
}

impl Gate for Norm<'_> {
    fn check(&self, plan: &SecurePlan) -> Result<(), String> {
        wires_exist(plan, &[self.out, self.x, self.z])?;
        let (p, f, shifts) = (self.inv_sqrt, plan.frac_bits, self.shifts);
        let fused = plan.fused_norm(p);
        if let Some(m) = &self.mix {
            self.check_mix(plan, m, fused)?;
        }
        if shifts
            .iter()
            .any(|&s| s != 0 && (s % f != 0 || s > 2 * f || !fused))
            || !p.squares && shifts[0] > f
        {
            return Err(format!("a norm truncating its inputs by {shifts:?}"));
        }
        if !(1..=4).contains(&p.power)
            || p.newton > 4
            || !(1..=64).contains(&p.per_octave)
            || p.min_exp >= p.max_exp
            || p.min_exp < -30
            || p.max_exp > 30
        {
            return Err(format!("norm parameters {p:?}"));
        }
        if let Some(why) = plan.direct_guess_problem(p) {
            return Err(format!("norm parameters: {why}"));
        }
        Ok(())
    }

    fn messages(&self, plan: &SecurePlan) -> Vec<Msg> {
        let waves: Vec<[Msg; 2]> = self
            .waves(plan)
            .into_iter()
            .map(|w| match w {
                LnWave::Square(n) => both(0, n),
                LnWave::Product { elems, rides, .. } => both(0, elems + rides),
                LnWave::Compare {
                    values,
                    carries,
                    rides,
                    ..
                } => {
                    let rider = carries.map_or(0, |t| t.values * exact::wire_bytes(t.shift))
                        + rides * ELEM as usize;
                    [Party::Client, Party::Server].map(|from| Msg {
                        from,
                        payload_bytes: values as u64 * ELEM + rider as u64,
                        wave: 0,
                    })
                }
                LnWave::Truncate(t) => trunc_msgs(&t.map(|t| (t.values, t.shift))),
            })
            .collect();
        waves
            .into_iter()
            .enumerate()
            .flat_map(|(k, w)| {
                w.map(|m| Msg {
                    wave: k as u32,
                    ..m
                })
            })
            .collect()
    }

    /// The norm's own truncation exchanges.
    fn fusable(&self, plan: &SecurePlan, msg: &Msg) -> bool {
        matches!(self.waves(plan)[msg.wave as usize], LnWave::Truncate(_))
    }

    fn material_bytes(&self, plan: &SecurePlan, party: Party) -> u64 {
        let c = Corrections::of(party);
        let (rows, d, cz) = plan.norm_shape(self.x, self.z);
        let inv_sqrt = self.inv_sqrt;
        let sq = if inv_sqrt.squares { rows * d } else { 0 };
        if !plan.fused_norm(inv_sqrt) {
            let mults = layernorm_mults(plan, inv_sqrt);
            let scalings = (0..mults)
                .filter(|&i| layernorm_scales_output(inv_sqrt, i))
                .count();
            let per_row = mults - scalings;
            let truncs: u64 = layernorm_truncs(plan, rows, cz, inv_sqrt)
                .iter()
                .map(|t| c.low(t.values, t.shift))
                .sum();
            return c.ring(sq + per_row * rows + scalings * rows * cz)
                + truncs
                + c.cmp(rows, CmpWidth::FULL);
        }
        let mix = self.mix(plan);
        // Operands: `omega` and `msb(r)` mod 2^s; products: `base_a base_b` and the two
        // cross terms mod 2^s ([`crate::protocols::fused`]).
        let operand = |(n, s): (usize, u32)| 2 * c.low(n, s);
        // The squares' material: one ring element per row (their sum).
        let square =
            operand((sq, self.shifts[0])) + c.ring(sq / d.max(1)) + c.low(sq, self.shifts[0]);
        let products: u64 = norm_products(plan, rows, cz, inv_sqrt, self.shifts, mix.is_some())
            .iter()
            .map(|m| {
                let square = if m.pair {
                    c.ring(m.b.0) + c.low(m.b.0, m.b.1)
                } else {
                    0
                };
                operand(m.a)
                    + operand(m.b)
                    + c.ring(m.out)
                    + c.low(m.out, m.b.1)
                    + c.low(m.out, m.a.1)
                    + square
            })
            .sum();
        let truncs = c.low(numerator_len(rows, d, cz, mix), self.shifts[1]);
        // The product's triples: the server's shares of `A B` per head.
        let mixing = mix.map_or(0, |m| c.ring(m.heads * m.m * m.n));
        square + products + truncs + mixing + c.cmp(rows, CmpWidth::FULL)
    }

    fn draw(&self, plan: &SecurePlan, party: Party, prg: &mut Prg) -> StepMat {
        let (rows, d, c) = plan.norm_shape(self.x, self.z);
        let inv_sqrt = self.inv_sqrt;
        if !plan.fused_norm(inv_sqrt) {
            let sq = if inv_sqrt.squares { rows * d } else { 0 };
            let square = triple(prg, party, sq, 0, sq);
            let cmp = draw_cmp(prg, party, rows, CmpWidth::FULL);
            let mults = (0..layernorm_mults(plan, inv_sqrt))
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
                .map(|t| trunc(prg, party, t.values, t.shift))
                .collect();
            return StepMat::LayerNorm {
                square,
                cmp,
                mults,
                truncs,
            };
        }
        let mix = self.mix(plan);
        let n = if inv_sqrt.squares { rows } else { 0 };
        let square = draw_square(prg, party, n, d, self.shifts[0]);
        let cmp = draw_cmp(prg, party, rows, CmpWidth::FULL);
        let products = norm_products(plan, rows, c, inv_sqrt, self.shifts, mix.is_some())
            .iter()
            .map(|m| draw_pair(prg, party, m))
            .collect();
        let numerator = numerator_len(rows, d, c, mix);
        let z_trunc = (self.shifts[1] > 0).then(|| trunc(prg, party, numerator, self.shifts[1]));
        let mix = mix.map_or(Vec::new(), |m| {
            (0..m.heads)
                .map(|_| triple(prg, party, m.m * m.k, m.k * m.n, m.m * m.n))
                .collect()
        });
        StepMat::FusedNorm {
            square,
            cmp,
            products,
            z_trunc,
            mix,
        }
    }

    fn fill(&self, dealer: &mut Dealing<'_>, m: [&mut StepMat; 2]) -> Result<(), String> {
        let plan = dealer.plan;
        match m {
            [StepMat::LayerNorm {
                square: s0,
                cmp: c0,
                mults: p0,
                truncs: r0,
            }, StepMat::LayerNorm {
                square: s1,
                cmp: c1,
                mults: p1,
                truncs: r1,
            }] => {
                let (rows, d, c) = plan.norm_shape(self.x, self.z);
                let a = ring::add(&s0.a, &s1.a);
                if self.inv_sqrt.squares {
                    s1.c = ring::sub(&ring::mul_bcast(&a, d, &a, d, rows), &s0.c);
                }
                fill_cmp(c0, c1);
                for (i, (t0, t1)) in p0.iter().zip(p1.iter_mut()).enumerate() {
                    let cols = if layernorm_scales_output(self.inv_sqrt, i) {
                        c
                    } else {
                        1
                    };
                    fill_triple(t0, t1, |a, b| ring::mul_bcast(a, 1, b, cols, rows));
                }
                for (t0, t1) in r0.iter().zip(r1.iter_mut()) {
                    exact::fill(t0, t1);
                }
            }
            [StepMat::FusedNorm {
                square: s0,
                cmp: c0,
                products: p0,
                z_trunc: r0,
                mix: x0,
            }, StepMat::FusedNorm {
                square: s1,
                cmp: c1,
                products: p1,
                z_trunc: r1,
                mix: x1,
            }] => {
                if let Some(m) = self.mix(plan) {
                    for (t0, t1) in x0.iter().zip(x1.iter_mut()) {
                        fill_triple(t0, t1, |a, b| matmul(a, b, m.m, m.k, m.n));
                    }
                }
                let (rows, d) = (plan.wires[self.x].rows, plan.wires[self.x].cols);
                fused::fill_square(s0, s1, d);
                fill_cmp(c0, c1);
                for (m0, m1) in p0.iter().zip(p1.iter_mut()) {
                    fused::fill_pair(m0, m1, rows);
                }
                if let (Some(t0), Some(t1)) = (r0, r1) {
                    exact::fill(t0, t1);
                }
            }
            _ => return Err(mismatch("norm")),
        }
        Ok(())
    }

    fn run(
        &self,
        st: &mut State<'_>,
        chan: &mut dyn Channel,
        mat: StepMat,
    ) -> Result<Option<Vec<u64>>, GateError> {
        let fused = st.plan.fused_norm(self.inv_sqrt);
        let res = match mat {
            StepMat::FusedNorm {
                square,
                cmp,
                products,
                z_trunc,
                mix,
            } if fused => {
                let norm = FusedNorm {
                    x: self.x,
                    z: self.z,
                    eps: self.eps,
                    params: self.inv_sqrt,
                    shifts: self.shifts,
                    mix: self.mix.map(|m| (m, mix)),
                };
                st.fused_norm(chan, &norm, square, cmp, products, z_trunc)?
            }
            StepMat::LayerNorm {
                square,
                cmp,
                mults,
                truncs,
            } if !fused => st.layernorm(
                chan,
                self.x,
                self.z,
                self.eps,
                self.inv_sqrt,
                square,
                cmp,
                mults,
                truncs,
            )?,
            _ if fused => return Err(bad("fused norm material")),
            _ => return Err(bad("LayerNorm material")),
        };
        st.shares[self.out] = Some(res);
        Ok(None)
    }

    fn meter(&self, plan: &SecurePlan, _: &[bool], m: &mut dyn Meter) {
        let mix = self.mix(plan);
        let inv_sqrt = self.inv_sqrt;
        for (i, wave) in self.waves(plan).into_iter().enumerate() {
            let frames = [2 * i, 2 * i + 1];
            // The product with the values: its operands masked before the exchange it
            // rides in, its Beaver matmuls after.
            let rides = match wave {
                LnWave::Compare { rides, .. } | LnWave::Product { rides, .. } => rides,
                _ => 0,
            };
            let riding = mix.filter(|_| rides > 0);
            if let Some(mx) = riding {
                for p in Party::BOTH {
                    m.elem(p, mx.opened() as f64);
                }
            }
            match wave {
                LnWave::Square(n) => {
                    m.exchange(n, frames);
                    for p in Party::BOTH {
                        m.elem(p, 7.0 * n as f64);
                    }
                }
                LnWave::Compare {
                    values,
                    thresholds,
                    carries,
                    rides,
                } => {
                    // A fused norm compares its variances at `f + sv` bits.
                    let sv = match plan.fused_norm(inv_sqrt) {
                        true => variance_shift(plan, inv_sqrt, self.shifts),
                        false => 0,
                    };
                    let ts: Vec<u64> = inv_sqrt
                        .thresholds()
                        .iter()
                        .map(|&t| encode_at(t, plan.frac_bits + sv))
                        .collect();
                    debug_assert_eq!(ts.len(), thresholds);
                    let carries = carries.map(|t| (t.values, t.shift));
                    m.compare_carrying(values, &ts, CmpWidth::FULL, carries, rides, frames);
                    // The guess, and for Newton on `1/v` also `g` and `m`.
                    let per = match self.newton_on_reciprocal(plan) {
                        true => 10.0,
                        false => 4.0,
                    };
                    for p in Party::BOTH {
                        m.elem(p, per * (values * thresholds) as f64);
                    }
                }
                LnWave::Product { elems, out, rides } => {
                    m.exchange(elems + rides, frames);
                    for p in Party::BOTH {
                        m.elem(p, 6.0 * out as f64);
                    }
                }
                LnWave::Truncate(t) => m.truncate(&t.map(|t| (t.values, t.shift)), frames),
            }
            if let Some(mx) = riding {
                m.head_products(mx.heads, (mx.m, mx.k, mx.n));
            }
        }
    }

    fn dealer_work(&self, plan: &SecurePlan, w: &mut DealerWork) {
        let (rows, d, cz) = plan.norm_shape(self.x, self.z);
        let inv_sqrt = self.inv_sqrt;
        if let Some(m) = self.mix(plan) {
            w.ops += 2.0 * (m.heads * m.m * m.k * m.n) as f64;
            w.words += 3.0 * (m.heads * (m.m * m.k + m.k * m.n + m.m * m.n)) as f64;
        }
        w.keys(rows, CmpWidth::FULL);
        // Newton on `1/v` makes three products where the inverse square root makes
        // `3 newton + power`.
        let mults = match self.newton_on_reciprocal(plan) {
            true => 3,
            false => layernorm_mults(plan, inv_sqrt),
        };
        w.words += (3 * rows * d + 8 * rows + mults * 3 * rows * (1 + cz)) as f64;
        let truncs: usize = layernorm_truncs(plan, rows, cz, inv_sqrt)
            .iter()
            .map(|t| t.values)
            .sum();
        w.words += 5.0 * truncs as f64;
        if plan.fused_norm(inv_sqrt) {
            // The operands' wrap and top bits, the products' cross terms.
            let outs = mults * rows * (1 + cz);
            w.words += 4.0 * (rows * d + outs) as f64;
        }
    }

    fn plain(&self, ev: &mut plain::Values<'_>) {
        let grid = |m: &Mat| Grid {
            rows: m.rows,
            cols: m.cols,
            data: m.data.clone(),
        };
        let mat = |g: Grid<f64>| Mat::new(g.rows, g.cols, g.data);
        let x = ev.get(self.x);
        let mut zv = match self.mix {
            Some(m) => {
                let parts =
                    head_operands(HeadProduct::Mix, m.heads, &grid(&x), &grid(&ev.get(m.v)));
                let stacked: Vec<f64> = parts
                    .into_iter()
                    .flat_map(|(a, b)| mat(a).matmul(&mat(b)).data)
                    .collect();
                let w = &ev.plan.wires[self.z];
                let zv = Mat::new(w.rows, w.cols, stacked);
                ev.set(self.z, zv.clone());
                zv
            }
            None => ev.get(self.z),
        };
        let p = self.inv_sqrt;
        for r in 0..x.rows {
            let var = match p.squares {
                true => x.row(r).iter().map(|v| v * v).sum::<f64>(),
                false => x.row(r).iter().sum::<f64>(),
            };
            let inv = (var + self.eps).powf(-(p.power as f64) / 2.0);
            zv.data[r * zv.cols..(r + 1) * zv.cols]
                .iter_mut()
                .for_each(|v| *v *= inv);
        }
        let out = match self.mix {
            Some(m) => {
                let parts = zv
                    .data
                    .chunks(zv.data.len() / m.heads)
                    .map(|h| Grid {
                        rows: zv.rows / m.heads,
                        cols: zv.cols,
                        data: h.to_vec(),
                    })
                    .collect();
                mat(head_assemble(HeadProduct::Mix, parts))
            }
            None => zv,
        };
        ev.set(self.out, out);
    }
}
