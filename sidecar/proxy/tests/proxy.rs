#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The egress proxy end to end: real TCP on 127.0.0.0/8, real HTTP origins, real clients.

mod common;

use common::*;
use ironclaw_crds::NetworkGrant;
use ironclaw_proxy::resolve::ResolveFuture;
use ironclaw_proxy::{BlockReason, EgressProxy, Mode, ProxyConfig, Resolve, StaticResolver};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A table resolver that counts its calls and can change its answer after the first call (what
/// a DNS-rebinding attacker's name server does).
struct CountingResolver {
    calls: AtomicUsize,
    first: Vec<IpAddr>,
    later: Vec<IpAddr>,
    names: Mutex<Vec<String>>,
}

impl CountingResolver {
    fn new(first: &[&str], later: &[&str]) -> Arc<Self> {
        Arc::new(CountingResolver {
            calls: AtomicUsize::new(0),
            first: first.iter().map(|a| a.parse().unwrap()).collect(),
            later: later.iter().map(|a| a.parse().unwrap()).collect(),
            names: Mutex::new(Vec::new()),
        })
    }
}

impl Resolve for CountingResolver {
    fn resolve<'a>(&'a self, host: &'a str) -> ResolveFuture<'a> {
        Box::pin(async move {
            self.names.lock().unwrap().push(host.to_owned());
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            Ok(if n == 0 {
                self.first.clone()
            } else {
                self.later.clone()
            })
        })
    }
}

struct Proxy {
    addr: SocketAddr,
    sink: Arc<RecordingSink>,
    proxy: Arc<EgressProxy>,
}

fn grants(list: &[String]) -> Vec<NetworkGrant> {
    list.iter().map(|g| g.parse().unwrap()).collect()
}

async fn start_with(
    grant_list: &[String],
    mode: Mode,
    resolver: Arc<dyn Resolve>,
    sink: Arc<RecordingSink>,
    config: ProxyConfig,
) -> Proxy {
    let proxy = Arc::new(EgressProxy::with_config(
        grants(grant_list),
        mode,
        resolver,
        sink.clone(),
        config,
    ));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(proxy.clone().serve_http(l));
    Proxy { addr, sink, proxy }
}

async fn start(grant_list: &[String], resolver: Arc<dyn Resolve>) -> Proxy {
    start_with(
        grant_list,
        Mode::Enforce,
        resolver,
        Arc::new(RecordingSink::default()),
        ProxyConfig::default(),
    )
    .await
}

fn no_dns() -> Arc<dyn Resolve> {
    Arc::new(StaticResolver::new())
}

fn get(host_port: &str, path: &str) -> Vec<u8> {
    format!("GET http://{host_port}{path} HTTP/1.1\r\nHost: {host_port}\r\n\r\n").into_bytes()
}

#[tokio::test]
async fn http_absolute_form_to_a_granted_address_is_forwarded_with_keep_alive() {
    let origin = http_origin("127.0.0.2").await;
    let o = origin.addr.to_string();
    let p = start(std::slice::from_ref(&o), no_dns()).await;
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    let r = roundtrip(
        &mut c,
        format!(
            "GET http://{o}/a?x=1 HTTP/1.1\r\nHost: evil.example\r\nProxy-Authorization: Basic c2VjcmV0\r\nProxy-Connection: keep-alive\r\nX-Mine: 1\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Origin-form path, Host from the URL, proxy headers not forwarded.
    assert_eq!(
        r.text(),
        format!("path=/a?x=1 host={o} headers=host,x-mine")
    );
    // Second request on the same client connection reuses the origin connection.
    let r = roundtrip(&mut c, &get(&o, "/b")).await;
    assert_eq!(r.status, 200);
    assert!(r.text().starts_with("path=/b "), "{}", r.text());
    assert_eq!(origin.connections.load(Ordering::SeqCst), 1);
    // POST bodies (Content-Length and chunked) reach the origin intact.
    let r = roundtrip(
        &mut c,
        format!("POST http://{o}/p HTTP/1.1\r\nHost: {o}\r\nContent-Length: 5\r\n\r\nhello")
            .as_bytes(),
    )
    .await;
    assert_eq!(r.text(), "hello");
    let r = roundtrip(
        &mut c,
        format!("POST http://{o}/p HTTP/1.1\r\nHost: {o}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(r.text(), "abcde");
    assert!(p.sink.take().is_empty());
}

#[tokio::test]
async fn one_mib_bodies_pass_intact_both_ways() {
    let origin = http_origin("127.0.0.2").await;
    let o = origin.addr.to_string();
    let p = start(std::slice::from_ref(&o), no_dns()).await;
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    let r = roundtrip(&mut c, &get(&o, "/big")).await;
    assert_eq!(r.status, 200);
    assert!(r.body == big_body(), "download differs");
    let big = big_body();
    let mut req = format!(
        "POST http://{o}/up HTTP/1.1\r\nHost: {o}\r\nContent-Length: {}\r\n\r\n",
        big.len()
    )
    .into_bytes();
    req.extend_from_slice(&big);
    let r = roundtrip(&mut c, &req).await;
    assert!(r.body == big, "upload differs");
    // After spliced bodies the origin connection is still reused (a stale readiness left by
    // the last splice must not make it look closed).
    let r = roundtrip(&mut c, &get(&o, "/big")).await;
    assert!(r.body == big_body(), "second download differs");
    assert_eq!(origin.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_name_not_granted_is_refused_before_resolving_and_reported_before_the_403() {
    let resolver = CountingResolver::new(&["127.0.0.2"], &["127.0.0.2"]);
    let sink = Arc::new(RecordingSink::slow(Duration::from_millis(300)));
    let granted = vec![
        "imap.gmail.com:993".to_owned(),
        "smtp.gmail.com:587".to_owned(),
    ];
    let p = start_with(
        &granted,
        Mode::Enforce,
        resolver.clone(),
        sink.clone(),
        ProxyConfig::default(),
    )
    .await;
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    let r = roundtrip(&mut c, &get("attacker.io", "/steal")).await;
    // The sink had returned (its slow write done) before the client heard the refusal.
    assert!(
        sink.returned.load(Ordering::SeqCst),
        "403 sent before the event was recorded"
    );
    assert_eq!(r.status, 403);
    assert_eq!(r.header("x-ironclaw-block"), Some("not_granted"));
    assert!(r.text().contains("attacker.io:80 refused"), "{}", r.text());
    assert_eq!(
        resolver.calls.load(Ordering::SeqCst),
        0,
        "resolved a name that is not granted"
    );
    let evs = sink.take();
    assert_eq!(evs.len(), 1);
    let v = serde_json::Value::Object(evs[0].audit_fields());
    assert_eq!(
        v,
        serde_json::json!({"event":"NETWORK_BLOCK","action":"network","resource":"attacker.io:80",
            "granted":["imap.gmail.com:993","smtp.gmail.com:587"],"blocked":true,"reason":"not_granted"})
    );
    // The connection stays usable after a refusal.
    let r = roundtrip(&mut c, &get("attacker.io:8080", "/")).await;
    assert_eq!(r.status, 403);
    assert_eq!(sink.take()[0].resource(), "attacker.io:8080");
}

#[tokio::test]
async fn a_granted_name_resolving_to_loopback_needs_the_address_granted_too() {
    let origin = http_origin("127.0.0.2").await;
    let port = origin.addr.port();
    let mut table = StaticResolver::new();
    table.insert("origin.test", vec!["127.0.0.2".parse().unwrap()]);
    let resolver: Arc<dyn Resolve> = Arc::new(table);

    let by_name = start(&[format!("origin.test:{port}")], resolver.clone()).await;
    let mut c = TcpStream::connect(by_name.addr).await.unwrap();
    let r = roundtrip(&mut c, &get(&format!("origin.test:{port}"), "/")).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.header("x-ironclaw-block"), Some("private_address"));
    let evs = by_name.sink.take();
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].reason, BlockReason::PrivateAddress);
    assert_eq!(evs[0].address, Some("127.0.0.2".parse().unwrap()));
    assert_eq!(evs[0].resource(), format!("origin.test:{port}"));
    assert_eq!(origin.connections.load(Ordering::SeqCst), 0);

    let both = start(
        &[format!("origin.test:{port}"), format!("127.0.0.2:{port}")],
        resolver,
    )
    .await;
    let mut c = TcpStream::connect(both.addr).await.unwrap();
    let r = roundtrip(&mut c, &get(&format!("origin.test:{port}"), "/x")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.text(),
        format!("path=/x host=origin.test:{port} headers=host")
    );
    assert!(both.sink.take().is_empty());
}

#[tokio::test]
async fn the_proxy_connects_only_to_the_address_it_checked() {
    // The same port on two loopback addresses: only the first is granted.
    let good = echo_origin("127.0.0.2").await;
    let port = good.addr.port();
    let bad = match TcpListener::bind(("127.0.0.9", port)).await {
        Ok(l) => l,
        Err(e) => panic!("cannot bind 127.0.0.9:{port}: {e}"),
    };
    let bad_hits = Arc::new(AtomicUsize::new(0));
    let hits = bad_hits.clone();
    tokio::spawn(async move {
        while bad.accept().await.is_ok() {
            hits.fetch_add(1, Ordering::SeqCst);
        }
    });
    // Rebinding: first answer the granted address, every later answer the other one.
    let resolver = CountingResolver::new(&["127.0.0.2"], &["127.0.0.9"]);
    let p = start(
        &[format!("rebind.test:{port}"), format!("127.0.0.2:{port}")],
        resolver.clone(),
    )
    .await;
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    c.write_all(
        format!("CONNECT rebind.test:{port} HTTP/1.1\r\nHost: rebind.test:{port}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let r = read_response(&mut c, true).await.unwrap();
    assert_eq!(r.status, 200);
    c.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    c.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    assert_eq!(
        resolver.calls.load(Ordering::SeqCst),
        1,
        "resolved more than once"
    );
    assert_eq!(good.connections.load(Ordering::SeqCst), 1);
    // The next attempt gets the rebound answer: refused, and nothing reaches 127.0.0.9.
    let mut c2 = TcpStream::connect(p.addr).await.unwrap();
    c2.write_all(format!("CONNECT rebind.test:{port} HTTP/1.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let r = read_response(&mut c2, false).await.unwrap();
    assert_eq!(r.status, 403);
    let evs = p.sink.take();
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].address, Some("127.0.0.9".parse().unwrap()));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(bad_hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_answer_mixing_checked_and_forbidden_addresses_is_refused_whole() {
    let good = echo_origin("127.0.0.2").await;
    let port = good.addr.port();
    let resolver = CountingResolver::new(&["127.0.0.2", "10.1.2.3"], &[]);
    let p = start(
        &[format!("mixed.test:{port}"), format!("127.0.0.2:{port}")],
        resolver,
    )
    .await;
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    let r = roundtrip(
        &mut c,
        format!("CONNECT mixed.test:{port} HTTP/1.1\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(r.status, 403);
    let evs = p.sink.take();
    assert_eq!(evs[0].reason, BlockReason::PrivateAddress);
    assert_eq!(evs[0].address, Some("10.1.2.3".parse().unwrap()));
    assert_eq!(good.connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn metadata_and_other_internal_addresses_are_refused_without_a_literal_grant() {
    let mut table = StaticResolver::new();
    table.insert("meta.test", vec!["169.254.169.254".parse().unwrap()]);
    table.insert("doc.test", vec!["192.0.2.10".parse().unwrap()]);
    let p = start(
        &["meta.test:80".into(), "doc.test:80".into()],
        Arc::new(table),
    )
    .await;
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    let r = roundtrip(&mut c, &get("meta.test", "/latest/meta-data/")).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.header("x-ironclaw-block"), Some("metadata_address"));
    let r = roundtrip(&mut c, &get("doc.test", "/")).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.header("x-ironclaw-block"), Some("private_address"));
    // IP literals the skill names directly are checked the same way.
    for target in [
        "10.0.0.1:80",
        "[::1]:80",
        "0.0.0.0:80",
        "[::ffff:169.254.169.254]:80",
    ] {
        let r = roundtrip(
            &mut c,
            format!("CONNECT {target} HTTP/1.1\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!(r.status, 403, "{target}");
    }
    let evs = p.sink.take();
    assert_eq!(
        evs.iter().map(|e| e.reason).collect::<Vec<_>>(),
        [
            BlockReason::MetadataAddress,
            BlockReason::PrivateAddress,
            BlockReason::NotGranted,
            BlockReason::NotGranted,
            BlockReason::NotGranted,
            BlockReason::NotGranted,
        ]
    );
    assert_eq!(evs[3].resource(), "[::1]:80");
}

#[tokio::test]
async fn a_name_that_does_not_resolve_gets_502_and_an_event() {
    let p = start(&["nowhere.test:80".into()], no_dns()).await;
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    let r = roundtrip(&mut c, &get("nowhere.test", "/")).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.header("x-ironclaw-block"), Some("resolve_failed"));
    let evs = p.sink.take();
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].reason, BlockReason::ResolveFailed);
}

#[tokio::test]
async fn a_granted_origin_that_is_down_gets_502_without_an_event() {
    let l = TcpListener::bind("127.0.0.2:0").await.unwrap();
    let dead = l.local_addr().unwrap();
    drop(l);
    let p = start(&[dead.to_string()], no_dns()).await;
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    let r = roundtrip(&mut c, &get(&dead.to_string(), "/")).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.header("x-ironclaw-block"), Some("upstream_error"));
    assert!(p.sink.take().is_empty());
}

#[tokio::test]
async fn connect_tunnels_relay_bytes_both_ways() {
    let echo = echo_origin("127.0.0.3").await;
    let p = start(&[echo.addr.to_string()], no_dns()).await;
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    c.write_all(format!("CONNECT {0} HTTP/1.1\r\nHost: {0}\r\n\r\n", echo.addr).as_bytes())
        .await
        .unwrap();
    let r = read_response(&mut c, true).await.unwrap();
    assert_eq!(r.status, 200);
    let big = big_body();
    let (mut rd, mut wr) = c.into_split();
    let sent = big.clone();
    let writer = tokio::spawn(async move {
        wr.write_all(&sent).await.unwrap();
        wr
    });
    let mut got = vec![0u8; big.len()];
    rd.read_exact(&mut got).await.unwrap();
    assert!(got == big, "tunnel corrupted the bytes");
    // After a bulk transfer, small messages still pass one by one.
    let mut wr = writer.await.unwrap();
    for msg in [&b"a"[..], b"small", b"x"] {
        wr.write_all(msg).await.unwrap();
        let mut back = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_secs(5), rd.read_exact(&mut back))
            .await
            .expect("small message stuck after bulk")
            .unwrap();
        assert_eq!(back, msg);
    }
}

#[tokio::test]
async fn malformed_requests_get_400_and_the_proxy_keeps_serving() {
    let origin = http_origin("127.0.0.2").await;
    let o = origin.addr.to_string();
    let p = start(std::slice::from_ref(&o), no_dns()).await;
    let cases: Vec<(Vec<u8>, u16, Option<&str>)> = vec![
        (b"\x16\x03\x01garbage\r\n\r\n".to_vec(), 400, None),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            400,
            Some("bad_request"),
        ),
        (
            format!("GET https://{o}/ HTTP/1.1\r\n\r\n").into_bytes(),
            400,
            Some("bad_request"),
        ),
        (
            b"CONNECT example.com HTTP/1.1\r\n\r\n".to_vec(),
            400,
            Some("bad_request"),
        ),
        (
            b"CONNECT *.example.com:443 HTTP/1.1\r\n\r\n".to_vec(),
            400,
            Some("bad_request"),
        ),
        (
            b"GET http://exa_mple.com/ HTTP/1.1\r\n\r\n".to_vec(),
            400,
            Some("bad_request"),
        ),
        (b"GET http://a b/ HTTP/1.1\r\n\r\n".to_vec(), 400, None),
        (
            b"GET http://x/ HTTP/1.1\r\nBad Header\r\n\r\n".to_vec(),
            400,
            None,
        ),
        (
            format!(
                "GET http://x/ HTTP/1.1\r\nX-Big: {}\r\n\r\n",
                "a".repeat(64 * 1024)
            )
            .into_bytes(),
            431,
            None,
        ),
    ];
    for (raw, status, block) in cases {
        let mut c = TcpStream::connect(p.addr).await.unwrap();
        let _ = c.write_all(&raw).await;
        let r = read_response(&mut c, false).await.unwrap();
        assert_eq!(
            r.status,
            status,
            "{:?}",
            String::from_utf8_lossy(&raw[..raw.len().min(60)])
        );
        assert_eq!(r.header("x-ironclaw-block"), block);
    }
    let evs = p.sink.take();
    assert_eq!(evs.len(), 5);
    assert!(
        evs.iter()
            .all(|e| e.reason == BlockReason::BadRequest && e.blocked)
    );
    assert_eq!(evs[0].resource(), "x:0");
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    assert_eq!(roundtrip(&mut c, &get(&o, "/still")).await.status, 200);
    let mut text = String::new();
    let mut reg = prometheus_client::registry::Registry::default();
    p.proxy.register_metrics(&mut reg);
    prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
    assert!(
        text.contains("ironclaw_proxy_malformed_requests_total 4"),
        "{text}"
    );
}

#[tokio::test]
async fn audit_only_lets_everything_through_and_reports_what_it_would_block() {
    let origin = http_origin("127.0.0.2").await;
    let port = origin.addr.port();
    let mut table = StaticResolver::new();
    table.insert("ungranted.test", vec!["127.0.0.2".parse().unwrap()]);
    let p = start_with(
        &["imap.gmail.com:993".into()],
        Mode::AuditOnly,
        Arc::new(table),
        Arc::new(RecordingSink::default()),
        ProxyConfig::default(),
    )
    .await;
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    let r = roundtrip(&mut c, &get(&format!("ungranted.test:{port}"), "/")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let evs = p.sink.take();
    // One event per attempt (the first reason), marked not blocked.
    assert_eq!(evs.len(), 1, "{evs:?}");
    assert_eq!(evs[0].reason, BlockReason::NotGranted);
    assert!(!evs[0].blocked);
    assert_eq!(evs[0].granted, ["imap.gmail.com:993"]);
}

#[tokio::test]
async fn idle_tunnels_and_idle_keep_alive_connections_are_closed() {
    let echo = echo_origin("127.0.0.2").await;
    let origin = http_origin("127.0.0.2").await;
    let config = ProxyConfig {
        idle_timeout: Duration::from_secs(1),
        header_read_timeout: Duration::from_secs(1),
        ..ProxyConfig::default()
    };
    let p = start_with(
        &[echo.addr.to_string(), origin.addr.to_string()],
        Mode::Enforce,
        no_dns(),
        Arc::new(RecordingSink::default()),
        config,
    )
    .await;
    // A tunnel that keeps moving bytes outlives the timeout; an idle one does not.
    let mut t = TcpStream::connect(p.addr).await.unwrap();
    t.write_all(format!("CONNECT {} HTTP/1.1\r\n\r\n", echo.addr).as_bytes())
        .await
        .unwrap();
    assert_eq!(read_response(&mut t, true).await.unwrap().status, 200);
    for _ in 0..10 {
        t.write_all(b"x").await.unwrap();
        let mut b = [0u8; 1];
        t.read_exact(&mut b).await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(
        closed_within(&mut t, Duration::from_secs(5)).await,
        "idle tunnel left open"
    );
    // Keep-alive HTTP connection idle after a response.
    let mut h = TcpStream::connect(p.addr).await.unwrap();
    assert_eq!(
        roundtrip(&mut h, &get(&origin.addr.to_string(), "/"))
            .await
            .status,
        200
    );
    assert!(
        closed_within(&mut h, Duration::from_secs(5)).await,
        "idle keep-alive left open"
    );
    // A client that never finishes its request head.
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET http://x/ HTTP/1.1\r\nHost:")
        .await
        .unwrap();
    assert!(
        closed_within(&mut s, Duration::from_secs(5)).await,
        "slow head left open"
    );
}

#[tokio::test]
async fn forward_listeners_relay_one_granted_host_port() {
    let echo = echo_origin("127.0.0.2").await;
    let port = echo.addr.port();
    let mut table = StaticResolver::new();
    table.insert("imap.test", vec!["127.0.0.2".parse().unwrap()]);
    table.insert("smtp.test", vec!["127.0.0.2".parse().unwrap()]);
    let p = start(
        &[
            format!("imap.test:{port}"),
            format!("127.0.0.2:{port}"),
            format!("smtp.test:{port}"),
        ],
        Arc::new(table),
    )
    .await;
    // Granted, and the address granted literally: relayed.
    let l = TcpListener::bind("127.0.0.4:0").await.unwrap();
    let fwd = l.local_addr().unwrap();
    tokio::spawn(
        p.proxy
            .clone()
            .serve_forward(l, format!("imap.test:{port}").parse().unwrap()),
    );
    let mut c = TcpStream::connect(fwd).await.unwrap();
    c.write_all(b"a1 NOOP\r\n").await.unwrap();
    let mut b = [0u8; 9];
    c.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"a1 NOOP\r\n");
    drop(c);
    // A target that is not granted: every connection is closed without a byte, and reported.
    let l = TcpListener::bind("127.0.0.4:0").await.unwrap();
    let fwd2 = l.local_addr().unwrap();
    tokio::spawn(
        p.proxy
            .clone()
            .serve_forward(l, "other.test:25".parse().unwrap()),
    );
    let mut c = TcpStream::connect(fwd2).await.unwrap();
    assert!(closed_within(&mut c, Duration::from_secs(2)).await);
    let evs = p.sink.take();
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].reason, BlockReason::NotGranted);
    assert_eq!(evs[0].resource(), "other.test:25");
    // A wildcard cannot be a forward target.
    let l = TcpListener::bind("127.0.0.4:0").await.unwrap();
    let e = p
        .proxy
        .clone()
        .serve_forward(l, "*.example.com:993".parse().unwrap())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("wildcard"), "{e}");
    assert_eq!(echo.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn metrics_count_allowed_and_blocked_by_reason() {
    let origin = http_origin("127.0.0.2").await;
    let o = origin.addr.to_string();
    let p = start(std::slice::from_ref(&o), no_dns()).await;
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    roundtrip(&mut c, &get(&o, "/1")).await;
    roundtrip(&mut c, &get(&o, "/2")).await;
    roundtrip(&mut c, &get("attacker.io", "/")).await;
    roundtrip(&mut c, b"CONNECT attacker.io:443 HTTP/1.1\r\n\r\n").await;
    roundtrip(&mut c, b"CONNECT 169.254.169.254:80 HTTP/1.1\r\n\r\n").await;
    let mut reg = prometheus_client::registry::Registry::default();
    p.proxy.register_metrics(&mut reg);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
    for line in [
        "ironclaw_proxy_allowed_total{protocol=\"http\"} 2",
        "ironclaw_proxy_blocked_total{protocol=\"http\",reason=\"not_granted\"} 1",
        "ironclaw_proxy_blocked_total{protocol=\"connect\",reason=\"not_granted\"} 2",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
}

#[tokio::test]
async fn bytes_sent_right_after_the_connect_head_and_half_close_are_relayed() {
    let echo = echo_origin("127.0.0.3").await;
    let p = start(&[echo.addr.to_string()], no_dns()).await;
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    // The head and the first payload bytes in one write (as a TLS client pipelining its hello).
    c.write_all(format!("CONNECT {} HTTP/1.1\r\n\r\nhello-pipelined", echo.addr).as_bytes())
        .await
        .unwrap();
    let r = read_response(&mut c, true).await.unwrap();
    assert_eq!(r.status, 200);
    c.write_all(b"|tail").await.unwrap();
    c.shutdown().await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut got))
        .await
        .expect("tunnel did not close after both sides finished")
        .unwrap();
    assert_eq!(got, b"hello-pipelined|tail");
}

#[tokio::test]
async fn a_request_with_both_content_length_and_chunked_is_refused_and_never_reaches_the_origin() {
    let origin = http_origin("127.0.0.2").await;
    let o = origin.addr.to_string();
    let p = start(std::slice::from_ref(&o), no_dns()).await;
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    let r = roundtrip(
        &mut c,
        format!(
            "POST http://{o}/p HTTP/1.1\r\nHost: {o}\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    // Ambiguous framing (RFC 9112 6.3): the request-smuggling vector is refused outright.
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("ambiguous framing"), "{}", r.text());
    assert_eq!(r.header("connection"), Some("close"));
    assert!(closed_within(&mut c, Duration::from_secs(5)).await);
    assert_eq!(origin.connections.load(Ordering::SeqCst), 0);
    assert!(p.sink.take().is_empty());
}

#[tokio::test]
async fn open_tunnels_count_toward_the_connection_limit() {
    let echo = echo_origin("127.0.0.2").await;
    let config = ProxyConfig {
        max_connections: 1,
        ..ProxyConfig::default()
    };
    let p = start_with(
        &[echo.addr.to_string()],
        Mode::Enforce,
        no_dns(),
        Arc::new(RecordingSink::default()),
        config,
    )
    .await;
    let mut t = TcpStream::connect(p.addr).await.unwrap();
    t.write_all(format!("CONNECT {} HTTP/1.1\r\n\r\n", echo.addr).as_bytes())
        .await
        .unwrap();
    assert_eq!(read_response(&mut t, true).await.unwrap().status, 200);
    // While the tunnel is open, a second client waits (in the backlog) for a slot.
    let mut second = TcpStream::connect(p.addr).await.unwrap();
    second
        .write_all(format!("CONNECT {} HTTP/1.1\r\n\r\n", echo.addr).as_bytes())
        .await
        .unwrap();
    let waited =
        tokio::time::timeout(Duration::from_millis(300), read_response(&mut second, true)).await;
    assert!(waited.is_err(), "served beyond max_connections");
    drop(t);
    let r = tokio::time::timeout(Duration::from_secs(5), read_response(&mut second, true))
        .await
        .expect("not served after the tunnel closed")
        .unwrap();
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn random_garbage_never_takes_the_proxy_down() {
    let origin = http_origin("127.0.0.2").await;
    let o = origin.addr.to_string();
    // Only the origin is granted and no name resolves: nothing can leave 127.0.0.0/8.
    let p = start(std::slice::from_ref(&o), no_dns()).await;
    let prefixes: [&[u8]; 5] = [
        b"",
        b"GET http://",
        b"CONNECT ",
        b"POST http://127.0.0.2/ HTTP/1.1\r\nContent-Length: ",
        b"GET http://x/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
    ];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..200 {
        let len = (next() % 300) as usize;
        let mut raw = prefixes[i % prefixes.len()].to_vec();
        let alphabet = b"\r\n :/[]@%*.-0123456789abcxyzHTTP\x00\xff";
        raw.extend((0..len).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]));
        let mut c = TcpStream::connect(p.addr).await.unwrap();
        let _ = c.write_all(&raw).await;
        let _ = c.shutdown().await;
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut sink)).await;
        if !sink.is_empty() {
            assert!(
                sink.starts_with(b"HTTP/1.1 "),
                "{:?}",
                String::from_utf8_lossy(&sink)
            );
        }
    }
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    assert_eq!(roundtrip(&mut c, &get(&o, "/alive")).await.status, 200);
    assert!(
        p.sink.take().iter().all(|e| e.blocked),
        "garbage let something through"
    );
}

#[tokio::test]
async fn a_busy_keep_alive_connection_outlives_the_header_timeout_and_closes_when_idle() {
    let origin = http_origin("127.0.0.2").await;
    let o = origin.addr.to_string();
    let config = ProxyConfig {
        header_read_timeout: Duration::from_secs(1),
        ..ProxyConfig::default()
    };
    let p = start_with(
        std::slice::from_ref(&o),
        Mode::Enforce,
        no_dns(),
        Arc::new(RecordingSink::default()),
        config,
    )
    .await;
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    // Requests every 250 ms for 2.5 s: each head arrives well within its own 1-s deadline, so
    // the connection's timer (armed once, for the first head) must be re-armed, not obeyed.
    for i in 0..10 {
        let r = roundtrip(&mut c, &get(&o, &format!("/{i}"))).await;
        assert_eq!(r.status, 200, "request {i}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(origin.connections.load(Ordering::SeqCst), 1);
    assert!(
        closed_within(&mut c, Duration::from_secs(5)).await,
        "idle keep-alive left open"
    );
}
