//! The maximum of each row into one column: a tree of `ceil(log2 cols)` levels, each one
//! comparison opening of the pairs' differences `a - b` on `bits`-bit inputs,
//! `max = b + [a - b >= 0] (a - b)` (exact).

use super::state::State;
use super::*;
use crate::arith::tensor::Mat;
use crate::plan::shapes::rowmax_pairs;
use crate::plan::WireId;
use crate::protocols::compare::{check_cmp, fill_cmp};
use crate::protocols::correlations::draw_cmp;

pub(super) struct RowMax {
    pub out: WireId,
    pub x: WireId,
    pub bits: u32,
}

impl Gate for RowMax {
    fn check(&self, plan: &SecurePlan) -> Result<(), String> {
        wires_exist(plan, &[self.out, self.x])?;
        check_width(plan, self.bits)?;
        let (o, x) = (&plan.wires[self.out], &plan.wires[self.x]);
        if o.cols != 1 || o.rows != x.rows {
            return Err("a row maximum into a wire other than one column".into());
        }
        Ok(())
    }

    fn messages(&self, plan: &SecurePlan) -> Vec<Msg> {
        rowmax_pairs(&plan.wires[self.x])
            .enumerate()
            .flat_map(|(k, n)| both(k as u32, n))
            .collect()
    }

    fn material_bytes(&self, plan: &SecurePlan, party: Party) -> u64 {
        rowmax_pairs(&plan.wires[self.x])
            .map(|n| Corrections::of(party).cmp(n, CmpWidth::exact(self.bits)))
            .sum()
    }

    fn draw(&self, plan: &SecurePlan, party: Party, prg: &mut Prg) -> StepMat {
        StepMat::RowMax(
            rowmax_pairs(&plan.wires[self.x])
                .map(|n| draw_cmp(prg, party, n, CmpWidth::exact(self.bits)))
                .collect(),
        )
    }

    fn fill(&self, _: &mut Dealing<'_>, m: [&mut StepMat; 2]) -> Result<(), String> {
        let [StepMat::RowMax(l0), StepMat::RowMax(l1)] = m else {
            return Err(mismatch("row max"));
        };
        for (c0, c1) in l0.iter_mut().zip(l1.iter_mut()) {
            fill_cmp(c0, c1);
        }
        Ok(())
    }

    fn run(
        &self,
        st: &mut State<'_>,
        chan: &mut dyn Channel,
        mat: StepMat,
    ) -> Result<Option<Vec<u64>>, GateError> {
        let StepMat::RowMax(levels) = mat else {
            return Err(bad("comparison material per level"));
        };
        let w = &st.plan.wires[self.x];
        let want: Vec<usize> = rowmax_pairs(w).collect();
        if levels.len() != want.len() {
            return Err(bad(&format!("{} levels of material", want.len())));
        }
        for (m, &n) in levels.iter().zip(&want) {
            check_cmp(m, n, CmpWidth::exact(self.bits)).map_err(|w| bad(&w))?;
        }
        let res = st.row_max(chan, st.share(self.x).to_vec(), w.rows, &levels)?;
        st.shares[self.out] = Some(res);
        Ok(None)
    }

    fn meter(&self, plan: &SecurePlan, _: &[bool], m: &mut dyn Meter) {
        let width = CmpWidth::exact(self.bits);
        for (k, n) in rowmax_pairs(&plan.wires[self.x]).enumerate() {
            for p in Party::BOTH {
                m.elem(p, 3.0 * n as f64); // differences, then b + d (a - b)
            }
            m.compare(n, &[0], width, [2 * k, 2 * k + 1]);
        }
    }

    fn dealer_work(&self, plan: &SecurePlan, w: &mut DealerWork) {
        for n in rowmax_pairs(&plan.wires[self.x]) {
            w.keys(n, CmpWidth::exact(self.bits));
            w.words += 6.0 * n as f64;
        }
    }

    fn plain(&self, ev: &mut plain::Values<'_>) {
        let x = ev.get(self.x);
        let m = (0..x.rows)
            .map(|r| x.row(r).iter().copied().fold(f64::NEG_INFINITY, f64::max))
            .collect();
        ev.set(self.out, Mat::new(x.rows, 1, m));
    }
}
