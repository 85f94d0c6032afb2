//! `ironclaw-sidecar agent`: the skill's egress proxy on loopback (grants from `policy.json`,
//! NETWORK_BLOCK audit lines on stdout) and the admin server (`/metrics`, `/ready`, `/live`, and
//! the content API: `POST /v1/content` {source, text} → scanned, INJECTION_DETECTED on stdout
//! (categories and spans, never the content), returned wrapped as `[UNTRUSTED …]` with a fresh id;
//! `GET /v1/system-prompt` → the spec's instruction text).

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
        let ms = crate::audit::unix_ms(now);
        let mut fields = ev.audit_fields();
        fields.remove("event");
        let mut rec = self.record_at(now, ms);
        rec.fields = fields;
        rec
    }

    /// An empty NETWORK_BLOCK record stamped `now`; callers set the event and fields.
    fn record_at(&self, now: OffsetDateTime, ms: u64) -> Record {
        Record {
            ts: crate::audit::format_ts(now),
            event: EventType::NetworkBlock,
            event_id: new_event_id(ms),
            session_id: self.session_id.clone(),
            skill: Some(self.skill.clone()),
            fields: serde_json::Map::new(),
        }
    }

    /// One whole line on stdout (stderr if stdout is gone), so no record is lost or torn.
    fn write(&self, rec: &Record) {
        let line = format!("{}\n", rec.to_value());
        let mut out = std::io::stdout().lock();
        if out
            .write_all(line.as_bytes())
            .and_then(|()| out.flush())
            .is_err()
        {
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
    }
}

impl EventSink for StdoutAuditSink {
    fn report(&self, ev: BlockEvent) {
        self.write(&self.record(&ev));
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
    let sink_session = session_id.clone();
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
    let state = Arc::new(AdminState {
        registry,
        scanner: ironclaw_scanner::Scanner::try_new().map_err(|e| AgentError::Io {
            what: "injection scanner",
            source: std::io::Error::other(e.to_string()),
        })?,
        ledger: ironclaw_scanner::ProvenanceLedger::new(),
        injection_mode: policy.injection_mode,
        audit: StdoutAuditSink {
            skill: policy.skill.clone(),
            session_id: sink_session.clone(),
        },
    });
    let proxy_task = tokio::spawn(proxy.serve_http(bound.proxy));
    let admin = serve_admin(bound.admin, state);
    tokio::select! {
        r = proxy_task => match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(AgentError::Io { what: "egress proxy listener", source }),
            Err(e) => Err(AgentError::Io { what: "egress proxy task", source: std::io::Error::other(e) }),
        },
        r = admin => r.map_err(|source| AgentError::Io { what: "admin listener", source }),
    }
}

/// What the admin server shares.
struct AdminState {
    registry: Registry,
    scanner: ironclaw_scanner::Scanner,
    /// Ids of the [UNTRUSTED] wrappers this sidecar issued, and whether each was flagged.
    ledger: ironclaw_scanner::ProvenanceLedger,
    /// `injectionMode` of the pod policy: in `block` mode flagged content is refused.
    injection_mode: ironclaw_scanner::Mode,
    audit: StdoutAuditSink,
}

/// Largest content body accepted by `POST /v1/content`.
const MAX_CONTENT_BYTES: usize = 4 << 20;

async fn serve_admin(listener: TcpListener, state: Arc<AdminState>) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let state = state.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| admin(req, state.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn json_response(status: StatusCode, v: &serde_json::Value) -> (StatusCode, &'static str, String) {
    (status, "application/json", format!("{v}\n"))
}

fn bad_request(msg: &str) -> (StatusCode, &'static str, String) {
    json_response(
        StatusCode::BAD_REQUEST,
        &serde_json::json!({ "error": msg }),
    )
}

/// `POST /v1/content`: scan, log INJECTION_DETECTED (no content), wrap with a fresh id.
async fn content(req: Request<Incoming>, state: &AdminState) -> (StatusCode, &'static str, String) {
    use http_body_util::BodyExt;
    let limited = http_body_util::Limited::new(req.into_body(), MAX_CONTENT_BYTES);
    let bytes = match limited.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return json_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &serde_json::json!({ "error": format!("body larger than {MAX_CONTENT_BYTES} bytes") }),
            );
        }
    };
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return bad_request("body must be JSON: {\"source\": \"…\", \"text\": \"…\"}");
    };
    let Some(source) = body["source"].as_str() else {
        return bad_request("\"source\" is required: where the content came from, e.g. email, web");
    };
    let Some(text) = body["text"].as_str() else {
        return bad_request("\"text\" is required: the retrieved content");
    };
    let result = state.scanner.scan(text, state.injection_mode);
    let spans: Vec<[usize; 2]> = result
        .spans()
        .into_iter()
        .map(|r| [r.start, r.end])
        .collect();
    if result.detected() {
        let now = OffsetDateTime::now_utc();
        let ms = crate::audit::unix_ms(now);
        let mut fields = serde_json::Map::new();
        fields.insert("source".into(), source.into());
        fields.insert("categories".into(), serde_json::json!(result.categories));
        fields.insert("spans".into(), serde_json::json!(spans));
        fields.insert("decision".into(), serde_json::json!(result.decision));
        fields.insert("score".into(), f64::from(result.score).into());
        fields.insert("length".into(), text.len().into());
        let mut rec = state.audit.record_at(now, ms);
        rec.event = EventType::InjectionDetected;
        rec.fields = fields;
        state.audit.write(&rec);
    }
    if result.decision == ironclaw_scanner::Decision::Block {
        return json_response(
            StatusCode::OK,
            &serde_json::json!({
                "decision": result.decision, "categories": result.categories, "spans": spans,
                "message": "content refused: the injection scanner flagged it and the pod's injectionMode is block",
            }),
        );
    }
    let tagged = state.ledger.issue(source, text, result.detected());
    json_response(
        StatusCode::OK,
        &serde_json::json!({
            "decision": result.decision, "categories": result.categories, "spans": spans,
            "id": tagged.id, "text": tagged.text,
        }),
    )
}

async fn admin(
    req: Request<Incoming>,
    state: Arc<AdminState>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, ctype, body) = match (req.method().as_str(), req.uri().path()) {
        ("POST", "/v1/content") => content(req, &state).await,
        ("GET", "/v1/system-prompt") => (
            StatusCode::OK,
            "text/plain; charset=utf-8",
            format!("{}\n", ironclaw_scanner::SYSTEM_PROMPT),
        ),
        ("GET", "/metrics") => {
            let mut s = String::new();
            match prometheus_client::encoding::text::encode(&mut s, &state.registry) {
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
            "only GET, and POST /v1/content\n".into(),
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(ctype) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    Ok(resp)
}
