//! HTTP/1.1 message heads, as pure functions: the request head a client sends (parsed with
//! `httparse`, framing decided per RFC 9112 section 6, rewritten for the origin) and the response
//! head an origin sends (framing decided, rewritten for the client).
//!
//! Nothing here allocates per message: positions into the read buffer are returned as [`Span`]s
//! and rewritten heads are appended to a caller-owned buffer.

use std::io::Write as _;
use std::ops::Range;

/// Most header fields accepted in one head; more get 431 (requests) or 502 (responses).
pub(crate) const MAX_HEADERS: usize = 100;

/// Most `Connection` options honoured in one head.
const MAX_CONNECTION_OPTIONS: usize = 16;

/// Header fields that belong to one hop and are never forwarded (RFC 9110 7.6.1), plus the
/// framing fields, which the proxy writes itself.
const HOP_BY_HOP: [&str; 10] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
    "transfer-encoding",
    "content-length",
];

/// A byte range into the buffer the head was parsed from.
pub(crate) type Span = Range<usize>;

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// The chunked transfer coding.
    Chunked,
    /// Until the origin closes the connection (responses only).
    Close,
}

/// A request head the proxy refuses to forward, with the status it answers and why. These name
/// no usable destination (or cannot be framed), so they produce no event; they close the
/// connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed {
    pub status: u16,
    pub why: &'static str,
}

impl Malformed {
    const fn bad(why: &'static str) -> Self {
        Malformed { status: 400, why }
    }
}

/// What the request asks the proxy to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReqTarget {
    /// `CONNECT host:port`.
    Connect { host: Span, port: u16 },
    /// `METHOD http://authority/path`: the rewritten head is in the caller's buffer.
    Forward {
        /// The authority as written (`host[:port]`), which also keys origin connection reuse.
        authority: Span,
        host: Span,
        port: u16,
    },
    /// A request that names no destination the proxy can use: answered 400 with an event.
    Refused {
        host: Span,
        port: u16,
        why: &'static str,
    },
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestHead {
    /// Bytes of the head, including the empty line.
    pub len: usize,
    pub target: ReqTarget,
    pub framing: Framing,
    /// CONNECT (for the protocol label of a refusal).
    pub connect: bool,
    /// HEAD: the response has no body whatever its header fields say.
    pub is_head: bool,
    /// HTTP/1.0 (the response must not use chunked or 1xx).
    pub http10: bool,
    /// The client asked to close after this exchange (`Connection: close`, or HTTP/1.0).
    pub close: bool,
}

/// A parsed response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ResponseHead {
    pub len: usize,
    pub status: u16,
    /// 1xx (other than 101): relayed, then the final response follows.
    pub interim: bool,
    pub framing: Framing,
    /// The origin connection can take the next request.
    pub reusable: bool,
}

fn span(buf: &[u8], part: &[u8]) -> Span {
    let start = part.as_ptr() as usize - buf.as_ptr() as usize;
    start..start + part.len()
}

fn trim(v: &[u8]) -> &[u8] {
    let v = match v.iter().position(|b| !matches!(b, b' ' | b'\t')) {
        Some(i) => &v[i..],
        None => return &[],
    };
    match v.iter().rposition(|b| !matches!(b, b' ' | b'\t')) {
        Some(i) => &v[..=i],
        None => &[],
    }
}

/// The options of every `Connection` field (comma-separated tokens).
struct ConnectionOptions<'b> {
    names: [&'b [u8]; MAX_CONNECTION_OPTIONS],
    n: usize,
}

impl<'b> ConnectionOptions<'b> {
    fn collect(headers: &[httparse::Header<'b>]) -> Result<Self, &'static str> {
        let mut o = ConnectionOptions {
            names: [&[]; MAX_CONNECTION_OPTIONS],
            n: 0,
        };
        for h in headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        {
            for t in h.value.split(|b| *b == b',').map(trim) {
                if t.is_empty() {
                    continue;
                }
                if o.n == MAX_CONNECTION_OPTIONS {
                    return Err("more than 16 Connection options");
                }
                o.names[o.n] = t;
                o.n += 1;
            }
        }
        Ok(o)
    }
    fn has(&self, name: &[u8]) -> bool {
        self.names[..self.n]
            .iter()
            .any(|t| t.eq_ignore_ascii_case(name))
    }
}

/// Whether a header field is not forwarded: hop-by-hop, framing, or named by `Connection`.
fn dropped(name: &str, conn: &ConnectionOptions<'_>) -> bool {
    HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h)) || conn.has(name.as_bytes())
}

/// The framing fields of a head: at most one `Content-Length` (digits only) and at most one
/// `Transfer-Encoding`, which must be exactly `chunked`. Both at once is ambiguous framing
/// (the classic request-smuggling vector) and refused.
enum FramingFields {
    None,
    Length(u64),
    Chunked,
}

fn framing_fields(headers: &[httparse::Header<'_>]) -> Result<FramingFields, Malformed> {
    let mut length = None;
    let mut te = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            if length.is_some() {
                return Err(Malformed::bad("more than one Content-Length field"));
            }
            length = Some(parse_length(trim(h.value)).ok_or(Malformed::bad(
                "Content-Length is not a decimal number of bytes",
            ))?);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if te.is_some() {
                return Err(Malformed {
                    status: 501,
                    why: "more than one Transfer-Encoding field (only a single `chunked` is supported)",
                });
            }
            te = Some(trim(h.value));
        }
    }
    match (length, te) {
        (Some(_), Some(_)) => Err(Malformed::bad(
            "Content-Length and Transfer-Encoding together (ambiguous framing)",
        )),
        (None, Some(te)) if te.eq_ignore_ascii_case(b"chunked") => Ok(FramingFields::Chunked),
        (None, Some(te)) => {
            let last = te.rsplit(|b| *b == b',').next().map(trim).unwrap_or(&[]);
            if last.eq_ignore_ascii_case(b"chunked") {
                Err(Malformed {
                    status: 501,
                    why: "transfer codings other than `chunked` are not supported",
                })
            } else {
                Err(Malformed::bad(
                    "Transfer-Encoding does not end in `chunked` (body length unknown)",
                ))
            }
        }
        (Some(n), None) => Ok(FramingFields::Length(n)),
        (None, None) => Ok(FramingFields::None),
    }
}

fn parse_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

/// `host[:port]` (`[v6]:port` for IPv6). Returns the host as written and the port if given.
pub(crate) fn split_authority(auth: &str) -> Result<(&str, Option<u16>), &'static str> {
    if auth.contains('@') {
        return Err("user information in the URL is not accepted");
    }
    let (host, port) = if let Some(rest) = auth.strip_prefix('[') {
        let close = rest.find(']').ok_or("unclosed '[' in the host")?;
        let after = &rest[close + 1..];
        let host = &auth[..close + 2];
        match after {
            "" => (host, None),
            p => (
                host,
                Some(p.strip_prefix(':').ok_or("bad character after ']'")?),
            ),
        }
    } else {
        match auth.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (auth, None),
        }
    };
    if host.is_empty() || host == "[]" {
        return Err("empty host");
    }
    let port = match port {
        None | Some("") => None,
        Some(p) if p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().map_err(|_| "port out of range")?)
        }
        Some(_) => return Err("port is not a number"),
    };
    Ok((host, port))
}

/// An absolute-form request target split into scheme, authority and the rest.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Absolute<'a> {
    pub scheme: &'a str,
    pub authority: &'a str,
    /// Path and query as written (may be empty or start with `?`); the fragment is cut off.
    pub rest: &'a str,
}

/// `scheme://authority/rest`; `None` for origin-form (`/path`), asterisk-form and the like.
pub(crate) fn split_absolute(target: &str) -> Option<Absolute<'_>> {
    let (scheme, after) = target.split_once("://")?;
    if scheme.is_empty()
        || !scheme
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic())
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    {
        return None;
    }
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let rest = &after[end..];
    let rest = rest.split('#').next().unwrap_or("");
    Some(Absolute {
        scheme,
        authority: &after[..end],
        rest,
    })
}

/// Parses a request head at the start of `buf`. `Ok(None)`: incomplete, read more. For a
/// forwarded request, the head for the origin (origin-form request line, `Host` from the URL,
/// hop-by-hop fields dropped, framing written by the proxy) is appended to `out`.
pub(crate) fn parse_request(
    buf: &[u8],
    out: &mut Vec<u8>,
) -> Result<Option<RequestHead>, Malformed> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Malformed {
                status: 431,
                why: "more than 100 header fields",
            });
        }
        Err(_) => return Err(Malformed::bad("the request head is not valid HTTP/1.1")),
    };
    let (Some(method), Some(path), Some(version)) = (req.method, req.path, req.version) else {
        return Err(Malformed::bad("the request head is not valid HTTP/1.1"));
    };
    let headers: &[httparse::Header<'_>] = req.headers;
    let http10 = version == 0;
    let conn = ConnectionOptions::collect(headers).map_err(Malformed::bad)?;
    let close = http10 || conn.has(b"close");
    let is_head = method == "HEAD";
    let mut head = RequestHead {
        len,
        target: ReqTarget::Refused {
            host: 0..0,
            port: 0,
            why: "",
        },
        framing: Framing::None,
        connect: method == "CONNECT",
        is_head,
        http10,
        close,
    };

    if method == "CONNECT" {
        // Anything after the head is tunnel data: no body framing applies.
        head.target = match split_authority(path) {
            Ok((host, Some(port))) => ReqTarget::Connect {
                host: span(buf, host.as_bytes()),
                port,
            },
            Ok((host, None)) => ReqTarget::Refused {
                host: span(buf, host.as_bytes()),
                port: 0,
                why: "CONNECT needs HOST:PORT",
            },
            Err(_) => ReqTarget::Refused {
                host: span(buf, path.as_bytes()),
                port: 0,
                why: "CONNECT needs HOST:PORT",
            },
        };
        return Ok(Some(head));
    }

    head.framing = match framing_fields(headers)? {
        FramingFields::None => Framing::None,
        FramingFields::Length(n) => Framing::Length(n),
        FramingFields::Chunked => Framing::Chunked,
    };

    let Some(abs) = split_absolute(path) else {
        let host = headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("host"))
            .map_or(&[][..], |h| h.value);
        head.target = ReqTarget::Refused {
            host: if host.is_empty() {
                0..0
            } else {
                span(buf, host)
            },
            port: 0,
            why: "not a proxy request: send absolute-form (GET http://host/path) or CONNECT",
        };
        return Ok(Some(head));
    };
    let (host, port) = match split_authority(abs.authority) {
        Ok(hp) => hp,
        Err(why) => {
            head.target = ReqTarget::Refused {
                host: span(buf, abs.authority.as_bytes()),
                port: 0,
                why,
            };
            return Ok(Some(head));
        }
    };
    if abs.scheme.eq_ignore_ascii_case("https") {
        head.target = ReqTarget::Refused {
            host: span(buf, host.as_bytes()),
            port: port.unwrap_or(443),
            why: "https:// URLs go through CONNECT",
        };
        return Ok(Some(head));
    }
    if !abs.scheme.eq_ignore_ascii_case("http") {
        head.target = ReqTarget::Refused {
            host: span(buf, host.as_bytes()),
            port: port.unwrap_or(0),
            why: "only http:// URLs are proxied in absolute form",
        };
        return Ok(Some(head));
    }
    head.target = ReqTarget::Forward {
        authority: span(buf, abs.authority.as_bytes()),
        host: span(buf, host.as_bytes()),
        port: port.unwrap_or(80),
    };

    // The head for the origin.
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    if abs.rest.is_empty() {
        out.extend_from_slice(if method == "OPTIONS" { b"*" } else { b"/" });
    } else {
        if abs.rest.starts_with('?') {
            out.push(b'/');
        }
        out.extend_from_slice(abs.rest.as_bytes());
    }
    out.extend_from_slice(if http10 {
        b" HTTP/1.0\r\nHost: "
    } else {
        b" HTTP/1.1\r\nHost: "
    });
    out.extend_from_slice(abs.authority.as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in headers {
        if dropped(h.name, &conn) || h.name.eq_ignore_ascii_case("host") {
            continue;
        }
        push_field(out, h.name.as_bytes(), h.value);
    }
    match head.framing {
        Framing::Length(n) => {
            let _ = write!(out, "Content-Length: {n}\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        Framing::None | Framing::Close => {}
    }
    out.extend_from_slice(b"\r\n");
    Ok(Some(head))
}

fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Parses a response head at the start of `buf` (`Ok(None)`: incomplete). The head for the
/// client (status line as HTTP/1.1, hop-by-hop fields dropped, framing written by the proxy) is
/// appended to `out`; for an interim response that an HTTP/1.0 client must not see, nothing is.
/// `Err` names what is wrong with the origin's answer (the client gets 502).
pub(crate) fn parse_response(
    buf: &[u8],
    request_is_head: bool,
    client_http10: bool,
    out: &mut Vec<u8>,
) -> Result<Option<ResponseHead>, &'static str> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err("the origin sent more than 100 header fields");
        }
        Err(_) => return Err("the origin's response head is not valid HTTP/1.1"),
    };
    let (Some(version), Some(status)) = (resp.version, resp.code) else {
        return Err("the origin's response head is not valid HTTP/1.1");
    };
    let reason = resp.reason.unwrap_or("");
    let headers: &[httparse::Header<'_>] = resp.headers;
    if status == 101 {
        return Err("the origin switched protocols, which the proxy does not relay");
    }
    let conn = ConnectionOptions::collect(headers)?;
    let interim = (100..200).contains(&status);
    let no_body = interim || request_is_head || status == 204 || status == 304;
    let framing = if no_body {
        Framing::None
    } else {
        match framing_fields(headers) {
            Ok(FramingFields::None) => Framing::Close,
            Ok(FramingFields::Length(n)) => Framing::Length(n),
            Ok(FramingFields::Chunked) => Framing::Chunked,
            Err(m) => return Err(m.why),
        }
    };
    let reusable = version == 1 && !conn.has(b"close") && framing != Framing::Close;
    let head = ResponseHead {
        len,
        status,
        interim,
        framing,
        reusable,
    };
    if interim && client_http10 {
        return Ok(Some(head));
    }
    let _ = write!(out, "HTTP/1.1 {status} ");
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in headers {
        // A body-less response keeps its Content-Length (what GET would have had, RFC 9110 8.6).
        let keep_length = no_body && h.name.eq_ignore_ascii_case("content-length");
        if dropped(h.name, &conn) && !keep_length {
            continue;
        }
        push_field(out, h.name.as_bytes(), h.value);
    }
    match framing {
        Framing::Length(n) => {
            let _ = write!(out, "Content-Length: {n}\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        Framing::None | Framing::Close => {}
    }
    out.extend_from_slice(b"\r\n");
    Ok(Some(head))
}

/// Adds `Connection: close` to a complete head in `out` (ending in the empty line).
pub(crate) fn add_close(out: &mut Vec<u8>) {
    if out.ends_with(b"\r\n\r\n") {
        out.truncate(out.len() - 2);
        out.extend_from_slice(b"Connection: close\r\n\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(raw: &str) -> (Result<Option<RequestHead>, Malformed>, String) {
        let mut out = Vec::new();
        let r = parse_request(raw.as_bytes(), &mut out);
        (r, String::from_utf8(out).unwrap())
    }

    fn forwarded(raw: &str) -> (RequestHead, String) {
        let (r, out) = req(raw);
        (r.unwrap().unwrap(), out)
    }

    #[test]
    fn absolute_form_is_rewritten_to_origin_form_with_host_from_the_url() {
        let raw = "GET http://Example.com:8080/a/b?x=1#frag HTTP/1.1\r\nHost: evil.example\r\n\
                   Proxy-Authorization: Basic c2VjcmV0\r\nProxy-Connection: keep-alive\r\n\
                   Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\n\
                   Upgrade: websocket\r\nX-Mine: 2\r\n\r\n";
        let (h, out) = forwarded(raw);
        assert_eq!(
            out,
            "GET /a/b?x=1 HTTP/1.1\r\nHost: Example.com:8080\r\nX-Mine: 2\r\n\r\n"
        );
        assert_eq!(h.len, raw.len());
        assert_eq!(h.framing, Framing::None);
        assert!(!h.close);
        let ReqTarget::Forward {
            authority,
            host,
            port,
        } = h.target
        else {
            panic!("{:?}", h.target)
        };
        assert_eq!(&raw[authority], "Example.com:8080");
        assert_eq!(&raw[host], "Example.com");
        assert_eq!(port, 8080);
    }

    #[test]
    fn empty_paths_queries_and_http10_are_written_correctly() {
        let (_, out) = forwarded("GET http://h HTTP/1.1\r\n\r\n");
        assert!(out.starts_with("GET / HTTP/1.1\r\nHost: h\r\n"), "{out}");
        let (_, out) = forwarded("OPTIONS http://h HTTP/1.1\r\n\r\n");
        assert!(out.starts_with("OPTIONS * HTTP/1.1\r\n"), "{out}");
        let (_, out) = forwarded("GET http://h?q HTTP/1.1\r\n\r\n");
        assert!(out.starts_with("GET /?q HTTP/1.1\r\n"), "{out}");
        let (h, out) = forwarded("GET http://h/ HTTP/1.0\r\n\r\n");
        assert!(out.starts_with("GET / HTTP/1.0\r\n"), "{out}");
        assert!(h.close && h.http10);
        let (h, _) = forwarded("GET http://h/ HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert!(h.close);
        let (h, _) = forwarded("HEAD http://h/ HTTP/1.1\r\n\r\n");
        assert!(h.is_head);
    }

    #[test]
    fn request_bodies_are_framed_once_and_ambiguity_is_refused() {
        let (h, out) = forwarded("POST http://h/ HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!(h.framing, Framing::Length(5));
        assert!(out.ends_with("Content-Length: 5\r\n\r\n"), "{out}");
        let (h, out) = forwarded("POST http://h/ HTTP/1.1\r\nTransfer-Encoding: Chunked \r\n\r\n");
        assert_eq!(h.framing, Framing::Chunked);
        assert!(out.ends_with("Transfer-Encoding: chunked\r\n\r\n"), "{out}");
        for (raw, status) in [
            // CL.TE and TE.CL smuggling.
            (
                "POST http://h/ HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                400,
            ),
            (
                "POST http://h/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
                400,
            ),
            // Two lengths, even equal ones; signs, spaces inside, hex.
            (
                "POST http://h/ HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
                400,
            ),
            ("POST http://h/ HTTP/1.1\r\nContent-Length: +3\r\n\r\n", 400),
            (
                "POST http://h/ HTTP/1.1\r\nContent-Length: 3 3\r\n\r\n",
                400,
            ),
            (
                "POST http://h/ HTTP/1.1\r\nContent-Length: 0x3\r\n\r\n",
                400,
            ),
            (
                "POST http://h/ HTTP/1.1\r\nContent-Length: 3,3\r\n\r\n",
                400,
            ),
            (
                "POST http://h/ HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
                400,
            ),
            // Chunked not last, unknown codings, obfuscated names and values.
            (
                "POST http://h/ HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
                400,
            ),
            (
                "POST http://h/ HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                501,
            ),
            (
                "POST http://h/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                501,
            ),
            (
                "POST http://h/ HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n",
                400,
            ),
            (
                "POST http://h/ HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n",
                400,
            ),
            (
                "POST http://h/ HTTP/1.1\r\nTransfer-Encoding:\x0bchunked\r\n\r\n",
                400,
            ),
            (
                "POST http://h/ HTTP/1.1\r\n Transfer-Encoding: chunked\r\n\r\n",
                400,
            ),
        ] {
            let (r, _) = req(raw);
            assert_eq!(r.map(|_| ()).unwrap_err().status, status, "{raw:?}");
        }
    }

    #[test]
    fn oversized_and_garbage_heads_are_malformed_and_partial_ones_wait() {
        let (r, _) = req("GET http://h/ HTTP/1.1\r\nX: 1\r\n");
        assert_eq!(r, Ok(None));
        let (r, _) = req("\x16\x03\x01garbage\r\n\r\n");
        assert_eq!(r.unwrap_err().status, 400);
        let many: String = (0..150).map(|i| format!("X-{i}: v\r\n")).collect();
        let (r, _) = req(&format!("GET http://h/ HTTP/1.1\r\n{many}\r\n"));
        assert_eq!(r.unwrap_err().status, 431);
        let opts: String = (0..20).map(|i| format!("o{i},")).collect();
        let (r, _) = req(&format!(
            "GET http://h/ HTTP/1.1\r\nConnection: {opts}\r\n\r\n"
        ));
        assert_eq!(r.unwrap_err().status, 400);
    }

    #[test]
    fn connect_and_refused_targets() {
        let raw = "CONNECT [::1]:443 HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
        let (h, out) = forwarded(raw);
        assert!(out.is_empty());
        assert_eq!(h.len, raw.len() - 5);
        let ReqTarget::Connect { host, port } = h.target else {
            panic!()
        };
        assert_eq!((&raw[host], port), ("[::1]", 443));
        for (raw, host, port) in [
            ("CONNECT example.com HTTP/1.1\r\n\r\n", "example.com", 0),
            ("GET / HTTP/1.1\r\nHost: x\r\n\r\n", "x", 0),
            ("GET https://a.io/ HTTP/1.1\r\n\r\n", "a.io", 443),
            ("GET https://a.io:8443/ HTTP/1.1\r\n\r\n", "a.io", 8443),
            ("GET ftp://a.io/ HTTP/1.1\r\n\r\n", "a.io", 0),
            ("GET http://u:p@a.io/ HTTP/1.1\r\n\r\n", "u:p@a.io", 0),
            ("GET http://a.io:99999/ HTTP/1.1\r\n\r\n", "a.io:99999", 0),
            ("GET http://a.io:8o/ HTTP/1.1\r\n\r\n", "a.io:8o", 0),
        ] {
            let (h, out) = forwarded(raw);
            assert!(out.is_empty(), "{raw}");
            let ReqTarget::Refused {
                host: h,
                port: p,
                why,
            } = h.target
            else {
                panic!("{raw}: {:?}", h.target)
            };
            assert_eq!((&raw[h], p), (host, port), "{raw}");
            assert!(!why.is_empty());
        }
    }

    #[test]
    fn authorities_split() {
        assert_eq!(split_authority("a.io"), Ok(("a.io", None)));
        assert_eq!(split_authority("a.io:"), Ok(("a.io", None)));
        assert_eq!(split_authority("a.io:81"), Ok(("a.io", Some(81))));
        assert_eq!(split_authority("[::1]:81"), Ok(("[::1]", Some(81))));
        assert_eq!(split_authority("[::1]"), Ok(("[::1]", None)));
        for bad in [
            "",
            ":80",
            "[::1",
            "[::1]x",
            "a@b",
            "a.io:65536",
            "a.io:-1",
            "[]:1",
        ] {
            assert!(split_authority(bad).is_err(), "{bad}");
        }
        assert_eq!(
            split_absolute("HTTP://h:1?q#f"),
            Some(Absolute {
                scheme: "HTTP",
                authority: "h:1",
                rest: "?q"
            })
        );
        assert_eq!(split_absolute("/path"), None);
        assert_eq!(split_absolute("*"), None);
        assert_eq!(split_absolute("1x://h/"), None);
    }

    fn resp(
        raw: &str,
        head: bool,
        http10: bool,
    ) -> (Result<Option<ResponseHead>, &'static str>, String) {
        let mut out = Vec::new();
        let r = parse_response(raw.as_bytes(), head, http10, &mut out);
        (r, String::from_utf8(out).unwrap())
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        let (r, out) = resp(
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive\r\nKeep-Alive: t=5\r\nX: y\r\n\r\nabc",
            false,
            false,
        );
        let r = r.unwrap().unwrap();
        assert_eq!(
            (r.framing, r.reusable, r.interim),
            (Framing::Length(3), true, false)
        );
        assert_eq!(out, "HTTP/1.1 200 OK\r\nX: y\r\nContent-Length: 3\r\n\r\n");
        let (r, _) = resp(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
            false,
        );
        assert_eq!(r.unwrap().unwrap().framing, Framing::Chunked);
        // Close-delimited; HTTP/1.0 and `Connection: close` origins are not reused.
        let (r, _) = resp("HTTP/1.1 200 OK\r\n\r\n", false, false);
        let r = r.unwrap().unwrap();
        assert_eq!((r.framing, r.reusable), (Framing::Close, false));
        let (r, _) = resp("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false, false);
        assert!(!r.unwrap().unwrap().reusable);
        let (r, _) = resp(
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\n",
            false,
            false,
        );
        assert!(!r.unwrap().unwrap().reusable);
        // No body for HEAD, 204, 304 and 1xx, whatever the fields say; HEAD keeps its length.
        let (r, out) = resp("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true, false);
        assert_eq!(r.unwrap().unwrap().framing, Framing::None);
        assert!(out.contains("Content-Length: 9\r\n"), "{out}");
        for raw in [
            "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
        ] {
            let (r, out) = resp(raw, false, false);
            assert_eq!(r.unwrap().unwrap().framing, Framing::None, "{raw}");
            assert!(!out.contains("Transfer-Encoding"), "{out}");
        }
        let (r, out) = resp("HTTP/1.1 100 Continue\r\n\r\n", false, false);
        assert!(r.unwrap().unwrap().interim);
        assert_eq!(out, "HTTP/1.1 100 Continue\r\n\r\n");
        let (r, out) = resp(
            "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
            false,
            true,
        );
        assert!(r.unwrap().unwrap().interim);
        assert!(out.is_empty(), "an HTTP/1.0 client got an interim response");
        // Ambiguous or unsupported framing and protocol switches are refused.
        for raw in [
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
        ] {
            assert!(resp(raw, false, false).0.is_err(), "{raw}");
        }
        let mut out = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        add_close(&mut out);
        assert_eq!(out, b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
    }
}
