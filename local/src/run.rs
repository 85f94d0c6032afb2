//! `ironclaw skill run SKILL [-- ARGS…]`: one skill call, end to end.
//!
//! engine decision (SKILL_CALL / ALLOWLIST_DENY / SKILL_SUSPENDED) → sandbox (mode from
//! `security.sandbox.mode`) → the egress proxy serving the listeners the sandbox created inside
//! the skill's network namespace → every violation to the audit log, counted toward
//! auto-suspension (a suspension that triggers mid-run kills the skill). Exit status and
//! stdout/stderr of the skill pass through.

use anyhow::Context;
use ironclaw_crds::Grants;
use ironclaw_proxy::{BlockEvent, EgressProxy, EventSink, Resolve, StaticResolver, SystemResolver};
use ironclaw_sandbox::{Mode, SandboxSpec, SpawnOptions, Violation, ViolationSink};
use ironclaw_sidecar::config::SandboxMode;
use ironclaw_sidecar::engine::{self, Engine};
use ironclaw_sidecar::home::Home;
use ironclaw_sidecar::{envfile, fsutil, skill};
use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

/// Writes violations from the sandbox supervisor and the proxy to the audit log.
struct AuditSink {
    engine: Arc<Engine>,
    skill: String,
    grants: Grants,
    blocked: bool,
    /// The skill's process group, killed when a violation suspends the skill.
    pgid: AtomicI32,
}

impl AuditSink {
    fn record(&self, v: engine::Violation, blocked: bool) {
        match self
            .engine
            .violation(&self.skill, &self.grants, &v, blocked)
        {
            Ok(true) => {
                let pg = self.pgid.load(Ordering::SeqCst);
                if pg > 0 {
                    eprintln!(
                        "ironclaw: {} is now suspended after repeated violations; stopping it",
                        self.skill
                    );
                    // SAFETY: signalling the skill's own process group.
                    unsafe { libc::kill(-pg, libc::SIGKILL) };
                }
            }
            Ok(false) => {}
            // The violation was still denied; say loudly that its record failed.
            Err(e) => eprintln!("ironclaw: FAILED TO RECORD A VIOLATION: {e}"),
        }
    }
}

impl ViolationSink for AuditSink {
    fn report(&self, v: Violation) {
        let v = match v {
            Violation::Syscall { name } => engine::Violation::Syscall { name },
            Violation::Filesystem { path, access } => engine::Violation::Filesystem {
                path: path.display().to_string(),
                access,
            },
            Violation::Exec { path } => engine::Violation::Filesystem {
                path: path.display().to_string(),
                access: "execute".into(),
            },
            Violation::Network { host, port } => engine::Violation::Network {
                resource: if host.contains(':') {
                    format!("[{host}]:{port}")
                } else {
                    format!("{host}:{port}")
                },
                reason: "direct connection bypassing the egress proxy".into(),
            },
        };
        self.record(v, self.blocked);
    }
}

impl EventSink for AuditSink {
    fn report(&self, ev: BlockEvent) {
        let blocked = ev.blocked;
        self.record(
            engine::Violation::Network {
                resource: ev.resource(),
                reason: ev.reason.as_str().into(),
            },
            blocked,
        );
    }
}

pub fn sandbox_mode(m: SandboxMode) -> Mode {
    match m {
        SandboxMode::Strict => Mode::Strict,
        SandboxMode::Standard => Mode::Standard,
        SandboxMode::AuditOnly => Mode::AuditOnly,
    }
}

/// Granted variables with their values: the caller's environment first, then `.env`.
fn granted_env(home: &Home, grants: &Grants) -> anyhow::Result<Vec<(String, String)>> {
    let dotenv = envfile::load(&home.env_path())?;
    let mut out: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();
    for (k, v) in dotenv.into_iter().chain(std::env::vars()) {
        if grants.allows_env(&k) {
            out.insert(k, v);
        }
    }
    Ok(out.into_iter().collect())
}

/// How a call ended.
pub enum Outcome {
    /// Refused before anything ran (already logged).
    Refused(engine::Refusal),
    /// The skill ran; `output` holds stdout/stderr when they were captured.
    Exited {
        code: i32,
        output: Option<std::process::Output>,
    },
}

/// `ironclaw skill run`: stdio passes through, the skill's status becomes ours.
pub fn run(
    home: &Home,
    skill_name: &str,
    args: &[OsString],
    resolve: &[StaticResolver],
) -> anyhow::Result<ExitCode> {
    ironclaw_sandbox::harden_supervisor()?;
    let engine = Arc::new(Engine::open(home.clone(), "cli")?);
    match execute(&engine, skill_name, args, resolve, false)? {
        Outcome::Refused(refusal) => {
            eprintln!("error: {refusal}");
            Ok(ExitCode::FAILURE)
        }
        Outcome::Exited { code, .. } => Ok(ExitCode::from(u8::try_from(code).unwrap_or(1))),
    }
}

/// One skill call through the engine, the sandbox and the egress proxy (CLI and gateway alike).
pub fn execute(
    engine: &Arc<Engine>,
    skill_name: &str,
    args: &[OsString],
    resolve: &[StaticResolver],
    capture: bool,
) -> anyhow::Result<Outcome> {
    let home = &engine.home;
    let auth = match engine.authorise(skill_name)? {
        Ok(a) => a,
        Err(refusal) => return Ok(Outcome::Refused(refusal)),
    };
    let mode = sandbox_mode(engine.config().security.sandbox.mode);
    if mode == Mode::Strict {
        let missing = ironclaw_sandbox::probe()?.missing_for_strict();
        if !missing.is_empty() {
            anyhow::bail!(
                "strict mode cannot be enforced on this kernel, so nothing was run. Missing: {}. \
                 (Switching to standard mode removes kernel enforcement: `ironclaw config set security.sandbox.mode standard`.)",
                missing.join("; ")
            );
        }
    }
    if mode == Mode::AuditOnly {
        eprintln!(
            "ironclaw: WARNING: audit-only mode — nothing is blocked, every access is only logged."
        );
    }
    let dir = home.skill_dir(skill_name);
    let workspace = home.skill_workspace(skill_name);
    fsutil::create_private_dir(&workspace)?;
    let spec = SandboxSpec {
        skill: skill_name.to_owned(),
        mode,
        argv: skill::argv(&dir, &auth.manifest, args)?,
        skill_dir: dir,
        workspace,
        home: home.user_home.clone(),
        workspace_root: home.workspace_root(),
        env: granted_env(home, &auth.effective)?,
        // Grants are resolved here (so `~/.ironclaw` means IRONCLAW_HOME) and passed absolute.
        grants: Grants {
            filesystem: auth
                .effective
                .filesystem
                .iter()
                .map(|g| ironclaw_crds::FsGrant {
                    path: home.resolve_grant(g).display().to_string(),
                    access: g.access,
                })
                .collect(),
            ..auth.effective.clone()
        },
        hidden_paths: vec![home.root.clone()],
    };
    let sink = Arc::new(AuditSink {
        engine: engine.clone(),
        skill: skill_name.to_owned(),
        grants: auth.effective.clone(),
        blocked: mode != Mode::AuditOnly,
        pgid: AtomicI32::new(0),
    });

    let mut resolver = StaticResolver::new();
    for r in resolve {
        resolver.merge(r.clone());
    }
    let resolver: Arc<dyn Resolve> = Arc::new(resolver.with_fallback(Arc::new(SystemResolver)));
    let proxy_mode = if mode == Mode::AuditOnly {
        ironclaw_proxy::Mode::AuditOnly
    } else {
        ironclaw_proxy::Mode::Enforce
    };
    let proxy = Arc::new(EgressProxy::new(
        auth.effective.network.clone(),
        proxy_mode,
        resolver,
        sink.clone(),
    ));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut opts = SpawnOptions::default();
    if capture {
        opts.stdin = Some(std::process::Stdio::null());
        opts.stdout = Some(std::process::Stdio::piped());
        opts.stderr = Some(std::process::Stdio::piped());
    }
    if mode != Mode::Strict {
        let l = std::net::TcpListener::bind("127.0.0.1:0").context("binding the egress proxy")?;
        if let std::net::SocketAddr::V4(a) = l.local_addr()? {
            opts.host_proxy = Some(a);
        }
        serve(&rt, proxy.clone(), l, None)?;
    }
    let mut child = ironclaw_sandbox::spawn_with(&spec, sink.clone(), opts)?;
    sink.pgid.store(child.pid(), Ordering::SeqCst);
    if let Some(net) = child.take_network() {
        serve(&rt, proxy.clone(), net.http_proxy, None)?;
        for (grant, l) in net.forwards {
            serve(&rt, proxy.clone(), l, Some(grant))?;
        }
    }
    let (status, output) = if capture {
        let o = child.wait_with_output()?;
        (o.status, Some(o))
    } else {
        (child.wait()?, None)
    };
    rt.shutdown_background();
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    Ok(Outcome::Exited { code, output })
}

fn serve(
    rt: &tokio::runtime::Runtime,
    proxy: Arc<EgressProxy>,
    l: std::net::TcpListener,
    forward: Option<ironclaw_crds::NetworkGrant>,
) -> anyhow::Result<()> {
    l.set_nonblocking(true)?;
    let _guard = rt.enter();
    let l = tokio::net::TcpListener::from_std(l)?;
    rt.spawn(async move {
        let r = match forward {
            None => proxy.serve_http(l).await,
            Some(g) => proxy.serve_forward(l, g).await,
        };
        if let Err(e) = r {
            eprintln!("ironclaw: egress proxy stopped: {e}");
        }
    });
    Ok(())
}
