//! Errors of the audit log. Every message names the file (or flag) and the cause.

use std::path::PathBuf;

/// Everything that can go wrong while writing, reading or exporting the audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The log (or its directory or lock file) cannot be created or written.
    #[error(
        "audit log {path} is not writable: {source}; IronClaw will not start without a writable audit log"
    )]
    NotWritable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The log file is readable or writable by others and its mode could not be fixed.
    #[error(
        "audit log {path} has mode {mode:04o} and could not be restricted to 0600: {source}; \
         IronClaw will not start with an audit log others can read"
    )]
    Insecure {
        path: PathBuf,
        mode: u32,
        #[source]
        source: std::io::Error,
    },
    /// The audit settings themselves are unusable.
    #[error("invalid audit log setting {key}: {message}")]
    Config { key: &'static str, message: String },
    /// Appending failed; the event was NOT recorded and the action it records must not proceed.
    #[error("audit log {path}: could not record the event: {cause}")]
    Write { path: PathBuf, cause: String },
    /// The caller put a reserved key (ts, event, eventId, sessionId, skill) into the event context.
    #[error(
        "audit event {event}: context field {key:?} is reserved (ts, event, eventId, sessionId and skill are set by the audit log)"
    )]
    ReservedField { event: &'static str, key: String },
    /// A log file (current, rotated or gzipped) could not be read.
    #[error("audit log {path} could not be read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A complete line of a log file is not a valid audit record (tampering or disk corruption).
    #[error("audit log {path} line {line} is not a valid audit record: {cause}")]
    Corrupt {
        path: PathBuf,
        line: u64,
        cause: String,
    },
    /// A command-line value is invalid.
    #[error("invalid value for {flag}: {message}")]
    InvalidArgument { flag: &'static str, message: String },
    /// Writing the export file failed; nothing was left at the destination.
    #[error("audit export to {path} failed: {source}")]
    Export {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Writing to the caller's output stream failed (e.g. a closed pipe).
    #[error("writing audit output failed: {0}")]
    Output(#[source] std::io::Error),
}
