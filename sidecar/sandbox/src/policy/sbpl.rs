//! macOS `sandbox-exec` profile (SBPL) from the same grants. Pure; golden-tested on every OS.
//!
//! SBPL evaluates rules in order and the last matching rule wins, so the profile lists broad
//! allowances first, then the hidden paths (deny), then what is exposed inside them again.

use super::{PROXY_LISTEN, SHELL_NAMES, within};
use crate::SandboxSpec;
use ironclaw_crds::Access;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// System paths a program needs to load and run on macOS (read-only).
const MAC_SYSTEM_READ: &[&str] = &[
    "/usr/lib",
    "/usr/share",
    "/System",
    "/Library/Apple",
    "/Library/Preferences",
    "/private/etc",
    "/private/var/db/timezone",
    "/dev",
];
/// Where executables live on macOS (execute, shells denied below).
const MAC_EXEC_DIRS: &[&str] = &[
    "/usr/bin",
    "/bin",
    "/usr/sbin",
    "/sbin",
    "/usr/local/bin",
    "/opt/homebrew/bin",
];

/// An SBPL string literal.
fn lit(p: &Path) -> String {
    let s = p.to_string_lossy();
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The sandbox-exec profile for a skill: deny by default; system paths read-only; executables
/// in system directories runnable except the shells (unless granted); the skill folder read +
/// execute; the workspace read-write; filesystem grants as granted; hidden paths denied except
/// what is granted inside them; outbound network only to the egress proxy on localhost.
pub fn sbpl_profile(spec: &SandboxSpec) -> String {
    let mut p = String::new();
    let _ = writeln!(p, "(version 1)");
    let _ = writeln!(p, ";; IronClaw skill {:?} ({} mode)", spec.skill, spec.mode);
    let _ = writeln!(p, "(deny default)");
    let _ = writeln!(p, "(allow process-fork)");
    let _ = writeln!(p, "(allow signal (target same-sandbox))");
    let _ = writeln!(p, "(allow sysctl-read)");
    let _ = writeln!(p, "(allow file-read-metadata)");
    let _ = writeln!(p, "(allow file-read* file-map-executable");
    for s in MAC_SYSTEM_READ {
        let _ = writeln!(p, "  (subpath {})", lit(Path::new(s)));
    }
    let _ = writeln!(p, ")");
    let _ = writeln!(p, "(allow file-write* (literal \"/dev/null\"))");
    let _ = writeln!(p, "(allow file-read* file-map-executable process-exec");
    for s in MAC_EXEC_DIRS {
        let _ = writeln!(p, "  (subpath {})", lit(Path::new(s)));
    }
    let _ = writeln!(p, ")");
    if !spec.grants.shell {
        let _ = writeln!(
            p,
            ";; no shell grant: no shell by any name in the system directories"
        );
        let _ = writeln!(
            p,
            "(deny process-exec file-map-executable (regex #\"^/(usr/|usr/local/|opt/homebrew/)?s?bin/({})$\"))",
            SHELL_NAMES.join("|")
        );
    }
    let exposed_rw: Vec<PathBuf> = std::iter::once(spec.workspace.clone())
        .chain(
            spec.grants
                .filesystem
                .iter()
                .filter(|g| g.access == Access::Rw)
                .map(|g| g.resolve(&spec.home, &spec.workspace_root)),
        )
        .collect();
    let exposed_ro: Vec<PathBuf> = spec
        .grants
        .filesystem
        .iter()
        .filter(|g| g.access == Access::Ro)
        .map(|g| g.resolve(&spec.home, &spec.workspace_root))
        .collect();
    let emit = |p: &mut String, inside_hidden: bool| {
        let keep = |path: &Path| {
            spec.hidden_paths
                .iter()
                .any(|h| within(path, h) && path != h.as_path())
                == inside_hidden
                && !spec.hidden_paths.iter().any(|h| h == path)
        };
        if keep(&spec.skill_dir) {
            let _ = writeln!(
                p,
                "(allow file-read* file-map-executable process-exec (subpath {}))",
                lit(&spec.skill_dir)
            );
        }
        for r in exposed_ro.iter().filter(|x| keep(x)) {
            let _ = writeln!(p, "(allow file-read* (subpath {}))", lit(r));
        }
        for r in exposed_rw.iter().filter(|x| keep(x)) {
            let _ = writeln!(p, "(allow file-read* file-write* (subpath {}))", lit(r));
        }
    };
    emit(&mut p, false);
    for h in &spec.hidden_paths {
        let _ = writeln!(p, "(deny file-read* file-write* (subpath {}))", lit(h));
    }
    emit(&mut p, true);
    let _ = writeln!(
        p,
        "(allow network-outbound (remote tcp \"localhost:{}\"))",
        PROXY_LISTEN.port()
    );
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Mode;

    fn spec(shell: bool) -> SandboxSpec {
        let grants: ironclaw_crds::Grants = serde_json_like(shell);
        SandboxSpec {
            skill: "himalaya".into(),
            mode: Mode::Strict,
            argv: vec!["/Users/u/.ironclaw/skills/himalaya/bin/himalaya".into()],
            skill_dir: "/Users/u/.ironclaw/skills/himalaya".into(),
            workspace: "/Users/u/.ironclaw/workspace/skills/himalaya".into(),
            home: "/Users/u".into(),
            workspace_root: "/Users/u/.ironclaw/workspace".into(),
            grants,
            env: vec![],
            hidden_paths: vec!["/Users/u/.ironclaw".into()],
        }
    }

    fn serde_json_like(shell: bool) -> ironclaw_crds::Grants {
        ironclaw_crds::Grants {
            network: vec!["imap.gmail.com:993".parse().unwrap()],
            env: vec![],
            filesystem: vec![
                "~/.ironclaw/workspace/shared:ro".parse().unwrap(),
                "~/Documents/mail:rw".parse().unwrap(),
                "/tmp/we\"ird:ro".parse().unwrap(),
            ],
            shell,
        }
    }

    #[test]
    fn profile_matches_golden() {
        let got = sbpl_profile(&spec(false));
        let want = include_str!("golden/himalaya.sb");
        if std::env::var_os("IRONCLAW_BLESS").is_some() {
            std::fs::write(
                concat!(env!("CARGO_MANIFEST_DIR"), "/src/policy/golden/himalaya.sb"),
                &got,
            )
            .unwrap();
            return;
        }
        assert_eq!(
            got, want,
            "regenerate golden/himalaya.sb if the change is intended:\n{got}"
        );
    }

    #[test]
    fn shell_grant_drops_the_shell_denial_and_hidden_comes_before_reexposure() {
        let with = sbpl_profile(&spec(true));
        assert!(!with.contains("|dash|"));
        let without = sbpl_profile(&spec(false));
        assert!(without.contains("bin/(sh|bash|rbash|dash|"));
        let deny = without
            .find("(deny file-read* file-write* (subpath \"/Users/u/.ironclaw\"))")
            .unwrap();
        let ws = without
            .find("(allow file-read* file-write* (subpath \"/Users/u/.ironclaw/workspace/skills/himalaya\"))")
            .unwrap();
        let docs = without
            .find("(allow file-read* file-write* (subpath \"/Users/u/Documents/mail\"))")
            .unwrap();
        assert!(docs < deny && deny < ws, "{without}");
        assert!(without.contains("\"/tmp/we\\\"ird\""), "{without}");
    }
}
