#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Build-step unit tests: YAML in (Skill + Allowlists), objects out (Deployment, ConfigMaps,
//! NetworkPolicy). No cluster: the build step is a pure function.

use ironclaw_crds::allowlist::Allowlist;
use ironclaw_crds::skill::Skill;
use ironclaw_operator::authz::{Decision, authorise};
use ironclaw_operator::seccomp::default_syscalls;
use ironclaw_operator::workload::{Workload, WorkloadConfig, build};
use serde_json::{Value, json};

const HIMALAYA: &str = include_str!("../../crds/examples/himalaya.yaml");

fn docs(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

fn skill_from(v: Value) -> Skill {
    let mut s: Skill = serde_json::from_value(v).unwrap();
    s.metadata.uid = Some("0b1c2d3e-0000-4000-8000-000000000001".into());
    s
}

fn himalaya() -> (Skill, Vec<Allowlist>) {
    let d = docs(HIMALAYA);
    (
        skill_from(d[0].clone()),
        vec![serde_json::from_value(d[1].clone()).unwrap()],
    )
}

fn built(skill: &Skill, allowlists: &[Allowlist]) -> (Workload, Decision) {
    built_with(skill, allowlists, &WorkloadConfig::default())
}

fn built_with(
    skill: &Skill,
    allowlists: &[Allowlist],
    cfg: &WorkloadConfig,
) -> (Workload, Decision) {
    let requested = skill.spec.validate().unwrap();
    let decision = authorise(
        skill.metadata.name.as_deref().unwrap(),
        &requested,
        allowlists,
    );
    let Decision::Authorised {
        effective,
        env_secrets,
        ..
    } = &decision
    else {
        panic!("not authorised: {decision:?}");
    };
    let w = build(skill, effective, env_secrets, &default_syscalls(), cfg).unwrap();
    (w, decision)
}

fn j<T: serde::Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap()
}

fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap()
}

#[test]
fn himalaya_gets_the_exact_pod() {
    let (skill, als) = himalaya();
    let (w, _) = built(&skill, &als);
    let d = j(&w.deployment);
    assert_eq!(d["metadata"]["name"], "ironclaw-skill-himalaya");
    assert_eq!(d["metadata"]["namespace"], "agents");
    let owner = &d["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "Skill");
    assert_eq!(owner["controller"], true);
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);

    let skill_c = container(pod, "skill");
    assert_eq!(skill_c["image"], "localhost/himalaya:1.2.0");
    assert_eq!(
        skill_c["command"],
        json!([
            "/ironclaw/bin/ironclaw-sidecar",
            "exec",
            "--policy",
            "/etc/ironclaw/policy.json",
            "--",
            "himalaya",
            "serve"
        ])
    );
    let sc = &skill_c["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(sc["seccompProfile"]["type"], "Localhost");
    assert_eq!(
        sc["seccompProfile"]["localhostProfile"],
        w.profile_file.as_str()
    );
    assert!(
        !w.profile_file.contains('/'),
        "profile files sit flat in the seccomp root"
    );
    assert_eq!(
        w.profile_file,
        format!("ironclaw-{}.json", &w.profile_hash[..32])
    );
    let ann = &d["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(
        ann["container.seccomp.security.alpha.kubernetes.io/skill"],
        format!("localhost/{}", w.profile_file)
    );

    // Env: the granted variable from its Secret, plus the proxy settings; nothing else.
    let env = skill_c["env"].as_array().unwrap();
    let secret_env: Vec<&Value> = env
        .iter()
        .filter(|e| e.get("valueFrom").is_some())
        .collect();
    assert_eq!(secret_env.len(), 1);
    assert_eq!(
        secret_env[0],
        &json!({"name": "IMAP_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "himalaya-secrets", "key": "imap-password"}}})
    );
    assert!(
        env.iter()
            .any(|e| e["name"] == "HTTPS_PROXY" && e["value"] == "http://127.0.0.1:15001")
    );

    // Mounts: own workspace rw, shared ro, wrapper and policy ro.
    let mounts = skill_c["volumeMounts"].as_array().unwrap();
    let m = |p: &str| {
        mounts
            .iter()
            .find(|m| m["mountPath"] == p)
            .unwrap_or_else(|| panic!("no mount {p}"))
    };
    assert!(
        m("/workspace/skills/himalaya")
            .get("readOnly")
            .is_none_or(|r| r == false)
    );
    assert_eq!(m("/workspace/shared")["readOnly"], true);
    assert_eq!(m("/ironclaw/bin")["readOnly"], true);
    assert_eq!(m("/etc/ironclaw")["readOnly"], true);
    let shared_vol = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "shared")
        .unwrap();
    assert_eq!(shared_vol["persistentVolumeClaim"]["readOnly"], true);

    // The wrapper comes from an init container into the shared read-only volume.
    let init = &pod["initContainers"][0];
    assert_eq!(
        init["command"],
        json!(["ironclaw-sidecar", "install-wrapper", "/ironclaw/bin"])
    );
    let side = container(pod, "ironclaw-sidecar");
    assert_eq!(side["command"][1], "agent");
    assert_eq!(
        side["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(side["securityContext"]["readOnlyRootFilesystem"], true);

    // NetworkPolicy: no ingress; DNS and the granted ports only.
    let np = j(&w.network_policy);
    assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    assert!(
        np["spec"].get("ingress").is_none(),
        "no ingress rule at all: deny all"
    );
    assert_eq!(
        np["spec"]["egress"],
        json!([
            {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
            {"ports": [{"protocol": "TCP", "port": 587}, {"protocol": "TCP", "port": 993}]}
        ])
    );
    assert_eq!(
        np["spec"]["podSelector"]["matchLabels"]["ironclaw.dev/skill"],
        "himalaya"
    );

    // Profile ConfigMap: labelled for the node installer, one flat file.
    let p = j(&w.profile);
    assert_eq!(
        p["metadata"]["labels"]["ironclaw.dev/seccomp-profile"],
        "true"
    );
    let data = p["data"].as_object().unwrap();
    assert_eq!(data.keys().collect::<Vec<_>>(), vec![&w.profile_file]);
    let prof: Value = serde_json::from_str(data[&w.profile_file].as_str().unwrap()).unwrap();
    assert_eq!(prof["defaultAction"], "SCMP_ACT_ERRNO");

    // Policy ConfigMap: the effective grants in the vocabulary's textual forms.
    let pol: Value =
        serde_json::from_str(j(&w.policy)["data"]["policy.json"].as_str().unwrap()).unwrap();
    assert_eq!(
        pol["grants"],
        json!({"network": ["imap.gmail.com:993", "smtp.gmail.com:587"], "env": ["IMAP_PASSWORD"], "filesystem": ["shared:ro"], "shell": false})
    );
    assert_eq!(pol["seccompProfile"], w.profile_file.as_str());
    // The operator's --injection-mode reaches the sidecar (flag by default), and a change of
    // it changes the policy's hash, so the pod is rolled.
    assert_eq!(pol["injectionMode"], "flag");
    let (skill, als) = himalaya();
    let blocking = WorkloadConfig {
        injection_mode: "block".into(),
        ..WorkloadConfig::default()
    };
    let (wb, _) = built_with(&skill, &als, &blocking);
    let polb: Value =
        serde_json::from_str(j(&wb.policy)["data"]["policy.json"].as_str().unwrap()).unwrap();
    assert_eq!(polb["injectionMode"], "block");
    assert_ne!(
        j(&wb.deployment)["spec"]["template"]["metadata"]["annotations"],
        j(&w.deployment)["spec"]["template"]["metadata"]["annotations"]
    );
}

#[test]
fn widened_skill_runs_with_the_intersection_only() {
    let (skill, als) = himalaya();
    let (base, _) = built(&skill, &als);
    let widened_yaml = r#"
apiVersion: ironclaw.dev/v1alpha1
kind: Skill
metadata: {name: himalaya, namespace: agents}
spec:
  image: localhost/himalaya:1.2.0
  command: ["himalaya", "serve"]
  requests:
    network: ["imap.gmail.com:993", "smtp.gmail.com:587", "attacker.io:80"]
    env: ["IMAP_PASSWORD", "AWS_SECRET_ACCESS_KEY"]
    filesystem: ["shared:rw"]
    shell: true
"#;
    let widened = skill_from(docs(widened_yaml)[0].clone());
    let (w, decision) = built(&widened, &als);
    let Decision::Authorised { missing, .. } = decision else {
        panic!()
    };
    assert_eq!(
        missing.describe(),
        "network attacker.io:80, env AWS_SECRET_ACCESS_KEY, filesystem shared:rw, shell"
    );
    // Same pod, same profile, same NetworkPolicy: nothing new was gained.
    assert_eq!(j(&w.deployment), j(&base.deployment));
    assert_eq!(j(&w.network_policy), j(&base.network_policy));
    assert_eq!(w.profile_hash, base.profile_hash);
}

#[test]
fn skill_without_entry_is_not_allowlisted() {
    let (skill, _) = himalaya();
    let other: Allowlist = serde_json::from_value(json!({
        "apiVersion": "ironclaw.dev/v1alpha1", "kind": "Allowlist",
        "metadata": {"name": "x", "namespace": "agents"},
        "spec": {"skills": [{"name": "github", "network": ["api.github.com:443"]}]}
    }))
    .unwrap();
    let d = authorise("himalaya", &skill.spec.validate().unwrap(), &[other]);
    assert_eq!(
        d,
        Decision::NotAllowlisted {
            bad_entries: vec![]
        }
    );
    assert!(matches!(
        authorise("himalaya", &skill.spec.validate().unwrap(), &[]),
        Decision::NotAllowlisted { .. }
    ));
}

#[test]
fn grants_are_the_union_of_entries_and_bad_entries_grant_nothing() {
    let (skill, _) = himalaya();
    let als: Vec<Allowlist> = docs(
        r#"
apiVersion: ironclaw.dev/v1alpha1
kind: Allowlist
metadata: {name: a, namespace: agents}
spec:
  skills:
    - name: himalaya
      network: ["imap.gmail.com:993"]
      env: [{name: IMAP_PASSWORD, secretKeyRef: {name: s, key: k}}]
---
apiVersion: ironclaw.dev/v1alpha1
kind: Allowlist
metadata: {name: b, namespace: agents}
spec:
  skills:
    - name: himalaya
      network: ["smtp.gmail.com:587"]
    - name: himalaya
      network: ["999.1.1.1:80"]
"#,
    )
    .into_iter()
    .map(|v| serde_json::from_value(v).unwrap())
    .collect();
    let d = authorise("himalaya", &skill.spec.validate().unwrap(), &als);
    let Decision::Authorised {
        effective,
        missing,
        bad_entries,
        sources,
        ..
    } = d
    else {
        panic!()
    };
    assert_eq!(effective.network.len(), 2);
    assert_eq!(missing.describe(), "filesystem shared:ro");
    assert_eq!(bad_entries.len(), 1);
    assert_eq!(bad_entries[0].allowlist, "b");
    assert_eq!(bad_entries[0].error.field, "spec.skills[1].network[0]");
    assert_eq!(sources, vec!["a", "b"]);
}

#[test]
fn ip_grants_get_an_ip_block_and_other_paths_are_refused() {
    let skill = skill_from(json!({
        "apiVersion": "ironclaw.dev/v1alpha1", "kind": "Skill",
        "metadata": {"name": "db", "namespace": "n"},
        "spec": {"image": "db:1", "command": ["db"], "requests": {"network": ["10.0.0.5:5432"]}}
    }));
    let al: Allowlist = serde_json::from_value(json!({
        "apiVersion": "ironclaw.dev/v1alpha1", "kind": "Allowlist",
        "metadata": {"name": "a", "namespace": "n"},
        "spec": {"skills": [{"name": "db", "network": ["10.0.0.5:5432"], "filesystem": ["/etc:ro"]}]}
    }))
    .unwrap();
    let (w, _) = built(&skill, std::slice::from_ref(&al));
    let np = j(&w.network_policy);
    assert_eq!(
        np["spec"]["egress"][1],
        json!({"to": [{"ipBlock": {"cidr": "10.0.0.5/32"}}], "ports": [{"protocol": "TCP", "port": 5432}]})
    );
    // A granted and requested path outside the workspace cannot be mounted: refused, named.
    let skill2 = skill_from(json!({
        "apiVersion": "ironclaw.dev/v1alpha1", "kind": "Skill",
        "metadata": {"name": "db", "namespace": "n"},
        "spec": {"image": "db:1", "command": ["db"], "requests": {"filesystem": ["/etc:ro"]}}
    }));
    let Decision::Authorised {
        effective,
        env_secrets,
        ..
    } = authorise("db", &skill2.spec.validate().unwrap(), &[al])
    else {
        panic!()
    };
    let e = build(
        &skill2,
        &effective,
        &env_secrets,
        &default_syscalls(),
        &WorkloadConfig::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("filesystem grant /etc:ro"), "{e}");
}

#[test]
fn build_is_deterministic() {
    let (skill, als) = himalaya();
    let (a, _) = built(&skill, &als);
    let (b, _) = built(&skill, &als);
    assert_eq!(j(&a.deployment), j(&b.deployment));
    assert_eq!(j(&a.profile), j(&b.profile));
}

#[test]
fn annotation_values_fit_63_characters_even_with_the_longest_names() {
    // Container runtimes that read the legacy per-container annotation (podman) refuse values
    // over 63 characters; a namespace and a skill name may each be 63 characters long.
    let (mut skill, mut als) = himalaya();
    let long = "a".repeat(63);
    skill.metadata.name = Some(long.clone());
    skill.metadata.namespace = Some(format!("n{}", "s".repeat(62)));
    als[0].spec.skills[0].name = long.clone();
    let (w, _) = built(&skill, &als);
    let d = j(&w.deployment);
    let ann = d["spec"]["template"]["metadata"]["annotations"]
        .as_object()
        .unwrap();
    assert!(ann.contains_key("ironclaw.dev/policy-sha256"));
    for (k, v) in ann {
        let v = v.as_str().unwrap();
        assert!(v.len() <= 63, "{k}={v} is {} characters", v.len());
    }
    assert_eq!(
        ann["container.seccomp.security.alpha.kubernetes.io/skill"],
        format!("localhost/{}", w.profile_file)
    );
}
