//! Errors of the trainer: every file error names the path and what is wrong.

use std::path::{Path, PathBuf};

/// What can go wrong while loading, training or exporting.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file exists but its content is not what its format promises.
    #[error("{path}: {problem}")]
    Format { path: PathBuf, problem: String },
    /// A configuration or spec is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The training itself failed: it diverged, or a step panicked.
    #[error("training failed: {0}")]
    Training(String),
    #[error(transparent)]
    Spec(#[from] cryptpeft_types::SpecError),
}

impl TrainError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
    pub(crate) fn format(path: &Path, problem: impl Into<String>) -> Self {
        TrainError::Format {
            path: path.to_path_buf(),
            problem: problem.into(),
        }
    }
}

pub type Result<T, E = TrainError> = std::result::Result<T, E>;
