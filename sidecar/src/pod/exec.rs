//! `ironclaw-sidecar exec`: sandbox this process in place from `policy.json`, then exec the
//! skill's command with a filtered environment.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::policy::PodPolicy;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("exec: no command given after `--`")]
    NoCommand,
    #[error("exec: sandbox for skill {skill:?}: {source}")]
    Sandbox {
        skill: String,
        #[source]
        source: ironclaw_sandbox::SandboxError,
    },
    #[error("exec: running {command:?}: {source}")]
    Exec {
        command: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The skill's environment: granted names from `inherited`, plus `PATH`, `HOME` = workspace and
/// the proxy variables pointing at the sidecar's egress proxy.
pub fn skill_env(
    policy: &PodPolicy,
    inherited: impl IntoIterator<Item = (OsString, OsString)>,
) -> Vec<(OsString, OsString)> {
    const OURS: [&str; 5] = [
        "HOME",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "http_proxy",
        "https_proxy",
    ];
    let mut out: Vec<(OsString, OsString)> = inherited
        .into_iter()
        .filter(|(k, _)| {
            k.to_str()
                .is_some_and(|k| !OURS.contains(&k) && (k == "PATH" || policy.grants.allows_env(k)))
        })
        .collect();
    let url = format!("http://{}", policy.proxy);
    out.push(("HOME".into(), policy.workspace.clone().into_os_string()));
    for k in &OURS[1..] {
        out.push(((*k).into(), url.clone().into()));
    }
    out
}

/// The in-place sandbox policy for `policy`; `skill_dir` is the skill's install folder
/// (read + execute), the workspace when not given.
pub fn in_place_policy(
    policy: &PodPolicy,
    skill_dir: Option<&Path>,
) -> ironclaw_sandbox::InPlacePolicy {
    ironclaw_sandbox::InPlacePolicy {
        skill: policy.skill.clone(),
        skill_dir: skill_dir.map_or_else(|| policy.workspace.clone(), Path::to_owned),
        workspace: policy.workspace.clone(),
        home: policy.workspace.clone(),
        workspace_root: policy.workspace_root(),
        grants: policy.grants.clone(),
        proxy_port: policy.proxy.port(),
    }
}

/// Applies the sandbox to this (single-threaded) process and execs `argv`. Returns only on error.
pub fn run(
    policy: &PodPolicy,
    skill_dir: Option<&Path>,
    argv: &[OsString],
) -> Result<std::convert::Infallible, ExecError> {
    use std::os::unix::process::CommandExt;
    let (prog, args) = argv.split_first().ok_or(ExecError::NoCommand)?;
    let env = skill_env(policy, std::env::vars_os());
    ironclaw_sandbox::apply_in_place(&in_place_policy(policy, skill_dir)).map_err(|source| {
        ExecError::Sandbox {
            skill: policy.skill.clone(),
            source,
        }
    })?;
    let mut cmd = std::process::Command::new(prog);
    cmd.args(args).env_clear().envs(env);
    if policy.workspace.is_dir() {
        cmd.current_dir(&policy.workspace);
    }
    let source = cmd.exec();
    Err(ExecError::Exec {
        command: PathBuf::from(prog),
        source,
    })
}
