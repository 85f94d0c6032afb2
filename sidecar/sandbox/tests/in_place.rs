#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `apply_in_place` (the in-pod exec wrapper): the probe restricts itself, then tries escapes.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Write};
use std::process::Command;

fn in_place(h: &Home, port: u16, check: &[&str]) -> String {
    let ws = h.ws_root.join("skills/pod");
    std::fs::create_dir_all(&ws).unwrap();
    let out = forking(|| {
        Command::new(&h.probe)
            .arg("in-place")
            .arg(&h.skill_dir)
            .arg(&ws)
            .arg(&h.home)
            .arg(&h.ws_root)
            .arg(port.to_string())
            .args(check)
            .output()
    })
    .unwrap();
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    s.trim().to_string()
}

#[test]
fn in_place_policy_restricts_files_network_syscalls_and_capabilities() {
    let h = home("pod");
    let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = proxy.local_addr().unwrap().port();
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other_port = other.local_addr().unwrap().port().to_string();
    std::thread::spawn(move || {
        while let Ok((s, _)) = proxy.accept() {
            let mut line = String::new();
            let _ = BufReader::new(s.try_clone().unwrap()).read_line(&mut line);
            let _ = (&s).write_all(b"pong\n");
        }
    });
    let ws_file = h.ws_root.join("skills/pod/x.txt");
    assert_eq!(
        in_place(&h, port, &["write", ws_file.to_str().unwrap()]),
        "ok"
    );
    assert_eq!(
        in_place(
            &h,
            port,
            &["read", h.home.join(".ssh/id_ed25519").to_str().unwrap()]
        ),
        "errno 13"
    );
    assert_eq!(in_place(&h, port, &["read", "/etc/shadow"]), "errno 13");
    assert_eq!(
        in_place(&h, port, &["connect", "127.0.0.1", &port.to_string()]),
        "ok pong"
    );
    assert_eq!(
        in_place(&h, port, &["connect", "127.0.0.1", &other_port]),
        "errno 13"
    );
    assert_eq!(in_place(&h, port, &["sys", "bpf"]), "errno 1");
    assert_eq!(in_place(&h, port, &["socket", "1", "1"]), "errno 1");
    assert_eq!(
        in_place(&h, port, &["exec", "/bin/sh", "-c", "echo PWNED"]),
        "errno 13"
    );
    let caps = in_place(&h, port, &["caps"]);
    assert!(
        caps.contains("CapEff: 0000000000000000") && caps.contains("CapBnd: 0000000000000000"),
        "{caps}"
    );
}
