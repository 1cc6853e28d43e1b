//! The plan of a spec without trained weights, for pricing candidates of a search.

use cryptpeft_types::{AdapterSpec, BackboneSpec};
use private_eval::lower::{self, LowerError, LowerOptions};
use private_eval::model::OwcModel;
use private_eval::plan::SecurePlan;

/// The plan `lower` produces for `spec` on `backbone` (the plan depends on shapes only).
pub fn plan_shape_only(
    spec: &AdapterSpec,
    backbone: &BackboneSpec,
    classes: usize,
) -> Result<SecurePlan, LowerError> {
    let model = OwcModel::random(spec.clone(), backbone.clone(), classes, 0);
    Ok(lower::lower(&model, LowerOptions::default())?.0)
}
