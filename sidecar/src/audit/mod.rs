//! The mandatory audit log: one JSON object per line, durable before the action it records is
//! acknowledged, shared by several processes under a file lock, rotated, gzipped and expired.
//!
//! Layout next to the configured `path` (e.g. `~/.ironclaw/audit.log`):
//! - `audit.log`: the current file (0600), appended under an exclusive `flock` on
//! - `audit.log.lock`: a stable lock file (the log itself is renamed by rotation); its first 8
//!   bytes count rotations so that other processes notice one without a path lookup per batch,
//! - `audit.log.<UTC rotation time>` / `…​.gz`: rotated files, oldest first by name.

pub mod cli;
mod error;
mod event;
pub mod export;
mod files;
pub mod read;
mod rotate;
#[cfg(feature = "schema")]
pub mod schema;
mod time_fmt;
mod writer;

use std::path::PathBuf;

use rand::Rng;
use rand::distr::Alphanumeric;

pub use error::AuditError;
pub use event::{Event, EventType, RESERVED_KEYS, Record, UnknownEventType};
pub use files::{RotatedFile, list_rotated};
pub use writer::AuditLog;

/// `security.auditLog.*` of the config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditConfig {
    /// The current log file; the caller resolves `~` and `IRONCLAW_HOME`.
    pub path: PathBuf,
    /// Rotate when the current file would grow past this many MiB (at least 1).
    pub max_size_mb: u64,
    /// Delete rotated files whose newest event is older than this many days (at least 1).
    pub keep_days: u32,
    /// Gzip rotated files.
    pub compress: bool,
}

impl AuditConfig {
    /// `$IRONCLAW_HOME/audit.log`, else `$HOME/.ironclaw/audit.log`, else `.ironclaw/audit.log`.
    pub fn default_path() -> PathBuf {
        if let Some(home) = std::env::var_os("IRONCLAW_HOME").filter(|h| !h.is_empty()) {
            return PathBuf::from(home).join("audit.log");
        }
        let base = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .unwrap_or_default();
        base.join(".ironclaw").join("audit.log")
    }

    /// Rotation threshold in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_size_mb.saturating_mul(1024 * 1024)
    }

    /// Checks the numbers (the path is checked by opening it).
    pub fn validate(&self) -> Result<(), AuditError> {
        if self.max_size_mb == 0 {
            return Err(AuditError::Config {
                key: "security.auditLog.maxSizeMb",
                message: "must be at least 1 (MiB)".into(),
            });
        }
        if self.keep_days == 0 {
            return Err(AuditError::Config {
                key: "security.auditLog.keepDays",
                message: "must be at least 1 (day)".into(),
            });
        }
        if self.path.as_os_str().is_empty() || self.path.file_name().is_none() {
            return Err(AuditError::Config {
                key: "security.auditLog.path",
                message: format!("{:?} does not name a file", self.path),
            });
        }
        Ok(())
    }
}

impl Default for AuditConfig {
    /// The spec's defaults: 100 MiB, 90 days, gzip on; path from [`AuditConfig::default_path`].
    fn default() -> Self {
        AuditConfig {
            path: AuditConfig::default_path(),
            max_size_mb: 100,
            keep_days: 90,
            compress: true,
        }
    }
}

/// `"sess_"` followed by 10 random alphanumerics.
pub fn new_session_id() -> String {
    let suffix: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(10)
        .map(char::from)
        .collect();
    format!("sess_{suffix}")
}

/// A unique event id: 12 hex digits of Unix milliseconds then 20 random hex digits, so ids sort
/// roughly by time and never collide in practice (80 random bits per millisecond).
pub fn new_event_id(unix_ms: u64) -> String {
    let r: u128 = rand::rng().random();
    format!(
        "{:012x}{:020x}",
        unix_ms & 0xffff_ffff_ffff,
        r & ((1u128 << 80) - 1)
    )
}
