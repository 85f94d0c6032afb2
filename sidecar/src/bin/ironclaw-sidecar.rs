//! The in-pod `ironclaw-sidecar` binary: `exec` (skill wrapper), `agent` (egress proxy and
//! admin server), `install-wrapper` (init container) and `install-profiles` (node installer).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ironclaw_sidecar::pod::{PodPolicy, agent, exec, install};

#[derive(Parser)]
#[command(name = "ironclaw-sidecar", about = "IronClaw in-pod sidecar")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Sandbox this process from the policy, then exec COMMAND.
    Exec {
        #[arg(long)]
        policy: PathBuf,
        /// The skill's install folder (read + execute); defaults to the workspace.
        #[arg(long)]
        skill_dir: Option<PathBuf>,
        #[arg(last = true, required = true, num_args = 1..)]
        command: Vec<OsString>,
    },
    /// Run the egress proxy and the admin server (`/metrics`, `/ready`, `/live`).
    Agent {
        #[arg(long)]
        policy: PathBuf,
        #[arg(long)]
        proxy_listen: std::net::SocketAddr,
        #[arg(long)]
        admin_listen: std::net::SocketAddr,
    },
    /// Write the operator's seccomp-profile ConfigMaps into the node's seccomp root: a watch
    /// (everything first, then each change as it happens), or one pass with `--once`.
    InstallProfiles {
        /// Label selector of the profile ConfigMaps.
        #[arg(long)]
        selector: String,
        /// The kubelet's seccomp root (as mounted).
        #[arg(long)]
        root: PathBuf,
        /// One pass, then exit (non-zero if any ConfigMap was refused).
        #[arg(long)]
        once: bool,
    },
    /// Copy this executable into DIR as `ironclaw-sidecar`, mode 0555.
    InstallWrapper { dir: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res: Result<(), String> = match cli.cmd {
        Cmd::Exec {
            policy,
            skill_dir,
            command,
        } => PodPolicy::load(&policy)
            .map_err(|e| e.to_string())
            .and_then(|p| {
                exec::run(&p, skill_dir.as_deref(), &command)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }),
        Cmd::Agent {
            policy,
            proxy_listen,
            admin_listen,
        } => PodPolicy::load(&policy)
            .map_err(|e| e.to_string())
            .and_then(|p| run_agent(&p, proxy_listen, admin_listen)),
        Cmd::InstallProfiles {
            selector,
            root,
            once,
        } => run_install_profiles(&selector, &root, once),
        Cmd::InstallWrapper { dir } => std::env::current_exe()
            .map_err(|e| format!("install-wrapper: locating own executable: {e}"))
            .and_then(|me| install::install_wrapper(&me, &dir).map_err(|e| e.to_string()))
            .map(|dest| println!("installed {}", dest.display())),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ironclaw-sidecar: {e}");
            ExitCode::from(126)
        }
    }
}

/// A line on stderr that never fails the caller (stderr may be closed by then).
fn note(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn run_agent(
    policy: &PodPolicy,
    proxy: std::net::SocketAddr,
    admin: std::net::SocketAddr,
) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("agent: starting the runtime: {e}"))?;
    rt.block_on(async {
        let bound = agent::bind(proxy, admin).await.map_err(|e| e.to_string())?;
        let (p, a) = (
            bound.proxy.local_addr().map_err(|e| e.to_string())?,
            bound.admin.local_addr().map_err(|e| e.to_string())?,
        );
        eprintln!(
            "ironclaw-sidecar agent: skill={} proxy={p} admin={a}",
            policy.skill
        );
        let pod = std::env::var("HOSTNAME").unwrap_or_else(|_| policy.skill.clone());
        let session = format!("{}/{pod}", policy.namespace);
        // As a container's PID 1 nothing stops the agent but a handled signal: SIGTERM (the
        // kubelet's stop) and SIGINT end it at once, with exit status 0. Audit lines are written
        // whole and synchronously, so stopping never tears one.
        use tokio::signal::unix::{SignalKind, signal};
        let mut term =
            signal(SignalKind::terminate()).map_err(|e| format!("agent: handling SIGTERM: {e}"))?;
        let mut int =
            signal(SignalKind::interrupt()).map_err(|e| format!("agent: handling SIGINT: {e}"))?;
        tokio::select! {
            r = agent::serve(policy, session, bound) => r.map_err(|e| e.to_string()),
            _ = term.recv() => {
                note("ironclaw-sidecar agent: SIGTERM, stopping");
                Ok(())
            }
            _ = int.recv() => {
                note("ironclaw-sidecar agent: SIGINT, stopping");
                Ok(())
            }
        }
    })
}

fn run_install_profiles(selector: &str, root: &std::path::Path, once: bool) -> Result<(), String> {
    use ironclaw_sidecar::pod::profiles::{WatchOutcome, sync_from_cluster, watch};
    if !root.is_dir() {
        return Err(format!(
            "install-profiles: --root {}: not a directory",
            root.display()
        ));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("install-profiles: starting the runtime: {e}"))?;
    rt.block_on(async {
        let client = kube::Client::try_default()
            .await
            .map_err(|e| format!("install-profiles: Kubernetes client: {e}"))?;
        if once {
            let (report, errors) = sync_from_cluster(client, selector, root)
                .await
                .map_err(|e| format!("install-profiles: listing ConfigMaps ({selector}): {e}"))?;
            for k in &report.written {
                eprintln!("install-profiles: wrote {}", root.join(k).display());
            }
            for e in &errors {
                eprintln!("install-profiles: refused: {e}");
            }
            return if errors.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "install-profiles: {} ConfigMap(s) refused",
                    errors.len()
                ))
            };
        }
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())
            .map_err(|e| format!("install-profiles: handling SIGTERM: {e}"))?;
        let report = |o: WatchOutcome| match o {
            WatchOutcome::Synced { report, .. } => {
                for k in &report.written {
                    eprintln!("install-profiles: wrote {}", root.join(k).display());
                }
            }
            WatchOutcome::Refused(e) => eprintln!("install-profiles: refused: {e}"),
            WatchOutcome::WatchError(e) => {
                eprintln!("install-profiles: watching ConfigMaps ({selector}): {e}; retrying")
            }
            WatchOutcome::Listed => eprintln!("install-profiles: in step; watching for changes"),
        };
        tokio::select! {
            () = watch(client, selector, root, report) => {
                Err("install-profiles: the watch ended".to_owned())
            }
            _ = term.recv() => Ok(()),
        }
    })
}
