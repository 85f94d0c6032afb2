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
    #[error("exec: skill folder {dir} (--skill-dir, or the folder of the program): {reason}")]
    SkillDir { dir: PathBuf, reason: String },
    #[error("exec: {command:?}: no such program (looked along the skill's PATH)")]
    NotFound { command: PathBuf },
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

/// The skill's install folder (read + execute under Landlock): `explicit` when given, else the
/// folder of the resolved program. Never the workspace, `/tmp` or anything overlapping them
/// (the workspace is writable, so it is never executable: a skill cannot write a program and
/// run it), and never a system folder (there each file gets its own execute right, shells left
/// out: the whole folder would hand out the shells). A program that lives in a system folder has
/// no install folder of its own; then `fallback` (the wrapper's own read-only folder) is used.
pub fn resolve_skill_dir(
    policy: &PodPolicy,
    explicit: Option<&Path>,
    program: &Path,
    path_env: Option<&std::ffi::OsStr>,
    fallback: &Path,
) -> Result<PathBuf, ExecError> {
    let forbidden = [
        policy.workspace.clone(),
        policy.workspace_root(),
        PathBuf::from("/tmp"),
    ];
    let overlaps = |dir: &Path| {
        forbidden
            .iter()
            .find(|f| dir.starts_with(f) || f.starts_with(dir))
            .cloned()
    };
    if let Some(dir) = explicit {
        let bad = |reason: String| ExecError::SkillDir {
            dir: dir.to_owned(),
            reason,
        };
        if !dir.is_absolute() {
            return Err(bad("must be an absolute path".into()));
        }
        let dir = std::fs::canonicalize(dir).map_err(|e| bad(format!("cannot resolve: {e}")))?;
        if let Some(f) = overlaps(&dir) {
            return Err(bad(format!(
                "overlaps {} (writable, so never executable)",
                f.display()
            )));
        }
        if is_system_dir(&dir) {
            return Err(bad(
                "is a system folder (its files get execute rights one by one, shells left out)"
                    .into(),
            ));
        }
        return Ok(dir);
    }
    let resolved = resolve_program(program, path_env, &policy.workspace).ok_or_else(|| {
        ExecError::NotFound {
            command: program.to_owned(),
        }
    })?;
    let dir = resolved
        .parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_owned);
    if let Some(f) = overlaps(&dir) {
        return Err(ExecError::SkillDir {
            dir,
            reason: format!(
                "holds the skill's program {} but overlaps {} (writable, so never executable); \
                 install the program in the image",
                resolved.display(),
                f.display()
            ),
        });
    }
    if is_system_dir(&dir) {
        return Ok(fallback.to_owned());
    }
    Ok(dir)
}

/// `/`, the system locations every skill reads, and the folders above them.
fn is_system_dir(dir: &Path) -> bool {
    ironclaw_sandbox::policy::SYSTEM_READ
        .iter()
        .chain(ironclaw_sandbox::policy::EXEC_DIRS)
        .chain(&["/etc", "/dev", "/sys", "/var", "/run", "/home", "/root"])
        .any(|s| Path::new(s).starts_with(dir) || dir == Path::new(s))
}

/// The program `exec` will run, canonical: a name with a `/` relative to `cwd`, else the first
/// regular file with an execute bit along `path_env`.
fn resolve_program(
    program: &Path,
    path_env: Option<&std::ffi::OsStr>,
    cwd: &Path,
) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.as_os_str().as_encoded_bytes().contains(&b'/') {
        let p = cwd.join(program);
        return std::fs::canonicalize(p).ok();
    }
    std::env::split_paths(path_env?)
        .filter(|d| d.is_absolute())
        .map(|d| d.join(program))
        .find(|p| runnable(p))
        .and_then(|p| std::fs::canonicalize(p).ok())
}

/// The in-place sandbox policy for `policy`; `skill_dir` is the skill's install folder
/// (read + execute, from [`resolve_skill_dir`]).
pub fn in_place_policy(policy: &PodPolicy, skill_dir: &Path) -> ironclaw_sandbox::InPlacePolicy {
    ironclaw_sandbox::InPlacePolicy {
        skill: policy.skill.clone(),
        skill_dir: skill_dir.to_owned(),
        workspace: policy.workspace.clone(),
        home: policy.workspace.clone(),
        workspace_root: policy.workspace_root(),
        grants: policy.grants.clone(),
        proxy_port: policy.proxy.port(),
    }
}

/// Applies the sandbox to this (single-threaded) process and execs `argv`. Returns only on
/// error. `skill_dir` is `--skill-dir` (see [`resolve_skill_dir`]).
pub fn run(
    policy: &PodPolicy,
    skill_dir: Option<&Path>,
    argv: &[OsString],
) -> Result<std::convert::Infallible, ExecError> {
    use std::os::unix::process::CommandExt;
    let (prog, args) = argv.split_first().ok_or(ExecError::NoCommand)?;
    let env = skill_env(policy, std::env::vars_os());
    let path_env = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_os_str());
    let me = std::env::current_exe().map_err(|source| ExecError::Exec {
        command: PathBuf::from("/proc/self/exe"),
        source,
    })?;
    let fallback = me.parent().unwrap_or_else(|| Path::new("/"));
    let dir = resolve_skill_dir(policy, skill_dir, Path::new(prog), path_env, fallback)?;
    ironclaw_sandbox::apply_in_place(&in_place_policy(policy, &dir)).map_err(|source| {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(ws: &Path) -> PodPolicy {
        let doc = serde_json::json!({
            "skill": "mail", "namespace": "a", "sandboxMode": "strict", "grants": {},
            "proxy": "127.0.0.1:15001", "admin": "0.0.0.0:9090", "workspace": ws,
            "seccompProfile": "p.json",
        });
        PodPolicy::parse(Path::new("policy.json"), &doc.to_string()).unwrap()
    }

    fn exe(path: &Path) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "#!/bin/true\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn the_skill_folder_is_the_programs_folder_and_never_the_workspace() {
        let root = tempfile::tempdir_in("/var/tmp").unwrap();
        let root = std::fs::canonicalize(root.path()).unwrap();
        let ws = root.join("workspace/skills/mail");
        std::fs::create_dir_all(&ws).unwrap();
        let p = policy(&ws);
        let fb = Path::new("/ironclaw/bin");
        // A program found along PATH: its own folder.
        exe(&root.join("opt/mail/bin/mail"));
        let path = std::env::join_paths([root.join("opt/mail/bin")]).unwrap();
        let d = resolve_skill_dir(&p, None, Path::new("mail"), Some(&path), fb).unwrap();
        assert_eq!(d, root.join("opt/mail/bin"));
        // A program in a system folder has no folder of its own: the fallback.
        let d = resolve_skill_dir(&p, None, Path::new("/usr/bin/env"), None, fb).unwrap();
        assert_eq!(d, fb);
        // A program in the workspace is refused (the workspace is never executable).
        exe(&ws.join("run"));
        let e = resolve_skill_dir(&p, None, &ws.join("run"), None, fb)
            .unwrap_err()
            .to_string();
        assert!(e.contains("never executable"), "{e}");
        // Not found along PATH.
        let e = resolve_skill_dir(&p, None, Path::new("nope"), Some(&path), fb)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"nope\"") && e.contains("no such program"),
            "{e}"
        );
    }

    #[test]
    fn an_explicit_skill_folder_is_checked() {
        let root = tempfile::tempdir_in("/var/tmp").unwrap();
        let root = std::fs::canonicalize(root.path()).unwrap();
        let ws = root.join("workspace/skills/mail");
        std::fs::create_dir_all(&ws).unwrap();
        std::fs::create_dir_all(root.join("opt/mail")).unwrap();
        let p = policy(&ws);
        let fb = Path::new("/ironclaw/bin");
        let ok = resolve_skill_dir(&p, Some(&root.join("opt/mail")), Path::new("x"), None, fb);
        assert_eq!(ok.unwrap(), root.join("opt/mail"));
        for (dir, want) in [
            (ws.clone(), "never executable"),
            (root.join("workspace"), "never executable"),
            (root.clone(), "never executable"),
            (PathBuf::from("/usr/bin"), "system folder"),
            (PathBuf::from("/"), "never executable"),
            (PathBuf::from("rel"), "absolute"),
        ] {
            let e = resolve_skill_dir(&p, Some(&dir), Path::new("x"), None, fb)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(want) && e.contains("--skill-dir"),
                "{dir:?}: {e}"
            );
        }
    }
}
