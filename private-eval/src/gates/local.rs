//! Steps each party computes on its own shares, with no material and no frame: a slice
//! of columns, and a shift of each row by a one-column wire (a softmax's row maximum).

use super::state::State;
use super::*;
use crate::plan::WireId;

pub(super) struct Slice {
    pub out: WireId,
    pub x: WireId,
    pub from: usize,
    pub to: usize,
}

pub(super) struct Shift {
    pub out: WireId,
    pub x: WireId,
    pub by: WireId,
}

impl Gate for Slice {
    fn check(&self, plan: &SecurePlan) -> Result<(), String> {
        wires_exist(plan, &[self.out, self.x])?;
        let (o, w) = (&plan.wires[self.out], &plan.wires[self.x]);
        let (from, to) = (self.from, self.to);
        if from > to || to > w.cols || o.cols != to - from || o.rows != w.rows {
            return Err(format!(
                "slice {from}..{to} of {}x{} into {}x{}",
                w.rows, w.cols, o.rows, o.cols
            ));
        }
        Ok(())
    }

    fn run(
        &self,
        st: &mut State<'_>,
        _: &mut dyn Channel,
        _: StepMat,
    ) -> Result<Option<Vec<u64>>, GateError> {
        let g = st.grid(self.x);
        st.shares[self.out] = Some(g.cols_range(self.from, self.to).data);
        Ok(None)
    }

    fn meter(&self, plan: &SecurePlan, _: &[bool], m: &mut dyn Meter) {
        let n = (size(plan, self.x) + size(plan, self.out)) as f64;
        m.elem(Party::Client, n);
        m.elem(Party::Server, n);
    }

    fn plain(&self, ev: &mut plain::Values<'_>) {
        let y = ev.get(self.x).cols_range(self.from, self.to);
        ev.set(self.out, y);
    }
}

impl Gate for Shift {
    fn check(&self, plan: &SecurePlan) -> Result<(), String> {
        wires_exist(plan, &[self.out, self.x, self.by])?;
        let (w, b) = (&plan.wires[self.x], &plan.wires[self.by]);
        if b.cols != 1 || b.rows != w.rows {
            return Err(format!(
                "shift of {}x{} by {}x{}",
                w.rows, w.cols, b.rows, b.cols
            ));
        }
        Ok(())
    }

    fn run(
        &self,
        st: &mut State<'_>,
        _: &mut dyn Channel,
        _: StepMat,
    ) -> Result<Option<Vec<u64>>, GateError> {
        let cols = st.plan.wires[self.x].cols;
        let b = st.share(self.by);
        let v = st
            .share(self.x)
            .iter()
            .enumerate()
            .map(|(i, xi)| xi.wrapping_sub(b[i / cols]))
            .collect();
        st.shares[self.out] = Some(v);
        Ok(None)
    }

    fn meter(&self, plan: &SecurePlan, _: &[bool], m: &mut dyn Meter) {
        for p in Party::BOTH {
            m.elem(p, 2.0 * size(plan, self.x) as f64);
        }
    }

    fn plain(&self, ev: &mut plain::Values<'_>) {
        let (mut x, by) = (ev.get(self.x), ev.get(self.by));
        let c = x.cols;
        x.data
            .iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v -= by.data[i / c]);
        ev.set(self.out, x);
    }
}
