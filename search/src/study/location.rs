//! Where a run's study lives: the run directory's SQLite file by default, or a named
//! study in a PostgreSQL database (`--storage postgresql://USER@HOST/DB`). A run
//! directory remembers a server study (`storage.json`, without the password), so that
//! resuming and `report DIR` find it again.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::postgres::{redact, Mode, PgStudy};
use super::sqlite::SqliteStudy;
use super::store::Storage;
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub enum Location {
    Sqlite(PathBuf),
    /// A study named `study` in the database at `url`.
    Postgres {
        url: String,
        study: String,
    },
}

/// What a run directory records of a server study.
#[derive(Serialize, Deserialize)]
struct Remembered {
    storage: String,
    study: String,
}

fn remembered_path(dir: &Path) -> PathBuf {
    dir.join("storage.json")
}

/// The run directory's own SQLite study.
pub fn sqlite_path(dir: &Path) -> PathBuf {
    dir.join("study.sqlite")
}

impl Location {
    /// The study of run directory `dir`: in the database `storage` names (the study
    /// `name` there), else in the database `dir` remembers, else in `dir`'s SQLite file.
    pub fn of_run(dir: &Path, storage: Option<&str>, name: Option<&str>) -> Result<Self> {
        let remembered = Self::remembered(dir)?;
        let Some(url) = storage else {
            return Ok(remembered
                .map(|r| Location::Postgres {
                    url: r.storage,
                    study: r.study,
                })
                .unwrap_or_else(|| Location::Sqlite(sqlite_path(dir))));
        };
        if !(url.starts_with("postgresql://") || url.starts_with("postgres://")) {
            return Err(Error::Other(format!(
                "--storage `{}`: a postgresql://USER@HOST/DB URL (without it the study is the \
                 run directory's SQLite file)",
                redact_any(url)
            )));
        }
        let study = name
            .map(str::to_string)
            .or(remembered.map(|r| r.study))
            .ok_or_else(|| {
                Error::Other(
                    "which study of the database? name it with --study (a run names it after its \
                     space)"
                        .into(),
                )
            })?;
        Ok(Location::Postgres {
            url: url.to_string(),
            study,
        })
    }

    fn remembered(dir: &Path) -> Result<Option<Remembered>> {
        let path = remembered_path(dir);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| Error::Study {
                    at: path.display().to_string(),
                    problem: format!("does not parse: {e}"),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// Opens (creating if needed) the study.
    pub fn open(&self) -> Result<Box<dyn Storage + Send>> {
        Ok(match self {
            Location::Sqlite(p) => Box::new(SqliteStudy::open(p)?),
            Location::Postgres { url, study } => Box::new(PgStudy::open(url, study, Mode::Create)?),
        })
    }

    /// Opens the study if it exists; creates nothing.
    pub fn open_existing(&self) -> Result<Box<dyn Storage + Send>> {
        match self {
            Location::Sqlite(p) if !p.is_file() => Err(Error::Study {
                at: self.to_string(),
                problem: "no study here".into(),
            }),
            Location::Sqlite(_) => self.open(),
            Location::Postgres { url, study } => {
                Ok(Box::new(PgStudy::open(url, study, Mode::Existing)?))
            }
        }
    }

    /// Opens the existing study to read it only: no schema upgrade, and the database
    /// refuses any write (the dashboard).
    pub fn open_read_only(&self) -> Result<Box<dyn Storage + Send>> {
        match self {
            Location::Sqlite(p) if !p.is_file() => Err(Error::Study {
                at: self.to_string(),
                problem: "no study here".into(),
            }),
            Location::Sqlite(p) => Ok(Box::new(SqliteStudy::open_read_only(p)?)),
            Location::Postgres { url, study } => {
                Ok(Box::new(PgStudy::open(url, study, Mode::ReadOnly)?))
            }
        }
    }

    /// Records a server study in `dir` (an SQLite study is the directory's own).
    pub fn remember(&self, dir: &Path) -> Result<()> {
        if let Location::Postgres { url, study } = self {
            let r = Remembered {
                storage: redact(url),
                study: study.clone(),
            };
            let text = serde_json::to_string_pretty(&r).expect("json");
            super::write_atomic(&remembered_path(dir), text.as_bytes())?;
        }
        Ok(())
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(p) => write!(f, "{}", p.display()),
            Location::Postgres { url, study } => write!(f, "`{study}` at {}", redact(url)),
        }
    }
}

/// A storage argument for a message, never with a password.
fn redact_any(s: &str) -> String {
    match s.split_once('@') {
        Some((_, rest)) => format!("…@{rest}"),
        None => s.to_string(),
    }
}
