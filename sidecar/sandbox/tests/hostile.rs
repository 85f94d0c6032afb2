#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The hostile-skill suite: a real program (the probe) tries each escape from the issue under
//! the real kernel sandbox in strict mode. Each attempt must fail with the asserted errno AND
//! produce the right violation; positive controls show granted things still work.

mod common;
use common::*;
use ironclaw_sandbox::{Mode, Violation};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const EACCES: &str = "errno 13";
const EPERM: &str = "errno 1";

fn strict(h: &Home, g: &[&str], args: &[&str]) -> (String, i32, Vec<Violation>) {
    run(&h.spec("hostile", Mode::Strict, grants(g), args))
}

fn fs_blocked(v: &[Violation], path: &Path, access: &str) -> bool {
    v.iter().any(
        |x| matches!(x, Violation::Filesystem { path: p, access: a } if p == path && a == access),
    )
}

fn exec_blocked(v: &[Violation]) -> bool {
    v.iter().any(|x| match x {
        Violation::Exec { path } => {
            ["/usr/bin/dash", "/usr/bin/bash"].contains(&path.to_str().unwrap())
        }
        Violation::Filesystem { path, .. } => path == Path::new("/usr/bin/dash"),
        _ => false,
    })
}

#[test]
fn positive_controls_workspace_shared_env_and_a_clean_process() {
    let h = home("hostile");
    let ws = h.ws_root.join("skills/hostile");
    let shared = h.ws_root.join("shared/notes.txt");
    let g = ["fs=~/.ironclaw/workspace/shared:ro", "env=IMAP_*"];

    let out = ws.join("out.txt");
    let (o, _, v) = strict(&h, &g, &["write", out.to_str().unwrap()]);
    assert_eq!(o, "ok", "{v:?}");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "written by the skill\n"
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&ws).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o700);

    let (o, _, _) = strict(&h, &g, &["read", shared.to_str().unwrap()]);
    assert_eq!(o, "ok shared notes");
    let (o, _, v) = strict(&h, &g, &["write", shared.to_str().unwrap()]);
    assert_eq!(o, EACCES);
    assert!(fs_blocked(&v, &shared, "write"), "{v:?}");
    assert_eq!(std::fs::read_to_string(&shared).unwrap(), "shared notes");

    let mut spec = h.spec("hostile", Mode::Strict, grants(&g), &["env", "IMAP_USER"]);
    spec.env = vec![("IMAP_USER".into(), "me@example.test".into())];
    assert_eq!(run(&spec).0, "ok me@example.test");
    // Nothing leaks from IronClaw's own environment.
    assert!(std::env::var_os("PATH").is_some());
    let (o, _, _) = strict(&h, &g, &["env", "CARGO_MANIFEST_DIR"]);
    assert_eq!(o, "unset");
    let (o, _, _) = strict(&h, &g, &["env", "HOME"]);
    assert_eq!(o, format!("ok {}", ws.display()));
    let (o, _, _) = strict(&h, &g, &["whoami"]);
    assert!(
        o.ends_with(&ws.display().to_string()),
        "cwd is the workspace: {o}"
    );

    // No capabilities even when IronClaw runs as root, no_new_privs, a seccomp filter.
    let (o, _, _) = strict(&h, &g, &["caps"]);
    for field in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert!(o.contains(&format!("{field}: 0000000000000000")), "{o}");
    }
    assert!(
        o.contains("NoNewPrivs: 1") && o.contains("Seccomp: 2"),
        "{o}"
    );
    // Only stdio is inherited (3 is the directory being listed), and its own session.
    assert_eq!(strict(&h, &g, &["fds"]).0, "ok 0,1,2,3");
    assert_eq!(strict(&h, &g, &["session"]).0, "ok 1");
}

#[test]
fn filesystem_escapes_fail_and_are_reported() {
    let h = home("hostile");
    let ppid = std::process::id();
    let cases: Vec<PathBuf> = vec![
        h.home.join(".ssh/id_ed25519"),
        h.ironclaw.join("ironclaw.json"),
        h.ws_root.join("skills/other/secret.txt"),
        PathBuf::from("/etc/shadow"),
        PathBuf::from(format!("/proc/{ppid}/environ")),
    ];
    for p in cases {
        let (o, _, v) = strict(
            &h,
            &["fs=~/.ironclaw/workspace/shared:ro"],
            &["read", p.to_str().unwrap()],
        );
        assert_eq!(o, EACCES, "{}", p.display());
        assert!(fs_blocked(&v, &p, "read"), "{}: {v:?}", p.display());
    }
    // Even a grant of the whole home does not expose IRONCLAW_HOME or ~/.ssh's neighbours in
    // IRONCLAW_HOME; the grant itself works.
    let (o, _, _) = strict(
        &h,
        &["fs=~:ro"],
        &["read", h.home.join(".ssh/id_ed25519").to_str().unwrap()],
    );
    assert_eq!(o, "ok PRIVATE KEY");
    let cfg = h.ironclaw.join("ironclaw.json");
    let (o, _, v) = strict(&h, &["fs=~:ro"], &["read", cfg.to_str().unwrap()]);
    assert_eq!(o, EACCES);
    assert!(fs_blocked(&v, &cfg, "read"), "{v:?}");
}

#[test]
fn no_shell_by_any_route_without_the_grant() {
    let h = home("hostile");
    let ws = h.ws_root.join("skills/hostile");
    let routes: Vec<Vec<&str>> = vec![
        vec!["exec", "/bin/sh", "-c", "echo PWNED"],
        vec!["exec", "/bin/bash", "-c", "echo PWNED"],
        vec!["exec", "/usr/bin/env", "bash", "-lc", "echo PWNED"],
        vec!["exec", "/usr/bin/time", "sh", "-c", "echo PWNED"],
        vec![
            "exec",
            "/usr/bin/find",
            "/usr/bin/env",
            "-maxdepth",
            "0",
            "-exec",
            "sh",
            "-c",
            "echo PWNED",
            ";",
        ],
        vec!["exec", "/usr/bin/xargs", "sh", "-c", "echo PWNED"],
        vec![
            "exec",
            "/lib64/ld-linux-x86-64.so.2",
            "/bin/dash",
            "-c",
            "echo PWNED",
        ],
    ];
    for r in routes {
        let (o, code, v) = strict(&h, &[], &r);
        assert!(!o.contains("PWNED"), "{r:?}: {o}");
        assert!(o.contains("Permission denied") || o == EACCES, "{r:?}: {o}");
        assert!(
            code != 0 || o == EACCES || r[1] == "/usr/bin/find",
            "{r:?}: {code}"
        );
        assert!(exec_blocked(&v), "{r:?}: {v:?}");
    }
    // A copy of a shell: the shell's bytes are masked in the skill's mount namespace.
    let (o, _, _) = strict(
        &h,
        &[],
        &[
            "copy-exec",
            "/usr/bin/dash",
            ws.join("sh").to_str().unwrap(),
        ],
    );
    assert_eq!(o, "copy errno 13");
    // Any program copied to the workspace or /tmp cannot run (noexec, no Landlock execute).
    for dst in [ws.join("ls2"), PathBuf::from("/tmp/ls2")] {
        let (o, _, v) = strict(
            &h,
            &[],
            &["copy-exec", "/usr/bin/ls", dst.to_str().unwrap()],
        );
        assert_eq!(o, EACCES, "{}", dst.display());
        assert!(v.contains(&Violation::Exec { path: dst.clone() }), "{v:?}");
    }
    // memfd: executable memfds cannot be created.
    let (o, _, v) = strict(&h, &[], &["memfd", "/usr/bin/ls"]);
    assert_eq!(o, EPERM);
    assert!(
        v.contains(&Violation::Syscall {
            name: "memfd_create".into()
        }),
        "{v:?}"
    );
    // Ordinary programs still run.
    let (o, code, _) = strict(&h, &[], &["exec", "/usr/bin/env", "true"]);
    assert_eq!((o.as_str(), code), ("", 0));
}

#[test]
fn with_the_shell_grant_the_shell_runs_inside_the_sandbox() {
    let h = home("hostile");
    let cmd = format!(
        "echo SHELL-OK; cat {} || true",
        h.home.join(".ssh/id_ed25519").display()
    );
    let (o, code, v) = strict(&h, &["shell"], &["exec", "/bin/sh", "-c", &cmd]);
    assert_eq!(code, 0, "{o}");
    assert!(o.contains("SHELL-OK"), "{o}");
    assert!(!o.contains("PRIVATE KEY"), "{o}");
    assert!(o.contains("Permission denied"), "{o}");
    assert!(
        v.iter().any(
            |x| matches!(x, Violation::Filesystem { path, .. } if path.ends_with(".ssh/id_ed25519"))
        ),
        "{v:?}"
    );
}

#[test]
fn network_only_reaches_ironclaw_listeners() {
    let h = home("hostile");
    let g = grants(&["net=imap.example.test:993", "net=10.9.8.7:5432"]);
    // The proxy listener and the forward for the granted name, served by a tiny relay here.
    for (args, want) in [
        (vec!["connect", "127.0.0.1", "3128"], "ok pong proxy"),
        // A grant by address: the skill connects to that address and reaches IronClaw.
        (vec!["connect", "10.9.8.7", "5432"], "ok pong 10.9.8.7:5432"),
        (
            vec!["connect-name", "imap.example.test", "993"],
            "ok 127.0.0.2:993 pong imap.example.test:993",
        ),
    ] {
        let spec = h.spec("hostile", Mode::Strict, g.clone(), &args);
        let rec = Arc::new(Recorder::default());
        let mut sb = forking(|| {
            ironclaw_sandbox::spawn_with(
                &spec,
                rec.clone(),
                ironclaw_sandbox::SpawnOptions {
                    stdin: Some(std::process::Stdio::null()),
                    stdout: Some(std::process::Stdio::piped()),
                    stderr: Some(std::process::Stdio::piped()),
                    ..Default::default()
                },
            )
        })
        .unwrap();
        let net = sb.take_network().unwrap();
        assert_eq!(
            net.http_proxy.local_addr().unwrap().to_string(),
            "127.0.0.1:3128"
        );
        assert_eq!(net.forwards.len(), 2);
        assert_eq!(net.forwards[0].0.to_string(), "10.9.8.7:5432");
        assert_eq!(
            net.forwards[0].1.local_addr().unwrap().to_string(),
            "10.9.8.7:5432"
        );
        assert_eq!(net.forwards[1].0.to_string(), "imap.example.test:993");
        let mut listeners = vec![("proxy".to_string(), net.http_proxy)];
        listeners.extend(net.forwards.into_iter().map(|(g, l)| (g.to_string(), l)));
        for (label, l) in listeners {
            std::thread::spawn(move || {
                if let Ok((s, _)) = l.accept() {
                    let mut line = String::new();
                    let mut r = BufReader::new(s.try_clone().unwrap());
                    let _ = r.read_line(&mut line);
                    let _ = (&s).write_all(format!("pong {label}\n").as_bytes());
                }
            });
        }
        let out = sb.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), want);
        assert!(
            rec.0
                .lock()
                .unwrap()
                .iter()
                .all(|v| !matches!(v, Violation::Network { .. }))
        );
    }
    // Direct connects, UDP and DNS fail and are reported.
    let (o, _, v) = strict(
        &h,
        &["net=imap.example.test:993"],
        &["connect", "1.1.1.1", "443"],
    );
    assert_eq!(o, EACCES);
    assert!(
        v.contains(&Violation::Network {
            host: "1.1.1.1".into(),
            port: 443
        }),
        "{v:?}"
    );
    let (o, _, v) = strict(&h, &[], &["udp", "8.8.8.8", "53"]);
    assert_eq!(o, EACCES);
    assert!(
        v.contains(&Violation::Network {
            host: "8.8.8.8".into(),
            port: 53
        }),
        "{v:?}"
    );
    let (o, _, _) = strict(&h, &[], &["dns", "example.com"]);
    assert!(o.starts_with("failed"), "{o}");
    // A granted port on another address is still not reachable (nothing listens there).
    let (o, _, _) = strict(
        &h,
        &["net=imap.example.test:993"],
        &["connect", "127.0.0.3", "993"],
    );
    assert!(o.starts_with("errno"), "{o}");
    // No listening either (Landlock TCP bind).
    assert_eq!(strict(&h, &[], &["listen", "8080"]).0, EACCES);
    // Unix datagram, netlink, packet and raw sockets.
    for (d, t, name) in [
        ("1", "2", "socket(AF_UNIX)"),
        ("16", "3", "socket(AF_NETLINK, SOCK_RAW)"),
        ("17", "3", "socket(AF_PACKET, SOCK_RAW)"),
        ("2", "3", "socket(AF_INET, SOCK_RAW)"),
    ] {
        let (o, _, v) = strict(&h, &[], &["socket", d, t]);
        assert_eq!(o, EPERM, "{name}");
        assert!(
            v.contains(&Violation::Syscall { name: name.into() }),
            "{name}: {v:?}"
        );
    }
}

/// Unix stream sockets can be created (glibc opens one on every name lookup to probe nscd), but
/// connecting one anywhere outside the sandbox is refused and reported by path: IronClaw's own
/// control socket (`~/.ironclaw/run/gateway.sock`), any other socket on the host, an abstract
/// name. The nscd probe itself is answered ENOENT and not counted, so a skill that resolves
/// names is not suspended for it.
#[test]
fn unix_sockets_are_refused_by_path_and_the_nscd_probe_is_not_a_violation() {
    use std::os::linux::net::SocketAddrExt;
    let h = home("hostile");
    let run_dir = h.ironclaw.join("run");
    std::fs::create_dir_all(&run_dir).unwrap();
    let gateway = run_dir.join("gateway.sock");
    let _gw = std::os::unix::net::UnixListener::bind(&gateway).unwrap();
    let elsewhere = h.tmp.path().join("host.sock");
    let _host = std::os::unix::net::UnixListener::bind(&elsewhere).unwrap();
    let abs =
        std::os::unix::net::SocketAddr::from_abstract_name(b"ironclaw-test-abstract").unwrap();
    let _abs = std::os::unix::net::UnixListener::bind_addr(&abs).unwrap();
    // The positive control: outside the sandbox the same connects work.
    assert!(std::os::unix::net::UnixStream::connect(&gateway).is_ok());
    assert!(std::os::unix::net::UnixStream::connect(&elsewhere).is_ok());

    for target in [&gateway, &elsewhere] {
        let (o, _, v) = strict(&h, &[], &["unix", target.to_str().unwrap()]);
        assert_eq!(o, EACCES, "{target:?}");
        assert!(fs_blocked(&v, target, "connect"), "{target:?}: {v:?}");
    }
    let (o, _, v) = strict(&h, &[], &["unix-abstract", "ironclaw-test-abstract"]);
    assert_eq!(o, EACCES);
    assert!(
        fs_blocked(&v, Path::new("@ironclaw-test-abstract"), "connect"),
        "{v:?}"
    );
    // glibc's nscd probe: ENOENT, nothing reported (with or without nscd on the host).
    for nscd in ["/var/run/nscd/socket", "/run/nscd/socket"] {
        let (o, _, v) = strict(&h, &[], &["unix", nscd]);
        assert_eq!(o, "errno 2", "{nscd}");
        assert!(v.is_empty(), "{nscd}: {v:?}");
    }
    // Its own socket in its own workspace works (only sockets outside the sandbox are refused).
    let (o, _, v) = strict(&h, &[], &["unix-own"]);
    assert_eq!(o, "ok", "{o}");
    assert!(v.is_empty(), "{v:?}");
    // A socket path that does not exist anywhere: ENOENT by itself, not reported.
    let (o, _, v) = strict(&h, &[], &["unix", "/nonexistent/ironclaw.sock"]);
    assert_eq!(o, "errno 2");
    assert!(v.is_empty(), "{v:?}");
    // A real name lookup through glibc (getaddrinfo of a name in the skill's /etc/hosts): it
    // probes nscd first; it must succeed and leave no violation behind.
    let (o, _, v) = strict(
        &h,
        &["net=imap.example.test:993"],
        &["dns", "imap.example.test"],
    );
    assert!(o.starts_with("ok"), "{o}");
    assert!(v.is_empty(), "{v:?}");
}

#[test]
fn dangerous_syscalls_answer_eperm_and_are_reported() {
    let h = home("hostile");
    for name in [
        "ptrace",
        "unshare",
        "setns",
        "mount",
        "umount",
        "bpf",
        "perf_event_open",
        "keyctl",
        "add_key",
        "userfaultfd",
        "io_uring_setup",
        "kexec_load",
        "init_module",
        "personality",
        "process_vm_readv",
        "pidfd_getfd",
        "kcmp",
        "prlimit64",
        "setpriority",
    ] {
        let (o, _, v) = strict(&h, &[], &["sys", name]);
        assert_eq!(o, EPERM, "{name}");
        let want = match name {
            "umount" => "umount2",
            n => n,
        };
        assert!(
            v.contains(&Violation::Syscall { name: want.into() }),
            "{name}: {v:?}"
        );
    }
    let (o, _, v) = strict(&h, &[], &["sys", "clone_newuser"]);
    assert_eq!(o, EPERM);
    assert!(
        v.contains(&Violation::Syscall {
            name: "clone".into()
        }),
        "{v:?}"
    );
    // clone3 answers ENOSYS so the C library falls back, and is not a violation.
    let (o, _, v) = strict(&h, &[], &["sys", "clone3"]);
    assert_eq!(o, "errno 38");
    assert!(
        v.iter().all(|x| !matches!(x, Violation::Syscall { .. })),
        "{v:?}"
    );
    // Terminal injection and signalling IronClaw.
    let (o, _, v) = strict(&h, &[], &["tiocsti"]);
    assert_eq!(o, EPERM);
    assert!(
        v.contains(&Violation::Syscall {
            name: "ioctl(TIOCSTI)".into()
        }),
        "{v:?}"
    );
    let (o, _, v) = strict(&h, &[], &["kill", &std::process::id().to_string()]);
    assert_eq!(o, EPERM, "signal to IronClaw");
    assert!(
        v.contains(&Violation::Syscall {
            name: "kill".into()
        }),
        "{v:?}"
    );
    let (o, _, v) = strict(&h, &[], &["kill", "1"]);
    assert_eq!(o, EPERM, "signal to init");
    assert!(
        v.contains(&Violation::Syscall {
            name: "kill".into()
        }),
        "{v:?}"
    );
    // The other signal routes: to a thread group, a thread, through a pidfd.
    let me = std::process::id().to_string();
    for (cmd, name) in [
        ("tgkill", "tgkill"),
        ("tkill", "tkill"),
        ("pidfd-kill", "pidfd_send_signal"),
    ] {
        let (o, _, v) = strict(&h, &[], &[cmd, &me]);
        assert_eq!(o, EPERM, "{cmd} to IronClaw");
        assert!(
            v.contains(&Violation::Syscall { name: name.into() }),
            "{cmd}: {v:?}"
        );
    }
    // A runtime signalling its own thread is fine and not reported.
    let (o, _, v) = strict(&h, &[], &["tgkill-self"]);
    assert_eq!(o, "ok 0", "{o}");
    assert!(v.is_empty(), "{v:?}");
}

#[test]
fn invalid_specs_are_refused_naming_the_field() {
    let h = home("hostile");
    let mut spec = h.spec("hostile", Mode::Strict, grants(&[]), &[]);
    spec.argv[0] = "probe".into();
    let e = forking(|| ironclaw_sandbox::spawn(&spec, Arc::new(Recorder::default())))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`argv`") && e.contains("not an absolute path"),
        "{e}"
    );
    let mut spec = h.spec("Bad_Name", Mode::Strict, grants(&[]), &[]);
    spec.skill = "Bad_Name".into();
    let e = forking(|| ironclaw_sandbox::spawn(&spec, Arc::new(Recorder::default())))
        .unwrap_err()
        .to_string();
    assert!(e.contains("`skill`"), "{e}");
    let mut spec = h.spec(
        "hostile",
        Mode::Strict,
        grants(&["env=IMAP_*"]),
        &["env", "X"],
    );
    spec.env = vec![("GITHUB_TOKEN".into(), "t".into())];
    let e = forking(|| ironclaw_sandbox::spawn(&spec, Arc::new(Recorder::default())))
        .unwrap_err()
        .to_string();
    assert!(e.contains("`env`") && e.contains("GITHUB_TOKEN"), "{e}");
}

#[test]
fn probe_reports_this_kernel_as_strict_capable() {
    let k = ironclaw_sandbox::probe().unwrap();
    assert!(k.landlock_abi.unwrap() >= 6, "{k:?}");
    assert!(
        k.missing_for_strict().is_empty(),
        "{:?}",
        k.missing_for_strict()
    );
}
