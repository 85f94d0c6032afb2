#![allow(clippy::unwrap_used, clippy::expect_used)]
//! HTTP/1.1 framing through the proxy's absolute-form path, on real TCP in 127.0.0.0/8:
//! smuggling attempts, pipelining, chunked bodies both ways, HEAD / 204 / 304 / 1xx,
//! close-delimited responses, and grants checked again when a client connection names a second
//! host. The scripted origin speaks raw HTTP/1.1 so each framing case is exact.

mod common;

use common::*;
use ironclaw_proxy::{BlockReason, EgressProxy, Mode, ProxyConfig, StaticResolver};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

struct Proxy {
    addr: SocketAddr,
    sink: Arc<RecordingSink>,
}

async fn start(grants: &[String]) -> Proxy {
    let sink = Arc::new(RecordingSink::default());
    let proxy = Arc::new(EgressProxy::with_config(
        grants.iter().map(|g| g.parse().unwrap()).collect(),
        Mode::Enforce,
        Arc::new(StaticResolver::new()),
        sink.clone(),
        ProxyConfig::default(),
    ));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(proxy.serve_http(l));
    Proxy { addr, sink }
}

/// One request as the scripted origin received it: the head (request line and fields as sent)
/// and the decoded body.
#[derive(Debug, Clone)]
struct Seen {
    head: String,
    body: Vec<u8>,
}

/// An origin that answers each request path with scripted raw bytes (and closes after it when
/// told); other paths get an empty 200. Records every request it received.
struct RawOrigin {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<AtomicUsize>,
}

type Routes = Vec<(&'static str, Vec<u8>, bool)>;

async fn raw_origin(ip: &str, routes: Routes) -> RawOrigin {
    let l = TcpListener::bind((ip.parse::<IpAddr>().unwrap(), 0))
        .await
        .unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let connections = Arc::new(AtomicUsize::new(0));
    let routes = Arc::new(routes);
    let (seen2, conns2) = (seen.clone(), connections.clone());
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            conns2.fetch_add(1, Ordering::SeqCst);
            let (seen, routes) = (seen2.clone(), routes.clone());
            tokio::spawn(async move {
                let (r, mut w) = s.into_split();
                let mut r = BufReader::new(r);
                while let Some(req) = read_request(&mut r).await {
                    let path = req.head.split(' ').nth(1).unwrap_or("").to_owned();
                    seen.lock().unwrap().push(req);
                    let (answer, close) = routes
                        .iter()
                        .find(|(p, _, _)| *p == path)
                        .map(|(_, a, c)| (a.clone(), *c))
                        .unwrap_or((
                            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec(),
                            false,
                        ));
                    if w.write_all(&answer).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    RawOrigin {
        addr,
        seen,
        connections,
    }
}

async fn read_line(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> Option<String> {
    let mut line = Vec::new();
    if r.read_until(b'\n', &mut line).await.ok()? == 0 {
        return None;
    }
    Some(String::from_utf8_lossy(&line).into_owned())
}

/// Reads one request (Content-Length or chunked body, decoded).
async fn read_request(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> Option<Seen> {
    let mut head = String::new();
    loop {
        let line = read_line(r).await?;
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let field = |name: &str| {
        head.split("\r\n").skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };
    let mut body = Vec::new();
    if let Some(len) = field("content-length") {
        body = vec![0u8; len.parse().unwrap()];
        r.read_exact(&mut body).await.ok()?;
    } else if field("transfer-encoding").is_some() {
        loop {
            let line = read_line(r).await?;
            let size = usize::from_str_radix(line.trim_end(), 16).unwrap();
            if size == 0 {
                assert_eq!(read_line(r).await?, "\r\n", "trailers reached the origin");
                break;
            }
            let mut chunk = vec![0u8; size + 2];
            r.read_exact(&mut chunk).await.ok()?;
            assert_eq!(&chunk[size..], b"\r\n");
            body.extend_from_slice(&chunk[..size]);
        }
    }
    Some(Seen { head, body })
}

/// Reads whatever arrives until the peer closes (or 5 s pass).
async fn read_all(c: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut all)).await;
    all
}

#[tokio::test]
async fn smuggling_attempts_are_refused_before_anything_reaches_the_origin() {
    let origin = raw_origin("127.0.0.2", vec![]).await;
    let o = origin.addr.to_string();
    let p = start(std::slice::from_ref(&o)).await;
    let smuggled = "GET http://attacker.io/ HTTP/1.1\r\n\r\n";
    for (framing, status) in [
        // CL.TE and TE.CL.
        (
            "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n".to_owned(),
            400,
        ),
        (
            "Transfer-Encoding: chunked\r\nContent-Length: 6\r\n".to_owned(),
            400,
        ),
        // Two lengths; a length that is not a plain number.
        (
            "Content-Length: 6\r\nContent-Length: 40\r\n".to_owned(),
            400,
        ),
        ("Content-Length: 6, 6\r\n".to_owned(), 400),
        ("Content-Length: -1\r\n".to_owned(), 400),
        // Obfuscated Transfer-Encoding.
        ("Transfer-Encoding: xchunked\r\n".to_owned(), 400),
        ("Transfer-Encoding : chunked\r\n".to_owned(), 400),
        ("Transfer-Encoding: chunked, identity\r\n".to_owned(), 400),
        ("Transfer-Encoding: gzip, chunked\r\n".to_owned(), 501),
        (
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n".to_owned(),
            501,
        ),
        // A field folded onto the next line (obsolete line folding).
        ("X-A: 1\r\n Transfer-Encoding: chunked\r\n".to_owned(), 400),
    ] {
        let mut c = TcpStream::connect(p.addr).await.unwrap();
        let raw =
            format!("POST http://{o}/x HTTP/1.1\r\nHost: {o}\r\n{framing}\r\n0\r\n\r\n{smuggled}");
        c.write_all(raw.as_bytes()).await.unwrap();
        let r = read_response(&mut c, false).await.unwrap();
        assert_eq!(r.status, status, "{framing:?}: {}", r.text());
        assert_eq!(r.header("connection"), Some("close"), "{framing:?}");
        // Nothing after the refused head is read as a request.
        assert!(read_all(&mut c).await.is_empty(), "{framing:?}");
    }
    assert_eq!(origin.connections.load(Ordering::SeqCst), 0);
    assert!(p.sink.take().is_empty(), "a smuggled request was checked");
}

#[tokio::test]
async fn a_request_hidden_in_a_body_stays_body_and_one_after_it_is_checked() {
    let origin = raw_origin("127.0.0.2", vec![]).await;
    let o = origin.addr.to_string();
    let p = start(std::slice::from_ref(&o)).await;
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    // Inside a Content-Length body: forwarded as body bytes, never parsed.
    let inner = "GET http://attacker.io/in-body HTTP/1.1\r\n\r\n";
    // After a chunked body ends: the next pipelined request, checked against the grants.
    let after = "GET http://attacker.io/after HTTP/1.1\r\n\r\n";
    let raw = format!(
        "POST http://{o}/a HTTP/1.1\r\nContent-Length: {}\r\n\r\n{inner}\
         POST http://{o}/b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nwiki\r\n0\r\nX-Trailer: t\r\n\r\n{after}",
        inner.len()
    );
    c.write_all(raw.as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut c, false).await.unwrap().status, 200);
    assert_eq!(read_response(&mut c, false).await.unwrap().status, 200);
    let r = read_response(&mut c, false).await.unwrap();
    assert_eq!(r.status, 403);
    let seen = origin.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].body, inner.as_bytes());
    assert_eq!(seen[1].body, b"wiki");
    assert!(
        seen[1].head.contains("Transfer-Encoding: chunked"),
        "{}",
        seen[1].head
    );
    let evs = p.sink.take();
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].resource(), "attacker.io:80");
    assert_eq!(evs[0].reason, BlockReason::NotGranted);
}

#[tokio::test]
async fn a_malformed_chunked_request_body_is_refused_and_the_connection_closed() {
    let origin = raw_origin("127.0.0.2", vec![]).await;
    let o = origin.addr.to_string();
    let p = start(std::slice::from_ref(&o)).await;
    for bad in [
        "zz\r\nabc\r\n0\r\n\r\n",
        "3\r\nabcXY0\r\n\r\n",
        "3\nabc\r\n0\r\n\r\n",
    ] {
        let mut c = TcpStream::connect(p.addr).await.unwrap();
        c.write_all(
            format!("POST http://{o}/c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{bad}")
                .as_bytes(),
        )
        .await
        .unwrap();
        let r = read_response(&mut c, false).await.unwrap();
        assert_eq!(r.status, 400, "{bad:?}");
        assert!(r.text().contains("chunk"), "{}", r.text());
        assert!(read_all(&mut c).await.is_empty());
    }
    // The origin never got a complete request.
    assert!(origin.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn pipelined_requests_get_their_responses_in_order_on_one_origin_connection() {
    let origin = http_origin("127.0.0.2").await;
    let o = origin.addr.to_string();
    let p = start(std::slice::from_ref(&o)).await;
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    let raw = format!(
        "GET http://{o}/one HTTP/1.1\r\n\r\nPOST http://{o}/p HTTP/1.1\r\nContent-Length: 3\r\n\r\ntwoGET http://{o}/three HTTP/1.1\r\n\r\n"
    );
    c.write_all(raw.as_bytes()).await.unwrap();
    let a = read_response(&mut c, false).await.unwrap();
    let b = read_response(&mut c, false).await.unwrap();
    let d = read_response(&mut c, false).await.unwrap();
    assert!(a.text().starts_with("path=/one "), "{}", a.text());
    assert_eq!(b.text(), "two");
    assert!(d.text().starts_with("path=/three "), "{}", d.text());
    assert_eq!(origin.connections.load(Ordering::SeqCst), 1);
}

fn chunked_response() -> Vec<u8> {
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Origin: 1\r\n\r\n\
      5;ext=\"x\"\r\nhello\r\n1\r\n,\r\n6\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n"
        .to_vec()
}

#[tokio::test]
async fn chunked_bodies_pass_both_ways_reframed() {
    let big: Vec<u8> = big_body();
    let mut big_chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for part in big.chunks(300_000) {
        big_chunked.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        big_chunked.extend_from_slice(part);
        big_chunked.extend_from_slice(b"\r\n");
    }
    big_chunked.extend_from_slice(b"0\r\n\r\n");
    let origin = raw_origin(
        "127.0.0.2",
        vec![
            ("/chunked", chunked_response(), false),
            ("/big", big_chunked, false),
        ],
    )
    .await;
    let o = origin.addr.to_string();
    let p = start(std::slice::from_ref(&o)).await;
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    let r = roundtrip(
        &mut c,
        format!("GET http://{o}/chunked HTTP/1.1\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello, world");
    assert_eq!(r.header("x-origin"), Some("1"));
    let r = roundtrip(
        &mut c,
        format!("GET http://{o}/big HTTP/1.1\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(r.body == big, "1 MiB chunked download differs");
    // A chunked upload of 1 MiB in uneven chunks reaches the origin whole.
    let mut up =
        format!("POST http://{o}/up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").into_bytes();
    for part in big.chunks(70_001) {
        up.extend_from_slice(format!("{:X}\r\n", part.len()).as_bytes());
        up.extend_from_slice(part);
        up.extend_from_slice(b"\r\n");
    }
    up.extend_from_slice(b"0\r\n\r\n");
    let r = roundtrip(&mut c, &up).await;
    assert_eq!(r.status, 200);
    let seen = origin.seen.lock().unwrap().clone();
    assert!(seen[2].body == big, "1 MiB chunked upload differs");
    assert_eq!(origin.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn head_204_304_and_interim_responses_carry_no_body() {
    let origin = raw_origin(
        "127.0.0.2",
        vec![
            // HEAD: the length of what GET would send, and no body.
            ("/head", b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n".to_vec(), false),
            (
                "/204",
                b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
                false,
            ),
            ("/304", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n".to_vec(), false),
            (
                "/early",
                b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                    .to_vec(),
                false,
            ),
        ],
    )
    .await;
    let o = origin.addr.to_string();
    let p = start(std::slice::from_ref(&o)).await;
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    c.write_all(format!("HEAD http://{o}/head HTTP/1.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let r = read_response(&mut c, true).await.unwrap();
    assert_eq!(r.header("content-length"), Some("1000"));
    for path in ["/204", "/304"] {
        c.write_all(format!("GET http://{o}{path} HTTP/1.1\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let r = read_response(&mut c, true).await.unwrap();
        assert_eq!(r.status.to_string(), path[1..]);
        assert_eq!(r.header("transfer-encoding"), None);
    }
    c.write_all(format!("GET http://{o}/early HTTP/1.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let r = read_response(&mut c, true).await.unwrap();
    assert_eq!((r.status, r.header("link")), (103, Some("</s.css>")));
    let r = read_response(&mut c, false).await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    // Had any body bytes been read into the stream, this would not parse as the next answer.
    let r = roundtrip(
        &mut c,
        format!("GET http://{o}/next HTTP/1.1\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(origin.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn expect_100_continue_is_relayed_before_the_body() {
    let origin = http_origin("127.0.0.2").await;
    let o = origin.addr.to_string();
    let p = start(std::slice::from_ref(&o)).await;
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    c.write_all(
        format!("POST http://{o}/p HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    // The client waits for 100 before sending its body; the origin sends it when it reads.
    let r = tokio::time::timeout(Duration::from_secs(5), read_response(&mut c, true))
        .await
        .expect("no 100 Continue relayed")
        .unwrap();
    assert_eq!(r.status, 100);
    c.write_all(b"data").await.unwrap();
    let r = read_response(&mut c, false).await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "data"));
}

#[tokio::test]
async fn close_delimited_and_invalid_responses() {
    let origin = raw_origin(
        "127.0.0.2",
        vec![
            ("/eof", b"HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\nuntil the end".to_vec(), true),
            (
                "/ambiguous",
                b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                    .to_vec(),
                true,
            ),
            ("/garbage", b"SSH-2.0-OpenSSH\r\n\r\n".to_vec(), true),
        ],
    )
    .await;
    let o = origin.addr.to_string();
    let p = start(std::slice::from_ref(&o)).await;
    // A body delimited by the origin's close: relayed, then the client connection closes.
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    c.write_all(format!("GET http://{o}/eof HTTP/1.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let all = String::from_utf8(read_all(&mut c).await).unwrap();
    assert!(all.starts_with("HTTP/1.1 200 OK\r\n"), "{all}");
    assert!(all.contains("Connection: close\r\n"), "{all}");
    assert!(all.ends_with("\r\n\r\nuntil the end"), "{all}");
    // Ambiguous or non-HTTP answers become 502; the client connection stays usable.
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    for path in ["/ambiguous", "/garbage"] {
        let r = roundtrip(
            &mut c,
            format!("GET http://{o}{path} HTTP/1.1\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!(r.status, 502, "{path}");
        assert_eq!(r.header("x-ironclaw-block"), Some("upstream_error"));
    }
    let r = roundtrip(
        &mut c,
        format!("GET http://{o}/fine HTTP/1.1\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn a_second_host_on_the_same_client_connection_is_checked_again() {
    let first = raw_origin("127.0.0.2", vec![]).await;
    let second = raw_origin("127.0.0.3", vec![]).await;
    let (a, b) = (first.addr.to_string(), second.addr.to_string());
    let p = start(&[a.clone(), b.clone()]).await;
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    for (target, status) in [
        (a.as_str(), 200),
        ("attacker.io", 403),
        (b.as_str(), 200),
        // Same host, other port: a different grant, refused.
        (&format!("127.0.0.2:{}", first.addr.port() ^ 1), 403),
        (a.as_str(), 200),
    ] {
        let r = roundtrip(
            &mut c,
            format!("GET http://{target}/ HTTP/1.1\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!(r.status, status, "{target}");
    }
    let evs = p.sink.take();
    assert_eq!(evs.len(), 2);
    assert_eq!(evs[0].resource(), "attacker.io:80");
    assert_eq!(evs[1].reason, BlockReason::NotGranted);
    assert_eq!(second.connections.load(Ordering::SeqCst), 1);
    // Switching hosts closed the first origin connection; coming back opened a new one.
    assert_eq!(first.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_kept_alive_origin_connection_the_origin_closed_is_replaced() {
    // The origin closes after every answer without saying so.
    let origin = raw_origin(
        "127.0.0.2",
        vec![(
            "/",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi".to_vec(),
            true,
        )],
    )
    .await;
    let o = origin.addr.to_string();
    let p = start(std::slice::from_ref(&o)).await;
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    for _ in 0..3 {
        let r = roundtrip(
            &mut c,
            format!("GET http://{o}/ HTTP/1.1\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!((r.status, r.text().as_str()), (200, "hi"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(origin.connections.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn http10_clients_get_no_chunking_or_interim_answers_and_a_close() {
    let origin = raw_origin("127.0.0.2", vec![]).await;
    let o = origin.addr.to_string();
    let p = start(std::slice::from_ref(&o)).await;
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    c.write_all(format!("GET http://{o}/old HTTP/1.0\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let all = String::from_utf8(read_all(&mut c).await).unwrap();
    assert!(all.starts_with("HTTP/1.1 200 OK\r\n"), "{all}");
    assert!(all.contains("Connection: close\r\n"), "{all}");
    let seen = origin.seen.lock().unwrap().clone();
    assert!(
        seen[0].head.starts_with("GET /old HTTP/1.0\r\n"),
        "{}",
        seen[0].head
    );
}

/// A client that half-closes right after its request (`nc -N`, busybox `nc` with stdin at EOF)
/// still gets the whole answer, on both the absolute-form path and through a CONNECT tunnel.
#[tokio::test]
async fn a_client_that_half_closes_after_its_request_still_gets_the_answer() {
    let origin = http_origin("127.0.0.2").await;
    let o = origin.addr.to_string();
    let p = start(std::slice::from_ref(&o)).await;
    for raw in [
        format!("GET http://{o}/half HTTP/1.1\r\nHost: {o}\r\n\r\n"),
        format!(
            "CONNECT {o} HTTP/1.1\r\nHost: {o}\r\n\r\nGET /half HTTP/1.1\r\nHost: {o}\r\nConnection: close\r\n\r\n"
        ),
    ] {
        let mut c = TcpStream::connect(p.addr).await.unwrap();
        c.write_all(raw.as_bytes()).await.unwrap();
        c.shutdown().await.unwrap();
        let all = String::from_utf8_lossy(&read_all(&mut c).await).into_owned();
        assert!(all.contains("path=/half"), "{raw:?} got {all:?}");
    }
}
