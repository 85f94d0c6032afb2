#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Standard mode (user-space checks only) and audit-only mode (nothing blocked, everything
//! reported) against the real kernel.

mod common;
use common::*;
use ironclaw_sandbox::{Mode, Violation};

#[test]
fn audit_only_blocks_nothing_and_reports_everything() {
    let h = home("aud");
    let key = h.home.join(".ssh/id_ed25519");
    let (o, _, v) = run(&h.spec(
        "aud",
        Mode::AuditOnly,
        grants(&[]),
        &["read", key.to_str().unwrap()],
    ));
    assert_eq!(o, "ok PRIVATE KEY");
    assert!(
        v.contains(&Violation::Filesystem {
            path: key.clone(),
            access: "read".into()
        }),
        "{v:?}"
    );
    let (o, _, v) = run(&h.spec(
        "aud",
        Mode::AuditOnly,
        grants(&[]),
        &["exec", "/bin/sh", "-c", "echo RAN"],
    ));
    assert_eq!(o, "RAN");
    assert!(
        v.contains(&Violation::Exec {
            path: "/usr/bin/dash".into()
        }),
        "{v:?}"
    );
    let (o, _, v) = run(&h.spec("aud", Mode::AuditOnly, grants(&[]), &["sys", "bpf"]));
    assert_ne!(o, "errno 1", "bpf reached the kernel");
    assert!(
        v.contains(&Violation::Syscall { name: "bpf".into() }),
        "{v:?}"
    );
    let (_, _, v) = run(&h.spec(
        "aud",
        Mode::AuditOnly,
        grants(&[]),
        &["udp", "192.0.2.1", "53"],
    ));
    assert!(
        v.contains(&Violation::Network {
            host: "192.0.2.1".into(),
            port: 53
        }),
        "{v:?}"
    );
    // Env filtering still applies.
    let (o, _, _) = run(&h.spec(
        "aud",
        Mode::AuditOnly,
        grants(&[]),
        &["env", "CARGO_MANIFEST_DIR"],
    ));
    assert_eq!(o, "unset");
}

#[test]
fn audit_only_does_not_report_connects_to_the_host_proxy_but_reports_other_loopback_ports() {
    let h = home("aud");
    let serve = |l: std::net::TcpListener| {
        std::thread::spawn(move || {
            if let Ok((s, _)) = l.accept() {
                use std::io::{BufRead, Write};
                let mut line = String::new();
                let _ = std::io::BufReader::new(s.try_clone().unwrap()).read_line(&mut line);
                let _ = (&s).write_all(b"pong\n");
            }
        })
    };
    let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let pa = match proxy.local_addr().unwrap() {
        std::net::SocketAddr::V4(a) => a,
        _ => unreachable!(),
    };
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let op = other.local_addr().unwrap().port();
    serve(proxy);
    serve(other);
    let spec = h.spec(
        "aud",
        Mode::AuditOnly,
        grants(&[]),
        &["connect", "127.0.0.1", &pa.port().to_string()],
    );
    let (o, _, v) = run_with_proxy(&spec, Some(pa));
    assert_eq!(o, "ok pong");
    assert!(
        v.iter().all(|x| !matches!(x, Violation::Network { .. })),
        "{v:?}"
    );
    let spec = h.spec("aud", Mode::AuditOnly, grants(&[]), &["env", "HTTPS_PROXY"]);
    assert_eq!(run_with_proxy(&spec, Some(pa)).0, format!("ok http://{pa}"));
    let spec = h.spec(
        "aud",
        Mode::AuditOnly,
        grants(&[]),
        &["connect", "127.0.0.1", &op.to_string()],
    );
    let (o, _, v) = run_with_proxy(&spec, Some(pa));
    assert_eq!(o, "ok pong", "audit-only blocks nothing");
    assert!(
        v.contains(&Violation::Network {
            host: "127.0.0.1".into(),
            port: op
        }),
        "{v:?}"
    );
}

#[test]
fn standard_mode_filters_env_and_sets_the_workspace_but_enforces_nothing_in_the_kernel() {
    let h = home("std");
    let ws = h.ws_root.join("skills/std");
    let mut spec = h.spec(
        "std",
        Mode::Standard,
        grants(&["env=IMAP_USER"]),
        &["env", "IMAP_USER"],
    );
    spec.env = vec![("IMAP_USER".into(), "u".into())];
    assert_eq!(run(&spec).0, "ok u");
    let (o, _, _) = run(&h.spec(
        "std",
        Mode::Standard,
        grants(&[]),
        &["env", "CARGO_MANIFEST_DIR"],
    ));
    assert_eq!(o, "unset");
    let (o, _, _) = run(&h.spec("std", Mode::Standard, grants(&[]), &["whoami"]));
    assert!(o.ends_with(&ws.display().to_string()), "{o}");
    // Documented: standard mode does not contain a skill that ignores the rules.
    let key = h.home.join(".ssh/id_ed25519");
    let (o, _, v) = run(&h.spec(
        "std",
        Mode::Standard,
        grants(&[]),
        &["read", key.to_str().unwrap()],
    ));
    assert_eq!(o, "ok PRIVATE KEY");
    assert!(v.is_empty());
    let (o, _, _) = run(&h.spec("std", Mode::Standard, grants(&[]), &["caps"]));
    assert!(o.contains("Seccomp: 0"), "{o}");
}

#[test]
fn harden_supervisor_makes_ironclaw_non_dumpable() {
    ironclaw_sandbox::harden_supervisor().unwrap();
    // SAFETY: plain prctl query.
    let d = unsafe { libc_prctl_get_dumpable() };
    assert_eq!(d, 0);
}

unsafe extern "C" {
    fn prctl(option: i32, ...) -> i32;
}

unsafe fn libc_prctl_get_dumpable() -> i32 {
    const PR_GET_DUMPABLE: i32 = 3;
    // SAFETY: PR_GET_DUMPABLE takes no further arguments.
    unsafe { prctl(PR_GET_DUMPABLE) }
}

#[test]
fn kill_stops_a_running_strict_skill() {
    let h = home("killme");
    let spec = h.spec(
        "killme",
        Mode::Strict,
        grants(&[]),
        &["exec", "/usr/bin/sleep", "30"],
    );
    let mut sb =
        forking(|| ironclaw_sandbox::spawn(&spec, std::sync::Arc::new(Recorder::default())))
            .unwrap();
    let t = std::time::Instant::now();
    sb.kill().unwrap();
    let st = sb.wait().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&st), Some(9));
    assert!(t.elapsed() < std::time::Duration::from_secs(10));
}
