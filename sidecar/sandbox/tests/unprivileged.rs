#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Strict mode started by a normal user (uid 65534 via setpriv): user namespaces make the
//! whole sandbox work without root, and the skill has no capabilities in any namespace.

mod common;
use common::*;
use std::path::Path;
use std::process::Command;

fn chown_tree(p: &Path, uid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(uid)).unwrap();
    if p.is_dir() && !p.is_symlink() {
        for e in std::fs::read_dir(p).unwrap() {
            chown_tree(&e.unwrap().path(), uid);
        }
    }
}

fn as_nobody(h: &Home, check: &[&str]) -> String {
    let out = forking(|| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(&h.probe)
            .arg("nested-strict")
            .arg(&h.skill_dir)
            .arg(&h.home)
            .args(check)
            .env_clear()
            .output()
    })
    .unwrap();
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    s
}

#[test]
fn a_normal_user_gets_the_same_strict_sandbox() {
    let h = home("nested");
    chown_tree(h.tmp.path(), 65534);
    let caps = as_nobody(&h, &["caps"]);
    assert!(
        caps.contains("CapEff: 0000000000000000") && caps.contains("Seccomp: 2"),
        "{caps}"
    );
    assert!(caps.contains("EXIT 0"), "{caps}");
    let who = as_nobody(&h, &["whoami"]);
    assert!(who.contains("ok 65534 "), "{who}");
    let key = h.home.join(".ssh/id_ed25519");
    let out = as_nobody(&h, &["read", key.to_str().unwrap()]);
    assert!(out.starts_with("errno 13"), "{out}");
    assert!(
        out.contains(&format!(
            "VIOLATION Filesystem {{ path: {key:?}, access: \"read\" }}"
        )),
        "{out}"
    );
    let out = as_nobody(&h, &["exec", "/bin/sh", "-c", "echo PWNED"]);
    assert!(
        out.starts_with("errno 13") && !out.contains("PWNED"),
        "{out}"
    );
    let out = as_nobody(&h, &["sys", "unshare"]);
    assert!(
        out.starts_with("errno 1") && out.contains("VIOLATION Syscall { name: \"unshare\" }"),
        "{out}"
    );
}
