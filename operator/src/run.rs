//! The operator process: configuration, leader election, the Skill and Channel controllers
//! and the metrics/health server.

use crate::audit::AuditLog;
use crate::leader::{Leadership, LeaseConfig};
use crate::metrics::{self, Metrics};
use crate::reconcile::{self, Context};
use crate::seccomp;
use crate::workload::{MANAGED_BY, WorkloadConfig};
use futures::StreamExt;
use ironclaw_crds::allowlist::Allowlist;
use ironclaw_crds::channel_resource::Channel;
use ironclaw_crds::skill::Skill;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::controller::Controller;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Command-line configuration of `ironclaw-operator` (each flag also reads an env var).
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "ironclaw-operator",
    about = "IronClaw Kubernetes operator: reconciles Skills into sandboxed workloads",
    version
)]
pub struct Args {
    /// Image of the IronClaw sidecar (also provides the exec wrapper and the node installer).
    #[arg(
        long,
        env = "IRONCLAW_SIDECAR_IMAGE",
        default_value = "ghcr.io/ironclaw/ironclaw-sidecar:0.1.0"
    )]
    pub sidecar_image: String,
    /// Pull policy of the sidecar image: Always, IfNotPresent or Never.
    #[arg(long, env = "IRONCLAW_SIDECAR_PULL_POLICY", value_parser = ["Always", "IfNotPresent", "Never"])]
    pub sidecar_pull_policy: Option<String>,
    /// Loopback port of the sidecar's egress proxy.
    #[arg(long, env = "IRONCLAW_PROXY_PORT", default_value_t = 15001)]
    pub proxy_port: u16,
    /// Port of the sidecar's admin server (metrics, health).
    #[arg(long, env = "IRONCLAW_ADMIN_PORT", default_value_t = 15090)]
    pub admin_port: u16,
    /// What each sidecar's `POST /v1/content` does with content the injection scanner flags
    /// (local mode's `security.injectionDefense.mode`): flag (pass it marked), block (refuse it)
    /// or off.
    #[arg(long, env = "IRONCLAW_INJECTION_MODE", default_value = "flag", value_parser = ["flag", "block", "off"])]
    pub injection_mode: String,
    /// PersistentVolumeClaim (in each skill's namespace) backing the workspace's shared/.
    #[arg(long, env = "IRONCLAW_SHARED_CLAIM", default_value = "ironclaw-shared")]
    pub shared_claim: String,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long = "namespace", env = "IRONCLAW_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// Namespace of the leader-election Lease (default: the watched namespace, else POD_NAMESPACE, else "default").
    #[arg(long, env = "IRONCLAW_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Name of the leader-election Lease.
    #[arg(long, env = "IRONCLAW_LEASE_NAME", default_value = "ironclaw-operator")]
    pub lease_name: String,
    /// Seconds a Lease stays valid without renewal.
    #[arg(long, env = "IRONCLAW_LEASE_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..=300))]
    pub lease_seconds: u64,
    /// This replica's identity in the election (default: POD_NAME, else host name plus a random suffix).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Address of /metrics, /ready and /live.
    #[arg(long, env = "IRONCLAW_OPERATOR_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Reconciles running at once per controller; 0 = unbounded (fastest here: a reconcile
    /// mostly waits on the API server). Bound it to cap memory and API-server load.
    #[arg(long, env = "IRONCLAW_CONCURRENCY", default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=4096))]
    pub concurrency: u16,
    /// Seconds between re-checks of objects that are already right.
    #[arg(long, env = "IRONCLAW_RESYNC_SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(10..))]
    pub resync_seconds: u64,
}

/// Why the operator stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("Kubernetes client configuration (in-cluster or kubeconfig): {0}")]
    Client(#[from] kube::Error),
    #[error("listening on {addr} for /metrics: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("leader election: {0}")]
    Leader(#[from] crate::leader::LeaderError),
    #[error(
        "the CRDs are not installed or not readable ({0}): apply crds/generated/ironclaw-crds.yaml first"
    )]
    Crds(kube::Error),
}

fn identity(args: &Args) -> String {
    args.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "ironclaw-operator".into());
        format!("{host}-{:08x}", rand::random::<u32>())
    })
}

fn api<K>(client: &Client, ns: &Option<String>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match ns {
        Some(n) => Api::namespaced(client.clone(), n),
        None => Api::all(client.clone()),
    }
}

/// Runs the operator until SIGTERM/SIGINT (graceful: releases the lease) or until leadership
/// is lost (error: the process must stop acting at once).
pub async fn run(args: Args, audit: AuditLog) -> Result<(), RunError> {
    let client = Client::try_default().await?;
    let metrics = Arc::new(Metrics::new());
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| RunError::Listen {
            addr: args.listen,
            source,
        })?;
    let local = listener.local_addr().map_err(|source| RunError::Listen {
        addr: args.listen,
        source,
    })?;
    tracing::info!(%local, "serving /metrics, /ready, /live");
    let server = tokio::spawn(metrics::serve(listener, metrics.clone()));

    // Fail early and clearly when the CRDs are missing.
    let skills: Api<Skill> = api(&client, &args.watch_namespace);
    skills
        .list(&kube::api::ListParams::default().limit(1))
        .await
        .map_err(RunError::Crds)?;

    let lease_ns = args
        .lease_namespace
        .clone()
        .or_else(|| args.watch_namespace.clone())
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .unwrap_or_else(|| "default".into());
    let lease_cfg = LeaseConfig {
        namespace: lease_ns.clone(),
        name: args.lease_name.clone(),
        identity: identity(&args),
        duration: Duration::from_secs(args.lease_seconds),
    };
    let shutdown = async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; }, None => std::future::pending().await } } => {},
        }
    };
    tokio::pin!(shutdown);

    let leadership = tokio::select! {
        l = Leadership::acquire(Api::<Lease>::namespaced(client.clone(), &lease_ns), lease_cfg.clone()) => l?,
        _ = &mut shutdown => { server.abort(); return Ok(()); }
    };
    metrics.leader.set(1);

    let ctx = Arc::new(Context {
        client: client.clone(),
        workload: WorkloadConfig {
            sidecar_image: args.sidecar_image.clone(),
            sidecar_pull_policy: args.sidecar_pull_policy.clone(),
            proxy_port: args.proxy_port,
            admin_port: args.admin_port,
            shared_claim: args.shared_claim.clone(),
            injection_mode: args.injection_mode.clone(),
            ..WorkloadConfig::default()
        },
        syscalls: seccomp::default_syscalls(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "ironclaw-operator".into(),
                instance: Some(lease_cfg.identity.clone()),
            },
        ),
        audit,
        metrics: metrics.clone(),
        resync: Duration::from_secs(args.resync_seconds),
        allowlists: reconcile::AllowlistCache::default(),
    });

    let owned =
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={MANAGED_BY}"));
    let ctl_cfg = kube::runtime::controller::Config::default().concurrency(args.concurrency);
    let controller =
        Controller::new(skills, watcher::Config::default()).with_config(ctl_cfg.clone());
    let store = controller.store();
    let skill_ctl = controller
        .owns(
            api::<Deployment>(&client, &args.watch_namespace),
            owned.clone(),
        )
        .owns(
            api::<NetworkPolicy>(&client, &args.watch_namespace),
            owned.clone(),
        )
        .owns(api::<ConfigMap>(&client, &args.watch_namespace), owned)
        // Any change to an Allowlist re-reconciles every Skill of its namespace at once
        // (an entry's removal must reach the skill it no longer names).
        .watches(
            api::<Allowlist>(&client, &args.watch_namespace),
            watcher::Config::default(),
            move |al: Allowlist| {
                let ns = al.namespace();
                store
                    .state()
                    .into_iter()
                    .filter(move |s| s.namespace() == ns)
                    .map(|s| ObjectRef::from_obj(&*s))
                    .collect::<Vec<_>>()
            },
        )
        .run(
            reconcile::reconcile_skill,
            reconcile::error_policy,
            ctx.clone(),
        )
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "skill controller");
            }
        });
    let channel_ctl = Controller::new(
        api::<Channel>(&client, &args.watch_namespace),
        watcher::Config::default(),
    )
    .run(
        reconcile::reconcile_channel,
        reconcile::error_policy,
        ctx.clone(),
    )
    .for_each(|r| async move {
        if let Err(e) = r {
            tracing::debug!(error = %e, "channel controller");
        }
    });
    metrics.ready.store(true, Ordering::SeqCst);
    tracing::info!("controllers running");

    let result = tokio::select! {
        _ = skill_ctl => Ok(()),
        _ = channel_ctl => Ok(()),
        lost = leadership.hold() => Err(RunError::Leader(lost)),
        _ = &mut shutdown => {
            tracing::info!("shutting down: releasing the lease");
            leadership.release().await;
            Ok(())
        }
    };
    metrics.ready.store(false, Ordering::SeqCst);
    metrics.leader.set(0);
    server.abort();
    result
}
