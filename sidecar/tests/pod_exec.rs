#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `ironclaw-sidecar exec` on this host (as root), with the real kernel sandbox.

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_ironclaw-sidecar");

fn policy(ws: &Path, proxy_port: u16, mode: &str) -> String {
    serde_json::json!({
        "skill": "probe",
        "namespace": "default",
        "sandboxMode": mode,
        "grants": {"env": ["SKILL_OK"], "shell": true},
        "proxy": format!("127.0.0.1:{proxy_port}"),
        "admin": "0.0.0.0:9090",
        "workspace": ws,
        "seccompProfile": "ironclaw/probe.json",
    })
    .to_string()
}

const SCRIPT: &str = r#"
import os, socket, sys, errno
secret, other, proxy = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def tryit(name, f):
    try:
        f(); print(name, "OK")
    except OSError as e:
        print(name, errno.errorcode.get(e.errno, e.errno))
tryit("read_secret", lambda: open(secret).read())
tryit("connect_other", lambda: socket.create_connection(("127.0.0.1", other), timeout=3).close())
tryit("connect_proxy", lambda: socket.create_connection(("127.0.0.1", proxy), timeout=3).close())
tryit("write_ws", lambda: open(os.path.join(os.environ["HOME"], "f"), "w").write("x"))
import ctypes, platform
libc = ctypes.CDLL(None, use_errno=True)
nr = {"x86_64": 101, "aarch64": 117}[platform.machine()]
rc = libc.syscall(nr, 0, 0, 0, 0)  # ptrace(PTRACE_TRACEME): fine for any process unsandboxed
print("ptrace", "OK" if rc == 0 else errno.errorcode.get(ctypes.get_errno()))
print("HOME", os.environ.get("HOME"))
print("SKILL_OK", os.environ.get("SKILL_OK"))
print("SKILL_NO", os.environ.get("SKILL_NO"))
print("HTTPS_PROXY", os.environ.get("HTTPS_PROXY"))
"#;

#[test]
fn exec_sandboxes_the_command_in_place() {
    // Outside /tmp, which the in-place sandbox grants.
    let root = tempfile::tempdir_in("/var/tmp").unwrap();
    let ws = root.path().join("workspace/skills/probe");
    std::fs::create_dir_all(&ws).unwrap();
    let secret = root.path().join("secret.txt");
    std::fs::write(&secret, "top secret").unwrap();
    let pol = root.path().join("policy.json");
    let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let pport = proxy.local_addr().unwrap().port();
    let oport = other.local_addr().unwrap().port();
    std::fs::write(&pol, policy(&ws, pport, "strict")).unwrap();

    // Baseline without the wrapper: everything works, so the denials below are the sandbox's.
    let base = Command::new("/usr/bin/python3")
        .args(["-c", SCRIPT])
        .arg(&secret)
        .arg(oport.to_string())
        .arg(pport.to_string())
        .env("HOME", &ws)
        .output()
        .unwrap();
    let base_out = String::from_utf8_lossy(&base.stdout);
    assert!(base_out.contains("read_secret OK"), "{base_out}");
    assert!(base_out.contains("connect_other OK"), "{base_out}");
    assert!(base_out.contains("ptrace OK"), "{base_out}");

    let out = Command::new(BIN)
        .args(["exec", "--policy"])
        .arg(&pol)
        .args(["--", "/usr/bin/python3", "-c", SCRIPT])
        .arg(&secret)
        .arg(oport.to_string())
        .arg(pport.to_string())
        .env("SKILL_OK", "yes")
        .env("SKILL_NO", "leak")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout={stdout} stderr={stderr}");
    assert!(stdout.contains("read_secret EACCES"), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("connect_other EACCES") || stdout.contains("connect_other EPERM"),
        "{stdout}"
    );
    assert!(stdout.contains("connect_proxy OK"), "{stdout}");
    assert!(stdout.contains("ptrace EPERM"), "seccomp denial: {stdout}");
    assert!(stdout.contains("write_ws OK"), "{stdout}");
    assert!(
        stdout.contains(&format!("HOME {}", ws.display())),
        "{stdout}"
    );
    assert!(stdout.contains("SKILL_OK yes"), "{stdout}");
    assert!(stdout.contains("SKILL_NO None"), "{stdout}");
    assert!(
        stdout.contains(&format!("HTTPS_PROXY http://127.0.0.1:{pport}")),
        "{stdout}"
    );
}

#[test]
fn exec_refuses_a_bad_policy_naming_the_field_and_runs_nothing() {
    let root = tempfile::tempdir_in("/var/tmp").unwrap();
    let ws = root.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let marker = root.path().join("ran");
    let pol = root.path().join("policy.json");
    let cases = [
        (policy(&ws, 15001, "audit-only"), "`sandboxMode`"),
        (
            policy(&ws, 15001, "strict").replace("127.0.0.1:15001", "10.0.0.1:15001"),
            "`proxy`",
        ),
        (policy(Path::new("rel/ws"), 15001, "strict"), "`workspace`"),
        (
            policy(&ws, 15001, "strict").replace("\"probe\"", "\"Bad Name\""),
            "`skill`",
        ),
        (
            policy(&ws, 15001, "strict").replace("\"shell\"", "\"shel\""),
            "grants",
        ),
        ("{}".to_owned(), "missing field"),
    ];
    for (text, want) in cases {
        std::fs::write(&pol, &text).unwrap();
        let out = Command::new(BIN)
            .args(["exec", "--policy"])
            .arg(&pol)
            .args(["--", "/usr/bin/touch"])
            .arg(&marker)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text}");
        assert!(stderr.contains(want), "want {want} in {stderr}");
        assert!(stderr.contains("policy.json"), "{stderr}");
        assert!(!marker.exists(), "command ran despite bad policy {text}");
    }
}
