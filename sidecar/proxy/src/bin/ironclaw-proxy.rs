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
    /// Threads, each running its own single-threaded event loop with its own listening socket
    /// on the same address (SO_REUSEPORT: the kernel spreads connections over them). A
    /// connection stays on one thread, so no request waits for a cross-thread wake-up.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    threads: u16,
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
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ironclaw-proxy: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `n` listening sockets on `addr` (the first picks the port when `addr` has port 0), with
/// SO_REUSEPORT so the kernel spreads connections over them. Linux lets only the same user
/// join such a group.
fn listeners(addr: SocketAddr, n: u16) -> std::io::Result<Vec<std::net::TcpListener>> {
    let one = |addr: SocketAddr| -> std::io::Result<std::net::TcpListener> {
        let s = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        s.set_reuse_address(true)?;
        if n > 1 {
            s.set_reuse_port(true)?;
        }
        s.set_nonblocking(true)?;
        s.bind(&addr.into())?;
        s.listen(1024)?;
        Ok(s.into())
    };
    let first = one(addr)?;
    let bound = first.local_addr()?;
    let mut all = vec![first];
    for _ in 1..n {
        all.push(one(bound)?);
    }
    Ok(all)
}

fn run(args: Args) -> std::io::Result<()> {
    let n = args.threads;
    let proxy = proxy(&args);
    // Every listener first (so the addresses printed are final), then one thread per share.
    let mut shares: Vec<Vec<Listener>> = (0..n).map(|_| Vec::new()).collect();
    if let Some(addr) = args.listen {
        let ls = listeners(addr, n)
            .map_err(|e| std::io::Error::new(e.kind(), format!("--listen {addr}: {e}")))?;
        println!("http proxy on {}", ls[0].local_addr()?);
        for (share, l) in shares.iter_mut().zip(ls) {
            share.push(Listener::Http(l));
        }
    }
    for f in &args.forwards {
        let ls = listeners(f.listen, n)
            .map_err(|e| std::io::Error::new(e.kind(), format!("--forward {}: {e}", f.listen)))?;
        println!("forward {} -> {}", ls[0].local_addr()?, f.target);
        for (share, l) in shares.iter_mut().zip(ls) {
            share.push(Listener::Forward(l, f.target.clone()));
        }
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let (done, first_end) = std::sync::mpsc::channel();
    for (i, share) in shares.into_iter().enumerate() {
        let proxy = proxy.clone();
        let done = done.clone();
        std::thread::Builder::new()
            .name(format!("proxy-{i}"))
            .spawn(move || {
                let _ = done.send(serve(proxy, share));
            })?;
    }
    drop(done);
    // The first thread to end (a listener failed) ends the process.
    first_end
        .recv()
        .unwrap_or_else(|_| Err(std::io::Error::other("all proxy threads ended")))
}

enum Listener {
    Http(std::net::TcpListener),
    Forward(std::net::TcpListener, NetworkGrant),
}

/// One thread's event loop over its share of the listeners.
fn serve(proxy: Arc<EgressProxy>, share: Vec<Listener>) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| std::io::Error::other(format!("cannot start the runtime: {e}")))?;
    rt.block_on(async move {
        let mut tasks = tokio::task::JoinSet::new();
        for l in share {
            match l {
                Listener::Http(l) => {
                    tasks.spawn(
                        proxy
                            .clone()
                            .serve_http(tokio::net::TcpListener::from_std(l)?),
                    );
                }
                Listener::Forward(l, target) => {
                    tasks.spawn(
                        proxy
                            .clone()
                            .serve_forward(tokio::net::TcpListener::from_std(l)?, target),
                    );
                }
            }
        }
        while let Some(r) = tasks.join_next().await {
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(e) => return Err(std::io::Error::other(e)),
            }
        }
        Ok(())
    })
}

fn proxy(args: &Args) -> Arc<EgressProxy> {
    let resolver: Arc<dyn Resolve> = if args.resolve.is_empty() {
        Arc::new(SystemResolver)
    } else {
        let mut table = StaticResolver::new();
        for r in &args.resolve {
            table.merge(r.clone());
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
    Arc::new(EgressProxy::with_config(
        args.grants.clone(),
        mode,
        resolver,
        Arc::new(StderrJsonSink),
        config,
    ))
}
