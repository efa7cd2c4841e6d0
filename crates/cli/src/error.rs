//! What can go wrong in a `shoal` command.

use std::path::PathBuf;

/// Why a command failed. Every variant says what was being done and with what, so the message
/// alone tells the user what to fix.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file (`-` for stdin or stdout).
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A flag's value is not acceptable.
    #[error("{0}")]
    Usage(String),
    /// The server could not be reached, or the connection failed mid-transfer.
    #[error("{context}: {source}")]
    Http {
        /// What was being done, e.g. `uploading chunk 2 to http://…`.
        context: String,
        /// The error.
        source: reqwest::Error,
    },
    /// The server answered with an error status.
    #[error("{context}: HTTP {status}: {message}")]
    Server {
        /// What was being done.
        context: String,
        /// The HTTP status.
        status: reqwest::StatusCode,
        /// The server's error codes and messages (from its JSON error body), or its plain body.
        message: String,
    },
    /// The server answered in a way this client does not understand.
    #[error("{0}")]
    Protocol(String),
    /// The content received does not match the digest asked for.
    #[error("digest mismatch: expected {expected}, received {actual}; {outcome}")]
    Mismatch {
        /// The digest asked for (`sha256:<hex>`).
        expected: String,
        /// The digest of what arrived.
        actual: String,
        /// What became of the data (nothing written, or already written to stdout).
        outcome: &'static str,
    },
}

impl CliError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn http(context: impl Into<String>) -> impl FnOnce(reqwest::Error) -> Self {
        let context = context.into();
        move |source| Self::Http { context, source }
    }
}
