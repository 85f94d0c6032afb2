#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End to end: the operator's pod under a real container runtime.
//!
//! Against the real API server (`tests/cluster/up`), the real operator binary turns an
//! Allowlist and a Skill into a Deployment; the controller manager creates its Pod. That Pod
//! (`kubectl get pod -o json`, as a kubelet would receive it) and its policy ConfigMap run under
//! podman + runc (`podman kube play`, the kubelet stand-in), with the seccomp profile installed
//! into a seccomp root by the real `ironclaw-sidecar install-profiles`. The images are built
//! offline: the IronClaw image carries the statically linked `ironclaw-sidecar`
//! (`tests/cluster/build-sidecar-static`), the skill image a busybox-static rootfs.
//!
//! Networking: podman's default bridge (CNI) gives the pod its own network namespace, shared by
//! its containers as in Kubernetes. The test's servers listen on the host, reachable from the pod
//! through the bridge's gateway address; podman ignores NetworkPolicy, so only the exec wrapper
//! stands between the skill and those servers — which is the point: the pod shares one network
//! namespace, so NetworkPolicy alone could not keep the skill from the sidecar's admin port or
//! from a direct connection.
//!
//! Inside the skill container every probe runs through the pod's own wrapper command (the skill
//! container's `command` up to `--`, as the operator wrote it), with the same policy file.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// runc (crun fails on this host's hybrid cgroups) and explicit ulimits.
const CONTAINERS_CONF: &str = "[containers]\ndefault_ulimits = [\"nofile=20000:20000\",\"nproc=4096:4096\"]\n[engine]\nruntime = \"runc\"\n";

/// Starts (or reuses) the test control plane and installs the CRDs; returns the kubeconfig.
fn kubeconfig() -> PathBuf {
    let path = match std::env::var("IRONCLAW_TEST_KUBECONFIG") {
        Ok(p) => PathBuf::from(p),
        Err(_) => {
            let up = repo_root().join("tests/cluster/up");
            let out = Command::new("bash").arg(&up).output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "the test control plane did not start; run tests/deps/operator.sh first.\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let line = stdout
                .lines()
                .find_map(|l| l.strip_prefix("export KUBECONFIG="))
                .unwrap_or_else(|| {
                    panic!("no `export KUBECONFIG=…` from {}: {stdout}", up.display())
                });
            PathBuf::from(line.trim())
        }
    };
    let crds = repo_root().join("crds/generated/ironclaw-crds.yaml");
    let crds = crds.to_str().unwrap();
    kubectl(
        &path,
        &["apply", "--server-side", "--force-conflicts", "-f", crds],
        None,
    );
    kubectl(
        &path,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/skills.ironclaw.dev",
            "crd/allowlists.ironclaw.dev",
        ],
        None,
    );
    path
}

fn run(cmd: &mut Command, stdin: Option<&[u8]>) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}; run tests/deps/podbin.sh"));
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

/// Like [`run`], but keeps stdin open after writing `input` until the command exits (at most
/// `secs`): busybox `nc` half-closes the connection at the end of its input, which an HTTP
/// server may take for the client going away before it answers.
fn run_holding_stdin(cmd: &mut Command, input: &[u8], secs: u64) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    stdin.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(stdin);
    if child.try_wait().unwrap().is_none() {
        let _ = child.kill();
    }
    child.wait_with_output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "[{}] {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn kubectl(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let out = run(
        Command::new("kubectl")
            .env("KUBECONFIG", kubeconfig)
            .args(args),
        stdin.map(str::as_bytes),
    );
    assert!(out.status.success(), "kubectl {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Everything the test created, removed even when it fails.
struct Cleanup {
    conf: PathBuf,
    kubeconfig: PathBuf,
    operator: Option<Child>,
    pods: Vec<String>,
    volumes: Vec<String>,
    secrets: Vec<String>,
    images: Vec<String>,
    namespace: Option<String>,
}

impl Cleanup {
    fn podman(&self, args: &[&str]) -> Output {
        run(
            Command::new("podman")
                .env("CONTAINERS_CONF", &self.conf)
                .args(args),
            None,
        )
    }

    fn podman_ok(&self, args: &[&str]) -> String {
        let out = self.podman(args);
        assert!(out.status.success(), "podman {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(mut op) = self.operator.take() {
            let _ = op.kill();
            let _ = op.wait();
        }
        if std::env::var_os("IRONCLAW_E2E_KEEP").is_some() {
            eprintln!(
                "IRONCLAW_E2E_KEEP: left pods {:?}, volumes {:?}, secrets {:?}, images {:?}, namespace {:?}",
                self.pods, self.volumes, self.secrets, self.images, self.namespace
            );
            return;
        }
        for p in &self.pods {
            let _ = self.podman(&["pod", "rm", "--force", "--time", "2", p]);
        }
        for sec in &self.secrets {
            let _ = self.podman(&["secret", "rm", sec]);
        }
        for v in &self.volumes {
            let _ = self.podman(&["volume", "rm", "--force", v]);
        }
        for i in &self.images {
            let _ = self.podman(&["rmi", "--force", i]);
        }
        if let Some(ns) = &self.namespace {
            let _ = run(
                Command::new("kubectl")
                    .env("KUBECONFIG", &self.kubeconfig)
                    .args(["delete", "namespace", ns, "--wait=false"]),
                None,
            );
        }
    }
}

/// A TCP server on the host answering every HTTP request with `marker`; counts connections.
struct Server {
    port: u16,
    hits: Arc<AtomicUsize>,
}

fn server(marker: String) -> Server {
    let l = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            h.fetch_add(1, Ordering::SeqCst);
            let marker = marker.clone();
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                while r.read_line(&mut line).is_ok_and(|n| n > 0) {
                    if line == "\r\n" || line == "\n" {
                        break;
                    }
                    line.clear();
                }
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{marker}",
                    marker.len()
                );
            });
        }
    });
    Server { port, hits }
}

fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(3)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let code = buf.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, buf.split_once("\r\n\r\n")?.1.to_owned()))
}

fn wait_until<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s: {what}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `tar` of `root` imported as `image` (with `changes`, e.g. `ENV PATH=…`).
fn import(c: &Cleanup, root: &Path, image: &str, changes: &[&str]) {
    let tar = root.with_extension("tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let mut args = vec!["import", "--quiet"];
    for ch in changes {
        args.extend(["--change", ch]);
    }
    let tar = tar.to_str().unwrap().to_owned();
    args.extend([tar.as_str(), image]);
    c.podman_ok(&args);
}

/// The statically linked `ironclaw-sidecar` (built by `tests/cluster/build-sidecar-static`).
fn static_sidecar() -> PathBuf {
    // The operator's binary lives in <target>/debug: the static build goes to <target>/ironclaw-static.
    let target = Path::new(env!("CARGO_BIN_EXE_ironclaw-operator"))
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .to_path_buf();
    let script = repo_root().join("tests/cluster/build-sidecar-static");
    let mut cmd = Command::new("bash");
    cmd.arg(&script).env("CARGO_TARGET_DIR", &target);
    if let Ok(cargo) = std::env::var("CARGO") {
        cmd.env("CARGO", cargo);
    }
    let out = run(&mut cmd, None);
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        text(&out)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn copy_exec(src: &Path, dst: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
    std::fs::copy(src, dst).unwrap();
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Lines of the sidecar's stdout (`podman logs`) that are audit records.
fn audit_lines(c: &Cleanup, ctr: &str) -> Vec<Value> {
    let out = c.podman(&["logs", ctr]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

fn proc_status(pid: &str, field: &str) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("{field} missing from /proc/{pid}/status"))
        .trim()
        .to_owned()
}

#[test]
fn the_operators_pod_runs_under_podman_and_the_skill_is_confined() {
    let id = format!("{:06x}", rand::random::<u32>() & 0xffffff);
    // IRONCLAW_E2E_KEEP=1 leaves everything in place to look at (docs/operator.md).
    let keep = std::env::var_os("IRONCLAW_E2E_KEEP").is_some();
    let work = tempfile::Builder::new()
        .prefix("ironclaw-e2e-")
        .disable_cleanup(keep)
        .tempdir()
        .unwrap();
    if keep {
        eprintln!("IRONCLAW_E2E_KEEP: files in {}", work.path().display());
    }
    let conf = work.path().join("containers.conf");
    std::fs::write(&conf, CONTAINERS_CONF).unwrap();
    let kcfg = kubeconfig();
    let mut c = Cleanup {
        conf,
        kubeconfig: kcfg.clone(),
        operator: None,
        pods: vec![],
        volumes: vec![],
        secrets: vec![],
        images: vec![],
        namespace: None,
    };

    // ---- images (offline, version-tagged) ----
    let sidecar_bin = static_sidecar();
    let sidecar_image = format!("localhost/ironclaw-sidecar:0.1.0-e2e{id}");
    let skill_image = format!("localhost/ironclaw-e2e-skill:1.0.0-{id}");
    let root = work.path().join("sidecar-rootfs");
    copy_exec(&sidecar_bin, &root.join("usr/local/bin/ironclaw-sidecar"));
    c.images.push(sidecar_image.clone());
    import(&c, &root, &sidecar_image, &["ENV PATH=/usr/local/bin"]);
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "/bin/busybox missing: run tests/deps/operator.sh (busybox-static)"
    );
    let root = work.path().join("skill-rootfs");
    // busybox itself is a shell (never executable without a shell grant); each tool the
    // skill uses is its own copy, as a skill image would ship its own programs.
    copy_exec(busybox, &root.join("bin/busybox"));
    for tool in ["cat", "nc", "unshare", "sleep", "cp", "touch", "env"] {
        copy_exec(busybox, &root.join("usr/bin").join(tool));
    }
    std::fs::create_dir_all(root.join("etc/ironclaw-e2e")).unwrap();
    std::fs::write(root.join("etc/ironclaw-e2e/secret.txt"), "image secret\n").unwrap();
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    std::fs::set_permissions(
        root.join("tmp"),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .unwrap();
    c.images.push(skill_image.clone());
    import(&c, &root, &skill_image, &["ENV PATH=/usr/bin:/bin"]);

    // ---- the shared volume (the PVC of `shared:ro`), with one file ----
    let claim = format!("ironclaw-e2e-shared-{id}");
    c.volumes.push(claim.clone());
    c.podman_ok(&["volume", "create", &claim]);
    let mp = c.podman_ok(&["volume", "inspect", "--format", "{{.Mountpoint}}", &claim]);
    std::fs::write(Path::new(mp.trim()).join("hello.txt"), "shared hello\n").unwrap();

    // ---- host servers: A is granted, B is not ----
    let net: Value = serde_json::from_str(&c.podman_ok(&["network", "inspect", "podman"])).unwrap();
    let gw = net[0]["subnets"][0]["gateway"]
        .as_str()
        .unwrap_or_else(|| panic!("no gateway in `podman network inspect podman`: {net}"))
        .to_owned();
    let marker_a = format!("granted-server-{id}");
    let a = server(marker_a.clone());
    let b = server(format!("ungranted-server-{id}"));

    // ---- the operator makes the workload ----
    let ns = format!("ic-e2e-{id}");
    c.namespace = Some(ns.clone());
    kubectl(&kcfg, &["create", "namespace", &ns], None);
    let skill = format!("probe-{id}");
    let (proxy_port, admin_port) = (free_port(), free_port());
    let listen = free_port();
    let dir = work.path().join("operator");
    std::fs::create_dir_all(&dir).unwrap();
    let stdout = Arc::new(Mutex::new(String::new()));
    let mut op = Command::new(env!("CARGO_BIN_EXE_ironclaw-operator"))
        .args([
            "--namespace",
            &ns,
            "--listen",
            &format!("127.0.0.1:{listen}"),
        ])
        .args(["--lease-seconds", "6", "--resync-seconds", "10"])
        .args([
            "--sidecar-image",
            &sidecar_image,
            "--sidecar-pull-policy",
            "Never",
        ])
        .args(["--proxy-port", &proxy_port.to_string()])
        .args(["--admin-port", &admin_port.to_string()])
        .args(["--shared-claim", &claim])
        .env("KUBECONFIG", &kcfg)
        .env("RUST_LOG", "info,kube=warn")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
        .spawn()
        .unwrap();
    let out = op.stdout.take().unwrap();
    let sink = stdout.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let mut s = sink.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
    c.operator = Some(op);
    // The env grant's Secret: in the API server for the operator's pod spec, and in podman's
    // store for `kube play` (podman 4.3 reads a secret as a JSON map of base64 values).
    let secret_name = format!("e2e-secret-{id}");
    let token = format!("token-{id}");
    let b64 = run(Command::new("base64").args(["-w0"]), Some(token.as_bytes()));
    let b64 = String::from_utf8(b64.stdout).unwrap();
    let secret_file = work.path().join("secret.json");
    std::fs::write(&secret_file, json!({"token": b64}).to_string()).unwrap();
    c.secrets.push(secret_name.clone());
    c.podman_ok(&[
        "secret",
        "create",
        &secret_name,
        secret_file.to_str().unwrap(),
    ]);
    let manifests = format!(
        r#"
apiVersion: v1
kind: Secret
metadata: {{name: {secret_name}, namespace: {ns}}}
data: {{token: {b64}}}
---
apiVersion: ironclaw.dev/v1alpha1
kind: Allowlist
metadata: {{name: default, namespace: {ns}}}
spec:
  skills:
    - name: {skill}
      network: ["{gw}:{pa}"]
      filesystem: ["shared:ro"]
      env:
        - name: E2E_TOKEN
          secretKeyRef: {{name: {secret_name}, key: token}}
---
apiVersion: ironclaw.dev/v1alpha1
kind: Skill
metadata: {{name: {skill}, namespace: {ns}}}
spec:
  image: {skill_image}
  imagePullPolicy: Never
  command: ["sleep", "3600"]
  requests:
    network: ["{gw}:{pa}"]
    filesystem: ["shared:ro"]
    env: ["E2E_TOKEN"]
    shell: false
"#,
        pa = a.port
    );
    kubectl(&kcfg, &["apply", "-f", "-"], Some(&manifests));
    let selector = format!("ironclaw.dev/skill={skill}");
    let pod: Value = wait_until(
        "the controller manager to create the skill's Pod",
        90,
        || {
            let out = kubectl(
                &kcfg,
                &["get", "pods", "-n", &ns, "-l", &selector, "-o", "json"],
                None,
            );
            let v: Value = serde_json::from_str(&out).unwrap();
            v["items"].as_array()?.first().cloned()
        },
    );
    let skill_json: Value = serde_json::from_str(&kubectl(
        &kcfg,
        &["get", "skill", &skill, "-n", &ns, "-o", "json"],
        None,
    ))
    .unwrap();
    let profile_file = skill_json["status"]["seccompProfile"]
        .as_str()
        .unwrap_or_else(|| panic!("no status.seccompProfile: {skill_json}"))
        .to_owned();
    // The operator's NetworkPolicy exists (podman ignores it; the wrapper is what confines).
    kubectl(
        &kcfg,
        &[
            "get",
            "networkpolicy",
            "-n",
            &ns,
            &format!("ironclaw-skill-{skill}"),
        ],
        None,
    );

    // ---- the node installer writes the profile into a seccomp root ----
    let seccomp_root = work.path().join("seccomp");
    std::fs::create_dir_all(&seccomp_root).unwrap();
    let out = run(
        Command::new(&sidecar_bin)
            .args([
                "install-profiles",
                "--selector",
                &format!("ironclaw.dev/seccomp-profile=true,{selector}"),
                "--once",
                "--root",
            ])
            .arg(&seccomp_root)
            .env("KUBECONFIG", &kcfg),
        None,
    );
    assert!(out.status.success(), "install-profiles: {}", text(&out));
    assert!(
        seccomp_root.join(&profile_file).is_file(),
        "{profile_file} not installed: {}",
        text(&out)
    );

    // ---- the Pod, as the kubelet would receive it, under podman ----
    let pod_name = pod["metadata"]["name"].as_str().unwrap().to_owned();
    let mut play_pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name,
            "labels": pod["metadata"]["labels"],
            "annotations": pod["metadata"]["annotations"],
        },
        "spec": pod["spec"],
    });
    // podman cannot pull: the images are local (imagePullPolicy Never is set by the operator).
    for ctr in play_pod["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .chain(play_pod["spec"]["initContainers"].as_array().unwrap())
    {
        assert_eq!(ctr["imagePullPolicy"], "Never", "{ctr}");
    }
    // podman 4.3 removes a one-shot init container right after it exits and races with its
    // own clean-up ("cannot remove container … as it is running"); `always` keeps the exited
    // container instead (a podman-only setting: Kubernetes has no such notion).
    play_pod["metadata"]["annotations"]["io.podman.annotations.init.container.type"] =
        json!("always");
    let policy_cm: Value = serde_json::from_str(&kubectl(
        &kcfg,
        &[
            "get",
            "configmap",
            "-n",
            &ns,
            &format!("ironclaw-skill-{skill}"),
            "-o",
            "json",
        ],
        None,
    ))
    .unwrap();
    let play_cm = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": policy_cm["metadata"]["name"]},
        "data": policy_cm["data"],
    });
    let play = work.path().join("play.yaml");
    std::fs::write(
        &play,
        format!(
            "{}---\n{}",
            serde_yaml::to_string(&play_cm).unwrap(),
            serde_yaml::to_string(&play_pod).unwrap()
        ),
    )
    .unwrap();
    c.pods.push(pod_name.clone());
    c.volumes.push(format!("ironclaw-skill-{skill}"));
    let seccomp_arg = seccomp_root.to_str().unwrap().to_owned();
    c.podman_ok(&[
        "kube",
        "play",
        "--seccomp-profile-root",
        &seccomp_arg,
        play.to_str().unwrap(),
    ]);
    let skill_ctr = format!("{pod_name}-skill");
    let sidecar_ctr = format!("{pod_name}-ironclaw-sidecar");

    // The pod's address (its infra container holds the network namespace).
    let pod_info: Value =
        serde_json::from_str(&c.podman_ok(&["pod", "inspect", &pod_name])).unwrap();
    let infra = pod_info["InfraContainerID"].as_str().unwrap().to_owned();
    let infra_info: Value = serde_json::from_str(&c.podman_ok(&["inspect", &infra])).unwrap();
    let pod_ip = infra_info[0]["NetworkSettings"]["Networks"]
        .as_object()
        .and_then(|m| m.values().find_map(|n| n["IPAddress"].as_str()))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| panic!("no pod IP: {}", infra_info[0]["NetworkSettings"]))
        .to_owned();

    // The sidecar is unaffected: its admin server answers (from outside the pod).
    let admin = format!("{pod_ip}:{admin_port}");
    let (code, body) = wait_until("the sidecar's /live", 60, || http_get(&admin, "/live"));
    assert_eq!((code, body.trim()), (200, "ok"));
    let state = |ctr: &str| {
        c.podman_ok(&[
            "inspect",
            "--format",
            "{{.State.Status}} {{.State.Pid}}",
            ctr,
        ])
        .trim()
        .to_owned()
    };
    let skill_state = wait_until("the skill container running", 60, || {
        let s = state(&skill_ctr);
        s.starts_with("running").then_some(s)
    });
    let skill_pid = skill_state.split_whitespace().nth(1).unwrap().to_owned();
    let sidecar_pid = state(&sidecar_ctr)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned();

    // The skill's own command runs through the wrapper: the wrapper exec'd `sleep` after
    // stacking its own seccomp filter on the runtime's; the sidecar has only the runtime's.
    let cmdline = std::fs::read_to_string(format!("/proc/{skill_pid}/cmdline")).unwrap();
    assert_eq!(
        cmdline.split('\0').collect::<Vec<_>>(),
        ["sleep", "3600", ""],
        "the skill process"
    );
    assert_eq!(proc_status(&skill_pid, "NoNewPrivs"), "1");
    assert_eq!(proc_status(&skill_pid, "Seccomp"), "2");
    assert_eq!(proc_status(&skill_pid, "Seccomp_filters"), "2", "skill");
    assert_eq!(proc_status(&skill_pid, "CapEff"), "0000000000000000");
    assert_eq!(proc_status(&sidecar_pid, "Seccomp_filters"), "1", "sidecar");
    let sidecar_cmd = std::fs::read_to_string(format!("/proc/{sidecar_pid}/cmdline")).unwrap();
    assert!(sidecar_cmd.contains("agent"), "{sidecar_cmd:?}");

    // ---- probes inside the skill container, through the pod's own wrapper command ----
    let skill_spec = pod["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|ctr| ctr["name"] == "skill")
        .unwrap()
        .clone();
    let mut wrapper: Vec<String> = Vec::new();
    for a in skill_spec["command"].as_array().unwrap() {
        wrapper.push(a.as_str().unwrap().to_owned());
        if a == "--" {
            break;
        }
    }
    assert_eq!(
        wrapper.last().map(String::as_str),
        Some("--"),
        "{skill_spec}"
    );
    let proxy_env = skill_spec["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "HTTP_PROXY")
        .and_then(|e| e["value"].as_str())
        .unwrap()
        .to_owned();
    let proxy_addr = proxy_env.trim_start_matches("http://").to_owned();
    let (proxy_host, proxy_port_s) = proxy_addr.rsplit_once(':').unwrap();
    assert_eq!(proxy_port_s, proxy_port.to_string());
    let ws = format!("/workspace/skills/{skill}");
    let probe = |cmd: &[&str], stdin: Option<&str>, wrapped: bool| -> Output {
        let mut args: Vec<String> = vec!["exec".into()];
        if stdin.is_some() {
            args.push("-i".into());
        }
        args.push(skill_ctr.clone());
        if wrapped {
            args.extend(wrapper.iter().cloned());
        }
        args.extend(cmd.iter().map(|s| (*s).to_owned()));
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_CONF", &c.conf).args(&args);
        match stdin {
            Some(input) => run_holding_stdin(&mut cmd, input.as_bytes(), 15),
            None => run(&mut cmd, None),
        }
    };

    // Env: the granted variable (from its Secret) and the proxy settings reach the skill; a
    // variable the container has but the skill was not granted does not.
    let out = run(
        Command::new("podman")
            .env("CONTAINERS_CONF", &c.conf)
            .args(["exec", "--env", "E2E_LEAK=leaked", &skill_ctr])
            .args(&wrapper)
            .arg("env"),
        None,
    );
    let env = text(&out);
    assert!(out.status.success(), "{env}");
    assert!(env.contains(&format!("E2E_TOKEN={token}")), "{env}");
    assert!(env.contains(&format!("HTTP_PROXY={proxy_env}")), "{env}");
    assert!(env.contains(&format!("HOME={ws}")), "{env}");
    assert!(!env.contains("E2E_LEAK"), "{env}");
    let out = run(
        Command::new("podman")
            .env("CONTAINERS_CONF", &c.conf)
            .args(["exec", "--env", "E2E_LEAK=leaked", &skill_ctr, "env"]),
        None,
    );
    assert!(
        text(&out).contains("E2E_LEAK=leaked"),
        "baseline: {}",
        text(&out)
    );

    // A denied syscall: EPERM.
    let out = probe(&["unshare", "-U", "sleep", "0"], None, true);
    assert!(!out.status.success(), "unshare -U ran: {}", text(&out));
    assert!(
        text(&out).contains("Operation not permitted"),
        "{}",
        text(&out)
    );

    // Files: the image's own file is readable without the wrapper, not through it (Landlock).
    let secret = "/etc/ironclaw-e2e/secret.txt";
    let out = probe(&["cat", secret], None, false);
    assert!(
        text(&out).contains("image secret"),
        "baseline: {}",
        text(&out)
    );
    let out = probe(&["cat", secret], None, true);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("Permission denied"), "{}", text(&out));
    assert!(!text(&out).contains("image secret"));
    // The granted shared file reads; it cannot be written (granted read-only).
    let out = probe(&["cat", "/workspace/shared/hello.txt"], None, true);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("shared hello"), "{}", text(&out));
    let out = probe(&["touch", "/workspace/shared/new.txt"], None, true);
    assert!(!out.status.success(), "wrote to shared:ro: {}", text(&out));
    // The own workspace is read-write, but never executable.
    let out = probe(&["cp", "/usr/bin/cat", &format!("{ws}/mycat")], None, true);
    assert!(out.status.success(), "workspace write: {}", text(&out));
    let out = probe(
        &["env", &format!("{ws}/mycat"), "/workspace/shared/hello.txt"],
        None,
        true,
    );
    assert!(
        !out.status.success(),
        "ran a program from the workspace: {}",
        text(&out)
    );
    assert!(text(&out).contains("Permission denied"), "{}", text(&out));
    // No shell without a shell grant.
    let out = probe(&["env", "/bin/busybox", "sh", "-c", "true"], None, true);
    assert!(!out.status.success(), "ran a shell: {}", text(&out));
    assert!(text(&out).contains("Permission denied"), "{}", text(&out));

    // Network: a direct connect to the host's server works from this pod without the wrapper
    // (the network path is open) and fails through it; the server sees nothing.
    let target_a = format!("{gw}:{}", a.port);
    let before = a.hits.load(Ordering::SeqCst);
    let out = probe(&["nc", "-w", "3", &gw, &a.port.to_string()], None, false);
    assert!(
        out.status.success(),
        "baseline direct connect: {}",
        text(&out)
    );
    wait_until("the baseline connection", 10, || {
        (a.hits.load(Ordering::SeqCst) > before).then_some(())
    });
    let before = a.hits.load(Ordering::SeqCst);
    let out = probe(&["nc", "-w", "3", &gw, &a.port.to_string()], None, true);
    assert!(
        !out.status.success(),
        "direct connect through the wrapper: {}",
        text(&out)
    );
    assert!(text(&out).contains("Permission denied"), "{}", text(&out));
    // Nor the sidecar's admin port (same network namespace).
    let out = probe(
        &["nc", "-w", "3", "127.0.0.1", &admin_port.to_string()],
        None,
        true,
    );
    assert!(
        !out.status.success(),
        "reached the admin port: {}",
        text(&out)
    );
    assert!(text(&out).contains("Permission denied"), "{}", text(&out));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        a.hits.load(Ordering::SeqCst),
        before,
        "the direct connect reached the server"
    );

    // Through the sidecar's proxy (HTTP_PROXY of the pod spec): the granted server answers…
    let req = |target: &str| {
        format!("GET http://{target}/ HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n")
    };
    let out = probe(
        &["nc", "-w", "5", proxy_host, proxy_port_s],
        Some(&req(&target_a)),
        true,
    );
    assert!(text(&out).contains("200 OK"), "{}", text(&out));
    assert!(text(&out).contains(&marker_a), "{}", text(&out));
    assert_eq!(a.hits.load(Ordering::SeqCst), before + 1);
    // …the ungranted one is refused, and the sidecar records NETWORK_BLOCK on its stdout.
    let target_b = format!("{gw}:{}", b.port);
    let out = probe(
        &["nc", "-w", "5", proxy_host, proxy_port_s],
        Some(&req(&target_b)),
        true,
    );
    assert!(!text(&out).contains("200 OK"), "{}", text(&out));
    assert_eq!(
        b.hits.load(Ordering::SeqCst),
        0,
        "the ungranted server was reached"
    );
    let block = wait_until("NETWORK_BLOCK in the sidecar's log", 10, || {
        audit_lines(&c, &sidecar_ctr)
            .into_iter()
            .find(|l| l["event"] == "NETWORK_BLOCK" && l["resource"] == target_b.as_str())
    });
    assert_eq!(block["skill"], skill.as_str(), "{block}");
    assert_eq!(block["blocked"], true, "{block}");
    assert_eq!(block["granted"], json!([target_a]), "{block}");
    assert!(
        block["sessionId"].is_string() && block["ts"].is_string(),
        "{block}"
    );
    let blocks = audit_lines(&c, &sidecar_ctr);
    assert!(
        !blocks.iter().any(|l| l["resource"] == target_a.as_str()),
        "the granted request was logged as a block: {blocks:?}"
    );

    // The sidecar is still serving after all this.
    assert_eq!(http_get(&admin, "/live").map(|(c, _)| c), Some(200));
    let metrics = http_get(&admin, "/metrics").unwrap().1;
    assert!(metrics.contains("ironclaw"), "{metrics}");

    // No secret value in any log: the sidecar's stdout/stderr, the operator's audit lines.
    let logs = text(&c.podman(&["logs", &sidecar_ctr]));
    assert!(!logs.contains(&token), "the sidecar logged the secret");
    let audit = stdout.lock().unwrap().clone();
    assert!(!audit.contains(&token), "the operator logged the secret");

    // The kubelet's stop (SIGTERM to the container's PID 1) ends the sidecar at once, cleanly.
    let t = Instant::now();
    c.podman_ok(&["stop", "--time", "20", &sidecar_ctr]);
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "the sidecar ignored SIGTERM ({:?})",
        t.elapsed()
    );
    let code = c.podman_ok(&["inspect", "--format", "{{.State.ExitCode}}", &sidecar_ctr]);
    assert_eq!(code.trim(), "0");
}
