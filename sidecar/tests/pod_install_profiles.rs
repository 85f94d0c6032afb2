#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `ironclaw-sidecar install-profiles --once` against the real test control plane
//! (`tests/cluster/up`; needs `tests/deps/operator.sh` run first).

use std::path::PathBuf;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_ironclaw-sidecar");
const SEL: &str = "ironclaw.dev/seccomp-profile=true";

fn kubeconfig() -> PathBuf {
    if let Ok(p) = std::env::var("IRONCLAW_TEST_KUBECONFIG") {
        return PathBuf::from(p);
    }
    let up = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/cluster/up");
    let out = Command::new("bash").arg(&up).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "test control plane did not start: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("export KUBECONFIG="))
            .unwrap()
            .trim(),
    )
}

fn kubectl(kcfg: &PathBuf, args: &[&str], stdin: Option<&str>) {
    use std::io::Write;
    let mut c = Command::new("kubectl")
        .env("KUBECONFIG", kcfg)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(s) = stdin {
        c.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    drop(c.stdin.take());
    assert!(c.wait().unwrap().success(), "kubectl {args:?}");
}

fn cm(ns: &str, name: &str, key: &str, value: &str) -> String {
    serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns,
                     "labels": {"ironclaw.dev/seccomp-profile": "true"}},
        "data": {key: value},
    })
    .to_string()
}

#[test]
fn install_profiles_writes_labelled_config_maps_and_refuses_bad_ones() {
    let kcfg = kubeconfig();
    let ns = format!("ic-prof-{:06x}", rand::random::<u32>() & 0xffffff);
    kubectl(&kcfg, &["create", "namespace", &ns], None);
    let good_key = format!("ironclaw-{ns}-good-0123456789abcdef.json");
    let profile = r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[]}"#;
    kubectl(
        &kcfg,
        &["apply", "-f", "-"],
        Some(&cm(&ns, "good", &good_key, profile)),
    );
    let root = tempfile::tempdir().unwrap();

    let run = || {
        Command::new(BIN)
            .args(["install-profiles", &format!("--selector={SEL}"), "--once"])
            .arg(format!("--root={}", root.path().display()))
            .env("KUBECONFIG", &kcfg)
            .output()
            .unwrap()
    };
    let out = run();
    let err = String::from_utf8_lossy(&out.stderr);
    let f = root.path().join(&good_key);
    assert_eq!(std::fs::read_to_string(&f).unwrap(), profile, "{err}");

    // An unlabelled ConfigMap is not written; a labelled one with a hidden-file key is refused.
    let mut plain: serde_json::Value =
        serde_json::from_str(&cm(&ns, "plain", "ironclaw-plain.json", profile)).unwrap();
    plain["metadata"]["labels"] = serde_json::json!({});
    kubectl(&kcfg, &["apply", "-f", "-"], Some(&plain.to_string()));
    let bad_key = ".hidden-profile.json";
    kubectl(
        &kcfg,
        &["apply", "-f", "-"],
        Some(&cm(&ns, "bad", bad_key, profile)),
    );
    let out = run();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(bad_key) && err.contains(&format!("{ns}/bad")),
        "{err}"
    );
    assert!(!root.path().join("ironclaw-plain.json").exists());
    assert!(!root.path().join(bad_key).exists());
    assert!(f.exists());
    kubectl(&kcfg, &["delete", "namespace", &ns, "--wait=false"], None);
}

/// Waits up to `secs` for `f` to hold.
fn wait(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn install_profiles_watches_and_writes_each_new_profile_at_once() {
    let kcfg = kubeconfig();
    let id = format!("{:06x}", rand::random::<u32>() & 0xffffff);
    let ns = format!("ic-profw-{id}");
    kubectl(&kcfg, &["create", "namespace", &ns], None);
    let labelled = |name: &str, key: &str, value: &str| {
        let mut v: serde_json::Value = serde_json::from_str(&cm(&ns, name, key, value)).unwrap();
        v["metadata"]["labels"]["ironclaw.dev/test-run"] = serde_json::json!(id);
        v.to_string()
    };
    let profile = r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[]}"#;
    let first = format!("ironclaw-{id}-first.json");
    kubectl(
        &kcfg,
        &["apply", "-f", "-"],
        Some(&labelled("first", &first, profile)),
    );
    let root = tempfile::tempdir().unwrap();
    let stderr_path = root.path().join("stderr.log");
    let out_dir = root.path().join("seccomp");
    std::fs::create_dir(&out_dir).unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let child = Command::new(BIN)
        .args([
            "install-profiles",
            &format!("--selector={SEL},ironclaw.dev/test-run={id}"),
        ])
        .arg(format!("--root={}", out_dir.display()))
        .env("KUBECONFIG", &kcfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let mut child = Kill(child);
    let log = || std::fs::read_to_string(&stderr_path).unwrap_or_default();
    // What exists is written first…
    wait("the existing profile", 20, || out_dir.join(&first).exists());
    wait("the initial list", 20, || log().contains("in step"));
    // …then each new or changed ConfigMap as it happens (no polling interval).
    let second = format!("ironclaw-{id}-second.json");
    let t = std::time::Instant::now();
    kubectl(
        &kcfg,
        &["apply", "-f", "-"],
        Some(&labelled("second", &second, profile)),
    );
    wait("the new profile", 5, || out_dir.join(&second).exists());
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(
        std::fs::read_to_string(out_dir.join(&second)).unwrap(),
        profile
    );
    // A bad one is refused, named, and the watch goes on.
    kubectl(
        &kcfg,
        &["apply", "-f", "-"],
        Some(&labelled("bad", ".hidden.json", profile)),
    );
    wait("the refusal", 5, || log().contains(&format!("{ns}/bad")));
    assert!(!out_dir.join(".hidden.json").exists());
    let third = format!("ironclaw-{id}-third.json");
    kubectl(
        &kcfg,
        &["apply", "-f", "-"],
        Some(&labelled("first", &third, profile)),
    );
    wait("the changed ConfigMap's profile", 5, || {
        out_dir.join(&third).exists()
    });
    assert!(child.0.try_wait().unwrap().is_none(), "{}", log());
    // SIGTERM (the DaemonSet pod's stop) ends it cleanly.
    let st = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let mut status = None;
    wait("exit on SIGTERM", 10, || {
        status = child.0.try_wait().unwrap();
        status.is_some()
    });
    assert!(status.unwrap().success(), "{}", log());
    kubectl(&kcfg, &["delete", "namespace", &ns, "--wait=false"], None);
}
