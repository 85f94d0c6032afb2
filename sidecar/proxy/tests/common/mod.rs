//! Real components for the proxy's tests: an HTTP origin, a TCP echo origin, a recording event
//! sink and a minimal HTTP/1.1 client, all on real sockets in 127.0.0.0/8.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use ironclaw_proxy::{BlockEvent, EventSink};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Records every event; optionally takes its time (like an fsync) before returning.
#[derive(Default)]
pub struct RecordingSink {
    pub events: Mutex<Vec<BlockEvent>>,
    pub delay: Duration,
    pub returned: AtomicBool,
}

impl RecordingSink {
    pub fn slow(delay: Duration) -> Self {
        RecordingSink {
            delay,
            ..Default::default()
        }
    }
    pub fn take(&self) -> Vec<BlockEvent> {
        std::mem::take(&mut self.events.lock().unwrap())
    }
}

impl EventSink for RecordingSink {
    fn report(&self, ev: BlockEvent) {
        std::thread::sleep(self.delay);
        self.events.lock().unwrap().push(ev);
        self.returned.store(true, Ordering::SeqCst);
    }
}

/// 1 MiB of deterministic, non-repeating-looking bytes.
pub fn big_body() -> Vec<u8> {
    (0..1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

/// An HTTP origin. `GET /big` answers 1 MiB; `POST` echoes the body; anything else answers a
/// description of the request (`path`, the `host` header, and the header names it received).
pub struct Origin {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
}

pub async fn http_origin(ip: &str) -> Origin {
    let listener = TcpListener::bind((ip.parse::<IpAddr>().unwrap(), 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    let big = Bytes::from(big_body());
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            let big = big.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let big = big.clone();
                    async move {
                        let path = req.uri().to_string();
                        let host = req
                            .headers()
                            .get("host")
                            .map(|h| h.to_str().unwrap().to_owned())
                            .unwrap_or_default();
                        let mut names: Vec<String> = req
                            .headers()
                            .keys()
                            .map(|k| k.as_str().to_owned())
                            .collect();
                        names.sort();
                        let body = if path == "/big" {
                            big
                        } else if req.method() == hyper::Method::POST {
                            req.into_body().collect().await.unwrap().to_bytes()
                        } else {
                            Bytes::from(format!(
                                "path={path} host={host} headers={}",
                                names.join(",")
                            ))
                        };
                        Ok::<_, hyper::Error>(Response::new(Full::new(body)))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    Origin { addr, connections }
}

/// A TCP echo origin; counts the connections it accepted.
pub async fn echo_origin(ip: &str) -> Origin {
    let listener = TcpListener::bind((ip.parse::<IpAddr>().unwrap(), 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    Origin { addr, connections }
}

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response (Content-Length or chunked bodies; `no_body` for CONNECT 200 / HEAD).
pub async fn read_response(s: &mut TcpStream, no_body: bool) -> io::Result<Resp> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).await? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "eof in head"));
        }
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    let mut resp = Resp {
        status,
        headers,
        body: Vec::new(),
    };
    if no_body {
        return Ok(resp);
    }
    if let Some(len) = resp.header("content-length") {
        let mut body = vec![0u8; len.parse().unwrap()];
        s.read_exact(&mut body).await?;
        resp.body = body;
    } else if resp
        .header("transfer-encoding")
        .is_some_and(|t| t.contains("chunked"))
    {
        loop {
            let mut line = Vec::new();
            while !line.ends_with(b"\r\n") {
                s.read_exact(&mut b).await?;
                line.push(b[0]);
            }
            let size = usize::from_str_radix(
                String::from_utf8_lossy(&line)
                    .trim()
                    .split(';')
                    .next()
                    .unwrap(),
                16,
            )
            .unwrap();
            let mut chunk = vec![0u8; size + 2];
            s.read_exact(&mut chunk).await?;
            if size == 0 {
                break;
            }
            resp.body.extend_from_slice(&chunk[..size]);
        }
    }
    Ok(resp)
}

/// Sends raw bytes and reads one response.
pub async fn roundtrip(s: &mut TcpStream, raw: &[u8]) -> Resp {
    s.write_all(raw).await.unwrap();
    read_response(s, false).await.unwrap()
}

/// Whether the peer closed the connection within `within`.
pub async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut b = [0u8; 64];
    matches!(
        tokio::time::timeout(within, s.read(&mut b)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}
