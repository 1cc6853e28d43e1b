//! The plan of a spec without weights, for pricing the candidates of a search: the
//! evaluator's own lowering run on a weightless model (`OwcModel::symbolic`), so the
//! plan priced is, step for step, the plan any model of this spec executes.

use cryptpeft_private_eval::model::OwcModel;
use cryptpeft_private_eval::plan::lower::{lower, LowerError, LowerOptions};
use cryptpeft_private_eval::plan::SecurePlan;
use cryptpeft_types::{AdapterSpec, BackboneSpec};

/// The plan of `spec` on `backbone` with `classes` outputs and default options.
pub fn plan_shape_only(
    spec: &AdapterSpec,
    backbone: &BackboneSpec,
    classes: usize,
) -> Result<SecurePlan, LowerError> {
    plan_shape_only_with(spec, backbone, classes, LowerOptions::default())
}

pub fn plan_shape_only_with(
    spec: &AdapterSpec,
    backbone: &BackboneSpec,
    classes: usize,
    opts: LowerOptions,
) -> Result<SecurePlan, LowerError> {
    let model = OwcModel::symbolic(spec.clone(), backbone.clone(), classes);
    Ok(lower(&model, opts)?.0)
}
