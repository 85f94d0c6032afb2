//! The build step: a pure function from a Skill and its effective grants to the objects that
//! run it (no client, no I/O). Everything the pod may do follows from the grants:
//!
//! - a Deployment of one pod: an init container installs the exec wrapper into a read-only
//!   shared volume; the skill container runs `ironclaw-sidecar exec … -- COMMAND` (the wrapper
//!   applies env filtering, Landlock and seccomp in place, then execs), under the generated
//!   seccomp profile (`Localhost`, plus the legacy per-container annotation); the sidecar
//!   container runs `ironclaw-sidecar agent` (egress proxy on loopback, admin server);
//!   non-root, read-only root filesystem, all capabilities dropped, no privilege escalation, no
//!   service-account token; only granted env vars, each from its Secret key; the skill's own
//!   workspace rw and `shared` mounted only as granted;
//! - a ConfigMap with the policy the wrapper and the sidecar read (`policy.json`);
//! - a ConfigMap with the seccomp profile, labelled for the node installer;
//! - a NetworkPolicy: no ingress; egress only DNS and the granted ports.

use crate::seccomp;
use ironclaw_crds::grants::{Access, FsGrant, Grants, Host};
use ironclaw_crds::schema::SecretKeyRef;
use ironclaw_crds::skill::Skill;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Resource;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

/// Label carrying the skill name on every object the operator creates.
pub const LABEL_SKILL: &str = "ironclaw.dev/skill";
/// Label marking the ConfigMaps that hold seccomp profiles (what the node installer watches).
pub const LABEL_SECCOMP_PROFILE: &str = "ironclaw.dev/seccomp-profile";
/// `app.kubernetes.io/managed-by` value.
pub const MANAGED_BY: &str = "ironclaw-operator";
/// Key of the policy file in the policy ConfigMap.
pub const POLICY_KEY: &str = "policy.json";
/// Where the wrapper binary is installed in the pod.
pub const WRAPPER_DIR: &str = "/ironclaw/bin";
/// Where the policy ConfigMap is mounted.
pub const POLICY_DIR: &str = "/etc/ironclaw";
/// The workspace root inside the skill container.
pub const WORKSPACE_ROOT: &str = "/workspace";
/// Name of the skill container.
pub const SKILL_CONTAINER: &str = "skill";
/// Name of the sidecar container.
pub const SIDECAR_CONTAINER: &str = "ironclaw-sidecar";
/// Name of the init container that installs the wrapper.
pub const INIT_CONTAINER: &str = "ironclaw-install-wrapper";

/// Settings of the build step that come from the operator's configuration, not the Skill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadConfig {
    /// Image of the IronClaw sidecar (also provides the exec wrapper).
    pub sidecar_image: String,
    /// Pull policy of the sidecar image (`Always`, `IfNotPresent`, `Never`).
    pub sidecar_pull_policy: Option<String>,
    /// Loopback port of the sidecar's egress proxy (the skill's only way out).
    pub proxy_port: u16,
    /// Port of the sidecar's admin server (metrics, health); the skill cannot reach it.
    pub admin_port: u16,
    /// PersistentVolumeClaim (in the skill's namespace) backing the workspace's `shared/`.
    pub shared_claim: String,
    /// UID and GID the pod runs as (non-root).
    pub run_as: i64,
    /// `injectionMode` of the pod policy (`flag`, `block` or `off`; the sidecar refuses
    /// anything else when it starts).
    pub injection_mode: String,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            sidecar_image: "ghcr.io/ironclaw/ironclaw-sidecar:0.1.0".into(),
            sidecar_pull_policy: None,
            proxy_port: 15001,
            admin_port: 15090,
            shared_claim: "ironclaw-shared".into(),
            run_as: 65532,
            injection_mode: "flag".into(),
        }
    }
}

/// Why the objects could not be built. Each names the field or input at fault.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("Skill has no metadata.{0} (it must come from the API server)")]
    Metadata(&'static str),
    #[error(
        "filesystem grant {grant}: a pod can mount only paths under the workspace (shared/… or skills/{skill}/…), e.g. shared:ro"
    )]
    UnsupportedPath { grant: String, skill: String },
    #[error("env grant {0}: no Allowlist entry names the Secret key holding its value")]
    MissingSecret(String),
    #[error("env grant {0}: patterns cannot be delivered in a pod; grant exact names")]
    EnvPattern(String),
    #[error(transparent)]
    Profile(#[from] seccomp::ProfileError),
    #[error("building {kind}: {source}")]
    Object {
        kind: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// Everything the build step produces for one skill.
#[derive(Debug, Clone)]
pub struct Workload {
    pub policy: ConfigMap,
    pub profile: ConfigMap,
    pub deployment: Deployment,
    pub network_policy: NetworkPolicy,
    /// File name of the seccomp profile (flat in the nodes' seccomp root).
    pub profile_file: String,
    /// SHA-256 (hex) of the profile's content.
    pub profile_hash: String,
}

/// Names of the objects of skill `name`.
pub fn object_name(skill: &str) -> String {
    format!("ironclaw-skill-{skill}")
}
/// Name of the seccomp-profile ConfigMap of skill `name`.
pub fn profile_config_map_name(skill: &str) -> String {
    format!("ironclaw-seccomp-{skill}")
}

/// File name of the seccomp profile with SHA-256 `hash` (hex): `ironclaw-<128 bits>.json`,
/// 46 characters, so `localhost/<file>` fits the 63 characters runtimes allow an annotation.
pub fn profile_file_name(hash: &str) -> String {
    format!("ironclaw-{}.json", &hash[..hash.len().min(32)])
}

/// Where a filesystem grant is mounted: `(mount path, sub-path in the shared volume, read-only)`,
/// or `None` for the skill's own workspace (always mounted rw).
fn fs_mount(g: &FsGrant, skill: &str) -> Result<Option<(String, String, bool)>, BuildError> {
    let unsupported = || BuildError::UnsupportedPath {
        grant: g.to_string(),
        skill: skill.to_owned(),
    };
    let rel = if let Some(r) = g.path.strip_prefix("~/.ironclaw/workspace/") {
        r
    } else if g.path.starts_with('/') || g.path.starts_with('~') {
        return Err(unsupported());
    } else {
        g.path.as_str()
    };
    let own = format!("skills/{skill}");
    if rel == own || rel.starts_with(&format!("{own}/")) {
        return Ok(None);
    }
    let sub = if rel == "shared" {
        String::new()
    } else if let Some(s) = rel.strip_prefix("shared/") {
        s.to_owned()
    } else {
        return Err(unsupported());
    };
    Ok(Some((
        format!("{WORKSPACE_ROOT}/{rel}"),
        sub,
        g.access == Access::Ro,
    )))
}

fn hardened(seccomp: Value) -> Value {
    json!({
        "allowPrivilegeEscalation": false,
        "capabilities": {"drop": ["ALL"]},
        "privileged": false,
        "readOnlyRootFilesystem": true,
        "runAsNonRoot": true,
        "seccompProfile": seccomp,
    })
}

fn typed<T: serde::de::DeserializeOwned>(kind: &'static str, v: Value) -> Result<T, BuildError> {
    serde_json::from_value(v).map_err(|source| BuildError::Object { kind, source })
}

/// Builds the objects for `skill` with effective grants `effective`. `env_secrets` gives, for
/// each granted env name, the Secret key holding its value (from the Allowlist entries);
/// `syscalls` is the reviewed syscall list the profile allows.
pub fn build(
    skill: &Skill,
    effective: &Grants,
    env_secrets: &[(String, SecretKeyRef)],
    syscalls: &[&str],
    cfg: &WorkloadConfig,
) -> Result<Workload, BuildError> {
    let name = skill
        .metadata
        .name
        .as_deref()
        .ok_or(BuildError::Metadata("name"))?;
    let ns = skill
        .metadata
        .namespace
        .as_deref()
        .ok_or(BuildError::Metadata("namespace"))?;
    let owner = skill
        .controller_owner_ref(&())
        .ok_or(BuildError::Metadata("uid"))?;
    let owner = serde_json::to_value(owner).map_err(|source| BuildError::Object {
        kind: "OwnerReference",
        source,
    })?;

    // Seccomp profile: flat file name, content-addressed so a change never overwrites a
    // profile a running pod uses. The name carries only the hash: the legacy annotation's value
    // `localhost/<file>` must stay within 63 characters (podman refuses longer ones), which a
    // namespace and a skill name of up to 63 characters each would break.
    let profile = seccomp::build_profile(syscalls, effective)?;
    let (profile_json, profile_hash) = seccomp::render(&profile)?;
    let profile_file = profile_file_name(&profile_hash);

    let labels = json!({
        "app.kubernetes.io/name": "ironclaw-skill",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        LABEL_SKILL: name,
    });
    let selector = json!({ LABEL_SKILL: name, "app.kubernetes.io/name": "ironclaw-skill" });
    let obj_name = object_name(name);
    let meta = |n: &str, extra_labels: Option<(&str, &str)>| {
        let mut l = labels.clone();
        if let (Some((k, v)), Some(m)) = (extra_labels, l.as_object_mut()) {
            m.insert(k.to_owned(), Value::String(v.to_owned()));
        }
        json!({"name": n, "namespace": ns, "labels": l, "ownerReferences": [owner.clone()]})
    };

    // Env: only granted exact names, each from its Secret key.
    let mut env = Vec::new();
    for g in &effective.env {
        let var = match g {
            ironclaw_crds::EnvGrant::Exact(n) => n,
            ironclaw_crds::EnvGrant::Prefix(_) => {
                return Err(BuildError::EnvPattern(g.to_string()));
            }
        };
        let secret = env_secrets
            .iter()
            .find(|(n, _)| n == var)
            .map(|(_, s)| s)
            .ok_or_else(|| BuildError::MissingSecret(var.clone()))?;
        env.push(json!({"name": var, "valueFrom": {"secretKeyRef": {"name": secret.name, "key": secret.key}}}));
    }
    let proxy = format!("http://127.0.0.1:{}", cfg.proxy_port);
    let own_dir = format!("{WORKSPACE_ROOT}/skills/{name}");
    for (k, v) in [
        ("HTTP_PROXY", proxy.as_str()),
        ("HTTPS_PROXY", proxy.as_str()),
        ("http_proxy", proxy.as_str()),
        ("https_proxy", proxy.as_str()),
        ("HOME", own_dir.as_str()),
        ("IRONCLAW_SKILL", name),
    ] {
        env.push(json!({"name": k, "value": v}));
    }

    // Volumes and mounts.
    let mut volumes = vec![
        json!({"name": "ironclaw-bin", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}),
        json!({"name": "ironclaw-policy", "configMap": {"name": obj_name, "defaultMode": 0o444}}),
        json!({"name": "workspace", "emptyDir": {}}),
    ];
    let mut skill_mounts = vec![
        json!({"name": "ironclaw-bin", "mountPath": WRAPPER_DIR, "readOnly": true}),
        json!({"name": "ironclaw-policy", "mountPath": POLICY_DIR, "readOnly": true}),
        json!({"name": "workspace", "mountPath": own_dir}),
    ];
    let mut fs_mounts = BTreeSet::new();
    for g in &effective.filesystem {
        if let Some(m) = fs_mount(g, name)? {
            fs_mounts.insert(m);
        }
    }
    if !fs_mounts.is_empty() {
        let all_ro = fs_mounts.iter().all(|(_, _, ro)| *ro);
        volumes.push(json!({"name": "shared", "persistentVolumeClaim": {"claimName": cfg.shared_claim, "readOnly": all_ro}}));
        for (path, sub, ro) in &fs_mounts {
            let mut m = json!({"name": "shared", "mountPath": path, "readOnly": ro});
            if !sub.is_empty() {
                m["subPath"] = Value::String(sub.clone());
            }
            skill_mounts.push(m);
        }
    }

    // Policy the wrapper and the sidecar read.
    let policy_doc = json!({
        "skill": name,
        "namespace": ns,
        "sandboxMode": "strict",
        "grants": effective,
        "proxy": format!("127.0.0.1:{}", cfg.proxy_port),
        "admin": format!("0.0.0.0:{}", cfg.admin_port),
        "workspace": own_dir,
        "seccompProfile": profile_file,
        "injectionMode": cfg.injection_mode,
    });
    let policy_text =
        serde_json::to_string_pretty(&policy_doc).map_err(|source| BuildError::Object {
            kind: "policy.json",
            source,
        })?;
    let policy_hash = hex::encode(Sha256::digest(policy_text.as_bytes()));

    let policy_path = format!("{POLICY_DIR}/{POLICY_KEY}");
    let wrapper = format!("{WRAPPER_DIR}/ironclaw-sidecar");
    let mut command = vec![
        wrapper.clone(),
        "exec".to_owned(),
        "--policy".to_owned(),
        policy_path.clone(),
        "--".to_owned(),
    ];
    command.extend(skill.spec.command.iter().cloned());

    let localhost = json!({"type": "Localhost", "localhostProfile": profile_file});
    let runtime_default = json!({"type": "RuntimeDefault"});
    let mut skill_container = json!({
        "name": SKILL_CONTAINER,
        "image": skill.spec.image,
        "command": command,
        "env": env,
        "volumeMounts": skill_mounts,
        "workingDir": own_dir,
        "securityContext": hardened(localhost),
    });
    if !skill.spec.args.is_empty() {
        skill_container["args"] = json!(skill.spec.args);
    }
    if let Some(p) = skill.spec.image_pull_policy {
        skill_container["imagePullPolicy"] = json!(p.as_str());
    }
    let mut sidecar = json!({
        "name": SIDECAR_CONTAINER,
        "image": cfg.sidecar_image,
        "command": ["ironclaw-sidecar", "agent", "--policy", policy_path,
                    "--proxy-listen", format!("127.0.0.1:{}", cfg.proxy_port),
                    "--admin-listen", format!("0.0.0.0:{}", cfg.admin_port)],
        "ports": [{"name": "admin", "containerPort": cfg.admin_port, "protocol": "TCP"}],
        "volumeMounts": [{"name": "ironclaw-policy", "mountPath": POLICY_DIR, "readOnly": true}],
        "securityContext": hardened(runtime_default.clone()),
    });
    let mut init = json!({
        "name": INIT_CONTAINER,
        "image": cfg.sidecar_image,
        "command": ["ironclaw-sidecar", "install-wrapper", WRAPPER_DIR],
        "volumeMounts": [{"name": "ironclaw-bin", "mountPath": WRAPPER_DIR}],
        "securityContext": hardened(runtime_default.clone()),
    });
    if let Some(p) = &cfg.sidecar_pull_policy {
        sidecar["imagePullPolicy"] = json!(p);
        init["imagePullPolicy"] = json!(p);
    }

    let annotations = json!({
        // Legacy per-container annotations, for runtimes that read only these.
        format!("container.seccomp.security.alpha.kubernetes.io/{SKILL_CONTAINER}"): format!("localhost/{profile_file}"),
        format!("container.seccomp.security.alpha.kubernetes.io/{SIDECAR_CONTAINER}"): "runtime/default",
        format!("container.seccomp.security.alpha.kubernetes.io/{INIT_CONTAINER}"): "runtime/default",
        // A change of either rolls the pod. The first 128 bits of each SHA-256: runtimes that
        // check annotations like labels (podman) refuse values over 63 characters.
        "ironclaw.dev/policy-sha256": &policy_hash[..32],
        "ironclaw.dev/seccomp-profile-sha256": &profile_hash[..32],
    });

    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(&obj_name, None),
        "spec": {
            "replicas": 1,
            "revisionHistoryLimit": 2,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": labels, "annotations": annotations},
                "spec": {
                    "automountServiceAccountToken": false,
                    "enableServiceLinks": false,
                    "securityContext": {
                        "runAsNonRoot": true,
                        "runAsUser": cfg.run_as,
                        "runAsGroup": cfg.run_as,
                        "fsGroup": cfg.run_as,
                        "seccompProfile": runtime_default,
                    },
                    "initContainers": [init],
                    "containers": [skill_container, sidecar],
                    "volumes": volumes,
                }
            }
        }
    });

    // NetworkPolicy: no ingress; egress DNS + granted ports (IP-literal grants to that address).
    let mut egress = vec![json!({"ports": [
        {"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}
    ]})];
    let mut any_ports = BTreeSet::new();
    let mut ip_rules = BTreeSet::new();
    for g in &effective.network {
        match &g.host {
            Host::Ip(ip) => {
                let cidr = if ip.is_ipv4() {
                    format!("{ip}/32")
                } else {
                    format!("{ip}/128")
                };
                ip_rules.insert((cidr, g.port));
            }
            _ => {
                any_ports.insert(g.port);
            }
        }
    }
    if !any_ports.is_empty() {
        let ports: Vec<Value> = any_ports
            .iter()
            .map(|p| json!({"protocol": "TCP", "port": p}))
            .collect();
        egress.push(json!({"ports": ports}));
    }
    for (cidr, port) in ip_rules {
        egress.push(json!({"to": [{"ipBlock": {"cidr": cidr}}], "ports": [{"protocol": "TCP", "port": port}]}));
    }
    let network_policy = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta(&obj_name, None),
        "spec": {
            "podSelector": {"matchLabels": selector},
            // Ingress listed with no rules: every inbound connection is denied.
            "policyTypes": ["Ingress", "Egress"],
            "egress": egress,
        }
    });

    let policy = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta(&obj_name, None),
        "data": {POLICY_KEY: policy_text},
    });
    let profile_cm = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta(&profile_config_map_name(name), Some((LABEL_SECCOMP_PROFILE, "true"))),
        "data": {profile_file.clone(): profile_json},
    });

    Ok(Workload {
        policy: typed("ConfigMap", policy)?,
        profile: typed("ConfigMap", profile_cm)?,
        deployment: typed("Deployment", deployment)?,
        network_policy: typed("NetworkPolicy", network_policy)?,
        profile_file,
        profile_hash,
    })
}
