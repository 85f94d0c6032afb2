//! IronClaw egress proxy: host:port grants enforced after name resolution.
//!
//! A skill reaches the network only through this proxy: HTTP CONNECT and absolute-form HTTP/1.1
//! on an HTTP proxy listener ([`EgressProxy::serve_http`]), and a raw TCP relay per granted
//! host:port for other protocols ([`EgressProxy::serve_forward`], e.g. IMAP on 993).
//!
//! Every attempt goes through the same steps:
//! 1. the grant is checked on the name as the skill wrote it, before anything is resolved
//!    ([`ironclaw_crds::NetworkGrant::allows`]);
//! 2. the proxy resolves the name itself, once;
//! 3. every resolved address is checked: a non-public one (private, loopback, link-local, cloud
//!    metadata, unspecified, multicast, reserved …, see [`addr::classify`]) passes only if a grant
//!    names that address literally;
//! 4. the proxy connects only to the addresses it checked (no second resolution, no rebinding).
//!
//! A refusal is reported as one [`BlockEvent`] to the [`EventSink`] — and the sink has returned —
//! before the client hears the refusal. In [`Mode::AuditOnly`] nothing is refused, but what would
//! have been refused is reported with `blocked: false`. No message content is ever logged.

pub mod addr;
pub mod event;
mod http;
pub mod metrics;
pub mod policy;
mod relay;
pub mod resolve;

pub use addr::AddrClass;
pub use event::{BlockEvent, BlockReason, EventSink, Mode, StderrJsonSink};
pub use metrics::{Metrics, Protocol};
pub use policy::{Policy, Target};
pub use resolve::{Resolve, StaticResolver, StaticResolverError, SystemResolver};

use ironclaw_crds::{Host, NetworkGrant};
use prometheus_client::registry::Registry;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Limits and timeouts. The defaults suit a skill's egress.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// A tunnel (CONNECT or forward) with no byte moving either way for this long is closed.
    /// Long enough for IMAP IDLE, whose clients re-issue IDLE well within 29 minutes.
    pub idle_timeout: Duration,
    /// An HTTP client must send a complete request head within this time, and an idle
    /// keep-alive connection is closed after it.
    pub header_read_timeout: Duration,
    /// Upper bound on the request head (request line and headers), in bytes; at least 8192.
    /// Larger heads get 431.
    pub max_header_bytes: usize,
    /// Time allowed for resolving a name.
    pub resolve_timeout: Duration,
    /// Time allowed for connecting to one address.
    pub connect_timeout: Duration,
    /// Buffer size per direction of a tunnel.
    pub relay_buffer: usize,
    /// Client connections served at once per listener set; further ones wait in the backlog.
    pub max_connections: usize,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            idle_timeout: Duration::from_secs(30 * 60),
            header_read_timeout: Duration::from_secs(30),
            max_header_bytes: 16 * 1024,
            resolve_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            relay_buffer: 256 * 1024,
            max_connections: 1024,
        }
    }
}

/// Why an attempt did not get an origin connection.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// Refused by policy (already reported to the sink).
    Blocked(BlockReason),
    /// Allowed, but the origin could not be reached.
    Upstream(io::Error),
}

/// The egress proxy for one skill (one set of grants).
pub struct EgressProxy {
    policy: Policy,
    mode: Mode,
    resolver: Arc<dyn Resolve>,
    sink: Arc<dyn EventSink>,
    config: ProxyConfig,
    metrics: Metrics,
    slots: Arc<Semaphore>,
}

impl std::fmt::Debug for EgressProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EgressProxy")
            .field("granted", &self.policy.granted())
            .field("mode", &self.mode)
            .field("config", &self.config)
            .finish()
    }
}

impl EgressProxy {
    pub fn new(
        grants: Vec<NetworkGrant>,
        mode: Mode,
        resolver: Arc<dyn Resolve>,
        sink: Arc<dyn EventSink>,
    ) -> Self {
        Self::with_config(grants, mode, resolver, sink, ProxyConfig::default())
    }

    pub fn with_config(
        grants: Vec<NetworkGrant>,
        mode: Mode,
        resolver: Arc<dyn Resolve>,
        sink: Arc<dyn EventSink>,
        mut config: ProxyConfig,
    ) -> Self {
        // A request head buffer below 8 KiB would refuse ordinary requests.
        config.max_header_bytes = config.max_header_bytes.max(8192);
        config.max_connections = config.max_connections.max(1);
        config.relay_buffer = config.relay_buffer.max(4096);
        let slots = Arc::new(Semaphore::new(config.max_connections));
        EgressProxy {
            policy: Policy::new(grants),
            mode,
            resolver,
            sink,
            config,
            metrics: Metrics::default(),
            slots,
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn config(&self) -> &ProxyConfig {
        &self.config
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The proxy's counters (shared with what [`EgressProxy::register_metrics`] registers).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Registers the counters (`ironclaw_proxy_*`) in `registry`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        self.metrics.register(registry);
    }

    /// Serves HTTP CONNECT and absolute-form HTTP/1.1 (keep-alive) on `listener`. Returns only on
    /// a listener error that is not a passing one (e.g. out of file descriptors is passing).
    pub async fn serve_http(self: Arc<Self>, listener: TcpListener) -> io::Result<()> {
        loop {
            let (stream, permit) = self.accept(&listener).await?;
            let this = self.clone();
            // The permit lives as long as the connection, including a CONNECT tunnel it turns
            // into, so tunnels count toward `max_connections` too.
            tokio::spawn(async move { this.serve_http_conn(stream, permit).await });
        }
    }

    /// Relays every connection on `listener` to `target` (one granted host:port), after the same
    /// checks as the HTTP path; a refused connection is closed without a byte.
    pub async fn serve_forward(
        self: Arc<Self>,
        listener: TcpListener,
        target: NetworkGrant,
    ) -> io::Result<()> {
        let host = match &target.host {
            Host::Name(n) => n.clone(),
            Host::Ip(ip) => ip.to_string(),
            Host::WildcardSuffix(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "forward target {target}: a wildcard grant names no single host to connect to"
                    ),
                ));
            }
        };
        let target = Target::new(&host, target.port).map_err(|reason| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("forward target {target}: {reason}"),
            )
        })?;
        let target = Arc::new(target);
        loop {
            let (client, permit) = self.accept(&listener).await?;
            let this = self.clone();
            let target = target.clone();
            tokio::spawn(async move {
                match this.open(Protocol::Forward, &target).await {
                    Ok(upstream) => {
                        let end = relay::relay_tcp(
                            client,
                            upstream,
                            &[],
                            this.config.idle_timeout,
                            this.config.relay_buffer,
                        )
                        .await;
                        tracing::debug!(protocol = "forward", ?end, "tunnel closed");
                    }
                    Err(_) => drop(client),
                }
                drop(permit);
            });
        }
    }

    async fn accept(
        &self,
        listener: &TcpListener,
    ) -> io::Result<(TcpStream, tokio::sync::OwnedSemaphorePermit)> {
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| io::Error::other("connection limiter closed"))?;
        loop {
            match listener.accept().await {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    return Ok((stream, permit));
                }
                Err(e) if is_passing_accept_error(&e) => {
                    tracing::warn!(error = %e, "accept failed; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Reports one event: metrics, a content-free log line, then the sink on a blocking thread,
    /// awaited. Returns whether the sink took it (a panicking sink did not).
    pub(crate) async fn report(&self, protocol: Protocol, ev: BlockEvent) -> bool {
        self.metrics.block(protocol, ev.reason, ev.blocked);
        tracing::info!(
            resource = %ev.resource(),
            reason = ev.reason.as_str(),
            blocked = ev.blocked,
            address = ?ev.address,
            "egress refused"
        );
        let sink = self.sink.clone();
        match tokio::task::spawn_blocking(move || sink.report(ev)).await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "event sink failed; the attempt is refused");
                false
            }
        }
    }

    pub(crate) fn event(
        &self,
        target: &Target,
        reason: BlockReason,
        address: Option<IpAddr>,
    ) -> BlockEvent {
        BlockEvent {
            host: target.host.clone(),
            port: target.port,
            address,
            reason,
            granted: self.policy.granted().to_vec(),
            blocked: self.mode == Mode::Enforce,
        }
    }

    /// Reports a request that names no usable destination (always refused, in every mode).
    pub(crate) async fn report_bad_request(&self, protocol: Protocol, host: &str, port: u16) {
        let ev = BlockEvent {
            host: Target::sanitize(host),
            port,
            address: None,
            reason: BlockReason::BadRequest,
            granted: self.policy.granted().to_vec(),
            blocked: true,
        };
        self.report(protocol, ev).await;
    }

    /// Would-be refusal: in enforce mode it is final; in audit-only mode the attempt goes on
    /// (unless the event could not be recorded). Returns Err to refuse.
    async fn refuse_or_audit(
        &self,
        protocol: Protocol,
        ev: BlockEvent,
        audited: &mut bool,
    ) -> Result<(), Refusal> {
        let reason = ev.reason;
        match self.mode {
            Mode::Enforce => {
                self.report(protocol, ev).await;
                Err(Refusal::Blocked(reason))
            }
            Mode::AuditOnly if *audited => Ok(()),
            Mode::AuditOnly => {
                *audited = true;
                if self.report(protocol, ev).await {
                    Ok(())
                } else {
                    Err(Refusal::Blocked(reason))
                }
            }
        }
    }

    /// Checks, resolves, checks again and connects: the one path to an origin.
    pub(crate) async fn open(
        &self,
        protocol: Protocol,
        target: &Target,
    ) -> Result<TcpStream, Refusal> {
        let mut audited = false;
        // 1. The grant, on the name as written, before anything is resolved.
        if !self.policy.allows_name(target) {
            let ev = self.event(target, BlockReason::NotGranted, None);
            self.refuse_or_audit(protocol, ev, &mut audited).await?;
        }
        // 2. Resolve once.
        let addrs = match &target.parsed {
            Host::Ip(ip) => vec![*ip],
            _ => {
                let answer = tokio::time::timeout(
                    self.config.resolve_timeout,
                    self.resolver.resolve(&target.host),
                )
                .await;
                match answer {
                    Ok(Ok(addrs)) if !addrs.is_empty() => addrs,
                    Ok(Ok(_)) | Ok(Err(_)) | Err(_) => {
                        let mut ev = self.event(target, BlockReason::ResolveFailed, None);
                        ev.blocked = true; // nothing to connect to, in any mode
                        self.report(protocol, ev).await;
                        return Err(Refusal::Blocked(BlockReason::ResolveFailed));
                    }
                }
            }
        };
        // 3. Every address.
        if let Err((reason, ip)) = self.policy.check_addresses(&addrs, target.port) {
            let ev = self.event(target, reason, Some(ip));
            self.refuse_or_audit(protocol, ev, &mut audited).await?;
        }
        // 4. Connect only to the addresses checked above.
        match self.connect(&addrs, target.port).await {
            Ok(s) => {
                self.metrics.allow(protocol);
                Ok(s)
            }
            Err(e) => {
                self.metrics.upstream_error(protocol);
                tracing::info!(resource = %format!("{}:{}", target.host, target.port), error = %e, "origin unreachable");
                Err(Refusal::Upstream(e))
            }
        }
    }

    async fn connect(&self, addrs: &[IpAddr], port: u16) -> io::Result<TcpStream> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address to connect to");
        for ip in addrs {
            let sa = SocketAddr::new(*ip, port);
            match tokio::time::timeout(self.config.connect_timeout, TcpStream::connect(sa)).await {
                Ok(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    return Ok(s);
                }
                Ok(Err(e)) => last = e,
                Err(_) => last = io::Error::new(io::ErrorKind::TimedOut, "connect timed out"),
            }
        }
        Err(last)
    }
}

/// Accept errors that say nothing about the listener itself (a client gave up, the process is
/// briefly out of descriptors or memory).
fn is_passing_accept_error(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock | OutOfMemory
    ) {
        return true;
    }
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}
