//! Errors of the search: each names the file, key or trial it concerns.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A space file is malformed or holds a bad value.
    #[error("{origin}: {}{problem}", where_(key, line))]
    Space {
        origin: String,
        key: String,
        line: Option<usize>,
        problem: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `at`: the study's file, or its name and database.
    #[error("study {at}: {problem}")]
    Study { at: String, problem: String },
    /// A finish that changed nothing: another worker took the trial over (this one
    /// looked dead), and its result stands.
    #[error("study {at}: trial {number} is no longer this worker's (another worker took it over)")]
    TakenOver { at: String, number: u64 },
    #[error(transparent)]
    Train(#[from] cryptpeft_train::TrainError),
    #[error("{0}")]
    Other(String),
}

fn where_(key: &str, line: &Option<usize>) -> String {
    match (key.is_empty(), line) {
        (false, Some(l)) => format!("`{key}` (line {l}): "),
        (false, None) => format!("`{key}`: "),
        _ => String::new(),
    }
}

impl Error {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Other(format!("study database: {e}"))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
