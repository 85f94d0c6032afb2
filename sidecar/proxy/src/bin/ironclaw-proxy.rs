//! Standalone egress proxy, for manual use and the benchmark.
//!
//! `ironclaw-proxy --listen 127.0.0.1:3128 --grant api.example.com:443 [--resolve name=ip]
//!  [--forward 127.0.0.2:993=imap.gmail.com:993] [--audit-only]`
//!
//! Each refusal is written to standard error as one NETWORK_BLOCK JSON line.

use clap::Parser;
use ironclaw_crds::NetworkGrant;
use ironclaw_proxy::{
    EgressProxy, Mode, ProxyConfig, Resolve, StaticResolver, StderrJsonSink, SystemResolver,
};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// A `--forward LISTEN=HOST:PORT` relay.
#[derive(Debug, Clone)]
struct Forward {
    listen: SocketAddr,
    target: NetworkGrant,
}

fn parse_forward(s: &str) -> Result<Forward, String> {
    let (listen, target) = s
        .split_once('=')
        .ok_or("expected LISTEN_ADDR=HOST:PORT, e.g. 127.0.0.2:993=imap.gmail.com:993")?;
    let listen: SocketAddr = listen
        .parse()
        .map_err(|_| format!("{listen:?} is not a socket address like 127.0.0.2:993"))?;
    let target: NetworkGrant = target.parse().map_err(|e| format!("{e}"))?;
    Ok(Forward { listen, target })
}

#[derive(Debug, Parser)]
#[command(name = "ironclaw-proxy", version, about = "IronClaw egress proxy")]
struct Args {
    /// Address of the HTTP proxy listener (CONNECT and absolute-form HTTP).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// A network grant, HOST:PORT (repeat for more).
    #[arg(long = "grant", value_name = "HOST:PORT")]
    grants: Vec<NetworkGrant>,
    /// Resolve NAME to these addresses instead of asking the system resolver (repeatable).
    #[arg(long = "resolve", value_name = "NAME=IP[,IP]")]
    resolve: Vec<StaticResolver>,
    /// A raw TCP relay: connections to LISTEN_ADDR go to HOST:PORT (which must be granted).
    #[arg(long = "forward", value_name = "LISTEN_ADDR=HOST:PORT", value_parser = parse_forward)]
    forwards: Vec<Forward>,
    /// Allow everything, still report what would have been refused.
    #[arg(long)]
    audit_only: bool,
    /// Close a tunnel after this many seconds with no traffic.
    #[arg(long, value_name = "SECONDS", default_value_t = 1800)]
    idle_timeout: u64,
    /// Worker threads. 1 (the default) runs everything on one thread, which measured fastest
    /// on small machines: no cross-thread wake-ups on the request path.
    #[arg(long, value_name = "N", default_value_t = 1)]
    threads: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("IRONCLAW_PROXY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    if args.listen.is_none() && args.forwards.is_empty() {
        eprintln!(
            "ironclaw-proxy: nothing to serve: give --listen ADDR and/or --forward LISTEN_ADDR=HOST:PORT"
        );
        return ExitCode::from(2);
    }
    // One thread: a current-thread runtime (no cross-thread wake-ups on the request path).
    let mut rt = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(args.threads);
        b
    };
    rt.enable_all();
    let rt = match rt.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ironclaw-proxy: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ironclaw-proxy: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> std::io::Result<()> {
    let resolver: Arc<dyn Resolve> = if args.resolve.is_empty() {
        Arc::new(SystemResolver)
    } else {
        let mut table = StaticResolver::new();
        for r in args.resolve {
            table.merge(r);
        }
        Arc::new(table.with_fallback(Arc::new(SystemResolver)))
    };
    let mode = if args.audit_only {
        eprintln!("ironclaw-proxy: WARNING: audit-only mode: nothing is blocked");
        Mode::AuditOnly
    } else {
        Mode::Enforce
    };
    let config = ProxyConfig {
        idle_timeout: Duration::from_secs(args.idle_timeout.max(1)),
        ..ProxyConfig::default()
    };
    let proxy = Arc::new(EgressProxy::with_config(
        args.grants,
        mode,
        resolver,
        Arc::new(StderrJsonSink),
        config,
    ));
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(addr) = args.listen {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("--listen {addr}: {e}")))?;
        println!("http proxy on {}", l.local_addr()?);
        tasks.spawn(proxy.clone().serve_http(l));
    }
    for f in args.forwards {
        let l = tokio::net::TcpListener::bind(f.listen)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("--forward {}: {e}", f.listen)))?;
        println!("forward {} -> {}", l.local_addr()?, f.target);
        tasks.spawn(proxy.clone().serve_forward(l, f.target));
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(std::io::Error::other(e)),
        }
    }
    Ok(())
}
