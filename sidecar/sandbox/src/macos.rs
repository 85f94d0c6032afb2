//! macOS: strict mode runs the skill under Seatbelt (`/usr/bin/sandbox-exec -p PROFILE --
//! ENTRYPOINT ARGS…`, profile from [`crate::policy::sbpl::sbpl_profile`]), standard mode runs it
//! directly; both with an empty environment plus the plan, in a new session, cwd = workspace.
//! The plan itself is [`crate::macos_cmd::plan`] (pure, tested on every OS).
//!
//! NOT COMPILED OR RUN ON THIS PROJECT'S MACHINES (Linux): see docs/sandbox.md for what must be
//! checked on a Mac. No violation events: Seatbelt writes its denials to the system log only.

use crate::macos_cmd::{self, SANDBOX_EXEC};
use crate::{InPlacePolicy, KernelSupport, SandboxError, SandboxSpec, ViolationSink};
use std::net::TcpListener;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Arc;

/// The skill's network listeners (never created on macOS: the egress proxy runs on the host,
/// on [`crate::policy::PROXY_LISTEN`]).
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

/// How to start a skill beyond its spec. Default: stdio inherited, no host proxy.
#[derive(Debug, Default)]
pub struct SpawnOptions {
    pub stdin: Option<Stdio>,
    pub stdout: Option<Stdio>,
    pub stderr: Option<Stdio>,
    /// IronClaw's egress proxy on the host. Strict mode: must be `policy::PROXY_LISTEN` (or
    /// unset), the only destination its profile allows.
    pub host_proxy: Option<std::net::SocketAddrV4>,
}

/// Nothing to harden here (the skill cannot attach to IronClaw: Seatbelt's default profile
/// denies `process-info*` and debugging of other processes).
pub fn harden_supervisor() -> Result<(), SandboxError> {
    Ok(())
}

/// No Linux kernel feature is used on macOS.
pub fn probe() -> Result<KernelSupport, SandboxError> {
    Ok(KernelSupport::default())
}

pub fn spawn(spec: &SandboxSpec, sink: Arc<dyn ViolationSink>) -> Result<Sandboxed, SandboxError> {
    spawn_with(spec, sink, SpawnOptions::default())
}

fn private_dir(path: &Path) -> Result<(), SandboxError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| SandboxError::io(format!("creating {}", path.display()), e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| SandboxError::io(format!("chmod 0700 {}", path.display()), e))
}

pub fn spawn_with(
    spec: &SandboxSpec,
    _sink: Arc<dyn ViolationSink>,
    opts: SpawnOptions,
) -> Result<Sandboxed, SandboxError> {
    let plan = macos_cmd::plan(spec, opts.host_proxy)?;
    if plan.program == Path::new(SANDBOX_EXEC) && !Path::new(SANDBOX_EXEC).is_file() {
        return Err(SandboxError::Unsupported {
            missing: vec![format!(
                "{SANDBOX_EXEC} (Seatbelt), which enforces strict mode on macOS"
            )],
        });
    }
    private_dir(&spec.workspace)?;
    if let Some(t) = &plan.tmpdir {
        private_dir(t)?;
    }
    let mut cmd = Command::new(&plan.program);
    cmd.args(&plan.args)
        .env_clear()
        .envs(plan.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.workspace);
    // A new session: no controlling terminal, so no keystrokes injected into the user's.
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    if let Some(s) = opts.stdin {
        cmd.stdin(s);
    }
    if let Some(s) = opts.stdout {
        cmd.stdout(s);
    }
    if let Some(s) = opts.stderr {
        cmd.stderr(s);
    }
    let child = cmd
        .spawn()
        .map_err(|e| SandboxError::io(format!("starting {}", plan.program.display()), e))?;
    Ok(Sandboxed { child })
}

/// The in-pod exec wrapper runs on Linux only.
pub fn apply_in_place(_policy: &InPlacePolicy) -> Result<(), SandboxError> {
    Err(SandboxError::PlatformUnsupported("macos"))
}
