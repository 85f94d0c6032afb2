#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The generated seccomp profile under a real container runtime (podman + runc): the profile
//! the operator ships is accepted by the runtime and enforced by the kernel inside the
//! container. (The full pod end-to-end test needs the `ironclaw-sidecar` binaries; see
//! docs/operator.md.)

use ironclaw_crds::Grants;
use ironclaw_operator::seccomp::{build_profile, default_syscalls, render};
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

const IMAGE: &str = "localhost/ironclaw-busybox:1.35.0-test";

fn conf_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        // runc (crun fails on this host's hybrid cgroups) and explicit ulimits.
        std::fs::write(
            d.path().join("containers.conf"),
            "[containers]\ndefault_ulimits = [\"nofile=20000:20000\",\"nproc=4096:4096\"]\n[engine]\nruntime = \"runc\"\n",
        )
        .unwrap();
        // An offline image: a busybox-static rootfs imported with a version tag (once: a
        // re-import would leave the previous one behind untagged).
        let exists = Command::new("podman")
            .env("CONTAINERS_CONF", d.path().join("containers.conf"))
            .args(["image", "exists", IMAGE])
            .status()
            .is_ok_and(|s| s.success());
        if exists {
            return d;
        }
        let root = d.path().join("rootfs/bin");
        std::fs::create_dir_all(&root).unwrap();
        let busybox = Path::new("/bin/busybox");
        assert!(busybox.exists(), "/bin/busybox missing: run tests/deps/operator.sh (busybox-static)");
        std::fs::copy(busybox, root.join("busybox")).unwrap();
        let tmp = d.path().join("rootfs/tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();
        let tar = d.path().join("rootfs.tar");
        let st = Command::new("tar").arg("-C").arg(d.path().join("rootfs")).arg("-cf").arg(&tar).arg(".").status().unwrap();
        assert!(st.success());
        let out = Command::new("podman")
            .env("CONTAINERS_CONF", d.path().join("containers.conf"))
            .args(["import", "--quiet"])
            .arg(&tar)
            .arg(IMAGE)
            .output()
            .unwrap_or_else(|e| panic!("podman: {e}; run tests/deps/operator.sh"));
        assert!(out.status.success(), "podman import: {}", String::from_utf8_lossy(&out.stderr));
        d
    })
    .path()
}

/// Runs `busybox ARGS…` in a container under the profile for `grants`; returns (exit code, output).
fn run(grants: &Grants, args: &[&str]) -> (i32, String) {
    let dir = conf_dir();
    let (json, hash) = render(&build_profile(&default_syscalls(), grants).unwrap()).unwrap();
    let profile = dir.join(format!("ironclaw-test-{}.json", &hash[..16]));
    std::fs::write(&profile, json).unwrap();
    run_with(&profile.display().to_string(), args)
}

/// The same container with seccomp `profile` (a path, or `unconfined` for the baseline).
fn run_with(profile: &str, args: &[&str]) -> (i32, String) {
    let dir = conf_dir();
    let out = Command::new("podman")
        .env("CONTAINERS_CONF", dir.join("containers.conf"))
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "--user",
            "65532:65532",
            "--cap-drop",
            "all",
        ])
        .arg("--security-opt")
        .arg(format!("seccomp={profile}"))
        .args(["--security-opt", "no-new-privileges", IMAGE, "/bin/busybox"])
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn grants(json: &str) -> Grants {
    serde_json::from_str(json).unwrap()
}

#[test]
fn the_runtime_accepts_the_profile_and_ordinary_work_runs() {
    let (code, out) = run(
        &Grants::default(),
        &[
            "sh",
            "-c",
            "echo hello > /tmp/x && cat /tmp/x && ls / >/dev/null",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("hello"), "{out}");
}

#[test]
fn denied_syscalls_get_eperm() {
    // unshare(CLONE_NEWUSER) works in this container without seccomp (the baseline) and
    // gets EPERM under the generated profile.
    let (code, out) = run_with("unconfined", &["unshare", "-U", "true"]);
    assert_eq!(code, 0, "baseline: {out}");
    let (code, out) = run(&Grants::default(), &["unshare", "-U", "true"]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("Operation not permitted"), "{out}");
}

#[test]
fn udp_is_refused_even_with_a_network_grant_and_tcp_needs_one() {
    let net = grants(r#"{"network":["imap.gmail.com:993"]}"#);
    // UDP (direct DNS): socket(AF_INET, SOCK_DGRAM) → EPERM.
    let (_, out) = run_with("unconfined", &["nslookup", "example.com", "127.0.0.1"]);
    assert!(
        out.contains("refused") && !out.contains("not permitted"),
        "baseline: {out}"
    );
    let (_, out) = run(&net, &["nslookup", "example.com", "127.0.0.1"]);
    assert!(out.contains("Operation not permitted"), "{out}");
    // TCP with a grant: the socket is created; in a network namespace without a listener the
    // connect fails with "refused", not EPERM.
    let (code, out) = run(&net, &["nc", "-w", "1", "127.0.0.1", "15001"]);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("refused") && !out.contains("not permitted"),
        "{out}"
    );
    // TCP without any network grant: EPERM at socket(2).
    let (code, out) = run(&Grants::default(), &["nc", "-w", "1", "127.0.0.1", "15001"]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("Operation not permitted"), "{out}");
}
