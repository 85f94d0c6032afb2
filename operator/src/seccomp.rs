//! The skill container's seccomp profile, in OCI format (`oci-spec`), generated from the
//! effective grants.
//!
//! Deny by default with `EPERM`; allow the syscall list given by the caller (the reviewed
//! policy data), plus what the exec wrapper needs to install its own sandbox (`landlock_*`,
//! `seccomp`, `prctl`, `capset`). Grant-dependent rules:
//! - sockets: `AF_UNIX` always; `AF_INET`/`AF_INET6` only as `SOCK_STREAM` and only when the
//!   skill has a network grant (its one way out is TCP to the sidecar's proxy) — no UDP, so no
//!   direct DNS, and no raw or packet sockets ever;
//! - `memfd_create` and `execveat` only with a shell grant (no fileless exec without one).

use ironclaw_crds::Grants;
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompOperator, LinuxSyscall,
};
use sha2::{Digest, Sha256};

/// Syscalls the exec wrapper (`ironclaw-sidecar exec`) needs to apply the sandbox in place
/// before it execs the skill. Always allowed.
pub const WRAPPER_SYSCALLS: &[&str] = &[
    "landlock_create_ruleset",
    "landlock_add_rule",
    "landlock_restrict_self",
    "seccomp",
    "prctl",
    // Dropping every capability (capset to empty sets): it can only lower them.
    "capget",
    "capset",
    "execve",
];

/// Syscalls allowed only with a shell grant.
pub const SHELL_ONLY_SYSCALLS: &[&str] = &["memfd_create", "execveat"];

/// Syscalls that are never allowed, whatever the list passed in says (socket creation is
/// handled by argument rules below; the others escape or weaken the sandbox).
pub const NEVER_ALLOWED: &[&str] = &[
    "socket",
    "socketpair",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "unshare",
    "setns",
    "open_by_handle_at",
    "name_to_handle_at",
    "keyctl",
    "add_key",
    "request_key",
    "reboot",
    "swapon",
    "swapoff",
    "iopl",
    "ioperm",
    "acct",
    "settimeofday",
    "clock_settime",
    "adjtimex",
    "fsopen",
    "fsmount",
    "fsconfig",
    "move_mount",
    "open_tree",
];

/// Address families and socket types used by the argument rules.
const AF_UNIX: u64 = 1;
const AF_INET: u64 = 2;
const AF_INET6: u64 = 10;
const SOCK_STREAM: u64 = 1;
/// `SOCK_TYPE_MASK`: the type bits of `socket(2)`'s second argument (flags are above it).
const SOCK_TYPE_MASK: u64 = 0xf;

/// Error while building a profile.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("building the seccomp profile: {0}")]
    Oci(#[from] oci_spec::OciSpecError),
    #[error("serialising the seccomp profile: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "syscall name {0:?} is not a syscall name (expected lower-case letters, digits and '_')"
    )]
    BadName(String),
}

fn arg(
    index: usize,
    value: u64,
    op: LinuxSeccompOperator,
    value_two: Option<u64>,
) -> Result<LinuxSeccompArg, ProfileError> {
    let mut b = oci_spec::runtime::LinuxSeccompArgBuilder::default()
        .index(index)
        .value(value)
        .op(op);
    if let Some(v2) = value_two {
        b = b.value_two(v2);
    }
    Ok(b.build()?)
}

fn allow(
    names: Vec<String>,
    args: Option<Vec<LinuxSeccompArg>>,
) -> Result<LinuxSyscall, ProfileError> {
    let mut b = oci_spec::runtime::LinuxSyscallBuilder::default()
        .names(names)
        .action(LinuxSeccompAction::ScmpActAllow);
    if let Some(a) = args {
        b = b.args(a);
    }
    Ok(b.build()?)
}

/// Builds the profile for a skill with effective grants `grants`, allowing `syscalls` (the
/// reviewed list; entries in [`NEVER_ALLOWED`] and [`SHELL_ONLY_SYSCALLS`] are filtered out
/// unless the grants allow them). Pure and deterministic: the same input gives the same bytes.
pub fn build_profile(syscalls: &[&str], grants: &Grants) -> Result<LinuxSeccomp, ProfileError> {
    let mut names: Vec<String> = Vec::new();
    for s in syscalls.iter().chain(WRAPPER_SYSCALLS) {
        if s.is_empty()
            || !s
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(ProfileError::BadName((*s).to_owned()));
        }
        if NEVER_ALLOWED.contains(s) || SHELL_ONLY_SYSCALLS.contains(s) {
            continue;
        }
        names.push((*s).to_owned());
    }
    if grants.shell {
        names.extend(SHELL_ONLY_SYSCALLS.iter().map(|s| (*s).to_owned()));
    }
    names.sort();
    names.dedup();

    let mut rules = vec![allow(names, None)?];
    // socket(AF_UNIX, *) and socketpair(AF_UNIX, *): always.
    for call in ["socket", "socketpair"] {
        rules.push(allow(
            vec![call.to_owned()],
            Some(vec![arg(
                0,
                AF_UNIX,
                LinuxSeccompOperator::ScmpCmpEq,
                None,
            )?]),
        )?);
    }
    // socket(AF_INET/AF_INET6, SOCK_STREAM[|flags]): only with a network grant.
    if !grants.network.is_empty() {
        for family in [AF_INET, AF_INET6] {
            rules.push(allow(
                vec!["socket".to_owned()],
                Some(vec![
                    arg(0, family, LinuxSeccompOperator::ScmpCmpEq, None)?,
                    arg(
                        1,
                        SOCK_TYPE_MASK,
                        LinuxSeccompOperator::ScmpCmpMaskedEq,
                        Some(SOCK_STREAM),
                    )?,
                ]),
            )?);
        }
    }
    Ok(oci_spec::runtime::LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActErrno)
        .default_errno_ret(1u32) // EPERM
        .architectures(vec![Arch::ScmpArchX86_64, Arch::ScmpArchAarch64])
        .syscalls(rules)
        .build()?)
}

/// The profile's file content (compact JSON) and its SHA-256 in hex.
pub fn render(profile: &LinuxSeccomp) -> Result<(String, String), ProfileError> {
    let json = serde_json::to_string(profile)?;
    let hash = hex::encode(Sha256::digest(json.as_bytes()));
    Ok((json, hash))
}

/// The default syscall names: the sandbox's reviewed allowlist
/// (`ironclaw_sandbox::policy::syscall_allowlist`), the same data the exec wrapper enforces.
pub fn default_syscalls() -> Vec<&'static str> {
    ironclaw_sandbox::policy::syscall_allowlist()
        .iter()
        .map(|(n, _)| *n)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(json: &str) -> Grants {
        serde_json::from_str(json).unwrap()
    }

    fn allowed_unconditionally(p: &LinuxSeccomp) -> Vec<String> {
        p.syscalls()
            .as_ref()
            .unwrap()
            .iter()
            .filter(|r| r.args().is_none())
            .flat_map(|r| r.names().clone())
            .collect()
    }

    #[test]
    fn denies_by_default_with_eperm_and_allows_what_the_wrapper_needs() {
        let p = build_profile(&default_syscalls(), &Grants::default()).unwrap();
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(v["defaultErrnoRet"], 1);
        let allowed = allowed_unconditionally(&p);
        for need in [
            "landlock_create_ruleset",
            "landlock_add_rule",
            "landlock_restrict_self",
            "seccomp",
            "prctl",
            "capset",
            "execve",
        ] {
            assert!(allowed.iter().any(|a| a == need), "{need} missing");
        }
        for never in [
            "ptrace",
            "mount",
            "bpf",
            "socket",
            "memfd_create",
            "execveat",
            "unshare",
        ] {
            assert!(!allowed.iter().any(|a| a == never), "{never} allowed");
        }
    }

    #[test]
    fn inet_sockets_only_with_a_network_grant_and_only_tcp() {
        let none = build_profile(&default_syscalls(), &Grants::default()).unwrap();
        let v = serde_json::to_value(&none).unwrap();
        let socket_rules: Vec<_> = v["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["names"] == serde_json::json!(["socket"]))
            .collect();
        assert_eq!(socket_rules.len(), 1);
        assert_eq!(socket_rules[0]["args"][0]["value"], AF_UNIX);

        let net = build_profile(
            &default_syscalls(),
            &grants(r#"{"network":["imap.gmail.com:993"]}"#),
        )
        .unwrap();
        let v = serde_json::to_value(&net).unwrap();
        let inet: Vec<_> = v["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| {
                r["names"] == serde_json::json!(["socket"]) && r["args"][0]["value"] != AF_UNIX
            })
            .collect();
        assert_eq!(inet.len(), 2);
        for r in inet {
            assert_eq!(r["args"][1]["op"], "SCMP_CMP_MASKED_EQ");
            assert_eq!(r["args"][1]["value"], SOCK_TYPE_MASK);
            assert_eq!(r["args"][1]["valueTwo"], SOCK_STREAM);
        }
    }

    #[test]
    fn shell_grant_adds_fileless_exec() {
        let p = build_profile(&default_syscalls(), &grants(r#"{"shell":true}"#)).unwrap();
        let allowed = allowed_unconditionally(&p);
        assert!(allowed.iter().any(|a| a == "memfd_create"));
        assert!(allowed.iter().any(|a| a == "execveat"));
    }

    #[test]
    fn never_allowed_entries_are_filtered_and_bad_names_refused() {
        let p = build_profile(&["read", "ptrace", "bpf"], &Grants::default()).unwrap();
        let allowed = allowed_unconditionally(&p);
        assert!(allowed.contains(&"read".to_owned()));
        assert!(!allowed.contains(&"ptrace".to_owned()));
        let e = build_profile(&["read; rm"], &Grants::default()).unwrap_err();
        assert!(e.to_string().contains("not a syscall name"), "{e}");
    }

    #[test]
    fn rendering_is_deterministic_and_hash_changes_with_grants() {
        let g = grants(r#"{"network":["a.io:443"]}"#);
        let (a, ha) = render(&build_profile(&default_syscalls(), &g).unwrap()).unwrap();
        let (b, hb) = render(&build_profile(&default_syscalls(), &g).unwrap()).unwrap();
        assert_eq!((a, &ha), (b, &hb));
        let (_, hc) =
            render(&build_profile(&default_syscalls(), &Grants::default()).unwrap()).unwrap();
        assert_ne!(ha, hc);
        assert_eq!(ha.len(), 64);
    }
}
