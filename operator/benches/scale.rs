#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Scale benchmark against the real test API server (tests/cluster/up).
//!
//! Per round, in fresh namespaces of the same cluster:
//! - baseline: 500 plain ConfigMap creates from one client (16 in flight);
//! - operator: an Allowlist granting 500 skills, then 500 Skills created from one client
//!   (16 in flight); time until every skill's Deployment exists.
//!
//! Then, in the last round, 500 more Skills and the operator's RSS at 1,000 Skills.
//!
//! `cargo bench -p ironclaw-operator --bench scale` (BENCH_ROUNDS, default 3; BENCH_SKILLS,
//! default 500). Prints medians and the ratio.

use futures::{StreamExt, stream};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const IN_FLIGHT: usize = 16;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn kubeconfig() -> PathBuf {
    let up = repo_root().join("tests/cluster/up");
    let out = Command::new("bash").arg(&up).output().unwrap();
    assert!(
        out.status.success(),
        "tests/cluster/up failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let p = PathBuf::from(
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("export KUBECONFIG="))
            .unwrap()
            .trim(),
    );
    let st = Command::new("kubectl")
        .env("KUBECONFIG", &p)
        .args(["apply", "--server-side", "--force-conflicts", "-f"])
        .arg(repo_root().join("crds/generated/ironclaw-crds.yaml"))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    p
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

fn dynamic_api(client: &Client, ns: &str, kind: &str) -> Api<kube::api::DynamicObject> {
    let gvk = kube::core::GroupVersionKind::gvk("ironclaw.dev", "v1alpha1", kind);
    Api::namespaced_with(client.clone(), ns, &kube::core::ApiResource::from_gvk(&gvk))
}

async fn baseline(client: &Client, n: usize) -> Duration {
    let ns = namespace(client, "bench-cm").await;
    let api = Api::<ConfigMap>::namespaced(client.clone(), &ns);
    let start = Instant::now();
    stream::iter(0..n)
        .for_each_concurrent(IN_FLIGHT, |i| {
            let api = api.clone();
            async move {
                let cm: ConfigMap = serde_json::from_value(
                    json!({"metadata": {"name": format!("cm-{i}")}, "data": {"k": "v"}}),
                )
                .unwrap();
                api.create(&PostParams::default(), &cm).await.unwrap();
            }
        })
        .await;
    let t = start.elapsed();
    let _ = Api::<Namespace>::all(client.clone())
        .delete(&ns, &DeleteParams::background())
        .await;
    t
}

async fn create_skills(client: &Client, ns: &str, range: std::ops::Range<usize>) {
    let api = dynamic_api(client, ns, "Skill");
    stream::iter(range)
        .for_each_concurrent(IN_FLIGHT, |i| {
            let api = api.clone();
            async move {
                let obj: kube::api::DynamicObject = serde_json::from_value(json!({
                    "apiVersion": "ironclaw.dev/v1alpha1", "kind": "Skill",
                    "metadata": {"name": format!("skill-{i}")},
                    "spec": {"image": "localhost/skill:1.0.0", "command": ["skill"],
                             "requests": {"network": ["api.example.com:443"], "env": ["API_TOKEN"], "filesystem": ["shared:ro"]}}
                }))
                .unwrap();
                api.create(&PostParams::default(), &obj).await.unwrap();
            }
        })
        .await;
}

async fn wait_deployments(client: &Client, ns: &str, n: usize, limit: Duration) {
    let api = Api::<Deployment>::namespaced(client.clone(), ns);
    let start = Instant::now();
    loop {
        let have = api
            .list_metadata(
                &ListParams::default().labels("app.kubernetes.io/managed-by=ironclaw-operator"),
            )
            .await
            .unwrap()
            .items
            .len();
        if have >= n {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "only {have}/{n} Deployments after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let n: usize = std::env::var("BENCH_SKILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let kcfg = kubeconfig();
    let kc = Kubeconfig::read_from(&kcfg).unwrap();
    let client = Client::try_from(
        Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .unwrap(),
    )
    .unwrap();

    let (mut base, mut ops, mut rss) = (Vec::new(), Vec::new(), None);
    for round in 0..rounds {
        let b = baseline(&client, n).await;
        let ns = namespace(&client, "bench-skills").await;
        let entries: Vec<_> = (0..2 * n)
            .map(|i| json!({"name": format!("skill-{i}"), "network": ["api.example.com:443"],
                            "env": [{"name": "API_TOKEN", "secretKeyRef": {"name": "s", "key": "k"}}],
                            "filesystem": ["shared:ro"]}))
            .collect();
        let al: kube::api::DynamicObject = serde_json::from_value(json!({
            "apiVersion": "ironclaw.dev/v1alpha1", "kind": "Allowlist",
            "metadata": {"name": "bench"}, "spec": {"skills": entries}}))
        .unwrap();
        dynamic_api(&client, &ns, "Allowlist")
            .create(&PostParams::default(), &al)
            .await
            .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_ironclaw-operator"))
            .args([
                "--namespace",
                &ns,
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--sidecar-image",
                "localhost/ironclaw-sidecar:0.1.0",
            ])
            .env("KUBECONFIG", &kcfg)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let start = Instant::now();
        create_skills(&client, &ns, 0..n).await;
        wait_deployments(&client, &ns, n, Duration::from_secs(600)).await;
        let t = start.elapsed();
        println!(
            "round {round}: {n} ConfigMap creates {:.2} s; {n} Skills to {n} Deployments {:.2} s",
            b.as_secs_f64(),
            t.as_secs_f64()
        );
        base.push(b.as_secs_f64());
        ops.push(t.as_secs_f64());
        if round + 1 == rounds {
            create_skills(&client, &ns, n..2 * n).await;
            wait_deployments(&client, &ns, 2 * n, Duration::from_secs(900)).await;
            tokio::time::sleep(Duration::from_secs(5)).await;
            rss = Some(rss_kib(child.id()));
        }
        let _ = child.kill();
        let _ = child.wait();
        let _ = Api::<Namespace>::all(client.clone())
            .delete(&ns, &DeleteParams::background())
            .await;
    }
    let (mb, mo) = (median(base), median(ops));
    println!(
        "median over {rounds} rounds: baseline {n} ConfigMap creates {mb:.2} s; {n} Skills -> Deployments {mo:.2} s; ratio {:.2}x",
        mo / mb
    );
    if let Some(r) = rss {
        println!(
            "operator RSS at {} Skills: {:.1} MiB",
            2 * n,
            r as f64 / 1024.0
        );
    }
}
