#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The generated CRDs: drift against the committed YAML, documentation of every field, the
//! two variants, the schema patterns against the grant vocabulary's parsers, and the issue's
//! example objects.

use ironclaw_crds::allowlist::Allowlist;
use ironclaw_crds::channel_resource::Channel;
use ironclaw_crds::crd::{Variant, definitions_json, render_yaml};
use ironclaw_crds::grants::{FsGrant, NetworkGrant};
use ironclaw_crds::schema::{
    ENV_NAME_PATTERN, ENV_REQUEST_PATTERN, FILESYSTEM_PATTERN, NETWORK_PATTERN, SENDER_ID_PATTERN,
    SKILL_NAME_PATTERN,
};
use ironclaw_crds::skill::Skill;
use regex::Regex;
use std::path::PathBuf;

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn committed_yaml_matches_the_types() {
    for v in Variant::ALL {
        let path = manifest_dir().join("generated").join(v.file_name());
        let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run `cargo run -p ironclaw-crds --bin crdgen`",
                path.display()
            )
        });
        let fresh = render_yaml(v).unwrap();
        assert!(
            committed == fresh,
            "{} drifted from the Rust types; run `cargo run -p ironclaw-crds --bin crdgen` and commit",
            path.display()
        );
    }
}

#[test]
fn chart_carries_the_same_crds() {
    let files = manifest_dir().join("../charts/ironclaw/files");
    for v in Variant::ALL {
        let path = files.join(v.file_name());
        let chart =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            chart == render_yaml(v).unwrap(),
            "{} drifted; copy crds/generated/{} into the chart",
            path.display(),
            v.file_name()
        );
    }
}

fn walk_properties(v: &serde_json::Value, path: &str, missing: &mut Vec<String>) {
    if let Some(props) = v.get("properties").and_then(|p| p.as_object()) {
        for (name, schema) in props {
            let p = format!("{path}.{name}");
            let documented = schema
                .get("description")
                .and_then(|d| d.as_str())
                .is_some_and(|d| !d.trim().is_empty());
            // metadata, apiVersion and kind are Kubernetes' own fields.
            if !documented && !matches!(name.as_str(), "metadata" | "apiVersion" | "kind") {
                missing.push(p.clone());
            }
            walk_properties(schema, &p, missing);
        }
    }
    if let Some(items) = v.get("items") {
        walk_properties(items, &format!("{path}[]"), missing);
    }
}

#[test]
fn every_field_is_documented() {
    let mut missing = Vec::new();
    for crd in definitions_json(Variant::Plain).unwrap() {
        let name = crd["metadata"]["name"].as_str().unwrap().to_owned();
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        walk_properties(schema, &name, &mut missing);
    }
    assert!(
        missing.is_empty(),
        "fields without a description: {missing:?}"
    );
}

#[test]
fn plain_variant_has_no_cel_and_cel_variant_has_the_rules() {
    let plain = render_yaml(Variant::Plain).unwrap();
    assert!(!plain.contains("x-kubernetes-validations"));
    let cel = render_yaml(Variant::Cel).unwrap();
    for rule in [
        "self.dmPolicy == 'allowlist'",
        "self.allowFrom.all(id, !id.contains('*'))",
        "self.burstLimit <= self.messagesPerHour",
        "x.endsWith(':ro') || x.endsWith(':rw')",
    ] {
        assert!(cel.contains(rule), "CEL variant lacks {rule}");
    }
    // Apart from the CEL rules the variants are identical.
    let strip = |s: &str| {
        let mut v: Vec<serde_json::Value> = serde_yaml::Deserializer::from_str(s)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect();
        fn rm(v: &mut serde_json::Value) {
            match v {
                serde_json::Value::Object(m) => {
                    m.remove("x-kubernetes-validations");
                    m.values_mut().for_each(rm);
                }
                serde_json::Value::Array(a) => a.iter_mut().for_each(rm),
                _ => {}
            }
        }
        v.iter_mut().for_each(rm);
        v
    };
    assert_eq!(strip(&plain), strip(&cel));
}

#[test]
fn openapi_rules_refuse_the_issues_bad_objects() {
    let crds = definitions_json(Variant::Plain).unwrap();
    let channel = crds
        .iter()
        .find(|c| c["spec"]["names"]["kind"] == "Channel")
        .unwrap();
    let spec = &channel["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(
        spec["properties"]["dmPolicy"]["enum"],
        serde_json::json!(["allowlist"])
    );
    assert_eq!(spec["properties"]["allowFrom"]["minItems"], 1);
    assert_eq!(
        spec["properties"]["rateLimit"]["properties"]["messagesPerHour"]["default"],
        30
    );
    assert_eq!(
        spec["properties"]["rateLimit"]["properties"]["burstLimit"]["default"],
        5
    );
    let sender = Regex::new(SENDER_ID_PATTERN).unwrap();
    assert!(sender.is_match("8734062810"));
    assert!(!sender.is_match("*"));
    assert!(!sender.is_match("12*"));
}

/// The network pattern accepts what the parser accepts (so no valid grant is refused by the
/// server) and refuses the malformed forms before they reach the operator.
#[test]
fn network_pattern_agrees_with_the_parser() {
    let re = Regex::new(NETWORK_PATTERN).unwrap();
    for ok in [
        "imap.gmail.com:993",
        "smtp.gmail.com:587",
        "*.example.com:443",
        "10.0.0.5:5432",
        "[2001:db8::1]:443",
        "[::1]:80",
        "localhost:1",
        "a-b.c-d.io:65535",
        "example.com.:443",
    ] {
        assert!(ok.parse::<NetworkGrant>().is_ok(), "parser refused {ok}");
        assert!(re.is_match(ok), "pattern refused {ok}");
    }
    for bad in [
        "imap.gmail.com",
        "example.com:0",
        "example.com:65536",
        "example.com:*",
        "https://example.com:443",
        "exa_mple.com:80",
        "a..b:80",
        "foo*.example.com:443",
        "*:443",
        ":80",
        "2001:db8::1:443",
        "-a.com:80",
    ] {
        assert!(
            bad.parse::<NetworkGrant>().is_err(),
            "parser accepted {bad}"
        );
        assert!(!re.is_match(bad), "pattern accepted {bad}");
    }
}

#[test]
fn filesystem_env_and_name_patterns_agree_with_the_parsers() {
    let fs = Regex::new(FILESYSTEM_PATTERN).unwrap();
    for ok in [
        "shared:ro",
        "shared/inbox:rw",
        "~/.ironclaw/workspace/shared:ro",
        "/srv/x:ro",
    ] {
        assert!(ok.parse::<FsGrant>().is_ok() && fs.is_match(ok), "{ok}");
    }
    for bad in ["shared", "shared:rx", ":ro", "shared:"] {
        assert!(
            bad.parse::<FsGrant>().is_err() && !fs.is_match(bad),
            "{bad}"
        );
    }
    let req = Regex::new(ENV_REQUEST_PATTERN).unwrap();
    let exact = Regex::new(ENV_NAME_PATTERN).unwrap();
    for ok in ["IMAP_PASSWORD", "_X", "a1"] {
        assert!(req.is_match(ok) && exact.is_match(ok), "{ok}");
    }
    assert!(req.is_match("AWS_*") && !exact.is_match("AWS_*"));
    for bad in ["1ABC", "A-B", "*", "A*B", ""] {
        assert!(!req.is_match(bad) && !exact.is_match(bad), "{bad}");
    }
    let name = Regex::new(SKILL_NAME_PATTERN).unwrap();
    for n in ["himalaya", "daily-brief", "a", "0x"] {
        assert!(
            ironclaw_crds::grants::validate_skill_name(n).is_ok() && name.is_match(n),
            "{n}"
        );
    }
    for n in ["Daily", "a_b", "-a", "a-", "", "../x"] {
        assert!(
            ironclaw_crds::grants::validate_skill_name(n).is_err() && !name.is_match(n),
            "{n}"
        );
    }
}

#[test]
fn the_issues_examples_parse_and_validate() {
    let text = std::fs::read_to_string(manifest_dir().join("examples/himalaya.yaml")).unwrap();
    let docs: Vec<serde_json::Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    assert_eq!(docs.len(), 3);
    let skill: Skill = serde_json::from_value(docs[0].clone()).unwrap();
    let requested = skill.spec.validate().unwrap();
    assert_eq!(requested.network.len(), 2);
    assert_eq!(requested.filesystem[0].to_string(), "shared:ro");
    let al: Allowlist = serde_json::from_value(docs[1].clone()).unwrap();
    let entry = &al.spec.skills[0];
    let granted = entry.grants("spec.skills[0]").unwrap();
    let (eff, missing) = granted.effective(&requested);
    assert!(missing.is_empty(), "{}", missing.describe());
    assert_eq!(eff, requested);
    assert_eq!(
        entry.secret_for("IMAP_PASSWORD").unwrap().key,
        "imap-password"
    );
    let ch: Channel = serde_json::from_value(docs[2].clone()).unwrap();
    ch.spec.validate().unwrap();
    assert_eq!(ch.spec.rate_limit.messages_per_hour, 30);
}

#[test]
fn operator_side_validation_names_the_field() {
    let skill: Skill = serde_json::from_value(serde_json::json!({
        "apiVersion": "ironclaw.dev/v1alpha1", "kind": "Skill",
        "metadata": {"name": "s", "namespace": "n"},
        "spec": {"image": "i", "command": ["c"],
                 "requests": {"network": ["a.io:80", "999.1.1.1:80"]}}
    }))
    .unwrap();
    let e = skill.spec.validate().unwrap_err();
    assert_eq!(e.field, "spec.requests.network[1]");
    assert!(e.reason.contains("not a valid one"), "{e}");

    let al: Allowlist = serde_json::from_value(serde_json::json!({
        "apiVersion": "ironclaw.dev/v1alpha1", "kind": "Allowlist",
        "metadata": {"name": "a", "namespace": "n"},
        "spec": {"skills": [{"name": "s", "env": [
            {"name": "AWS_*", "secretKeyRef": {"name": "x", "key": "y"}}]}]}
    }))
    .unwrap();
    let e = al.spec.skills[0].grants("spec.skills[0]").unwrap_err();
    assert_eq!(e.field, "spec.skills[0].env[0].name");
    assert!(e.reason.contains("exact name"), "{e}");

    // Unknown fields are refused (typos do not silently drop a request).
    let e = serde_json::from_value::<Skill>(serde_json::json!({
        "apiVersion": "ironclaw.dev/v1alpha1", "kind": "Skill",
        "metadata": {"name": "s"}, "spec": {"image": "i", "command": ["c"], "requets": {}}
    }))
    .unwrap_err();
    assert!(e.to_string().contains("unknown field `requets`"), "{e}");
}
