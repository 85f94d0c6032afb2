//! `ironclaw doctor`: the spec's security checklist, checked on the live config and files.
//!
//! Facts are gathered first ([`gather`]); the verdicts are a pure function of them
//! ([`evaluate`]), unit-tested without touching the machine.

use clap::Args;
use ironclaw_sidecar::allowlist::{self, Allowlist};
use ironclaw_sidecar::config::{self, Config, InjectionMode, SandboxMode};
use ironclaw_sidecar::home::Home;
use serde::Serialize;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// Machine-readable output
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub id: &'static str,
    pub status: Status,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// Everything the checks look at.
#[derive(Debug, Clone)]
pub struct Facts {
    pub config: Config,
    pub allowlist: Allowlist,
    pub audit_path: String,
    /// Permission bits of the audit log, `None` when it does not exist yet.
    pub audit_mode: Option<u32>,
    /// Whether the audit log (or, if absent, its directory) is writable.
    pub audit_writable: bool,
    pub env_path: String,
    pub env_mode: Option<u32>,
    pub config_path: String,
    pub config_mode: Option<u32>,
    /// Kernel features strict mode needs that this machine lacks (empty: all present).
    pub kernel_missing: Vec<String>,
}

fn mode_of(p: &Path) -> Option<u32> {
    std::fs::metadata(p)
        .ok()
        .map(|m| m.permissions().mode() & 0o7777)
}

fn writable(p: &Path) -> bool {
    let target = if p.exists() {
        p.to_path_buf()
    } else {
        p.parent().map(Path::to_path_buf).unwrap_or_default()
    };
    let Ok(c) = std::ffi::CString::new(target.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

pub fn gather(home: &Home) -> anyhow::Result<Facts> {
    let loaded = config::load(home)?;
    let allowlist = allowlist::load(home)?;
    let audit = loaded.config.audit_config(home).path;
    Ok(Facts {
        audit_mode: mode_of(&audit),
        audit_writable: writable(&audit),
        audit_path: audit.display().to_string(),
        env_mode: mode_of(&home.env_path()),
        env_path: home.env_path().display().to_string(),
        config_mode: mode_of(&home.config_path()),
        config_path: home.config_path().display().to_string(),
        config: loaded.config,
        allowlist,
        kernel_missing: match ironclaw_sandbox::probe() {
            Ok(k) => k.missing_for_strict(),
            Err(e) => vec![e.to_string()],
        },
    })
}

fn check(id: &'static str, ok: bool, message: String, fix: impl Into<String>) -> Check {
    Check {
        id,
        status: if ok { Status::Pass } else { Status::Fail },
        message,
        fix: (!ok).then(|| fix.into()),
    }
}

/// The checklist verdicts.
pub fn evaluate(f: &Facts) -> Vec<Check> {
    let sec = &f.config.security;
    let mut out = Vec::new();
    let mode = sec.sandbox.mode;
    out.push(check(
        "sandbox-mode",
        mode == SandboxMode::Strict,
        match mode {
            SandboxMode::Strict => "sandbox mode is strict (kernel enforcement)".into(),
            SandboxMode::Standard => "sandbox mode is standard: grants are checked in user space only; a skill that ignores the proxy variables or calls the OS directly is NOT contained".into(),
            SandboxMode::AuditOnly => "sandbox mode is audit-only: NOTHING is blocked; it provides zero protection".into(),
        },
        "ironclaw config set security.sandbox.mode strict",
    ));
    out.push(check(
        "kernel",
        f.kernel_missing.is_empty(),
        if f.kernel_missing.is_empty() {
            "the kernel offers everything strict mode enforces (seccomp filters and notification, Landlock, namespaces)".into()
        } else {
            format!("strict mode cannot be enforced here and will refuse to run skills: missing {}", f.kernel_missing.join("; "))
        },
        "run on a Linux kernel with Landlock (ABI 6+), seccomp user notification and user namespaces enabled",
    ));
    let shells: Vec<&str> = f
        .allowlist
        .skills
        .iter()
        .filter(|(_, g)| g.shell)
        .map(|(n, _)| n.as_str())
        .collect();
    out.push(check(
        "shell-grants",
        shells.is_empty(),
        if shells.is_empty() {
            "no skill is granted a shell".into()
        } else {
            format!("skills granted a shell: {} (outside strict mode a shell means full access to this account; read their source)", shells.join(", "))
        },
        shells.iter().map(|s| format!("ironclaw allowlist revoke {s} --shell")).collect::<Vec<_>>().join("; "),
    ));
    let wild: Vec<String> = f
        .allowlist
        .skills
        .iter()
        .flat_map(|(n, g)| {
            g.network
                .iter()
                .filter(|x| x.host.is_wildcard())
                .map(move |x| format!("{n}: {x}"))
        })
        .collect();
    out.push(check(
        "network-wildcards",
        wild.is_empty(),
        if wild.is_empty() { "every network grant names a specific host".into() } else { format!("wildcard network grants: {}", wild.join(", ")) },
        "revoke the wildcard (ironclaw allowlist revoke SKILL --network '*.example.com:443') and grant the specific hosts",
    ));
    let audit_private = f.audit_mode.is_none_or(|m| m & 0o077 == 0);
    out.push(check(
        "audit-log",
        f.audit_writable && audit_private,
        match (f.audit_writable, f.audit_mode) {
            (false, _) => format!(
                "audit log {} is not writable: the gateway will refuse to start",
                f.audit_path
            ),
            (true, Some(m)) if m & 0o077 != 0 => format!(
                "audit log {} has mode {m:o}: others can read it",
                f.audit_path
            ),
            (true, Some(_)) => format!(
                "audit log {} is writable and readable only by you",
                f.audit_path
            ),
            (true, None) => format!("audit log {} will be created with mode 600", f.audit_path),
        },
        format!(
            "chmod 600 {} (and make its directory writable by you)",
            f.audit_path
        ),
    ));
    out.push(check(
        "env-file",
        f.env_mode.is_none_or(|m| m & 0o077 == 0),
        match f.env_mode {
            None => format!(
                "no {} (secrets, if any, are not in a world-readable file)",
                f.env_path
            ),
            Some(m) if m & 0o077 != 0 => format!(
                "{} has mode {m:o}: others can read your secrets",
                f.env_path
            ),
            Some(_) => format!("{} is readable only by you", f.env_path),
        },
        format!("chmod 600 {}", f.env_path),
    ));
    let literal: Vec<String> = f
        .config
        .channels
        .iter()
        .filter(|(_, c)| {
            c.bot_token
                .as_deref()
                .is_some_and(|t| !(t.starts_with("${") && t.ends_with('}')))
        })
        .map(|(n, _)| format!("channels.{n}.botToken"))
        .collect();
    out.push(check(
        "secrets-in-config",
        literal.is_empty(),
        if literal.is_empty() {
            "no literal secrets in ironclaw.json".into()
        } else {
            format!("literal secrets in ironclaw.json: {}", literal.join(", "))
        },
        "move each value to ~/.ironclaw/.env (chmod 600) and reference it as \"${NAME}\"",
    ));
    out.push(check(
        "config-file",
        f.config_mode.is_none_or(|m| m & 0o022 == 0),
        match f.config_mode {
            None => "no ironclaw.json: the embedded defaults are in force".into(),
            Some(m) if m & 0o022 != 0 => format!(
                "{} has mode {m:o}: others can change your security settings",
                f.config_path
            ),
            Some(_) => format!("{} is writable only by you", f.config_path),
        },
        format!("chmod 600 {}", f.config_path),
    ));
    let channels: Vec<&String> = f.config.channels.keys().collect();
    out.push(check(
        "channels",
        true,
        if channels.is_empty() {
            "no channels configured".into()
        } else {
            format!("{} channel(s), all dmPolicy \"allowlist\" with explicit allowFrom IDs (enforced at load)", channels.len())
        },
        "",
    ));
    let s = &sec.auto_suspend;
    out.push(check(
        "auto-suspend",
        s.enabled,
        if s.enabled {
            format!(
                "auto-suspension on: {} violations in {} min suspend for {} min",
                s.violations_per_window, s.window_minutes, s.suspend_duration_minutes
            )
        } else {
            "auto-suspension is disabled".into()
        },
        "ironclaw config set security.autoSuspend.enabled true",
    ));
    let inj = sec.injection_defense.mode;
    out.push(check(
        "injection-defense",
        inj != InjectionMode::Off,
        match inj {
            InjectionMode::Flag => {
                "injection defense flags suspicious content (consider \"block\")".into()
            }
            InjectionMode::Block => "injection defense blocks flagged content".into(),
            InjectionMode::Off => "injection defense is off".into(),
        },
        "ironclaw config set security.injectionDefense.mode flag   (or block)",
    ));
    out
}

pub fn run(home: &Home, args: &DoctorArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let facts = gather(home)?;
    let checks = evaluate(&facts);
    let ok = checks.iter().all(|c| c.status == Status::Pass);
    if args.json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "ok": ok, "checks": checks }))?
        )?;
    } else {
        for c in &checks {
            let tag = if c.status == Status::Pass {
                "PASS"
            } else {
                "FAIL"
            };
            writeln!(out, "[{tag}] {:<18} {}", c.id, c.message)?;
            if let Some(fix) = &c.fix {
                writeln!(out, "       fix: {fix}")?;
            }
        }
        let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
        writeln!(
            out,
            "{}",
            if ok {
                "all checks passed".to_owned()
            } else {
                format!("{failed} check(s) failed")
            }
        )?;
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            config: Config::default(),
            allowlist: Allowlist::default(),
            audit_path: "/h/audit.log".into(),
            audit_mode: Some(0o600),
            audit_writable: true,
            env_path: "/h/.env".into(),
            env_mode: None,
            config_path: "/h/ironclaw.json".into(),
            config_mode: Some(0o600),
            kernel_missing: vec![],
        }
    }

    fn failing(f: &Facts) -> Vec<&'static str> {
        evaluate(f)
            .into_iter()
            .filter(|c| c.status == Status::Fail)
            .map(|c| c.id)
            .collect()
    }

    #[test]
    fn defaults_pass_everything() {
        assert!(failing(&facts()).is_empty(), "{:?}", evaluate(&facts()));
    }

    #[test]
    fn each_checklist_item_fails_on_its_own() {
        let mut f = facts();
        f.config.security.sandbox.mode = SandboxMode::Standard;
        assert_eq!(failing(&f), ["sandbox-mode"]);

        let mut f = facts();
        f.allowlist.skills.insert(
            "x".into(),
            serde_json::from_str(r#"{"shell":true}"#).unwrap(),
        );
        assert_eq!(failing(&f), ["shell-grants"]);
        let mut k = facts();
        k.kernel_missing = vec!["Landlock ABI >= 6".into()];
        assert_eq!(failing(&k), ["kernel"]);
        assert!(
            evaluate(&f)[2]
                .fix
                .as_deref()
                .unwrap()
                .contains("revoke x --shell")
        );

        let mut f = facts();
        f.allowlist.skills.insert(
            "x".into(),
            serde_json::from_str(r#"{"network":["*.example.com:443"]}"#).unwrap(),
        );
        assert_eq!(failing(&f), ["network-wildcards"]);

        let mut f = facts();
        f.audit_mode = Some(0o644);
        assert_eq!(failing(&f), ["audit-log"]);
        let mut f = facts();
        f.audit_writable = false;
        assert_eq!(failing(&f), ["audit-log"]);

        let mut f = facts();
        f.env_mode = Some(0o640);
        assert_eq!(failing(&f), ["env-file"]);

        let mut f = facts();
        f.config = config::parse(
            r#"{"channels":{"tg":{"botToken":"123:abc","allowFrom":["1"]}}}"#,
            "t",
        )
        .unwrap();
        assert_eq!(failing(&f), ["secrets-in-config"]);
        assert!(
            !serde_json::to_string(&evaluate(&f))
                .unwrap()
                .contains("123:abc")
        );

        let mut f = facts();
        f.config.security.auto_suspend.enabled = false;
        assert_eq!(failing(&f), ["auto-suspend"]);

        let mut f = facts();
        f.config.security.injection_defense.mode = InjectionMode::Off;
        assert_eq!(failing(&f), ["injection-defense"]);

        let mut f = facts();
        f.config_mode = Some(0o666);
        assert_eq!(failing(&f), ["config-file"]);
    }
}
