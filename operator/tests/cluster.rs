#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The operator against a real Kubernetes API server (1.20.2 built from Debian's source by
//! `tests/cluster/up`, with etcd and kube-controller-manager on 127.0.0.1).
//!
//! The control plane is started by the test itself (`tests/cluster/up` is idempotent and
//! reuses a running one); set IRONCLAW_TEST_KUBECONFIG to use another test cluster. If the
//! cluster cannot start the tests fail with the script's output: they never skip.
//!
//! The operator runs as its real binary, one per test namespace (`--namespace`), and its
//! stdout (the audit lines) is captured.

use ironclaw_crds::allowlist::Allowlist;
use ironclaw_crds::skill::Skill;
use ironclaw_operator::authz::{Decision, authorise};
use ironclaw_operator::seccomp::default_syscalls;
use ironclaw_operator::workload::{WorkloadConfig, build};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, Config, Resource};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Starts (or reuses) the test control plane and installs the CRDs; returns the kubeconfig.
fn kubeconfig() -> PathBuf {
    static KCFG: OnceLock<PathBuf> = OnceLock::new();
    KCFG.get_or_init(|| {
        let path = match std::env::var("IRONCLAW_TEST_KUBECONFIG") {
            Ok(p) => PathBuf::from(p),
            Err(_) => {
                let up = repo_root().join("tests/cluster/up");
                let out = Command::new("bash").arg(&up).output().unwrap_or_else(|e| {
                    panic!("cannot run {}: {e}", up.display())
                });
                let stdout = String::from_utf8_lossy(&out.stdout);
                assert!(
                    out.status.success(),
                    "the test control plane did not start ({} exited {}); run tests/deps/operator.sh first.\nstdout:\n{stdout}\nstderr:\n{}",
                    up.display(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
                let line = stdout
                    .lines()
                    .find_map(|l| l.strip_prefix("export KUBECONFIG="))
                    .unwrap_or_else(|| panic!("{} printed no `export KUBECONFIG=…`: {stdout}", up.display()));
                PathBuf::from(line.trim())
            }
        };
        let crds = repo_root().join("crds/generated/ironclaw-crds.yaml");
        let st = Command::new("kubectl")
            .env("KUBECONFIG", &path)
            .args(["apply", "--server-side", "--force-conflicts", "-f"])
            .arg(&crds)
            .status()
            .expect("kubectl");
        assert!(st.success(), "applying {} failed", crds.display());
        let st = Command::new("kubectl")
            .env("KUBECONFIG", &path)
            .args(["wait", "--for=condition=Established", "--timeout=60s", "crd/skills.ironclaw.dev", "crd/allowlists.ironclaw.dev", "crd/channels.ironclaw.dev"])
            .status()
            .expect("kubectl");
        assert!(st.success(), "CRDs not Established");
        path
    })
    .clone()
}

async fn client() -> Client {
    let path = kubeconfig();
    let kc = Kubeconfig::read_from(&path).unwrap();
    let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(cfg).unwrap()
}

async fn namespace(client: &Client, prefix: &str) -> String {
    let name = format!("{prefix}-{:06x}", rand::random::<u32>() & 0xffffff);
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    name
}

async fn drop_namespace(client: &Client, ns: &str) {
    let _ = Api::<Namespace>::all(client.clone())
        .delete(ns, &DeleteParams::background())
        .await;
}

/// The real operator binary, scoped to one namespace.
struct Operator {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr_path: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Operator {
    fn start(ns: &str) -> Operator {
        Self::start_with(ns, &kubeconfig(), &[])
    }

    fn start_with(ns: &str, kubeconfig: &Path, extra: &[&str]) -> Operator {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let stderr_path = dir.path().join("stderr");
        let mut child = Command::new(env!("CARGO_BIN_EXE_ironclaw-operator"))
            .args(["--namespace", ns, "--listen", &format!("127.0.0.1:{port}")])
            .args(["--lease-seconds", "6", "--resync-seconds", "10"])
            .args([
                "--sidecar-image",
                "localhost/ironclaw-sidecar:0.1.0",
                "--sidecar-pull-policy",
                "Never",
            ])
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info,kube=warn")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        let stdout = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().unwrap();
        let sink = stdout.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let op = Operator {
            child,
            stdout,
            stderr_path,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while http_get(port, "/ready").map(|(c, _)| c) != Some(200) {
            assert!(
                Instant::now() < deadline,
                "operator not ready in 60 s; stderr:\n{}",
                op.stderr()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        op
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    fn audit(&self) -> Vec<Value> {
        self.stdout
            .lock()
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}"))
            })
            .collect()
    }

    fn metric(&self, name_and_labels: &str) -> f64 {
        let (_, body) = http_get(self.port, "/metrics").unwrap();
        body.lines()
            .find_map(|l| {
                l.strip_prefix(name_and_labels)
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0.0)
    }

    /// Graceful stop (SIGTERM): the operator releases its lease.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "operator did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let code = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((code, body))
}

async fn wait_for<T, F, Fut>(what: &str, secs: u64, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(t) = f().await {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn apply_yaml(client: &Client, ns: &str, yaml: &str) {
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let mut v: Value = serde::Deserialize::deserialize(doc).unwrap();
        v["metadata"]["namespace"] = json!(ns);
        let obj: DynamicObject = serde_json::from_value(v.clone()).unwrap();
        let gvk = GroupVersionKind::try_from(obj.types.as_ref().unwrap()).unwrap();
        let ar = ApiResource::from_gvk(&gvk);
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
        api.patch(
            obj.metadata.name.as_deref().unwrap(),
            &PatchParams::apply("ironclaw-test").force(),
            &Patch::Apply(&obj),
        )
        .await
        .unwrap_or_else(|e| panic!("applying {v}: {e}"));
    }
}

async fn create_dynamic(client: &Client, ns: &str, v: Value) -> Result<DynamicObject, kube::Error> {
    let obj: DynamicObject = serde_json::from_value(v).unwrap();
    let gvk = GroupVersionKind::try_from(obj.types.as_ref().unwrap()).unwrap();
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ns, &ApiResource::from_gvk(&gvk));
    api.create(&PostParams::default(), &obj).await
}

fn err_text(r: Result<DynamicObject, kube::Error>) -> String {
    match r {
        Ok(o) => panic!("the API server accepted a bad object: {o:?}"),
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 422, "{e:?}");
            e.message
        }
        Err(e) => panic!("unexpected error {e}"),
    }
}

const EXAMPLES: &str = include_str!("../../crds/examples/himalaya.yaml");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crds_are_established_and_the_server_refuses_bad_objects() {
    let client = client().await;
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    for name in [
        "skills.ironclaw.dev",
        "allowlists.ironclaw.dev",
        "channels.ironclaw.dev",
    ] {
        let crd = crds.get(name).await.unwrap();
        let established = crd
            .status
            .unwrap()
            .conditions
            .unwrap_or_default()
            .into_iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        assert!(established, "{name} not Established");
    }
    let ns = namespace(&client, "ic-crd").await;
    // The issue's three examples apply as written.
    apply_yaml(&client, &ns, EXAMPLES).await;

    let channel = |spec: Value| {
        json!({"apiVersion": "ironclaw.dev/v1alpha1", "kind": "Channel",
        "metadata": {"name": "bad"}, "spec": spec})
    };
    let base = json!({"type": "telegram", "botTokenSecretRef": {"name": "t", "key": "k"}, "allowFrom": ["1"]});
    let with = |k: &str, v: Value| {
        let mut s = base.clone();
        s[k] = v;
        channel(s)
    };

    let m = err_text(create_dynamic(&client, &ns, with("dmPolicy", json!("open"))).await);
    assert!(
        m.contains("spec.dmPolicy")
            && m.contains(r#"Unsupported value: "open""#)
            && m.contains(r#"supported values: "allowlist""#),
        "{m}"
    );
    let m = err_text(create_dynamic(&client, &ns, with("allowFrom", json!(["*"]))).await);
    assert!(
        m.contains("spec.allowFrom") && m.contains("should match"),
        "{m}"
    );
    let m = err_text(create_dynamic(&client, &ns, with("allowFrom", json!([]))).await);
    assert!(
        m.contains("spec.allowFrom") && m.contains("at least 1 items"),
        "{m}"
    );
    let m = err_text(
        create_dynamic(
            &client,
            &ns,
            with("rateLimit", json!({"messagesPerHour": 0})),
        )
        .await,
    );
    assert!(m.contains("spec.rateLimit.messagesPerHour"), "{m}");

    let skill = |requests: Value| {
        json!({"apiVersion": "ironclaw.dev/v1alpha1", "kind": "Skill",
        "metadata": {"name": "bad"}, "spec": {"image": "i:1", "command": ["c"], "requests": requests}})
    };
    let m =
        err_text(create_dynamic(&client, &ns, skill(json!({"network": ["imap.gmail.com"]}))).await);
    assert!(
        m.contains("spec.requests.network") && m.contains("should match"),
        "{m}"
    );
    let m = err_text(
        create_dynamic(
            &client,
            &ns,
            skill(json!({"network": ["example.com:99999"]})),
        )
        .await,
    );
    assert!(m.contains("spec.requests.network"), "{m}");
    let m = err_text(create_dynamic(&client, &ns, skill(json!({"filesystem": ["shared"]}))).await);
    assert!(
        m.contains("spec.requests.filesystem") && m.contains("should match"),
        "{m}"
    );
    let m = err_text(create_dynamic(&client, &ns, json!({"apiVersion": "ironclaw.dev/v1alpha1", "kind": "Allowlist",
        "metadata": {"name": "bad"}, "spec": {"skills": [{"name": "x", "env": [{"name": "IMAP_PASSWORD"}]}]}})).await);
    assert!(m.contains("secretKeyRef") && m.contains("Required"), "{m}");
    let m = err_text(
        create_dynamic(
            &client,
            &ns,
            json!({"apiVersion": "ironclaw.dev/v1alpha1", "kind": "Allowlist",
        "metadata": {"name": "bad"}, "spec": {"skills": [{"name": "Bad_Name"}]}}),
        )
        .await,
    );
    assert!(
        m.contains("spec.skills.name") || m.contains("spec.skills[0].name"),
        "{m}"
    );
    drop_namespace(&client, &ns).await;
}

/// Asserts every field of `want` is in `got` with the same value (the server adds defaults).
fn assert_subset(want: &Value, got: &Value, path: &str) {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, v) in w {
                let gv = g
                    .get(k)
                    .unwrap_or_else(|| panic!("{path}.{k} missing on the server"));
                assert_subset(v, gv, &format!("{path}.{k}"));
            }
        }
        (Value::Array(w), Value::Array(g)) => {
            assert_eq!(
                w.len(),
                g.len(),
                "{path}: length differs: want {want} got {got}"
            );
            for (i, (a, b)) in w.iter().zip(g).enumerate() {
                assert_subset(a, b, &format!("{path}[{i}]"));
            }
        }
        _ => assert_eq!(want, got, "{path}"),
    }
}

fn rv<K: Resource>(o: &K) -> String {
    o.meta().resource_version.clone().unwrap()
}

async fn owned_rvs(client: &Client, ns: &str) -> Vec<String> {
    vec![
        rv(&Api::<Deployment>::namespaced(client.clone(), ns)
            .get("ironclaw-skill-himalaya")
            .await
            .unwrap()),
        rv(&Api::<NetworkPolicy>::namespaced(client.clone(), ns)
            .get("ironclaw-skill-himalaya")
            .await
            .unwrap()),
        rv(&Api::<ConfigMap>::namespaced(client.clone(), ns)
            .get("ironclaw-skill-himalaya")
            .await
            .unwrap()),
        rv(&Api::<ConfigMap>::namespaced(client.clone(), ns)
            .get("ironclaw-seccomp-himalaya")
            .await
            .unwrap()),
        rv(&Api::<Skill>::namespaced(client.clone(), ns)
            .get("himalaya")
            .await
            .unwrap()),
    ]
}

fn condition(s: &Skill, t: &str) -> Option<(String, String)> {
    s.status
        .as_ref()?
        .condition(t)
        .map(|c| (format!("{:?}", c.status), c.reason.clone()))
}

async fn events_for(client: &Client, ns: &str, name: &str) -> Vec<(String, String)> {
    let api = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), ns);
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skill_lifecycle_against_the_api_server() {
    let client = client().await;
    let ns = namespace(&client, "ic-op").await;
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(EXAMPLES)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let yaml = |v: &Value| serde_yaml::to_string(v).unwrap();
    let skills = Api::<Skill>::namespaced(client.clone(), &ns);
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns);
    let op = Operator::start(&ns);

    // 1. A Skill without an Allowlist entry: no workload, status, Event, ALLOWLIST_DENY.
    apply_yaml(&client, &ns, &yaml(&docs[0])).await;
    wait_for("Authorised=False/NotAllowlisted", 30, || async {
        let s = skills.get("himalaya").await.ok()?;
        (condition(&s, "Authorised") == Some(("False".into(), "NotAllowlisted".into())))
            .then_some(())
    })
    .await;
    assert!(
        deployments
            .get_opt("ironclaw-skill-himalaya")
            .await
            .unwrap()
            .is_none()
    );
    let deny: Vec<Value> = op
        .audit()
        .into_iter()
        .filter(|r| r["event"] == "ALLOWLIST_DENY")
        .collect();
    assert_eq!(deny.len(), 1, "{deny:?}");
    assert_eq!(deny[0]["skill"], "himalaya");
    assert_eq!(deny[0]["namespace"], ns.as_str());
    assert_eq!(deny[0]["blocked"], true);
    let ev = wait_for("NotAllowlisted Event", 20, || async {
        let e = events_for(&client, &ns, "himalaya").await;
        e.iter().any(|(r, _)| r == "NotAllowlisted").then_some(e)
    })
    .await;
    assert!(
        ev.iter().any(|(_, n)| n.contains("no Allowlist entry")),
        "{ev:?}"
    );

    // 2. With a grant: the exact objects of the build step, applied and owned.
    apply_yaml(&client, &ns, &yaml(&docs[1])).await;
    let dep = wait_for("the Deployment", 30, || async {
        deployments
            .get_opt("ironclaw-skill-himalaya")
            .await
            .ok()
            .flatten()
    })
    .await;
    let skill = wait_for("Authorised=True", 30, || async {
        let s = skills.get("himalaya").await.ok()?;
        (condition(&s, "Authorised") == Some(("True".into(), "Allowlisted".into()))).then_some(s)
    })
    .await;
    let allowlists = Api::<Allowlist>::namespaced(client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let Decision::Authorised {
        effective,
        env_secrets,
        ..
    } = authorise("himalaya", &skill.spec.validate().unwrap(), &allowlists)
    else {
        panic!("not authorised")
    };
    let cfg = WorkloadConfig {
        sidecar_image: "localhost/ironclaw-sidecar:0.1.0".into(),
        sidecar_pull_policy: Some("Never".into()),
        ..WorkloadConfig::default()
    };
    let want = build(&skill, &effective, &env_secrets, &default_syscalls(), &cfg).unwrap();
    assert_subset(
        &serde_json::to_value(&want.deployment).unwrap()["spec"],
        &serde_json::to_value(&dep).unwrap()["spec"],
        "deployment.spec",
    );
    let np = Api::<NetworkPolicy>::namespaced(client.clone(), &ns)
        .get("ironclaw-skill-himalaya")
        .await
        .unwrap();
    assert_subset(
        &serde_json::to_value(&want.network_policy).unwrap()["spec"],
        &serde_json::to_value(&np).unwrap()["spec"],
        "networkpolicy.spec",
    );
    let prof = Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .get("ironclaw-seccomp-himalaya")
        .await
        .unwrap();
    assert_eq!(prof.data, want.profile.data);
    assert_eq!(
        dep.metadata.owner_references.unwrap()[0].uid,
        skill.metadata.uid.clone().unwrap()
    );
    let status = skill.status.clone().unwrap();
    assert_eq!(
        status.seccomp_profile_hash.as_deref(),
        Some(want.profile_hash.as_str())
    );
    assert_eq!(
        status.seccomp_profile.as_deref(),
        Some(want.profile_file.as_str())
    );
    assert_eq!(status.observed_generation, skill.metadata.generation);
    assert!(status.pending_grants.is_none());

    // The controller manager makes the pod: the 1.20 API accepted every field, including the
    // seccomp profile as field and as legacy annotation.
    let pod = wait_for("the skill's Pod", 60, || async {
        Api::<Pod>::namespaced(client.clone(), &ns)
            .list(&ListParams::default().labels("ironclaw.dev/skill=himalaya"))
            .await
            .ok()?
            .items
            .into_iter()
            .next()
    })
    .await;
    let podj = serde_json::to_value(&pod).unwrap();
    assert_eq!(
        podj["metadata"]["annotations"]["container.seccomp.security.alpha.kubernetes.io/skill"],
        format!("localhost/{}", want.profile_file)
    );
    let sc = podj["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "skill")
        .unwrap()["securityContext"]
        .clone();
    assert_eq!(sc["seccompProfile"]["type"], "Localhost");
    assert_eq!(podj["spec"]["automountServiceAccountToken"], false);
    assert!(
        podj["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v.get("projected").is_none() && v.get("secret").is_none()),
        "no service-account token volume: {}",
        podj["spec"]["volumes"]
    );

    // 3. A widened Skill: PendingGrants, ALLOWLIST_VIOLATION, Event, and no new permissions.
    let before = owned_rvs(&client, &ns).await;
    let mut widened = docs[0].clone();
    widened["spec"]["requests"]["network"] =
        json!(["imap.gmail.com:993", "smtp.gmail.com:587", "attacker.io:80"]);
    widened["spec"]["requests"]["shell"] = json!(true);
    apply_yaml(&client, &ns, &yaml(&widened)).await;
    let s = wait_for("PendingGrants=True", 30, || async {
        let s = skills.get("himalaya").await.ok()?;
        (condition(&s, "PendingGrants") == Some(("True".into(), "RequestsExceedGrants".into())))
            .then_some(s)
    })
    .await;
    assert_eq!(
        s.status.as_ref().unwrap().pending_grants.as_deref(),
        Some("network attacker.io:80, shell")
    );
    let viol: Vec<Value> = wait_for("ALLOWLIST_VIOLATION records", 10, || async {
        let v: Vec<Value> = op
            .audit()
            .into_iter()
            .filter(|r| r["event"] == "ALLOWLIST_VIOLATION")
            .collect();
        (v.len() >= 2).then_some(v)
    })
    .await;
    assert_eq!(viol.len(), 2, "{viol:?}");
    assert_eq!(viol[0]["action"], "network");
    assert_eq!(viol[0]["resource"], "attacker.io:80");
    assert_eq!(
        viol[0]["granted"],
        json!(["imap.gmail.com:993", "smtp.gmail.com:587"])
    );
    assert_eq!(viol[1]["action"], "shell");
    wait_for("PendingGrants Event", 20, || async {
        events_for(&client, &ns, "himalaya")
            .await
            .iter()
            .any(|(r, n)| r == "PendingGrants" && n.contains("attacker.io:80"))
            .then_some(())
    })
    .await;
    let after = owned_rvs(&client, &ns).await;
    assert_eq!(
        before[..4],
        after[..4],
        "the workload changed for a widened Skill"
    );

    // 4. Restarting the operator changes nothing that is already right.
    let settled = owned_rvs(&client, &ns).await;
    op.stop();
    let op2 = Operator::start(&ns);
    wait_for("the new operator to reconcile", 30, || async {
        (op2.metric("ironclaw_operator_reconciliations_total{kind=\"Skill\",outcome=\"Ok\"}")
            >= 1.0)
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        owned_rvs(&client, &ns).await,
        settled,
        "a restart changed objects that were right"
    );
    assert!(
        op2.audit().is_empty(),
        "a restart re-emitted audit records: {:?}",
        op2.audit()
    );
    assert_eq!(
        op2.metric("ironclaw_operator_reconciliations_total{kind=\"Skill\",outcome=\"Error\"}"),
        0.0,
        "{}",
        op2.stderr()
    );
    let (code, _) = http_get(op2.port, "/live").unwrap();
    assert_eq!(code, 200);

    // 5. Removing the Allowlist entry takes the workload away at once.
    Api::<Allowlist>::namespaced(client.clone(), &ns)
        .delete("default", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the workload to go", 30, || async {
        let gone = deployments
            .get_opt("ironclaw-skill-himalaya")
            .await
            .ok()?
            .is_none()
            && Api::<NetworkPolicy>::namespaced(client.clone(), &ns)
                .get_opt("ironclaw-skill-himalaya")
                .await
                .ok()?
                .is_none()
            && Api::<ConfigMap>::namespaced(client.clone(), &ns)
                .get_opt("ironclaw-seccomp-himalaya")
                .await
                .ok()?
                .is_none();
        gone.then_some(())
    })
    .await;
    let s = skills.get("himalaya").await.unwrap();
    assert_eq!(
        condition(&s, "Authorised"),
        Some(("False".into(), "NotAllowlisted".into()))
    );
    assert!(op2.audit().iter().any(|r| r["event"] == "ALLOWLIST_DENY"));
    op2.stop();
    drop_namespace(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_operator_leads_and_channels_get_a_status() {
    let client = client().await;
    let ns = namespace(&client, "ic-le").await;
    let a = Operator::start(&ns);
    // A second replica waits: not ready while the first holds the lease.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut b = Command::new(env!("CARGO_BIN_EXE_ironclaw-operator"))
        .args([
            "--namespace",
            &ns,
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--lease-seconds",
            "6",
        ])
        .env("KUBECONFIG", kubeconfig())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(http_get(port, "/ready").map(|(c, _)| c), Some(503));
    assert_eq!(http_get(port, "/live").map(|(c, _)| c), Some(200));

    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(EXAMPLES)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    apply_yaml(&client, &ns, &serde_yaml::to_string(&docs[2]).unwrap()).await;
    let ch: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "ironclaw.dev",
            "v1alpha1",
            "Channel",
        )),
    );
    wait_for("Channel Valid=True", 30, || async {
        let c = ch.get("telegram").await.ok()?;
        let conds = c.data.get("status")?.get("conditions")?.as_array()?.clone();
        conds
            .iter()
            .any(|c| c["type"] == "Valid" && c["status"] == "True")
            .then_some(())
    })
    .await;

    // When the leader stops gracefully the standby takes over.
    a.stop();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_get(port, "/ready").map(|(c, _)| c) != Some(200) {
        assert!(Instant::now() < deadline, "standby did not take over");
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = b.kill();
    let _ = b.wait();
    drop_namespace(&client, &ns).await;
}

/// `helm ARGS…` (the real helm, installed by tests/deps/operator.sh); returns stdout.
fn helm(kubeconfig: &Path, args: &[&str]) -> String {
    let out = Command::new("helm")
        .env("KUBECONFIG", kubeconfig)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run helm ({e}); run tests/deps/operator.sh"));
    assert!(
        out.status.success(),
        "helm {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The chart rendered by `helm template` for `kube_version`.
fn render_chart(kube_version: &str, ns: &str, release: &str) -> String {
    let chart = repo_root().join("charts/ironclaw");
    helm(
        &kubeconfig(),
        &[
            "template",
            release,
            chart.to_str().unwrap(),
            "--namespace",
            ns,
            "--kube-version",
            kube_version,
        ],
    )
}

fn kubectl(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new("kubectl")
        .env("KUBECONFIG", kubeconfig)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_renders_installs_upgrades_and_uninstalls_the_chart_and_its_rbac_suffices() {
    let client = client().await;
    let kcfg = kubeconfig();
    let release_ns = namespace(&client, "ic-chart").await;
    let release = format!("icx{}", &release_ns[release_ns.len() - 6..]);
    let old = render_chart("v1.20.2", &release_ns, &release);
    let new = render_chart("v1.30.0", &release_ns, &release);
    assert!(
        !old.contains("x-kubernetes-validations"),
        "plain CRDs before 1.25"
    );
    assert!(
        new.contains("x-kubernetes-validations"),
        "CEL CRDs from 1.25"
    );
    for kind in [
        "kind: DaemonSet",
        "kind: Deployment",
        "kind: ClusterRole",
        "install-profiles",
        "--lease-namespace=",
    ] {
        assert!(old.contains(kind), "{kind} missing from the chart");
    }
    // The server validates every object of the chart (dry run), then it is applied for real.
    let dry = kubectl(
        &kcfg,
        &[
            "apply",
            "--dry-run=server",
            "--server-side",
            "--force-conflicts",
            "-f",
            "-",
        ],
        Some(&old),
    );
    assert!(
        dry.contains(&format!(
            "deployment.apps/{release}-operator serverside-applied (server dry run)"
        )),
        "{dry}"
    );
    // A real `helm install`. Helm 4 applies server-side by default, which this 1.20 API server
    // supports. The CRDs exist already (every test applies them with kubectl) and the
    // cluster-wide objects (CRDs, the user ClusterRoles) may come from earlier runs:
    // `--take-ownership --force-conflicts` adopts them into this release.
    let chart = repo_root().join("charts/ironclaw");
    let chart = chart.to_str().unwrap();
    let lint = helm(&kcfg, &["lint", "--strict", chart]);
    assert!(
        lint.contains("1 chart(s) linted, 0 chart(s) failed"),
        "{lint}"
    );
    // Whatever happens below, the release (and its cluster-wide objects) goes at the end.
    struct Uninstall(PathBuf, String, String);
    impl Drop for Uninstall {
        fn drop(&mut self) {
            let _ = Command::new("helm")
                .env("KUBECONFIG", &self.0)
                .args([
                    "uninstall",
                    &self.1,
                    "--namespace",
                    &self.2,
                    "--ignore-not-found",
                ])
                .output();
        }
    }
    let _uninstall = Uninstall(kcfg.clone(), release.clone(), release_ns.clone());
    let out = helm(
        &kcfg,
        &[
            "install",
            &release,
            chart,
            "--namespace",
            &release_ns,
            "--take-ownership",
            "--force-conflicts",
        ],
    );
    assert!(out.contains("STATUS: deployed"), "{out}");
    check_release_objects(&client, &release_ns, &release).await;
    // The node installer may list and watch ConfigMaps everywhere (install-profiles is a
    // watch), and nothing more.
    let installer = format!("system:serviceaccount:{release_ns}:{release}-node-installer");
    for (verb, want) in [
        ("list", "yes"),
        ("watch", "yes"),
        ("create", "no"),
        ("delete", "no"),
    ] {
        let can = Command::new("kubectl")
            .env("KUBECONFIG", &kcfg)
            .args([
                "auth",
                "can-i",
                verb,
                "configmaps",
                "--all-namespaces",
                "--as",
                &installer,
            ])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&can.stdout).trim(),
            want,
            "node installer: {verb} configmaps"
        );
    }

    // The operator, running as the chart's ServiceAccount, can do its whole job.
    let token = kubectl(
        &kcfg,
        &[
            "create",
            "token",
            &format!("{release}-operator"),
            "-n",
            &release_ns,
            "--duration=10m",
        ],
        None,
    );
    let kc: Value = serde_yaml::from_str(&std::fs::read_to_string(&kcfg).unwrap()).unwrap();
    let mut sa_kc = kc.clone();
    sa_kc["users"] = json!([{"name": "sa", "user": {"token": token.trim()}}]);
    sa_kc["contexts"][0]["context"]["user"] = json!("sa");
    let dir = tempfile::tempdir().unwrap();
    let sa_path = dir.path().join("kubeconfig");
    std::fs::write(&sa_path, serde_yaml::to_string(&sa_kc).unwrap()).unwrap();
    // The ServiceAccount may not edit Allowlists (separation of duties).
    let can = Command::new("kubectl")
        .env("KUBECONFIG", &sa_path)
        .args(["auth", "can-i", "create", "allowlists.ironclaw.dev"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&can.stdout).trim(), "no");

    let app_ns = namespace(&client, "ic-chart-app").await;
    let op = Operator::start_with(&app_ns, &sa_path, &["--lease-namespace", &release_ns]);
    apply_yaml(&client, &app_ns, EXAMPLES).await;
    let skills = Api::<Skill>::namespaced(client.clone(), &app_ns);
    wait_for("Authorised=True under the chart's RBAC", 30, || async {
        let s = skills.get("himalaya").await.ok()?;
        (condition(&s, "Authorised") == Some(("True".into(), "Allowlisted".into()))).then_some(())
    })
    .await;
    let deployments = Api::<Deployment>::namespaced(client.clone(), &app_ns);
    wait_for("the Deployment", 30, || async {
        deployments
            .get_opt("ironclaw-skill-himalaya")
            .await
            .ok()
            .flatten()
    })
    .await;
    Api::<Allowlist>::namespaced(client.clone(), &app_ns)
        .delete("default", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the workload to go under the chart's RBAC", 30, || async {
        deployments
            .get_opt("ironclaw-skill-himalaya")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    assert!(
        !op.stderr().contains("forbidden"),
        "RBAC refused something: {}",
        op.stderr()
    );
    op.stop();
    drop_namespace(&client, &app_ns).await;

    // `helm upgrade`: a changed value reaches the objects, in a new revision.
    let deployments = Api::<Deployment>::namespaced(client.clone(), &release_ns);
    let op_name = format!("{release}-operator");
    let out = helm(
        &kcfg,
        &[
            "upgrade",
            &release,
            chart,
            "--namespace",
            &release_ns,
            "--reuse-values",
            "--force-conflicts",
            "--set",
            "operator.replicas=2",
        ],
    );
    assert!(out.contains("REVISION: 2"), "{out}");
    let d = deployments.get(&op_name).await.unwrap();
    assert_eq!(d.spec.unwrap().replicas, Some(2));

    // `helm uninstall`: the release's objects go; the CRDs stay (resource-policy keep), and
    // with them every Skill, Allowlist and Channel in the cluster.
    let out = helm(
        &kcfg,
        &["uninstall", &release, "--namespace", &release_ns, "--wait"],
    );
    assert!(out.contains("uninstalled"), "{out}");
    assert!(deployments.get_opt(&op_name).await.unwrap().is_none());
    assert!(
        Api::<DaemonSet>::namespaced(client.clone(), &release_ns)
            .get_opt(&format!("{release}-node-installer"))
            .await
            .unwrap()
            .is_none()
    );
    for cr in [&op_name, &format!("{release}-node-installer")] {
        assert!(
            Api::<ClusterRole>::all(client.clone())
                .get_opt(cr)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            Api::<ClusterRoleBinding>::all(client.clone())
                .get_opt(cr)
                .await
                .unwrap()
                .is_none()
        );
    }
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    for name in [
        "skills.ironclaw.dev",
        "allowlists.ironclaw.dev",
        "channels.ironclaw.dev",
    ] {
        assert!(
            crds.get_opt(name).await.unwrap().is_some(),
            "helm uninstall deleted {name}"
        );
    }
    drop_namespace(&client, &release_ns).await;
}

/// What `helm install` of release `release` in `ns` must have created (Kubernetes 1.20).
async fn check_release_objects(client: &Client, ns: &str, release: &str) {
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    for name in [
        "skills.ironclaw.dev",
        "allowlists.ironclaw.dev",
        "channels.ironclaw.dev",
    ] {
        let crd = crds.get(name).await.unwrap();
        let ann = crd.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(
            ann.get("meta.helm.sh/release-name").map(String::as_str),
            Some(release),
            "{name}: {ann:?}"
        );
        assert_eq!(
            ann.get("helm.sh/resource-policy").map(String::as_str),
            Some("keep")
        );
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        assert!(established, "{name} not Established");
        // Before 1.25 the chart installs the variant without CEL rules.
        let schema = serde_json::to_string(&crd.spec.versions).unwrap();
        assert!(!schema.contains("x-kubernetes-validations"), "{name}");
    }
    let op_name = format!("{release}-operator");
    let ni_name = format!("{release}-node-installer");
    let d = Api::<Deployment>::namespaced(client.clone(), ns)
        .get(&op_name)
        .await
        .unwrap();
    let spec = d.spec.unwrap();
    assert_eq!(spec.replicas, Some(1));
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some(op_name.as_str()));
    let ds = Api::<DaemonSet>::namespaced(client.clone(), ns)
        .get(&ni_name)
        .await
        .unwrap();
    let tpl = serde_json::to_string(&ds.spec.unwrap().template).unwrap();
    assert!(tpl.contains("install-profiles"), "{tpl}");
    let sas = Api::<ServiceAccount>::namespaced(client.clone(), ns);
    for sa in [&op_name, &ni_name] {
        sas.get(sa).await.unwrap();
    }
    let cluster_roles = Api::<ClusterRole>::all(client.clone());
    for cr in [
        op_name.as_str(),
        ni_name.as_str(),
        "ironclaw-skill-author",
        "ironclaw-allowlist-admin",
    ] {
        cluster_roles.get(cr).await.unwrap();
    }
    let bindings = Api::<ClusterRoleBinding>::all(client.clone());
    for b in [&op_name, &ni_name] {
        bindings.get(b).await.unwrap();
    }
    Api::<Role>::namespaced(client.clone(), ns)
        .get(&format!("{release}-operator-leader"))
        .await
        .unwrap();
}
