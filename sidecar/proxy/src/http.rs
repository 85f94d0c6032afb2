//! The HTTP proxy listener: CONNECT tunnels and absolute-form HTTP/1.1 with keep-alive.

use crate::event::BlockReason;
use crate::metrics::Protocol;
use crate::policy::Target;
use crate::{EgressProxy, Refusal, relay};
use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use tokio::net::TcpStream;

pub(crate) type ProxyBody = Either<Incoming, Full<Bytes>>;

/// An origin connection kept for the next request of the same client connection.
struct Upstream {
    host: String,
    port: u16,
    sender: hyper::client::conn::http1::SendRequest<Incoming>,
}

/// An origin connection's I/O driver (hyper's client `Connection`).
type Driver = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Per client connection state.
struct ConnState {
    upstream: Mutex<Option<Upstream>>,
    /// Hands a new origin connection's driver to the task serving the client, which polls it
    /// itself: request, response and body frames then move without waking another task.
    drivers: tokio::sync::mpsc::UnboundedSender<Driver>,
    /// This connection's slot under `max_connections` (a tunnel keeps a clone).
    permit: Arc<tokio::sync::OwnedSemaphorePermit>,
}

impl ConnState {
    fn take(&self) -> Option<Upstream> {
        self.upstream.lock().ok().and_then(|mut u| u.take())
    }
    fn put(&self, up: Upstream) {
        if let Ok(mut u) = self.upstream.lock() {
            *u = Some(up);
        }
    }
}

/// Headers that belong to one hop and are never forwarded.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers the Connection header names are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(n);
    }
    // The body framing is re-done by the HTTP layer for the next hop. A message that came with
    // Transfer-Encoding was framed by it, so a Content-Length beside it is stale (RFC 9112 6.3).
    if headers.remove(header::TRANSFER_ENCODING).is_some() {
        headers.remove(header::CONTENT_LENGTH);
    }
}

fn text(status: StatusCode, reason: &str, body: String) -> Response<ProxyBody> {
    let mut resp = Response::new(Either::Right(Full::new(Bytes::from(body + "\n"))));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(reason) {
        h.insert(HeaderName::from_static("x-ironclaw-block"), v);
    }
    resp
}

impl EgressProxy {
    pub(crate) async fn serve_http_conn(
        self: Arc<Self>,
        stream: TcpStream,
        permit: Arc<tokio::sync::OwnedSemaphorePermit>,
    ) {
        let (drivers, mut new_drivers) = tokio::sync::mpsc::unbounded_channel::<Driver>();
        let state = Arc::new(ConnState {
            upstream: Mutex::new(None),
            drivers,
            permit,
        });
        let this = self.clone();
        let svc = hyper::service::service_fn(move |req| {
            let this = this.clone();
            let state = state.clone();
            async move { Ok::<_, Infallible>(this.handle(&state, req).await) }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.config.header_read_timeout)
            .max_buf_size(self.config.max_header_bytes)
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), svc)
            .with_upgrades();
        let mut conn = std::pin::pin!(conn);
        // The origin connection in use (one at a time: a new one replaces a finished or
        // abandoned one), driven by this task alongside the client connection.
        let mut driver: Option<Driver> = None;
        let result = loop {
            tokio::select! {
                r = &mut conn => break r,
                Some(d) = new_drivers.recv() => driver = Some(d),
                () = async {
                    match driver.as_mut() {
                        Some(d) => d.await,
                        None => std::future::pending().await,
                    }
                } => driver = None,
            }
        };
        if let Err(e) = result {
            if e.is_parse() || e.is_parse_too_large() || e.is_timeout() {
                self.metrics.malformed.inc();
            }
            tracing::debug!(error = %e, "http client connection ended with an error");
        }
    }

    async fn handle(&self, state: &ConnState, req: Request<Incoming>) -> Response<ProxyBody> {
        if req.method() == Method::CONNECT {
            return self.handle_connect(state, req).await;
        }
        self.handle_forward(state, req).await
    }

    async fn bad_request(
        &self,
        protocol: Protocol,
        host: &str,
        port: u16,
        why: &str,
    ) -> Response<ProxyBody> {
        self.report_bad_request(protocol, host, port).await;
        text(
            StatusCode::BAD_REQUEST,
            BlockReason::BadRequest.as_str(),
            format!("ironclaw egress proxy: bad request: {why}"),
        )
    }

    fn refusal(&self, target: &Target, refusal: Refusal) -> Response<ProxyBody> {
        let resource = format!("{}:{}", target.host, target.port);
        match refusal {
            Refusal::Blocked(BlockReason::ResolveFailed) => text(
                StatusCode::BAD_GATEWAY,
                BlockReason::ResolveFailed.as_str(),
                format!(
                    "ironclaw egress proxy: {resource} refused: {}",
                    BlockReason::ResolveFailed.describe()
                ),
            ),
            Refusal::Blocked(reason) => text(
                StatusCode::FORBIDDEN,
                reason.as_str(),
                format!(
                    "ironclaw egress proxy: {resource} refused: {}",
                    reason.describe()
                ),
            ),
            Refusal::Upstream(e) => text(
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                format!(
                    "ironclaw egress proxy: {resource} unreachable: {}",
                    e.kind()
                ),
            ),
        }
    }

    async fn handle_connect(
        &self,
        state: &ConnState,
        mut req: Request<Incoming>,
    ) -> Response<ProxyBody> {
        let Some(auth) = req.uri().authority().cloned() else {
            let shown = req.uri().to_string();
            return self
                .bad_request(Protocol::Connect, &shown, 0, "CONNECT needs HOST:PORT")
                .await;
        };
        let Some(port) = auth.port_u16().filter(|p| *p != 0) else {
            return self
                .bad_request(Protocol::Connect, auth.host(), 0, "CONNECT needs HOST:PORT")
                .await;
        };
        let target = match Target::new(auth.host(), port) {
            Ok(t) => t,
            Err(why) => {
                return self
                    .bad_request(Protocol::Connect, auth.host(), port, &why)
                    .await;
            }
        };
        let upstream = match self.open(Protocol::Connect, &target).await {
            Ok(s) => s,
            Err(r) => return self.refusal(&target, r),
        };
        let on_upgrade = hyper::upgrade::on(&mut req);
        let permit = state.permit.clone();
        let idle = self.config.idle_timeout;
        let buf = self.config.relay_buffer;
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(up) => {
                    // The client socket itself (plus what it sent after the CONNECT head), so
                    // the tunnel can splice socket to socket.
                    let end = match up.downcast::<TokioIo<TcpStream>>() {
                        Ok(parts) => {
                            let client = parts.io.into_inner();
                            relay::relay_tcp(client, upstream, &parts.read_buf, idle, buf).await
                        }
                        Err(up) => {
                            let mut upstream = upstream;
                            relay::relay(TokioIo::new(up), &mut upstream, idle, buf).await
                        }
                    };
                    tracing::debug!(protocol = "connect", ?end, "tunnel closed");
                }
                Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
            }
            drop(permit);
        });
        Response::new(Either::Right(Full::new(Bytes::new())))
    }

    async fn handle_forward(
        &self,
        state: &ConnState,
        req: Request<Incoming>,
    ) -> Response<ProxyBody> {
        let (mut parts, body) = req.into_parts();
        let Some(auth) = parts.uri.authority().cloned() else {
            let host = parts
                .headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("")
                .to_owned();
            return self
                .bad_request(
                    Protocol::Http,
                    &host,
                    0,
                    "not a proxy request: send absolute-form (GET http://host/path) or CONNECT",
                )
                .await;
        };
        match parts.uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return self
                    .bad_request(
                        Protocol::Http,
                        auth.host(),
                        auth.port_u16().unwrap_or(443),
                        "https:// URLs go through CONNECT",
                    )
                    .await;
            }
            _ => {
                return self
                    .bad_request(
                        Protocol::Http,
                        auth.host(),
                        auth.port_u16().unwrap_or(0),
                        "only http:// URLs are proxied in absolute form",
                    )
                    .await;
            }
        }
        let port = auth.port_u16().unwrap_or(80);
        let target = match Target::new(auth.host(), port) {
            Ok(t) => t,
            Err(why) => {
                return self
                    .bad_request(Protocol::Http, auth.host(), port, &why)
                    .await;
            }
        };

        // Reuse this client connection's origin connection when it goes to the same place: it
        // was checked when it was opened and the grants of a proxy never change.
        let mut sender = match state.take() {
            Some(mut up) if up.host == target.host && up.port == target.port => {
                if up.sender.ready().await.is_ok() {
                    self.metrics.allow(Protocol::Http);
                    Some(up.sender)
                } else {
                    None
                }
            }
            _ => None,
        };
        if sender.is_none() {
            let stream = match self.open(Protocol::Http, &target).await {
                Ok(s) => s,
                Err(r) => return self.refusal(&target, r),
            };
            match hyper::client::conn::http1::Builder::new()
                .handshake::<_, Incoming>(TokioIo::new(stream))
                .await
            {
                Ok((s, conn)) => {
                    let driver: Driver = Box::pin(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(error = %e, "origin connection ended with an error");
                        }
                    });
                    if state.drivers.send(driver).is_err() {
                        return self.refusal(
                            &target,
                            Refusal::Upstream(std::io::Error::other("client connection ending")),
                        );
                    }
                    sender = Some(s);
                }
                Err(e) => {
                    self.metrics.upstream_error(Protocol::Http);
                    return self.refusal(&target, Refusal::Upstream(std::io::Error::other(e)));
                }
            }
        }
        let Some(mut sender) = sender else {
            return self.refusal(
                &target,
                Refusal::Upstream(std::io::Error::other("no origin connection")),
            );
        };

        // Origin-form request line; Host from the URL (never a conflicting one from the client).
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        parts.uri = match path.parse::<Uri>() {
            Ok(u) => u,
            Err(_) => {
                return self
                    .bad_request(Protocol::Http, &target.host, port, "bad path")
                    .await;
            }
        };
        strip_hop_by_hop(&mut parts.headers);
        let host_value = if port == 80 {
            auth.host().to_owned()
        } else {
            format!("{}:{}", auth.host(), port)
        };
        match HeaderValue::from_str(&host_value) {
            Ok(v) => {
                parts.headers.insert(header::HOST, v);
            }
            Err(_) => {
                return self
                    .bad_request(Protocol::Http, &target.host, port, "bad host")
                    .await;
            }
        }

        match sender.send_request(Request::from_parts(parts, body)).await {
            Ok(resp) => {
                state.put(Upstream {
                    host: target.host,
                    port: target.port,
                    sender,
                });
                let (mut parts, body) = resp.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                Response::from_parts(parts, Either::Left(body))
            }
            Err(e) => {
                self.metrics.upstream_error(Protocol::Http);
                tracing::debug!(error = %e, "origin request failed");
                self.refusal(
                    &target,
                    Refusal::Upstream(std::io::Error::other("origin request failed")),
                )
            }
        }
    }
}
