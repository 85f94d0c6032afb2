//! The macOS exec plan as pure functions (compiled and tested on every OS; only
//! [`crate::macos`] runs it): which program runs, with which arguments and environment.
//!
//! Strict mode runs `/usr/bin/sandbox-exec -p PROFILE -- ENTRYPOINT ARGS…` with the profile
//! from [`policy::sbpl::sbpl_profile`]; standard mode runs the entrypoint directly. Both start from an
//! empty environment ([`policy::env_plan`]).

use crate::policy::{self, PROXY_LISTEN};
use crate::{Mode, SandboxError, SandboxSpec};
use std::ffi::OsString;
use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};

/// Apple's Seatbelt front end. Deprecated in its man page since 10.12 but shipped and used by
/// Apple's own tools; strict mode refuses to run when it is absent.
pub const SANDBOX_EXEC: &str = "/usr/bin/sandbox-exec";

/// What to run for one skill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecPlan {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// The complete environment (nothing is inherited).
    pub env: Vec<(String, String)>,
    /// The skill's temporary directory (`TMPDIR`), inside its workspace, created 0700.
    pub tmpdir: Option<PathBuf>,
}

/// Checks what every mode needs: a valid skill name and an absolute entrypoint.
pub fn validate(spec: &SandboxSpec) -> Result<(), SandboxError> {
    ironclaw_crds::grants::validate_skill_name(&spec.skill)
        .map_err(|e| SandboxError::spec("skill", e.to_string()))?;
    let argv0 = spec
        .argv
        .first()
        .ok_or_else(|| SandboxError::spec("argv", "empty: the entrypoint is missing"))?;
    if !Path::new(argv0).is_absolute() {
        return Err(SandboxError::spec(
            "argv",
            format!("argv[0] {argv0:?} is not an absolute path"),
        ));
    }
    Ok(())
}

/// The plan for `spec`. `host_proxy` is where IronClaw's egress proxy listens on the host: in
/// strict mode it must be [`PROXY_LISTEN`], the only destination the profile lets the skill
/// connect to (the caller runs the proxy there).
pub fn plan(
    spec: &SandboxSpec,
    host_proxy: Option<SocketAddrV4>,
) -> Result<ExecPlan, SandboxError> {
    validate(spec)?;
    match spec.mode {
        Mode::Strict => {
            if let Some(p) = host_proxy.filter(|p| *p != PROXY_LISTEN) {
                return Err(SandboxError::spec(
                    "host_proxy",
                    format!(
                        "{p}: strict mode on macOS lets the skill connect only to the egress proxy on {PROXY_LISTEN}; run the proxy there"
                    ),
                ));
            }
            // Seatbelt denies the per-user temporary directory: give the skill one inside
            // its workspace (which the profile makes read-write).
            let tmpdir = spec.workspace.join(".tmp");
            let env = policy::env_plan(
                &spec.env,
                &spec.grants,
                &spec.workspace,
                Some(&tmpdir),
                Some(PROXY_LISTEN),
            )?;
            let mut args: Vec<OsString> = vec![
                "-p".into(),
                policy::sbpl::sbpl_profile(spec).into(),
                "--".into(),
            ];
            args.extend(spec.argv.iter().cloned());
            Ok(ExecPlan {
                program: PathBuf::from(SANDBOX_EXEC),
                args,
                env,
                tmpdir: Some(tmpdir),
            })
        }
        Mode::Standard => Ok(ExecPlan {
            program: PathBuf::from(&spec.argv[0]),
            args: spec.argv[1..].to_vec(),
            env: policy::env_plan(&spec.env, &spec.grants, &spec.workspace, None, host_proxy)?,
            tmpdir: None,
        }),
        // Seatbelt reports denials only to the system log, and lets nothing through that its
        // profile denies: there is no "report but allow" to build audit-only mode on.
        Mode::AuditOnly => Err(SandboxError::spec(
            "mode",
            "audit-only mode is not available on macOS (Seatbelt cannot report an access and let it through); use \"strict\" or \"standard\"",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(mode: Mode) -> SandboxSpec {
        let grants = ironclaw_crds::Grants {
            env: vec!["API_TOKEN".parse().unwrap()],
            ..Default::default()
        };
        SandboxSpec {
            skill: "mailer".into(),
            mode,
            argv: vec![
                "/Users/u/.ironclaw/skills/mailer/run".into(),
                "--to".into(),
                "a b".into(),
            ],
            skill_dir: "/Users/u/.ironclaw/skills/mailer".into(),
            workspace: "/Users/u/.ironclaw/workspace/skills/mailer".into(),
            home: "/Users/u".into(),
            workspace_root: "/Users/u/.ironclaw/workspace".into(),
            grants,
            env: vec![("API_TOKEN".into(), "t0k".into())],
            hidden_paths: vec!["/Users/u/.ironclaw".into()],
        }
    }

    fn env<'a>(p: &'a ExecPlan, k: &str) -> Option<&'a str> {
        p.env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    #[test]
    fn strict_mode_runs_the_entrypoint_under_sandbox_exec_with_the_generated_profile() {
        let s = spec(Mode::Strict);
        let p = plan(&s, None).unwrap();
        assert_eq!(p.program, Path::new("/usr/bin/sandbox-exec"));
        assert_eq!(p.args[0], "-p");
        assert_eq!(p.args[1], OsString::from(policy::sbpl::sbpl_profile(&s)));
        // The entrypoint and its arguments follow `--` unchanged, one argument each.
        assert_eq!(
            p.args[2..],
            [OsString::from("--")]
                .iter()
                .chain(&s.argv)
                .cloned()
                .collect::<Vec<_>>()[..]
        );
        // Empty environment plus the plan: the granted variable, HOME, TMPDIR in the
        // workspace, the proxy the profile allows; nothing from this process.
        assert_eq!(env(&p, "API_TOKEN"), Some("t0k"));
        assert_eq!(
            env(&p, "HOME"),
            Some("/Users/u/.ironclaw/workspace/skills/mailer")
        );
        assert_eq!(
            env(&p, "TMPDIR"),
            Some("/Users/u/.ironclaw/workspace/skills/mailer/.tmp")
        );
        assert_eq!(env(&p, "HTTPS_PROXY"), Some("http://127.0.0.1:3128"));
        assert!(env(&p, "CARGO").is_none() && env(&p, "USER").is_none());
        assert_eq!(
            p.tmpdir.as_deref(),
            Some(Path::new("/Users/u/.ironclaw/workspace/skills/mailer/.tmp"))
        );
        assert!(plan(&s, Some(PROXY_LISTEN)).is_ok());
    }

    #[test]
    fn strict_mode_refuses_a_proxy_the_profile_would_not_let_the_skill_reach() {
        let e = plan(&spec(Mode::Strict), Some("127.0.0.1:8080".parse().unwrap()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("host_proxy") && e.contains("127.0.0.1:3128"),
            "{e}"
        );
    }

    #[test]
    fn standard_mode_runs_the_entrypoint_directly_and_audit_only_is_refused() {
        let s = spec(Mode::Standard);
        let p = plan(&s, Some("127.0.0.1:4000".parse().unwrap())).unwrap();
        assert_eq!(p.program, Path::new(&s.argv[0]));
        assert_eq!(p.args, s.argv[1..]);
        assert_eq!(env(&p, "HTTP_PROXY"), Some("http://127.0.0.1:4000"));
        assert!(p.tmpdir.is_none());
        let e = plan(&spec(Mode::AuditOnly), None).unwrap_err().to_string();
        assert!(e.contains("`mode`") && e.contains("audit-only"), "{e}");
    }

    #[test]
    fn bad_specs_are_refused_naming_the_field() {
        let mut s = spec(Mode::Strict);
        s.argv = vec!["run".into()];
        assert!(plan(&s, None).unwrap_err().to_string().contains("`argv`"));
        s.argv = vec![];
        assert!(plan(&s, None).unwrap_err().to_string().contains("`argv`"));
        let mut s = spec(Mode::Strict);
        s.skill = "../x".into();
        assert!(plan(&s, None).unwrap_err().to_string().contains("`skill`"));
        // A variable outside the env grants never reaches the skill.
        let mut s = spec(Mode::Strict);
        s.env.push(("AWS_SECRET_ACCESS_KEY".into(), "x".into()));
        assert!(plan(&s, None).unwrap_err().to_string().contains("`env`"));
    }
}
