//! The study in an embedded SQLite file (the default): workers on one machine share it
//! through SQLite's write lock.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use super::store::{
    claimed, new_state, no_longer_ours, parse_rows, Claim, Decision, Finished, Proposal, Row,
    Storage, Trial, ROW_COLUMNS,
};
use crate::error::{Error, Result};
use crate::eval::Epoch;
use crate::fault;

/// Whether the trials table has `column` (studies of older releases lack some).
fn has_column(conn: &Connection, column: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT COUNT(*) FROM pragma_table_info('trials') WHERE name = ?1",
        [column],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
}

pub struct SqliteStudy {
    path: PathBuf,
    conn: Connection,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
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
    checkpoint BLOB,
    propose_seconds REAL,
    curve TEXT,
    UNIQUE (config, epochs)
);
";

impl SqliteStudy {
    /// Opens (creating if needed) the study at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let err = |e: rusqlite::Error| Error::Study {
            at: path.display().to_string(),
            problem: e.to_string(),
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(60)).map_err(err)?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        // Columns added since the first release: checkpoints (kept as files only
        // before), proposal times, training curves.
        for (column, kind) in [
            ("checkpoint", "BLOB"),
            ("propose_seconds", "REAL"),
            ("curve", "TEXT"),
        ] {
            if !has_column(&conn, column).map_err(err)? {
                conn.execute_batch(&format!("ALTER TABLE trials ADD COLUMN {column} {kind};"))
                    .map_err(err)?;
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            conn,
        })
    }

    /// Opens the study at `path` to read it only: no schema upgrade, no journal
    /// change, and SQLite refuses any write (the dashboard).
    pub fn open_read_only(path: &Path) -> Result<Self> {
        let err = |e: rusqlite::Error| Error::Study {
            at: path.display().to_string(),
            problem: e.to_string(),
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(60)).map_err(err)?;
        if !has_column(&conn, "propose_seconds").map_err(err)? {
            return Err(Error::Study {
                at: path.display().to_string(),
                problem: "written by an older release: `cryptpeft-search report DIR` upgrades it"
                    .into(),
            });
        }
        Ok(Self {
            path: path.to_path_buf(),
            conn,
        })
    }

    fn at(&self) -> String {
        self.path.display().to_string()
    }

    fn err(&self, e: impl std::fmt::Display) -> Error {
        Error::Study {
            at: self.at(),
            problem: e.to_string(),
        }
    }

    fn read_rows(conn: &Connection) -> rusqlite::Result<Vec<Row>> {
        let mut st = conn.prepare(&format!(
            "SELECT {ROW_COLUMNS}, ?1 - heartbeat FROM trials ORDER BY number"
        ))?;
        let rows = st.query_map([now()], |r| {
            Ok(Row {
                number: r.get(0)?,
                genome: r.get(1)?,
                config: r.get(2)?,
                epochs: r.get(3)?,
                state: r.get(4)?,
                worker: r.get(5)?,
                price: r.get(6)?,
                val_accuracy: r.get(7)?,
                test_accuracy: r.get(8)?,
                train_seconds: r.get(9)?,
                message: r.get(10)?,
                propose_seconds: r.get(11)?,
                age: r.get(12)?,
            })
        })?;
        rows.collect()
    }
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
        // An immediate transaction holds SQLite's write lock from the first read.
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        let trials = parse_rows(Self::read_rows(&tx)?, &self.at())?;
        let decision = Decision::new(trials, worker, propose);
        match &decision {
            Decision::TakeOver(tr) => {
                tx.execute(
                    "UPDATE trials SET worker = ?1, heartbeat = ?2 WHERE number = ?3",
                    params![worker, now(), tr.number as i64],
                )?;
            }
            Decision::Record(number, new) => {
                tx.execute(
                    "INSERT INTO trials (number, genome, config, epochs, state, worker, heartbeat, price,
                                         propose_seconds)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    params![
                        *number as i64,
                        serde_json::to_string(&new.genome).expect("genome"),
                        new.config,
                        new.epochs as i64,
                        new_state(new).as_str(),
                        worker,
                        now(),
                        serde_json::to_string(&new.price).expect("price"),
                        new.propose_seconds,
                    ],
                )
                .map_err(|e| self.err(format!("recording trial {number} ({}): {e}", new.config)))?;
            }
            Decision::Wait | Decision::Done => return Ok(claimed(decision, worker)),
        }
        tx.commit()?;
        Ok(claimed(decision, worker))
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
        outcome: std::result::Result<Finished, String>,
    ) -> Result<()> {
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        let changed = match &outcome {
            Ok(f) => tx.execute(
                "UPDATE trials SET state = 'complete', val_accuracy = ?1, train_seconds = ?2,
                 checkpoint = ?3, heartbeat = ?4, curve = ?7
                 WHERE number = ?5 AND worker = ?6 AND state = 'running'",
                params![
                    f.accuracy,
                    f.seconds,
                    f.checkpoint,
                    now(),
                    number as i64,
                    worker,
                    serde_json::to_string(&f.curve).expect("a curve serializes")
                ],
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
            return Err(no_longer_ours(&self.at(), number));
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

    fn aged_trials(&self) -> Result<Vec<(Trial, f64)>> {
        parse_rows(Self::read_rows(&self.conn)?, &self.at())
    }

    fn checkpoint(&self, number: u64) -> Result<Option<Vec<u8>>> {
        Ok(self
            .conn
            .query_row(
                "SELECT checkpoint FROM trials WHERE number = ?1",
                [number as i64],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }

    fn curve(&self, number: u64) -> Result<Option<Vec<Epoch>>> {
        // A read-only view of a study an older release made has no curve column.
        if !has_column(&self.conn, "curve")? {
            return Ok(None);
        }
        let text: Option<String> = self
            .conn
            .query_row(
                "SELECT curve FROM trials WHERE number = ?1",
                [number as i64],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        text.map(|t| serde_json::from_str(&t).map_err(|e| self.err(e)))
            .transpose()
    }

    fn settle(&self) -> Result<()> {
        self.conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .map_err(|e| self.err(e))
    }
}
