//! Platforms without kernel enforcement in this crate (macOS until its sandbox-exec path is
//! wired and tested; other Unixes). Only `standard` mode runs: the environment is filtered and
//! the workspace is HOME and cwd. `strict` and `audit-only` refuse with a message (audit-only
//! would report nothing here, which would be a silent degradation). Uses std only.

use crate::{InPlacePolicy, KernelSupport, Mode, SandboxError, SandboxSpec, ViolationSink};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Arc;

/// The skill's network listeners (never created on this platform).
#[derive(Debug)]
pub struct Network {
    pub http_proxy: TcpListener,
    pub forwards: Vec<(ironclaw_crds::NetworkGrant, TcpListener)>,
}

/// A running skill.
#[derive(Debug)]
pub struct Sandboxed {
    child: Child,
}

impl Sandboxed {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
    pub fn take_network(&mut self) -> Option<Network> {
        None
    }
    pub fn kill(&mut self) -> Result<(), SandboxError> {
        self.child
            .kill()
            .map_err(|e| SandboxError::io("killing the skill", e))
    }
    pub fn wait(mut self) -> Result<ExitStatus, SandboxError> {
        self.child
            .wait()
            .map_err(|e| SandboxError::io("waiting for the skill", e))
    }
    pub fn wait_with_output(self) -> Result<Output, SandboxError> {
        self.child
            .wait_with_output()
            .map_err(|e| SandboxError::io("waiting for the skill", e))
    }
}

/// How to start a skill beyond its spec. Default: stdio inherited (passed through), no host
/// proxy.
#[derive(Debug, Default)]
pub struct SpawnOptions {
    pub stdin: Option<Stdio>,
    pub stdout: Option<Stdio>,
    pub stderr: Option<Stdio>,
    /// Standard and audit-only modes: IronClaw's egress proxy on the host (HTTP_PROXY and
    /// HTTPS_PROXY point at it; in audit-only mode connects to it are not reported). Strict
    /// mode ignores it: the proxy listener lives in the skill's own network namespace.
    pub host_proxy: Option<std::net::SocketAddrV4>,
}

fn platform() -> &'static str {
    std::env::consts::OS
}

/// Nothing to harden with std alone on this platform.
pub fn harden_supervisor() -> Result<(), SandboxError> {
    Ok(())
}

/// No kernel feature is used on this platform.
pub fn probe() -> Result<KernelSupport, SandboxError> {
    Ok(KernelSupport::default())
}

pub fn spawn(spec: &SandboxSpec, sink: Arc<dyn ViolationSink>) -> Result<Sandboxed, SandboxError> {
    spawn_with(spec, sink, SpawnOptions::default())
}

pub fn spawn_with(
    spec: &SandboxSpec,
    _sink: Arc<dyn ViolationSink>,
    stdio: SpawnOptions,
) -> Result<Sandboxed, SandboxError> {
    if spec.mode != Mode::Standard {
        return Err(SandboxError::PlatformUnsupported(platform()));
    }
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
    std::fs::create_dir_all(&spec.workspace).map_err(|e| {
        SandboxError::io(
            format!("creating workspace {}", spec.workspace.display()),
            e,
        )
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&spec.workspace, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| SandboxError::io(format!("chmod 0700 {}", spec.workspace.display()), e))?;
    }
    let env = crate::policy::env_plan(
        &spec.env,
        &spec.grants,
        &spec.workspace,
        None,
        stdio.host_proxy,
    )?;
    let mut cmd = Command::new(argv0);
    cmd.args(&spec.argv[1..])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.workspace);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    if let Some(s) = stdio.stdin {
        cmd.stdin(s);
    }
    if let Some(s) = stdio.stdout {
        cmd.stdout(s);
    }
    if let Some(s) = stdio.stderr {
        cmd.stderr(s);
    }
    let child = cmd
        .spawn()
        .map_err(|e| SandboxError::io(format!("starting {}", Path::new(argv0).display()), e))?;
    Ok(Sandboxed { child })
}

pub fn apply_in_place(_policy: &InPlacePolicy) -> Result<(), SandboxError> {
    Err(SandboxError::PlatformUnsupported(platform()))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nop;
    impl ViolationSink for Nop {
        fn report(&self, _: crate::Violation) {}
    }

    fn spec(mode: Mode, dir: &Path) -> SandboxSpec {
        SandboxSpec {
            skill: "s".into(),
            mode,
            argv: vec!["/usr/bin/env".into()],
            skill_dir: dir.into(),
            workspace: dir.join("ws"),
            home: dir.into(),
            workspace_root: dir.into(),
            grants: Default::default(),
            env: vec![],
            hidden_paths: vec![],
        }
    }

    #[test]
    fn only_standard_mode_runs_and_its_environment_is_filtered() {
        let d = tempfile::tempdir().unwrap();
        for m in [Mode::Strict, Mode::AuditOnly] {
            let e = spawn(&spec(m, d.path()), Arc::new(Nop))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("not available on") && e.contains("enforcement is not implemented"),
                "{e}"
            );
        }
        let out = spawn_with(
            &spec(Mode::Standard, d.path()),
            Arc::new(Nop),
            SpawnOptions {
                stdout: Some(Stdio::piped()),
                ..Default::default()
            },
        )
        .unwrap()
        .wait_with_output()
        .unwrap();
        let env = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            env.contains(&format!("HOME={}", d.path().join("ws").display())),
            "{env}"
        );
        assert!(!env.contains("CARGO"), "{env}");
        assert!(
            apply_in_place(&InPlacePolicy {
                skill: "s".into(),
                skill_dir: d.path().into(),
                workspace: d.path().into(),
                home: d.path().into(),
                workspace_root: d.path().into(),
                grants: Default::default(),
                proxy_port: 1,
            })
            .is_err()
        );
    }
}
