#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;
use common::*;
use ironclaw_sandbox::Mode;

#[test]
fn explore() {
    let h = home("ex");
    let ws = h.ws_root.join("skills/ex");
    let ppid = std::process::id().to_string();
    let shared = h.ws_root.join("shared/notes.txt");
    let cases: Vec<Vec<String>> = vec![
        vec!["whoami".into()],
        vec!["caps".into()],
        vec!["fds".into()],
        vec!["session".into()],
        vec!["env".into(), "HOME".into()],
        vec!["env".into(), "HTTP_PROXY".into()],
        vec!["write".into(), ws.join("out.txt").display().to_string()],
        vec!["read".into(), shared.display().to_string()],
        vec!["write".into(), shared.display().to_string()],
        vec!["read".into(), h.home.join(".ssh/id_ed25519").display().to_string()],
        vec!["read".into(), h.ironclaw.join("ironclaw.json").display().to_string()],
        vec!["read".into(), h.ws_root.join("skills/other/secret.txt").display().to_string()],
        vec!["read".into(), "/etc/shadow".into()],
        vec!["read".into(), format!("/proc/{ppid}/environ")],
        vec!["exec".into(), "/bin/sh".into(), "-c".into(), "echo PWNED".into()],
        vec!["exec".into(), "/usr/bin/env".into(), "bash".into(), "-lc".into(), "echo PWNED".into()],
        vec!["exec".into(), "/usr/bin/time".into(), "sh".into(), "-c".into(), "echo PWNED".into()],
        vec!["exec".into(), "/usr/bin/find".into(), "/usr/bin/env".into(), "-maxdepth".into(), "0".into(), "-exec".into(), "sh".into(), "-c".into(), "echo PWNED".into(), ";".into()],
        vec!["exec".into(), "/usr/bin/xargs".into(), "sh".into(), "-c".into(), "echo PWNED".into()],
        vec!["exec".into(), "/lib64/ld-linux-x86-64.so.2".into(), "/bin/dash".into(), "-c".into(), "echo PWNED".into()],
        vec!["exec".into(), "/usr/bin/ls".into(), "/".into()],
        vec!["copy-exec".into(), "/usr/bin/ls".into(), ws.join("ls2").display().to_string()],
        vec!["copy-exec".into(), "/usr/bin/ls".into(), "/tmp/ls2".into()],
        vec!["memfd".into(), "/usr/bin/ls".into()],
        vec!["connect".into(), "1.1.1.1".into(), "80".into()],
        vec!["udp".into(), "8.8.8.8".into(), "53".into()],
        vec!["dns".into(), "example.com".into()],
        vec!["socket".into(), "1".into(), "1".into()],
        vec!["socket".into(), "16".into(), "3".into()],
        vec!["socket".into(), "17".into(), "3".into()],
        vec!["socket".into(), "2".into(), "3".into()],
        vec!["listen".into(), "8080".into()],
        vec!["kill".into(), ppid.clone()],
        vec!["tiocsti".into()],
        vec!["sys".into(), "ptrace".into()],
        vec!["sys".into(), "clone3".into()],
        vec!["sys".into(), "unshare".into()],
        vec!["sys".into(), "clone_newuser".into()],
        vec!["sys".into(), "mount".into()],
        vec!["sys".into(), "bpf".into()],
        vec!["sys".into(), "io_uring_setup".into()],
        vec!["sys".into(), "process_vm_readv".into()],
        vec!["sys".into(), "personality".into()],
        vec!["stat".into(), "/root".into()],
        vec!["ls".into(), "/".into()],
    ];
    for c in cases {
        let args: Vec<&str> = c.iter().map(String::as_str).collect();
        let spec = h.spec("ex", Mode::Strict, grants(&["fs=~/.ironclaw/workspace/shared:ro"]), &args);
        let (out, code, v) = run(&spec);
        println!("{:?}\n   => [{code}] {out}\n   => {v:?}", c);
    }
}
