//! `ironclaw-sidecar agent`: the skill's egress proxy on loopback (grants from `policy.json`,
//! NETWORK_BLOCK audit lines on stdout) and the admin server (`/metrics`, `/ready`, `/live`).

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use ironclaw_proxy::{BlockEvent, EgressProxy, EventSink, Mode, SystemResolver};
use prometheus_client::registry::Registry;
use time::OffsetDateTime;
use time::macros::format_description;
use tokio::net::TcpListener;

use super::policy::PodPolicy;
use crate::audit::{EventType, Record, new_event_id};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("agent: {flag} {addr}: cannot listen: {source}")]
    Bind {
        flag: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("agent: --proxy-listen {0} must be a loopback address (the skill's only way out)")]
    ProxyNotLoopback(SocketAddr),
    #[error("agent: {what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Writes each block event as one spec audit line (`ts`, `event`, `eventId`, `sessionId`,
/// `skill`, then the event's fields) to stdout, whole-line writes under the stdout lock.
#[derive(Debug, Clone)]
pub struct StdoutAuditSink {
    pub skill: String,
    pub session_id: String,
}

impl StdoutAuditSink {
    /// The record for `ev` (no message content: destination, reason, grants only).
    pub fn record(&self, ev: &BlockEvent) -> Record {
        let now = OffsetDateTime::now_utc();
        let ms = u64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
        let ts = now
            .format(format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
            ))
            .unwrap_or_default();
        let mut fields = ev.audit_fields();
        fields.remove("event");
        Record {
            ts,
            event: EventType::NetworkBlock,
            event_id: new_event_id(ms),
            session_id: self.session_id.clone(),
            skill: Some(self.skill.clone()),
            fields,
        }
    }
}

impl EventSink for StdoutAuditSink {
    fn report(&self, ev: BlockEvent) {
        let line = format!("{}\n", self.record(&ev).to_value());
        let mut out = std::io::stdout().lock();
        if out
            .write_all(line.as_bytes())
            .and_then(|()| out.flush())
            .is_err()
        {
            // Stdout gone: keep the record on stderr rather than lose it.
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
    }
}

/// Bound listeners of a running agent.
#[derive(Debug)]
pub struct Bound {
    pub proxy: TcpListener,
    pub admin: TcpListener,
}

/// Binds both listeners; the proxy must be on loopback.
pub async fn bind(proxy: SocketAddr, admin: SocketAddr) -> Result<Bound, AgentError> {
    if !proxy.ip().is_loopback() {
        return Err(AgentError::ProxyNotLoopback(proxy));
    }
    let p = TcpListener::bind(proxy)
        .await
        .map_err(|source| AgentError::Bind {
            flag: "--proxy-listen",
            addr: proxy,
            source,
        })?;
    let a = TcpListener::bind(admin)
        .await
        .map_err(|source| AgentError::Bind {
            flag: "--admin-listen",
            addr: admin,
            source,
        })?;
    Ok(Bound { proxy: p, admin: a })
}

/// Serves the proxy and the admin server until one fails.
pub async fn serve(policy: &PodPolicy, session_id: String, bound: Bound) -> Result<(), AgentError> {
    let sink = Arc::new(StdoutAuditSink {
        skill: policy.skill.clone(),
        session_id,
    });
    let proxy = Arc::new(EgressProxy::new(
        policy.grants.network.clone(),
        Mode::Enforce,
        Arc::new(SystemResolver),
        sink,
    ));
    let mut registry = Registry::default();
    proxy.register_metrics(&mut registry);
    let registry = Arc::new(registry);
    let proxy_task = tokio::spawn(proxy.serve_http(bound.proxy));
    let admin = serve_admin(bound.admin, registry);
    tokio::select! {
        r = proxy_task => match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(AgentError::Io { what: "egress proxy listener", source }),
            Err(e) => Err(AgentError::Io { what: "egress proxy task", source: std::io::Error::other(e) }),
        },
        r = admin => r.map_err(|source| AgentError::Io { what: "admin listener", source }),
    }
}

async fn serve_admin(listener: TcpListener, registry: Arc<Registry>) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let registry = registry.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| admin(req, registry.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn admin(
    req: Request<Incoming>,
    registry: Arc<Registry>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, ctype, body) = match (req.method().as_str(), req.uri().path()) {
        ("GET", "/metrics") => {
            let mut s = String::new();
            match prometheus_client::encoding::text::encode(&mut s, &registry) {
                Ok(()) => (
                    StatusCode::OK,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    s,
                ),
                Err(_) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    "metrics encoding failed\n".into(),
                ),
            }
        }
        ("GET", "/ready") | ("GET", "/live") => (StatusCode::OK, "text/plain", "ok\n".into()),
        ("GET", _) => (StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET\n".into(),
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(ctype) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    Ok(resp)
}
