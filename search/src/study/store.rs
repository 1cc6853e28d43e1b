//! What a study store guarantees, whatever database holds it (the way Optuna's RDB
//! storage works): every state change is one committed transaction, so a kill at any
//! instant loses nothing; a proposal is made and recorded under the study's write lock,
//! so workers sharing a study never take the same configuration; a dead worker's trial
//! is taken over. [`super::sqlite`] and [`super::postgres`] implement it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::eval::Epoch;
use crate::genes::Genome;
use crate::price::Price;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Running,
    Complete,
    Failed,
    /// Priced, not trained (slow for the controller, or not promoted to the next rung).
    Pruned,
}

impl State {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Complete => "complete",
            State::Failed => "failed",
            State::Pruned => "pruned",
        }
    }
    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "running" => State::Running,
            "complete" => State::Complete,
            "failed" => State::Failed,
            "pruned" => State::Pruned,
            other => return Err(Error::Other(format!("unknown trial state `{other}`"))),
        })
    }
}

/// One trial: a configuration trained at one fidelity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    pub number: u64,
    pub genome: Genome,
    /// The spec's label (unique per configuration).
    pub config: String,
    pub epochs: usize,
    pub state: State,
    /// Who holds or held it: `host#space:pid` ([`worker_name`]).
    pub worker: String,
    pub price: Price,
    pub val_accuracy: Option<f64>,
    pub test_accuracy: Option<f64>,
    pub train_seconds: Option<f64>,
    pub message: Option<String>,
    /// The proposal's own time (the strategy's surrogate fit and acquisition).
    pub propose_seconds: Option<f64>,
}

/// A trial to record: the strategy's proposal, already priced.
#[derive(Debug, Clone)]
pub struct NewTrial {
    pub genome: Genome,
    pub config: String,
    pub epochs: usize,
    pub price: Price,
    pub propose_seconds: f64,
    /// Record as pruned (not to be trained).
    pub skip: bool,
}

/// A trained trial's result, recorded in one transaction with its checkpoint, so that a
/// report on any machine can export it.
#[derive(Debug, Clone)]
pub struct Finished {
    pub accuracy: f64,
    pub seconds: f64,
    /// The adapter checkpoint (safetensors bytes).
    pub checkpoint: Vec<u8>,
    pub curve: Vec<Epoch>,
}

/// What a worker gets from [`Storage::claim`].
#[derive(Debug)]
pub enum Claim {
    /// Train this trial (new, or taken over from a dead worker).
    Run(Box<Trial>),
    /// A skipped configuration was recorded; ask again.
    Recorded,
    /// Others are computing what the next proposal needs; ask again later.
    Wait,
    Done,
}

/// What the proposer answers inside a claim.
pub enum Proposal {
    New(NewTrial),
    Wait,
    Done,
}

/// Where a study lives: an SQLite file for workers on one machine, a PostgreSQL
/// database for workers on several.
pub trait Storage {
    /// Stores `value` under `key` unless present; returns the stored value.
    fn meta_or_insert(&self, key: &str, value: &str) -> Result<String>;
    fn meta(&self, key: &str) -> Result<Option<String>>;
    /// Under the study's write lock: takes over a dead worker's running trial, or
    /// records the proposal `propose` makes from all trials so far.
    fn claim(&self, worker: &str, propose: &mut dyn FnMut(&[Trial]) -> Proposal) -> Result<Claim>;
    fn heartbeat(&self, number: u64, worker: &str) -> Result<()>;
    /// Completes (result and checkpoint) or fails (message) a running trial: one
    /// transaction.
    fn finish(
        &self,
        number: u64,
        worker: &str,
        outcome: std::result::Result<Finished, String>,
    ) -> Result<()>;
    fn set_test_accuracy(&self, number: u64, accuracy: f64) -> Result<()>;
    /// Every trial with the seconds since its last heartbeat, by the database's clock.
    fn aged_trials(&self) -> Result<Vec<(Trial, f64)>>;
    fn trials(&self) -> Result<Vec<Trial>> {
        Ok(self.aged_trials()?.into_iter().map(|(t, _)| t).collect())
    }
    /// The checkpoint a completed trial recorded (none for studies of releases that
    /// kept checkpoints as files only).
    fn checkpoint(&self, number: u64) -> Result<Option<Vec<u8>>>;
    /// The training curve a completed trial recorded (none before curves were kept).
    fn curve(&self, number: u64) -> Result<Option<Vec<Epoch>>>;
    /// Makes the study's own files whole (SQLite folds its log into the database file);
    /// a server keeps its own.
    fn settle(&self) -> Result<()> {
        Ok(())
    }
}

/// A running trial whose heartbeat is older than this belongs to a dead worker.
pub const STALE_AFTER: Duration = Duration::from_secs(60);
/// How often a worker beats while it trains.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

/// This worker's name: `host#space:pid`, where `space` names this kernel boot and pid
/// namespace, so that two machines (or containers) with one hostname never take each
/// other's process ids for their own.
pub fn worker_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    format!("{host}#{}:{}", process_space(), std::process::id())
}

/// The boot id's first 8 hex digits and the pid namespace's inode; `?` where unknown.
fn process_space() -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok();
    let ns = std::fs::read_link("/proc/self/ns/pid").ok();
    match (boot, ns) {
        (Some(b), Some(n)) => {
            let n = n.to_string_lossy();
            let inode = n.trim_start_matches("pid:[").trim_end_matches(']');
            format!("{}.{inode}", b.trim().get(..8).unwrap_or("?"))
        }
        _ => "?".into(),
    }
}

/// Whether a worker named by [`worker_name`] is known dead: a process of this host,
/// boot and pid namespace that no longer exists. Other workers are judged by their
/// heartbeat only.
fn known_dead(worker: &str) -> bool {
    let me = worker_name();
    let space = |w: &str| w.rsplit_once(':').map(|(h, _)| h.to_string());
    if space(worker) != space(&me) || me.contains("#?:") {
        return false;
    }
    match worker
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<i32>().ok())
    {
        // Signal 0 checks existence; ESRCH means gone.
        Some(pid) => {
            let r = unsafe { libc::kill(pid, 0) };
            r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
        }
        None => false,
    }
}

/// A stored trial as either database returns it; `age` is the seconds since its last
/// heartbeat by the database's own clock (workers' clocks may disagree).
pub(crate) struct Row {
    pub number: i64,
    pub genome: String,
    pub config: String,
    pub epochs: i64,
    pub state: String,
    pub worker: String,
    pub age: f64,
    pub price: String,
    pub val_accuracy: Option<f64>,
    pub test_accuracy: Option<f64>,
    pub train_seconds: Option<f64>,
    pub message: Option<String>,
    pub propose_seconds: Option<f64>,
}

/// The columns a [`Row`] is read from, in its order; the age follows them.
pub(crate) const ROW_COLUMNS: &str = "number, genome, config, epochs, state, worker, price, \
                                      val_accuracy, test_accuracy, train_seconds, message, \
                                      propose_seconds";

impl Row {
    /// `at` names the study in errors.
    fn parse(self, at: &str) -> Result<(Trial, f64)> {
        let err = |e: serde_json::Error| Error::Study {
            at: at.to_string(),
            problem: format!("trial {}: {e}", self.number),
        };
        let t = Trial {
            number: self.number as u64,
            genome: serde_json::from_str(&self.genome).map_err(err)?,
            config: self.config,
            epochs: self.epochs as usize,
            state: State::parse(&self.state)?,
            worker: self.worker,
            price: serde_json::from_str(&self.price).map_err(err)?,
            val_accuracy: self.val_accuracy,
            test_accuracy: self.test_accuracy,
            train_seconds: self.train_seconds,
            message: self.message,
            propose_seconds: self.propose_seconds,
        };
        Ok((t, self.age))
    }
}

pub(crate) fn parse_rows(rows: Vec<Row>, at: &str) -> Result<Vec<(Trial, f64)>> {
    rows.into_iter().map(|r| r.parse(at)).collect()
}

/// What a claim does, decided under the study's write lock from all its trials.
pub(crate) enum Decision {
    /// Take over this dead worker's trial.
    TakeOver(Trial),
    /// Record a new trial under this number.
    Record(u64, NewTrial),
    Wait,
    Done,
}

impl Decision {
    pub(crate) fn new(
        trials: Vec<(Trial, f64)>,
        worker: &str,
        propose: &mut dyn FnMut(&[Trial]) -> Proposal,
    ) -> Self {
        // A trial under this worker's own name is not one it holds (a worker claims
        // only between trials): its pid was reused after a dead worker's, and the
        // heartbeat's age tells.
        let orphan = trials.iter().find(|(tr, age)| {
            tr.state == State::Running
                && (*age > STALE_AFTER.as_secs_f64()
                    || (tr.worker != worker && known_dead(&tr.worker)))
        });
        if let Some((tr, _)) = orphan {
            return Decision::TakeOver(tr.clone());
        }
        let list: Vec<Trial> = trials.into_iter().map(|(t, _)| t).collect();
        match propose(&list) {
            Proposal::New(n) => Decision::Record(list.last().map_or(0, |t| t.number + 1), n),
            Proposal::Wait => Decision::Wait,
            Proposal::Done => Decision::Done,
        }
    }
}

/// The state a new trial is recorded in.
pub(crate) fn new_state(new: &NewTrial) -> State {
    if new.skip {
        State::Pruned
    } else {
        State::Running
    }
}

/// The claim a committed decision gives `worker`.
pub(crate) fn claimed(decision: Decision, worker: &str) -> Claim {
    match decision {
        Decision::TakeOver(mut tr) => {
            tr.worker = worker.to_string();
            Claim::Run(Box::new(tr))
        }
        Decision::Record(_, new) if new.skip => Claim::Recorded,
        Decision::Record(number, new) => Claim::Run(Box::new(Trial {
            number,
            genome: new.genome,
            config: new.config,
            epochs: new.epochs,
            state: State::Running,
            worker: worker.to_string(),
            price: new.price,
            val_accuracy: None,
            test_accuracy: None,
            train_seconds: None,
            message: None,
            propose_seconds: Some(new.propose_seconds),
        })),
        Decision::Wait => Claim::Wait,
        Decision::Done => Claim::Done,
    }
}

/// The message of a finish that changed nothing: another worker took the trial over
/// (this one looked dead); its result stands.
pub(crate) fn no_longer_ours(at: &str, number: u64) -> Error {
    Error::TakenOver {
        at: at.to_string(),
        number,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(worker: &str) -> Trial {
        Trial {
            number: 0,
            genome: [0; 8],
            config: "h1-r8-s1".into(),
            epochs: 1,
            state: State::Running,
            worker: worker.into(),
            price: Price {
                online_bytes: 0,
                rounds: 0,
                depth_bound: 0,
                offline_bytes: 0,
                seconds: vec![0.0],
            },
            val_accuracy: None,
            test_accuracy: None,
            train_seconds: None,
            message: None,
            propose_seconds: None,
        }
    }

    #[test]
    fn a_dead_trial_under_this_workers_reused_name_is_taken_over_by_its_age() {
        let me = worker_name();
        let asked = std::cell::Cell::new(false);
        let mut propose = |_: &[Trial]| {
            asked.set(true);
            Proposal::Done
        };
        let stale = STALE_AFTER.as_secs_f64() + 1.0;
        match Decision::new(vec![(running(&me), stale)], &me, &mut propose) {
            Decision::TakeOver(t) => assert_eq!(t.number, 0),
            _ => panic!("a stale trial under this worker's name blocks the study"),
        }
        assert!(!asked.get());
        // A fresh heartbeat under this name is not taken over: the strategy decides.
        let fresh = Decision::new(vec![(running(&me), 1.0)], &me, &mut propose);
        assert!(matches!(fresh, Decision::Done) && asked.get());
    }

    #[test]
    fn only_a_gone_process_of_this_process_space_is_known_dead() {
        let me = worker_name();
        assert!(me.ends_with(&format!(":{}", std::process::id())), "{me}");
        let (space, _) = me.rsplit_once(':').unwrap();
        assert!(!known_dead(&me));
        // Far above any pid this kernel hands out (pid_max is at most 2^22).
        let gone = format!("{space}:{}", (1 << 22) + 7);
        assert!(known_dead(&gone));
        // Same hostname, another machine or container: judged by its heartbeat only.
        let host = space.split('#').next().unwrap();
        assert!(!known_dead(&format!("{host}#0000ffff.1:{}", (1 << 22) + 7)));
        assert!(!known_dead(&format!("{host}:{}", (1 << 22) + 7)));
    }
}
