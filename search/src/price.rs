//! Prices candidates with the cost model on the plan the evaluator would run, once per
//! spec, for every profile of the space (bytes and rounds do not depend on the network).

use std::cell::RefCell;
use std::collections::HashMap;

use cryptpeft_cost_model::{cost, plan_shape_only, Constants};
use cryptpeft_types::{AdapterSpec, BackboneSpec, NetworkProfile};
use serde::{Deserialize, Serialize};

/// A candidate's predicted private-inference cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Price {
    /// Online bytes, both directions, frame headers included.
    pub online_bytes: u64,
    pub rounds: u64,
    /// The plan's dependency-depth bound (0 in studies priced before it was kept).
    #[serde(default)]
    pub depth_bound: u64,
    /// Dealer material of both parties per inference.
    pub offline_bytes: u64,
    /// Predicted online seconds per profile, in the space's order.
    pub seconds: Vec<f64>,
}

pub struct Pricer {
    backbone: BackboneSpec,
    classes: usize,
    profiles: Vec<NetworkProfile>,
    constants: Constants,
    memo: RefCell<HashMap<String, Price>>,
}

impl Pricer {
    pub fn new(
        backbone: BackboneSpec,
        classes: usize,
        profiles: Vec<NetworkProfile>,
        constants: Constants,
    ) -> Self {
        Self {
            backbone,
            classes,
            profiles,
            constants,
            memo: RefCell::new(HashMap::new()),
        }
    }

    pub fn constants(&self) -> &Constants {
        &self.constants
    }

    pub fn backbone(&self) -> &BackboneSpec {
        &self.backbone
    }

    pub fn classes(&self) -> usize {
        self.classes
    }

    pub fn profiles(&self) -> &[NetworkProfile] {
        &self.profiles
    }

    /// The price of `spec` (which the space has already validated).
    pub fn price(&self, spec: &AdapterSpec) -> Price {
        let key = serde_json::to_string(spec).expect("a spec serializes");
        if let Some(p) = self.memo.borrow().get(&key) {
            return p.clone();
        }
        let plan = plan_shape_only(spec, &self.backbone, self.classes)
            .expect("the space keeps only specs that lower");
        let reports: Vec<_> = self
            .profiles
            .iter()
            .map(|p| cost(&plan, p, &self.constants))
            .collect();
        let r = &reports[0];
        let price = Price {
            online_bytes: r.online_bytes,
            rounds: r.rounds,
            depth_bound: r.depth_bound,
            offline_bytes: r.offline_bytes,
            seconds: reports.iter().map(|r| r.predicted_online_s).collect(),
        };
        self.memo.borrow_mut().insert(key, price.clone());
        price
    }
}
