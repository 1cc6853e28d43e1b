//! The study: trials with states and heartbeats in an embedded SQLite database, the way
//! Optuna's RDB storage works. Every state change is one committed transaction, so a
//! kill at any instant loses nothing; a proposal is made and recorded under SQLite's
//! write lock, so workers sharing a study never take the same configuration; a dead
//! worker's trial is taken over.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fault;
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
    fn as_str(self) -> &'static str {
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
    pub worker: String,
    pub price: Price,
    pub val_accuracy: Option<f64>,
    pub test_accuracy: Option<f64>,
    pub train_seconds: Option<f64>,
    pub message: Option<String>,
}

/// A trial to record: the strategy's proposal, already priced.
#[derive(Debug, Clone)]
pub struct NewTrial {
    pub genome: Genome,
    pub config: String,
    pub epochs: usize,
    pub price: Price,
    /// Record as pruned (not to be trained).
    pub skip: bool,
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

/// Where a study lives: SQLite here; a server database behind the same trait can
/// serve workers on several machines.
pub trait Storage {
    /// Stores `value` under `key` unless present; returns the stored value.
    fn meta_or_insert(&self, key: &str, value: &str) -> Result<String>;
    fn meta(&self, key: &str) -> Result<Option<String>>;
    /// Under the write lock: takes over a dead worker's running trial, or records the
    /// proposal `propose` makes from all trials so far.
    fn claim(&self, worker: &str, propose: &mut dyn FnMut(&[Trial]) -> Proposal) -> Result<Claim>;
    fn heartbeat(&self, number: u64, worker: &str) -> Result<()>;
    /// Completes (accuracy) or fails (message) a running trial: one transaction.
    fn finish(
        &self,
        number: u64,
        worker: &str,
        outcome: std::result::Result<(f64, f64), String>,
    ) -> Result<()>;
    fn set_test_accuracy(&self, number: u64, accuracy: f64) -> Result<()>;
    fn trials(&self) -> Result<Vec<Trial>>;
}

/// A running trial whose heartbeat is older than this belongs to a dead worker.
pub const STALE_AFTER: Duration = Duration::from_secs(60);
/// How often a worker beats while it trains.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

pub struct SqliteStudy {
    path: PathBuf,
    conn: Connection,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// This worker's name: host and process id.
pub fn worker_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    format!("{host}:{}", std::process::id())
}

/// Whether a worker named by [`worker_name`] is known dead: a process of this host that
/// no longer exists. Workers of other hosts are judged by their heartbeat only.
fn known_dead(worker: &str) -> bool {
    let me = worker_name();
    let host = |w: &str| w.rsplit_once(':').map(|(h, _)| h.to_string());
    if host(worker) != host(&me) {
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

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    number INTEGER PRIMARY KEY,
    genome TEXT NOT NULL,
    config TEXT NOT NULL,
    epochs INTEGER NOT NULL,
    state TEXT NOT NULL,
    worker TEXT NOT NULL,
    heartbeat REAL NOT NULL,
    price TEXT NOT NULL,
    val_accuracy REAL,
    test_accuracy REAL,
    train_seconds REAL,
    message TEXT,
    UNIQUE (config, epochs)
);
";

impl SqliteStudy {
    /// Opens (creating if needed) the study at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let err = |e: rusqlite::Error| Error::Study {
            path: path.to_path_buf(),
            problem: e.to_string(),
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(60)).map_err(err)?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        Ok(Self {
            path: path.to_path_buf(),
            conn,
        })
    }

    /// Folds the write-ahead log into the database file, so that the file alone (as
    /// committed or copied) holds the whole study.
    pub fn checkpoint(&self) -> Result<()> {
        self.conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .map_err(|e| self.err(e))
    }

    fn err(&self, e: impl std::fmt::Display) -> Error {
        Error::Study {
            path: self.path.clone(),
            problem: e.to_string(),
        }
    }

    fn read_trials(conn: &Connection) -> rusqlite::Result<Vec<RawTrial>> {
        let mut st = conn.prepare(
            "SELECT number, genome, config, epochs, state, worker, heartbeat, price,
                    val_accuracy, test_accuracy, train_seconds, message
             FROM trials ORDER BY number",
        )?;
        let rows = st.query_map([], |r| {
            Ok(RawTrial {
                number: r.get(0)?,
                genome: r.get(1)?,
                config: r.get(2)?,
                epochs: r.get(3)?,
                state: r.get(4)?,
                worker: r.get(5)?,
                heartbeat: r.get(6)?,
                price: r.get(7)?,
                val_accuracy: r.get(8)?,
                test_accuracy: r.get(9)?,
                train_seconds: r.get(10)?,
                message: r.get(11)?,
            })
        })?;
        rows.collect()
    }

    fn parse(&self, raw: Vec<RawTrial>) -> Result<Vec<(Trial, f64)>> {
        raw.into_iter()
            .map(|r| {
                let t = Trial {
                    number: r.number as u64,
                    genome: serde_json::from_str(&r.genome).map_err(|e| self.err(e))?,
                    config: r.config,
                    epochs: r.epochs as usize,
                    state: State::parse(&r.state)?,
                    worker: r.worker,
                    price: serde_json::from_str(&r.price).map_err(|e| self.err(e))?,
                    val_accuracy: r.val_accuracy,
                    test_accuracy: r.test_accuracy,
                    train_seconds: r.train_seconds,
                    message: r.message,
                };
                Ok((t, r.heartbeat))
            })
            .collect()
    }
}

struct RawTrial {
    number: i64,
    genome: String,
    config: String,
    epochs: i64,
    state: String,
    worker: String,
    heartbeat: f64,
    price: String,
    val_accuracy: Option<f64>,
    test_accuracy: Option<f64>,
    train_seconds: Option<f64>,
    message: Option<String>,
}

impl Storage for SqliteStudy {
    fn meta_or_insert(&self, key: &str, value: &str) -> Result<String> {
        self.conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES (?1, ?2)",
            params![key, value],
        )?;
        Ok(self.meta(key)?.expect("just inserted"))
    }

    fn meta(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    fn claim(&self, worker: &str, propose: &mut dyn FnMut(&[Trial]) -> Proposal) -> Result<Claim> {
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        let trials = self.parse(Self::read_trials(&tx)?)?;
        let t = now();
        let orphan = trials.iter().find(|(tr, beat)| {
            tr.state == State::Running
                && tr.worker != worker
                && (t - beat > STALE_AFTER.as_secs_f64() || known_dead(&tr.worker))
        });
        if let Some((tr, _)) = orphan {
            tx.execute(
                "UPDATE trials SET worker = ?1, heartbeat = ?2 WHERE number = ?3",
                params![worker, t, tr.number as i64],
            )?;
            tx.commit()?;
            let mut tr = tr.clone();
            tr.worker = worker.to_string();
            return Ok(Claim::Run(Box::new(tr)));
        }
        let list: Vec<Trial> = trials.into_iter().map(|(t, _)| t).collect();
        let new = match propose(&list) {
            Proposal::New(n) => n,
            Proposal::Wait => return Ok(Claim::Wait),
            Proposal::Done => return Ok(Claim::Done),
        };
        let number = list.last().map_or(0, |t| t.number + 1);
        let state = if new.skip {
            State::Pruned
        } else {
            State::Running
        };
        tx.execute(
            "INSERT INTO trials (number, genome, config, epochs, state, worker, heartbeat, price)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                number as i64,
                serde_json::to_string(&new.genome).expect("genome"),
                new.config,
                new.epochs as i64,
                state.as_str(),
                worker,
                t,
                serde_json::to_string(&new.price).expect("price"),
            ],
        )
        .map_err(|e| self.err(format!("recording trial {number} ({}): {e}", new.config)))?;
        tx.commit()?;
        if new.skip {
            return Ok(Claim::Recorded);
        }
        Ok(Claim::Run(Box::new(Trial {
            number,
            genome: new.genome,
            config: new.config,
            epochs: new.epochs,
            state,
            worker: worker.to_string(),
            price: new.price,
            val_accuracy: None,
            test_accuracy: None,
            train_seconds: None,
            message: None,
        })))
    }

    fn heartbeat(&self, number: u64, worker: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE trials SET heartbeat = ?1 WHERE number = ?2 AND worker = ?3 AND state = 'running'",
            params![now(), number as i64, worker],
        )?;
        Ok(())
    }

    fn finish(
        &self,
        number: u64,
        worker: &str,
        outcome: std::result::Result<(f64, f64), String>,
    ) -> Result<()> {
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        let changed = match &outcome {
            Ok((acc, secs)) => tx.execute(
                "UPDATE trials SET state = 'complete', val_accuracy = ?1, train_seconds = ?2,
                 heartbeat = ?3 WHERE number = ?4 AND worker = ?5 AND state = 'running'",
                params![acc, secs, now(), number as i64, worker],
            )?,
            Err(msg) => tx.execute(
                "UPDATE trials SET state = 'failed', message = ?1, heartbeat = ?2
                 WHERE number = ?3 AND worker = ?4 AND state = 'running'",
                params![msg, now(), number as i64, worker],
            )?,
        };
        fault::point("commit");
        tx.commit()?;
        if changed == 0 {
            // Another worker took the trial over (this one looked dead); its result stands.
            return Err(self.err(format!("trial {number} is no longer this worker's")));
        }
        Ok(())
    }

    fn set_test_accuracy(&self, number: u64, accuracy: f64) -> Result<()> {
        self.conn.execute(
            "UPDATE trials SET test_accuracy = ?1 WHERE number = ?2 AND test_accuracy IS NULL",
            params![accuracy, number as i64],
        )?;
        Ok(())
    }

    fn trials(&self) -> Result<Vec<Trial>> {
        let raw = Self::read_trials(&self.conn)?;
        Ok(self.parse(raw)?.into_iter().map(|(t, _)| t).collect())
    }
}
