//! The mandatory audit log: one JSON object per line, durable before the action it records is
//! acknowledged, shared by several processes under a file lock, rotated, gzipped and expired.
//!
//! Layout next to the configured `path` (e.g. `~/.ironclaw/audit.log`):
//! - `audit.log`: the current file (0600), appended under an exclusive `flock` on
//! - `audit.log.lock`: a stable lock file (the log itself is renamed by rotation); its first 8
//!   bytes count rotations so that other processes notice one without a path lookup per batch,
//! - `audit.log.<UTC rotation time>` / `….gz`: rotated files, oldest first by name.

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
/// The one timestamp format of every audit field: RFC 3339, UTC, milliseconds, `Z`.
pub use time_fmt::{format_ts, unix_ms};
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

/// For `ironclaw doctor`: the permission problems of the log, its lock file, its rotated files
/// and its directory, each with the fix. Empty when everything is private to its owner.
pub fn check_permissions(cfg: &AuditConfig) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut problems = Vec::new();
    let mode_of = |p: &std::path::Path| {
        std::fs::metadata(p)
            .map(|m| m.permissions().mode() & 0o7777)
            .map_err(|e| e.to_string())
    };
    let dir = files::log_dir(&cfg.path);
    match mode_of(&dir) {
        Ok(m) if m & 0o022 != 0 => problems.push(format!(
            "audit log directory {} has mode {m:04o}: others can replace the log; fix: chmod 700 {}",
            dir.display(),
            dir.display()
        )),
        Ok(_) => {}
        Err(e) => problems.push(format!(
            "audit log directory {} cannot be inspected: {e}",
            dir.display()
        )),
    }
    let mut paths = vec![cfg.path.clone(), files::lock_path(&cfg.path)];
    if let Ok(rotated) = list_rotated(&cfg.path) {
        for r in rotated {
            if r.has_plain {
                paths.push(r.plain.clone());
            }
            if r.has_gz {
                paths.push(r.gz());
            }
        }
    }
    for p in paths {
        match mode_of(&p) {
            Ok(m) if m & 0o077 != 0 => problems.push(format!(
                "audit log file {} has mode {m:04o}: others can read or change it; fix: chmod 600 {}",
                p.display(),
                p.display()
            )),
            Ok(_) => {}
            Err(_) if p != cfg.path => {}
            Err(e) => problems.push(format!(
                "audit log {} cannot be inspected: {e}; IronClaw creates it with mode 0600 when the gateway starts",
                p.display()
            )),
        }
    }
    problems
}
