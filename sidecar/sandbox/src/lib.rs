//! IronClaw kernel sandbox: seccomp-bpf, Landlock and namespaces from grants.
//!
//! - [`policy`]: pure functions from grants to rules (environment, Landlock rules, mount plan,
//!   seccomp rule table, SBPL profile). They compile and are unit-tested on every OS.
//! - [`spawn`]: runs one skill under its [`Mode`]: `strict` (kernel enforcement: user, mount and
//!   network namespaces, Landlock, seccomp-bpf with a supervisor), `standard` (user-space checks
//!   only) or `audit-only` (nothing blocked, every attempt reported).
//! - [`apply_in_place`]: the in-pod exec wrapper's variant (no namespaces).
//!
//! Linux-only code lives in the private `linux` module behind `cfg(target_os = "linux")`; the
//! macOS exec path (Seatbelt) in `macos` behind `cfg(target_os = "macos")`.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

pub mod policy;

#[cfg(target_os = "linux")]
mod linux;

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
mod other;
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
pub use other::{
    Network, Sandboxed, SpawnOptions, apply_in_place, harden_supervisor, probe, spawn, spawn_with,
};

// macOS: Seatbelt (`sandbox-exec`) for strict mode. The exec plan is pure and tested here too.
#[cfg(target_os = "macos")]
mod macos;
#[cfg(any(target_os = "macos", test))]
pub mod macos_cmd;
#[cfg(target_os = "macos")]
pub use macos::{
    Network, Sandboxed, SpawnOptions, apply_in_place, harden_supervisor, probe, spawn, spawn_with,
};

// The non-Linux fallback is std-only; compile and test it here too so it cannot rot.
#[cfg(all(test, target_os = "linux"))]
#[allow(dead_code)] // the API surface other platforms use; exercised by its tests
#[path = "other.rs"]
mod other_os_check;

#[cfg(target_os = "linux")]
pub use linux::{
    Network, Sandboxed, SpawnOptions, apply_in_place, harden_supervisor, probe, spawn, spawn_with,
};

/// Sandbox mode (`security.sandbox.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Kernel enforcement (the default).
    Strict,
    /// Grants checked in user space only.
    Standard,
    /// Nothing blocked, every access attempt reported.
    AuditOnly,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Strict => "strict",
            Mode::Standard => "standard",
            Mode::AuditOnly => "audit-only",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The value given for `security.sandbox.mode` is not a mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "security.sandbox.mode {0:?} is not a sandbox mode (expected \"strict\", \"standard\" or \"audit-only\")"
)]
pub struct ModeParseError(pub String);

impl FromStr for Mode {
    type Err = ModeParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "strict" => Ok(Mode::Strict),
            "standard" => Ok(Mode::Standard),
            "audit-only" => Ok(Mode::AuditOnly),
            other => Err(ModeParseError(other.to_owned())),
        }
    }
}

/// Everything needed to run one skill.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    /// Skill name (validated with `ironclaw_crds::grants::validate_skill_name`).
    pub skill: String,
    pub mode: Mode,
    /// Resolved entrypoint + caller arguments; `argv[0]` is absolute.
    pub argv: Vec<OsString>,
    /// Install folder of the skill: read + execute.
    pub skill_dir: PathBuf,
    /// `~/.ironclaw/workspace/skills/<name>`: read-write, created 0700, the skill's HOME and cwd.
    pub workspace: PathBuf,
    /// The user's home and the workspace root, to resolve filesystem grants.
    pub home: PathBuf,
    pub workspace_root: PathBuf,
    /// Effective grants (already `requests ∩ allowlist`).
    pub grants: ironclaw_crds::Grants,
    /// Granted variables with their values (already filtered; re-checked against `grants`).
    pub env: Vec<(String, String)>,
    /// Never readable even when under a grant (e.g. IRONCLAW_HOME). Paths strictly inside a
    /// hidden path stay reachable when they are the workspace or granted themselves.
    pub hidden_paths: Vec<PathBuf>,
}

/// One attempt beyond the grants, reported by the supervisor before the attempt is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// A system call outside the allowlist (audit: ALLOWLIST_VIOLATION with the syscall name).
    Syscall { name: String },
    /// A path outside the filesystem grants (audit: FILESYSTEM_BLOCK with path and access).
    Filesystem { path: PathBuf, access: String },
    /// A direct connection that bypasses the egress proxy (audit: NETWORK_BLOCK).
    Network { host: String, port: u16 },
    /// Execution of a file without execute rights, e.g. a shell without the shell grant
    /// (audit: FILESYSTEM_BLOCK with access "execute").
    Exec { path: PathBuf },
}

/// Receives violations. Called on the supervisor thread before the denial is answered, so an
/// implementation that writes the audit log durably makes the event precede the denial.
pub trait ViolationSink: Send + Sync {
    fn report(&self, v: Violation);
}

/// What the kernel offers (see [`probe`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelSupport {
    /// Landlock ABI version, `None` when Landlock is unavailable.
    pub landlock_abi: Option<u32>,
    /// seccomp-bpf filters.
    pub seccomp_filter: bool,
    /// seccomp user notification (the supervisor).
    pub seccomp_user_notif: bool,
    /// Unprivileged-usable user + mount + network namespaces.
    pub namespaces: bool,
    /// `open_tree`/`move_mount`/`mount_setattr` (the mount plan).
    pub mount_api: bool,
}

/// Minimum Landlock ABI for strict mode: 6 adds the signal and abstract-unix-socket scopes
/// (4 added TCP rules, 3 truncate, 2 refer).
pub const MIN_LANDLOCK_ABI: u32 = 6;

impl KernelSupport {
    /// What strict mode needs and this kernel lacks; empty when strict mode can run.
    pub fn missing_for_strict(&self) -> Vec<String> {
        let mut m = Vec::new();
        match self.landlock_abi {
            None => m.push(format!(
                "Landlock (ABI {MIN_LANDLOCK_ABI}+; enable CONFIG_SECURITY_LANDLOCK and add landlock to the lsm= boot parameter)"
            )),
            Some(v) if v < MIN_LANDLOCK_ABI => m.push(format!(
                "Landlock ABI {MIN_LANDLOCK_ABI}+ for signal and abstract unix socket scoping (kernel has ABI {v}; Linux 6.12 or newer)"
            )),
            Some(_) => {}
        }
        if !self.seccomp_filter {
            m.push("seccomp-bpf filters (CONFIG_SECCOMP_FILTER)".into());
        }
        if !self.seccomp_user_notif {
            m.push("seccomp user notification (Linux 5.9 or newer)".into());
        }
        if !self.namespaces {
            m.push(
                "user, mount and network namespaces for this user (user.max_user_namespaces > 0; unprivileged user namespaces allowed)"
                    .into(),
            );
        }
        if !self.mount_api {
            m.push(
                "the new mount API: open_tree, move_mount, mount_setattr (Linux 5.12 or newer)"
                    .into(),
            );
        }
        if !policy::syscalls::arch_supported() {
            m.push(format!(
                "a seccomp syscall table for this CPU architecture ({}; supported: x86_64)",
                std::env::consts::ARCH
            ));
        }
        m
    }
}

/// Why a sandbox could not be set up or run. Every variant names what failed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("strict sandbox mode cannot run on this kernel; missing: {}", .missing.join("; "))]
    Unsupported { missing: Vec<String> },
    #[error("sandbox spec field `{field}`: {reason}")]
    InvalidSpec { field: &'static str, reason: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "strict sandbox mode is not available on {0}: its enforcement is not implemented; use mode \"standard\" or \"audit-only\" knowingly"
    )]
    PlatformUnsupported(&'static str),
    #[error("sandbox setup: {0}")]
    Setup(String),
}

impl SandboxError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        SandboxError::Io {
            context: context.into(),
            source,
        }
    }
    pub(crate) fn spec(field: &'static str, reason: impl Into<String>) -> Self {
        SandboxError::InvalidSpec {
            field,
            reason: reason.into(),
        }
    }
}

/// What the in-pod exec wrapper applies to itself before exec'ing the skill (no namespaces: the
/// pod provides them). See [`apply_in_place`].
#[derive(Debug, Clone)]
pub struct InPlacePolicy {
    pub skill: String,
    /// Install folder: read + execute.
    pub skill_dir: PathBuf,
    /// Own workspace: read-write.
    pub workspace: PathBuf,
    pub home: PathBuf,
    pub workspace_root: PathBuf,
    pub grants: ironclaw_crds::Grants,
    /// The only TCP port the skill may connect to (the sidecar's egress proxy on localhost).
    pub proxy_port: u16,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_parses_the_three_spec_values_and_names_them_on_error() {
        assert_eq!("strict".parse::<Mode>().unwrap(), Mode::Strict);
        assert_eq!("standard".parse::<Mode>().unwrap(), Mode::Standard);
        assert_eq!("audit-only".parse::<Mode>().unwrap(), Mode::AuditOnly);
        let e = "Strict".parse::<Mode>().unwrap_err().to_string();
        assert!(e.contains("security.sandbox.mode \"Strict\""), "{e}");
        assert!(e.contains("\"audit-only\""), "{e}");
        for m in [Mode::Strict, Mode::Standard, Mode::AuditOnly] {
            assert_eq!(m.to_string().parse::<Mode>().unwrap(), m);
        }
    }

    #[test]
    fn missing_features_are_named() {
        let k = KernelSupport {
            landlock_abi: Some(4),
            seccomp_filter: true,
            seccomp_user_notif: true,
            namespaces: false,
            mount_api: true,
        };
        let m = k.missing_for_strict().join("\n");
        assert!(m.contains("Landlock ABI 6+"), "{m}");
        assert!(m.contains("kernel has ABI 4"), "{m}");
        assert!(m.contains("namespaces"), "{m}");
        assert!(!m.contains("seccomp"), "{m}");
        let e = SandboxError::Unsupported {
            missing: k.missing_for_strict(),
        }
        .to_string();
        assert!(e.starts_with("strict sandbox mode cannot run on this kernel; missing: Landlock"));
    }
}
