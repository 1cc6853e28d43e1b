//! The study as a worker or a report sees it: the space, the run directory, the stored
//! trials ([`store`], in [`sqlite`] or [`postgres`] as [`location`] says), the valid
//! configurations, the prices and the feature cache.

pub mod location;
pub mod postgres;
pub mod sqlite;
pub mod store;

pub use crate::eval::Epoch;
pub use location::{sqlite_path, Location};
pub use sqlite::SqliteStudy;
pub use store::{
    worker_name, Claim, Finished, NewTrial, Proposal, State, Storage, Trial, HEARTBEAT_EVERY,
    STALE_AFTER,
};

use std::path::{Path, PathBuf};

use cryptpeft_cost_model::{calibrate, cost, plan_shape_only, Constants};
use cryptpeft_types::AdapterSpec;

use crate::error::{Error, Result};
use crate::eval::{self, Features};
use crate::genes::{Genome, Space};
use crate::pareto::Point;
use crate::price::{Price, Pricer};
use crate::space::{ReinforceConfig, SpaceFile};
use crate::strategy::{Ctx, Objectives};

/// Everything a worker or a report needs about one study: what a report sees of it,
/// the feature cache and the controller's settings.
pub struct Study {
    pub view: View,
    pub features: Features,
    /// The controller's settings, its latency target defaulting to the selection
    /// profile's latency budget.
    pub reinforce: ReinforceConfig,
}

/// What [`View::priced_by`] says of a study from before versions were recorded.
pub const UNVERSIONED: &str = "unrecorded (a release before cost-model versions)";

/// Opens the study at `location` for `space` (creating it), with `dir` as this
/// machine's run directory; checks that an existing study is of the same space, fixes
/// its cost-model constants, and builds the feature cache.
pub fn open(space: SpaceFile, dir: &Path, location: Location, progress: bool) -> Result<Study> {
    // Everything that can be checked without the study is checked first, so that a bad
    // input never creates or touches one.
    let vit = eval::load_backbone(&space)?;
    let backbone = vit.spec.clone();
    let classes = space.data.num_classes();
    let genomes = Space::new(&space.genes, &backbone, classes)?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let store = location.open()?;
    location.remember(dir)?;
    let identity = space.identity();
    let stored = store.meta_or_insert("space", &identity)?;
    if stored != identity && !same_space(&stored, &identity) {
        return Err(Error::Study {
            at: location.to_string(),
            problem: "holds a study of a different space; give another --out (or --study), or \
                      the same space (only `budget` may change)"
                .into(),
        });
    }
    let constants = study_constants(&space, store.as_ref(), progress)?;
    let priced_by = cost_model_version(store.as_ref())?;
    write_atomic(&dir.join("constants.yaml"), constants.to_yaml().as_bytes())?;
    let pricer = Pricer::new(backbone, classes, space.profiles(), constants);
    let features = eval::features(&space, vit, &dir.join("cache"), progress)?;
    let view = View {
        space,
        dir: dir.to_path_buf(),
        location,
        store,
        genomes,
        pricer,
        priced_by,
    };
    Ok(Study {
        reinforce: view.reinforce(),
        view,
        features,
    })
}

/// Whether a stored space identity written by an earlier release is this space: read
/// back, fields added since take their defaults.
fn same_space(stored: &str, identity: &str) -> bool {
    serde_json::from_str::<SpaceFile>(stored).is_ok_and(|s| s.identity() == identity)
}

/// The study's constants: fixed at its first run (calibrated on this machine unless the
/// space says otherwise) and kept with it, so every worker and resume prices alike.
fn study_constants(space: &SpaceFile, store: &dyn Storage, progress: bool) -> Result<Constants> {
    let text = match store.meta("constants")? {
        Some(t) => t,
        None => {
            let c = match space.constants.as_str() {
                "calibrate" => {
                    if progress {
                        eprintln!("calibrating the cost model on this machine (a few seconds)");
                    }
                    calibrate()
                }
                "shipped" => {
                    eprintln!(
                        "warning: pricing with the shipped cost-model constants, measured on \
                         another machine; predicted seconds may not hold here"
                    );
                    Constants::shipped()
                }
                path => {
                    Constants::load(path).map_err(|e| Error::Other(format!("constants: {e}")))?
                }
            };
            store.meta_or_insert("constants", &c.to_yaml())?
        }
    };
    Constants::from_yaml(&text).map_err(|e| {
        Error::Other(format!(
            "the study's stored cost-model constants do not parse ({e}): a release whose \
             cost model has since changed made it; its trials and files stand, but it cannot \
             be resumed or priced again here: start a new study (another --out)"
        ))
    })
}

/// The cost model that priced the study's trials, if not this release's. A new study
/// records this release's.
fn cost_model_version(store: &dyn Storage) -> Result<Option<String>> {
    let today = cryptpeft_cost_model::version();
    let stored = match store.meta("cost_model")? {
        Some(v) => v,
        None if store.trials()?.is_empty() => store.meta_or_insert("cost_model", &today)?,
        None => UNVERSIONED.to_string(),
    };
    Ok((stored != today).then_some(stored))
}

/// Writes a file atomically (temporary file, then rename).
/// The temporary name is per process: workers finishing together each write whole files.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    cryptpeft_types::files::write_atomic(path, bytes).map_err(|e| Error::io(path, e))
}

impl Objectives for View {
    fn point(&self, g: &Genome, accuracy: Option<f64>) -> Point {
        let spec = self.genomes.spec(g);
        let price = self.pricer.price(&spec);
        point_of(&self.space, &price, accuracy)
    }

    fn latency_of(&self, spec: &AdapterSpec) -> Option<f64> {
        let backbone = self.pricer.backbone();
        spec.validate(backbone.layers).ok()?;
        let plan = plan_shape_only(spec, backbone, self.pricer.classes()).ok()?;
        let profile = &self.pricer.profiles()[self.space.select_index()];
        Some(cost(&plan, profile, self.pricer.constants()).predicted_online_s)
    }

    fn accuracy_floor(&self) -> Option<f64> {
        self.space.constraints.min_accuracy
    }
}

impl Study {
    /// The stored trials, priced by this study's cost model ([`View::trials`]).
    pub fn trials(&self) -> Result<Vec<Trial>> {
        self.view.trials()
    }

    /// Refuses to add trials priced by this release to a study another one priced.
    pub fn check_resumable(&self) -> Result<()> {
        match &self.view.priced_by {
            Some(old) => Err(Error::Study {
                at: self.view.location.to_string(),
                problem: format!(
                    "its trials were priced by cost model `{old}`; this release prices with `{}`, \
                     and the two would mix in one front. `report` and `replay` reprice it \
                     whole; to search on, start a new study (another --out or --study)",
                    cryptpeft_cost_model::version()
                ),
            }),
            None => Ok(()),
        }
    }

    /// The strategies' view of this study, with seed `seed`.
    pub fn ctx(&self, seed: u64) -> Ctx<'_> {
        self.view.ctx(seed, &self.reinforce)
    }

    /// Trainings the budget allows (default: every valid configuration once per rung 0).
    pub fn budget(&self) -> usize {
        self.view
            .space
            .budget
            .evaluations
            .unwrap_or(self.view.genomes.valid().len())
    }
}

/// What a report sees of a study: its space, directory, stored trials and prices.
/// Opened alone ([`view`], the dashboard) it builds no feature cache, calibrates
/// nothing and writes nothing.
pub struct View {
    pub space: SpaceFile,
    pub dir: PathBuf,
    pub location: Location,
    pub store: Box<dyn Storage + Send>,
    pub genomes: Space,
    pub pricer: Pricer,
    /// The cost model that priced the stored trials, when it is not this release's:
    /// [`View::trials`] then reprices every trial, and a worker refuses to resume.
    pub priced_by: Option<String>,
}

/// Opens the existing study at `location` of `space` for reading.
pub fn view(space: SpaceFile, dir: &Path, location: Location) -> Result<View> {
    let backbone = eval::load_backbone(&space)?.spec;
    let classes = space.data.num_classes();
    let genomes = Space::new(&space.genes, &backbone, classes)?;
    let store = location.open_read_only()?;
    let not_started = || Error::Study {
        at: location.to_string(),
        problem: "has no cost-model constants yet (its first run has not started)".into(),
    };
    let text = store.meta("constants")?.ok_or_else(not_started)?;
    let constants = Constants::from_yaml(&text)
        .map_err(|e| Error::Other(format!("the study's stored constants: {e}")))?;
    let today = cryptpeft_cost_model::version();
    let priced_by = match store.meta("cost_model")? {
        Some(v) => (v != today).then_some(v),
        None if store.trials()?.is_empty() => None,
        None => Some(UNVERSIONED.to_string()),
    };
    let pricer = Pricer::new(backbone, classes, space.profiles(), constants);
    Ok(View {
        space,
        dir: dir.to_path_buf(),
        location,
        store,
        genomes,
        pricer,
        priced_by,
    })
}

impl View {
    /// The controller's settings, its latency target defaulting to the selection
    /// profile's latency budget.
    pub fn reinforce(&self) -> ReinforceConfig {
        let mut reinforce = self.space.reinforce.clone();
        if reinforce.latency_target_s.is_none() {
            let name = &self.space.networks[self.space.select_index()];
            reinforce.latency_target_s = self.space.constraints.latency_s.get(name).copied();
        }
        reinforce
    }

    /// The strategies' view of this study, with seed `seed` and the controller's
    /// settings `reinforce`.
    pub fn ctx<'a>(&'a self, seed: u64, reinforce: &'a ReinforceConfig) -> Ctx<'a> {
        Ctx {
            space: &self.genomes,
            seed,
            population: self.space.population,
            reinforce,
            objectives: self,
        }
    }

    /// The stored trials with the seconds since each one's heartbeat.
    pub fn aged_trials(&self) -> Result<Vec<(Trial, f64)>> {
        let mut trials = self.store.aged_trials()?;
        if self.priced_by.is_some() {
            for (t, _) in &mut trials {
                t.price = self.pricer.price(&self.genomes.spec(&t.genome));
            }
        }
        Ok(trials)
    }

    /// The stored trials, with prices from this study's cost model: repriced whole by
    /// this release's when another one priced them.
    pub fn trials(&self) -> Result<Vec<Trial>> {
        Ok(self.aged_trials()?.into_iter().map(|(t, _)| t).collect())
    }
}

/// The point of a candidate of `price` (constraints: every profile's latency budget
/// and the dealer-material budget, relative excess; the accuracy floor, absolute
/// shortfall).
pub fn point_of(space: &SpaceFile, price: &Price, accuracy: Option<f64>) -> Point {
    let seconds = &price.seconds;
    let mut violation = 0.0;
    for (p, name) in space.networks.iter().enumerate() {
        if let Some(b) = space.constraints.latency_s.get(name) {
            violation += (seconds[p] / b - 1.0).max(0.0);
        }
    }
    if let Some(mb) = space.constraints.offline_mb {
        violation += (price.offline_bytes as f64 / (mb * 1e6) - 1.0).max(0.0);
    }
    if let (Some(floor), Some(a)) = (space.constraints.min_accuracy, accuracy) {
        violation += (floor - a).max(0.0);
    }
    Point {
        accuracy: accuracy.unwrap_or(0.0),
        seconds: seconds[space.select_index()],
        violation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::DEFAULT_SPACE;

    #[test]
    fn the_offline_budget_is_a_constraint() {
        let with = |mb: &str| {
            let text = format!("{DEFAULT_SPACE}constraints:\n  offline_mb: {mb}\n");
            SpaceFile::parse(&text, "x.yaml").unwrap()
        };
        let price = Price {
            online_bytes: 1,
            rounds: 1,
            depth_bound: 0,
            offline_bytes: 30_000_000,
            seconds: vec![0.1, 0.2],
        };
        assert_eq!(point_of(&with("40"), &price, Some(0.9)).violation, 0.0);
        let p = point_of(&with("25"), &price, Some(0.9));
        assert!((p.violation - 0.2).abs() < 1e-12, "{}", p.violation);
        let e = SpaceFile::parse(
            &format!("{DEFAULT_SPACE}constraints:\n  offline_mb: -1\n"),
            "x.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("offline_mb"), "{e}");
    }
}
