//! The HTTP proxy listener: CONNECT tunnels and absolute-form HTTP/1.1 with keep-alive, relayed
//! by a lean HTTP/1.1 engine: each request head is parsed (`httparse`, bounded), checked against
//! the grants before anything is resolved, rewritten to origin-form and sent with its body
//! framed exactly once; the response head is parsed and its body copied exactly as framed. One
//! task serves a client connection and its origin connection, so a request and its response
//! move without waking another task.

mod body;
mod head;

use crate::event::BlockReason;
use crate::metrics::Protocol;
use crate::policy::Target;
use crate::{EgressProxy, Refusal, relay};
use body::{BodyError, Buf, PipeSlot};
use head::{Framing, Malformed, ReqTarget, RequestHead, ResponseHead, Span};
use std::io;
use std::task::{Context, Poll, Waker};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

/// Read buffer for origin responses (their heads must fit).
const RESPONSE_BUFFER: usize = 64 * 1024;
/// How long a connection being closed after an error answer is drained, so the answer is not
/// lost to a reset when the client is still sending.
const LINGER: std::time::Duration = std::time::Duration::from_secs(2);
/// Most bytes drained while lingering.
const LINGER_BYTES: usize = 1 << 20;

/// The origin connection of a client connection, kept for its next request to the same place.
struct Upstream {
    stream: TcpStream,
    /// The request authority as written, which keys reuse.
    authority: Vec<u8>,
    target: Target,
}

/// Per client connection state (buffers are reused for every request).
struct Conn<'p> {
    proxy: &'p EgressProxy,
    client: TcpStream,
    /// Client bytes read and not yet used (head, body, pipelined requests).
    cbuf: Buf,
    /// Origin bytes read and not yet used.
    rbuf: Option<Buf>,
    /// The request head for the origin.
    head_out: Vec<u8>,
    /// Request body bytes waiting to be written to the origin.
    body_out: Vec<u8>,
    /// Response head and body bytes waiting to be written to the client.
    resp_out: Vec<u8>,
    upstream: Option<Upstream>,
    up_pipe: PipeSlot,
    down_pipe: PipeSlot,
    /// The header-read timer. Armed lazily: it is moved only when it fires before the current
    /// deadline, so a request costs no timer registration (each one would wake the driver
    /// with an extra system call).
    head_timer: std::pin::Pin<Box<tokio::time::Sleep>>,
}

/// What to do after an exchange.
enum Next {
    KeepAlive,
    /// Close now (the client's input was fully read, or the client is gone).
    Close,
    /// Close after draining what the client is still sending (an unread body).
    Linger,
    /// Become a tunnel to this origin connection.
    Tunnel(TcpStream),
}

/// How an exchange with the origin failed before a complete response reached the client.
enum ExchangeError {
    /// The origin closed or reset before sending a byte (a kept-alive connection it had
    /// dropped); nothing reached the client.
    Stale,
    /// The origin failed or answered something invalid before the response head was sent on:
    /// the client can still get a 502.
    BeforeHead(&'static str),
    /// Failed after (part of) the response was sent on: the client connection must close.
    Cut,
    /// The client closed or failed while sending its request body.
    ClientGone,
    /// The client sent an invalid chunked body.
    BadBody(&'static str),
}

fn status_text(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        403 => "Forbidden",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        _ => "Error",
    }
}

/// Whether the origin connection has nothing unexpected to say (no early bytes, no close).
/// Uses the readiness the runtime already holds: no system call when the last read drained the
/// socket; one non-blocking peek when it may not have (after a spliced body), which clears a
/// stale readiness.
fn looks_idle(s: &TcpStream) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    let mut byte = [0u8; 1];
    let mut peek = tokio::io::ReadBuf::new(&mut byte);
    matches!(s.poll_peek(&mut cx, &mut peek), Poll::Pending)
}

impl EgressProxy {
    pub(crate) async fn serve_http_conn(&self, client: TcpStream, permit: OwnedSemaphorePermit) {
        let mut conn = Conn {
            proxy: self,
            client,
            cbuf: Buf::new(self.config.max_header_bytes),
            rbuf: None,
            head_out: Vec::with_capacity(1024),
            body_out: Vec::new(),
            resp_out: Vec::with_capacity(1024),
            upstream: None,
            up_pipe: PipeSlot::default(),
            down_pipe: PipeSlot::default(),
            head_timer: Box::pin(tokio::time::sleep(self.config.header_read_timeout)),
        };
        let next = conn.run().await;
        let Conn {
            mut client, cbuf, ..
        } = conn;
        match next {
            Next::Tunnel(upstream) => {
                // The tunnel keeps this connection's slot under `max_connections`.
                let end = relay::relay_tcp(
                    client,
                    upstream,
                    cbuf.filled(),
                    self.config.idle_timeout,
                    self.config.relay_buffer,
                )
                .await;
                tracing::debug!(protocol = "connect", ?end, "tunnel closed");
            }
            Next::Linger => linger(&mut client).await,
            Next::KeepAlive | Next::Close => {}
        }
        drop(permit);
    }
}

/// Sends FIN, then reads and discards what the client still sends for a while, so an answer
/// written before closing is not destroyed by a reset.
async fn linger(client: &mut TcpStream) {
    use tokio::io::AsyncReadExt;
    let _ = client.shutdown().await;
    let mut scratch = [0u8; 4096];
    let mut total = 0usize;
    let _ = tokio::time::timeout(LINGER, async {
        while total < LINGER_BYTES {
            match client.read(&mut scratch).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })
    .await;
}

impl Conn<'_> {
    async fn run(&mut self) -> Next {
        loop {
            let head = match self.read_request_head().await {
                Ok(Some(h)) => h,
                Ok(None) => return Next::Close,
                Err(m) => {
                    self.proxy.metrics.malformed.inc();
                    let msg = format!("ironclaw egress proxy: bad request: {}", m.why);
                    let _ = self.respond(m.status, None, &msg, true).await;
                    return Next::Linger;
                }
            };
            let next = match head.target.clone() {
                ReqTarget::Connect { host, port } => self.connect(&head, host, port).await,
                ReqTarget::Forward {
                    authority,
                    host,
                    port,
                } => self.forward(&head, authority, host, port).await,
                ReqTarget::Refused { host, port, why } => {
                    let host = String::from_utf8_lossy(&self.cbuf.filled()[host]).into_owned();
                    self.bad_request(&head, &host, port, why).await
                }
            };
            match next {
                Next::KeepAlive => {}
                other => return other,
            }
        }
    }

    /// Reads until a complete request head is buffered. `Ok(None)`: the client closed, or sent
    /// nothing (more) within the header timeout.
    async fn read_request_head(&mut self) -> Result<Option<RequestHead>, Malformed> {
        let deadline = Instant::now() + self.proxy.config.header_read_timeout;
        let max = self.proxy.config.max_header_bytes;
        loop {
            if !self.cbuf.is_empty() {
                self.head_out.clear();
                if let Some(h) = head::parse_request(self.cbuf.filled(), &mut self.head_out)? {
                    return Ok(Some(h));
                }
                if self.cbuf.len() >= max {
                    return Err(Malformed {
                        status: 431,
                        why: "request head larger than the proxy accepts",
                    });
                }
            }
            let (mut r, _) = self.client.split();
            let read = tokio::select! {
                biased;
                n = self.cbuf.fill(&mut r) => n,
                () = self.head_timer.as_mut() => {
                    if Instant::now() < deadline {
                        // Fired for an earlier deadline: re-arm for this one.
                        self.head_timer.as_mut().reset(deadline);
                        continue;
                    }
                    if !self.cbuf.is_empty() {
                        self.proxy.metrics.malformed.inc();
                    }
                    return Ok(None);
                }
            };
            match read {
                Ok(n) if n > 0 => {}
                _ => return Ok(None),
            }
        }
    }

    /// A plain-text answer from the proxy itself.
    async fn respond(
        &mut self,
        status: u16,
        block: Option<&str>,
        body: &str,
        close: bool,
    ) -> io::Result<()> {
        let mut msg = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: text/plain; charset=utf-8\r\n",
            status_text(status)
        );
        if let Some(b) = block {
            msg.push_str("X-Ironclaw-Block: ");
            msg.push_str(b);
            msg.push_str("\r\n");
        }
        msg.push_str(&format!("Content-Length: {}\r\n", body.len() + 1));
        if close {
            msg.push_str("Connection: close\r\n");
        }
        msg.push_str("\r\n");
        msg.push_str(body);
        msg.push('\n');
        self.client.write_all(msg.as_bytes()).await
    }

    /// After an answer from the proxy: keep the connection unless the request had a body the
    /// proxy did not read (then drain and close), or the client asked to close.
    async fn answer(&mut self, head: &RequestHead, status: u16, block: &str, body: &str) -> Next {
        let unread = matches!(head.framing, Framing::Chunked)
            || matches!(head.framing, Framing::Length(n) if n > 0);
        let close = unread || head.close;
        if self
            .respond(status, Some(block), body, close)
            .await
            .is_err()
        {
            return Next::Close;
        }
        match (unread, close) {
            (true, _) => Next::Linger,
            (false, true) => Next::Close,
            (false, false) => Next::KeepAlive,
        }
    }

    async fn bad_request(&mut self, head: &RequestHead, host: &str, port: u16, why: &str) -> Next {
        let protocol = if head.connect {
            Protocol::Connect
        } else {
            Protocol::Http
        };
        self.proxy.report_bad_request(protocol, host, port).await;
        self.cbuf.consume(head.len);
        let body = format!("ironclaw egress proxy: bad request: {why}");
        self.answer(head, 400, BlockReason::BadRequest.as_str(), &body)
            .await
    }

    async fn refused(&mut self, head: &RequestHead, target: &Target, refusal: Refusal) -> Next {
        let resource = format!("{}:{}", target.host, target.port);
        let (status, block, body) = match refusal {
            Refusal::Blocked(reason) => (
                if reason == BlockReason::ResolveFailed {
                    502
                } else {
                    403
                },
                reason.as_str(),
                format!(
                    "ironclaw egress proxy: {resource} refused: {}",
                    reason.describe()
                ),
            ),
            Refusal::Upstream(e) => (
                502,
                "upstream_error",
                format!(
                    "ironclaw egress proxy: {resource} unreachable: {}",
                    e.kind()
                ),
            ),
        };
        self.answer(head, status, block, &body).await
    }

    fn target(&self, host: &Span, port: u16) -> Result<Target, (String, String)> {
        let raw = &self.cbuf.filled()[host.clone()];
        let host = std::str::from_utf8(raw).unwrap_or("");
        Target::new(host, port).map_err(|why| (String::from_utf8_lossy(raw).into_owned(), why))
    }

    async fn connect(&mut self, head: &RequestHead, host: Span, port: u16) -> Next {
        let target = match self.target(&host, port) {
            Ok(t) => t,
            Err((host, why)) => return self.bad_request(head, &host, port, &why).await,
        };
        self.cbuf.consume(head.len);
        match self.proxy.open(Protocol::Connect, &target).await {
            Ok(origin) => {
                self.upstream = None;
                if self
                    .client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .is_err()
                {
                    return Next::Close;
                }
                // Bytes the client sent after the head are the tunnel's first bytes.
                Next::Tunnel(origin)
            }
            Err(r) => self.refused(head, &target, r).await,
        }
    }

    async fn forward(
        &mut self,
        head: &RequestHead,
        authority: Span,
        host: Span,
        port: u16,
    ) -> Next {
        // Reuse this client connection's origin connection when the request names the same
        // authority: it was checked when it was opened, and a proxy's grants never change.
        let reuse = match &self.upstream {
            Some(up) => {
                up.authority == self.cbuf.filled()[authority.clone()]
                    && self.rbuf.as_ref().is_none_or(Buf::is_empty)
                    && looks_idle(&up.stream)
            }
            None => false,
        };
        if reuse {
            self.proxy.metrics.allow(Protocol::Http);
        } else {
            self.upstream = None;
            let target = match self.target(&host, port) {
                Ok(t) => t,
                Err((host, why)) => return self.bad_request(head, &host, port, &why).await,
            };
            let authority = self.cbuf.filled()[authority].to_vec();
            match self.proxy.open(Protocol::Http, &target).await {
                Ok(stream) => {
                    self.upstream = Some(Upstream {
                        stream,
                        authority,
                        target,
                    });
                }
                Err(r) => {
                    self.cbuf.consume(head.len);
                    return self.refused(head, &target, r).await;
                }
            }
        }
        self.cbuf.consume(head.len);
        let rbuf = self.rbuf.get_or_insert_with(|| Buf::new(RESPONSE_BUFFER));
        if !reuse {
            // Bytes left from an earlier origin connection belong to nothing now.
            rbuf.clear();
        }

        let mut retried = !reuse;
        loop {
            match self.exchange(head).await {
                Ok(next) => return next,
                // A kept-alive origin connection the origin had dropped: a request without a
                // body is sent once more on a fresh connection (checked again).
                Err(ExchangeError::Stale) if !retried && head.framing == Framing::None => {
                    retried = true;
                    let Some(old) = self.upstream.take() else {
                        return Next::Close;
                    };
                    match self.proxy.open(Protocol::Http, &old.target).await {
                        Ok(stream) => {
                            self.upstream = Some(Upstream { stream, ..old });
                            if let Some(b) = self.rbuf.as_mut() {
                                b.clear();
                            }
                        }
                        Err(r) => return self.refused(head, &old.target, r).await,
                    }
                }
                Err(e) => {
                    let up = self.upstream.take();
                    let why = match e {
                        ExchangeError::ClientGone => return Next::Close,
                        ExchangeError::Cut => {
                            self.proxy.metrics.upstream_error(Protocol::Http);
                            return Next::Close;
                        }
                        ExchangeError::BadBody(why) => {
                            self.proxy.metrics.malformed.inc();
                            let msg = format!("ironclaw egress proxy: bad request: {why}");
                            let _ = self.respond(400, None, &msg, true).await;
                            return Next::Linger;
                        }
                        ExchangeError::Stale => "the origin closed the connection",
                        ExchangeError::BeforeHead(why) => why,
                    };
                    self.proxy.metrics.upstream_error(Protocol::Http);
                    let resource = up.map_or_else(String::new, |u| {
                        format!("{}:{}", u.target.host, u.target.port)
                    });
                    tracing::info!(%resource, error = why, "origin request failed");
                    let body = format!("ironclaw egress proxy: {resource} failed: {why}");
                    return self.answer(head, 502, "upstream_error", &body).await;
                }
            }
        }
    }

    /// Sends the request (head, then body) and relays the response. The body and the response
    /// head are handled together, so an interim `100 Continue` or an early final answer from
    /// the origin gets through while the client is still sending.
    async fn exchange(&mut self, head: &RequestHead) -> Result<Next, ExchangeError> {
        let Conn {
            client,
            cbuf,
            rbuf,
            head_out,
            body_out,
            resp_out,
            upstream,
            up_pipe,
            down_pipe,
            ..
        } = self;
        let (Some(up), Some(rbuf)) = (upstream.as_mut(), rbuf.as_mut()) else {
            return Err(ExchangeError::BeforeHead("no origin connection"));
        };
        let (mut cr, mut cw) = client.split();
        let (mut ur, mut uw) = up.stream.split();

        // The head, with the body bytes already read, in one write.
        let mut left = match head.framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        let take = left.min(cbuf.len() as u64) as usize;
        if body::write_two(&mut uw, head_out, &cbuf.filled()[..take])
            .await
            .is_err()
        {
            return Err(ExchangeError::Stale);
        }
        cbuf.consume(take);
        left -= take as u64;
        let has_body = left > 0 || head.framing == Framing::Chunked;

        resp_out.clear();
        let (resp, body_done, body_failed) = if has_body {
            body_out.clear();
            let send = async {
                if head.framing == Framing::Chunked {
                    body::relay_chunked(&mut cr, &mut uw, cbuf, body_out, up_pipe).await
                } else {
                    body::copy_exact(&mut cr, &mut uw, cbuf, body_out, left, up_pipe).await?;
                    body::flush(&mut uw, body_out).await
                }
            };
            let recv = read_response_head(&mut ur, &mut cw, rbuf, resp_out, head);
            let mut send = std::pin::pin!(send);
            let mut recv = std::pin::pin!(recv);
            let mut sent = false;
            let mut failed = false;
            let resp = loop {
                tokio::select! {
                    biased;
                    r = &mut send, if !sent => {
                        sent = true;
                        match r {
                            Ok(()) => {}
                            // The origin stopped reading: its answer may still come.
                            Err(BodyError::Write(e)) => {
                                tracing::debug!(error = %e, "the origin stopped reading the request body");
                                failed = true;
                            }
                            Err(BodyError::Malformed(why)) => return Err(ExchangeError::BadBody(why)),
                            Err(BodyError::Read(e)) => {
                                tracing::debug!(error = %e, "reading the request body failed");
                                return Err(ExchangeError::ClientGone);
                            }
                            Err(BodyError::Eof) => return Err(ExchangeError::ClientGone),
                        }
                    }
                    r = &mut recv => break r,
                }
            };
            (resp, sent, failed)
        } else {
            (
                read_response_head(&mut ur, &mut cw, rbuf, resp_out, head).await,
                true,
                false,
            )
        };
        let resp = resp?;

        // The client connection closes after this response when the client asked, when the
        // response is delimited by the close, or when the request body was not fully relayed.
        let close = head.close || resp.framing == Framing::Close || !body_done || body_failed;
        if close {
            head::add_close(resp_out);
        }
        let relayed = match resp.framing {
            Framing::None => body::flush(&mut cw, resp_out).await,
            Framing::Length(n) => {
                match body::copy_exact(&mut ur, &mut cw, rbuf, resp_out, n, down_pipe).await {
                    Ok(()) => body::flush(&mut cw, resp_out).await,
                    Err(e) => Err(e),
                }
            }
            Framing::Chunked => {
                body::relay_chunked(&mut ur, &mut cw, rbuf, resp_out, down_pipe).await
            }
            Framing::Close => body::relay_to_eof(&mut ur, &mut cw, rbuf, resp_out, down_pipe).await,
        };
        match relayed {
            Ok(()) => {}
            Err(BodyError::Write(e)) => {
                tracing::debug!(error = %e, "the client stopped reading the response");
                *upstream = None;
                return Ok(Next::Close);
            }
            Err(e) => {
                tracing::debug!(error = ?e, "relaying the response body failed");
                return Err(ExchangeError::Cut);
            }
        }
        if !resp.reusable || close {
            *upstream = None;
        }
        Ok(match (close, body_done) {
            (false, _) => Next::KeepAlive,
            (true, true) if !body_failed => Next::Close,
            (true, _) => Next::Linger,
        })
    }
}

/// Reads the origin's response head, relaying interim (1xx) responses to the client.
async fn read_response_head(
    ur: &mut ReadHalf<'_>,
    cw: &mut WriteHalf<'_>,
    rbuf: &mut Buf,
    out: &mut Vec<u8>,
    req: &RequestHead,
) -> Result<ResponseHead, ExchangeError> {
    let mut got_any = !rbuf.is_empty();
    loop {
        if !rbuf.is_empty() {
            out.clear();
            match head::parse_response(rbuf.filled(), req.is_head, req.http10, out) {
                Ok(Some(r)) if r.interim => {
                    rbuf.consume(r.len);
                    if !out.is_empty() && cw.write_all(out).await.is_err() {
                        return Err(ExchangeError::Cut);
                    }
                    out.clear();
                    continue;
                }
                Ok(Some(r)) => {
                    rbuf.consume(r.len);
                    return Ok(r);
                }
                Ok(None) => {
                    if rbuf.len() >= RESPONSE_BUFFER {
                        return Err(ExchangeError::BeforeHead(
                            "the origin's response head is too large",
                        ));
                    }
                }
                Err(why) => return Err(ExchangeError::BeforeHead(why)),
            }
        }
        match rbuf.fill(ur).await {
            Ok(0) | Err(_) if !got_any => return Err(ExchangeError::Stale),
            Ok(0) => {
                return Err(ExchangeError::BeforeHead(
                    "the origin closed before a complete response head",
                ));
            }
            Err(_) => return Err(ExchangeError::BeforeHead("reading from the origin failed")),
            Ok(_) => got_any = true,
        }
    }
}
