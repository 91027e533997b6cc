//! The engine's error type: every failure names what was wrong and where.

use std::path::PathBuf;

/// Errors raised by the diffusion engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A file of a model could not be read or parsed.
    #[error("{what} in {path}")]
    File {
        /// What went wrong, in words.
        what: String,
        /// The file that was being read.
        path: PathBuf,
    },

    /// A checkpoint lacks a tensor that the architecture needs.
    #[error("tensor {name} is missing from {path}")]
    MissingTensor {
        /// The tensor's full name, as in the checkpoint.
        name: String,
        /// The checkpoint file or folder.
        path: PathBuf,
    },

    /// A tensor in a checkpoint has a shape the architecture does not expect.
    #[error("tensor {name} has shape {found:?}, expected {expected:?} in {path}")]
    TensorShape {
        /// The tensor's full name.
        name: String,
        /// Its shape in the file.
        found: Vec<usize>,
        /// The shape the architecture needs.
        expected: Vec<usize>,
        /// The checkpoint file.
        path: PathBuf,
    },

    /// A model named `ORG/NAME` is neither in the Hugging Face cache nor downloadable.
    #[error("cannot load {repo}: {message}")]
    Hub {
        /// The repository id.
        repo: String,
        /// What was looked for, where, and why it failed.
        message: String,
    },

    /// A request that cannot be run, caught before any tensor work starts.
    #[error("{0}")]
    InvalidRequest(String),

    /// The job was cancelled between two steps.
    #[error("cancelled")]
    Cancelled,

    /// An error from candle, with the stage it happened in.
    #[error("{stage}: {source}")]
    Candle {
        /// Which stage of the pipeline failed (encode, denoise, decode...).
        stage: &'static str,
        /// The underlying error.
        #[source]
        source: candle_core::Error,
    },
}

/// The engine's result type.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Adds the pipeline stage to a candle error.
pub trait CandleContext<T> {
    /// Wraps a candle error with the stage it happened in.
    fn stage(self, stage: &'static str) -> Result<T>;
}

impl<T> CandleContext<T> for candle_core::Result<T> {
    fn stage(self, stage: &'static str) -> Result<T> {
        self.map_err(|source| EngineError::Candle { stage, source })
    }
}

impl EngineError {
    /// Builds a [`EngineError::File`] error.
    pub fn file(what: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        Self::File {
            what: what.into(),
            path: path.into(),
        }
    }
}
