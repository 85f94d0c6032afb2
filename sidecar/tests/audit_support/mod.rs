//! Shared helpers of the audit integration tests (real files in a temporary directory).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use ironclaw_sidecar::audit::{AuditConfig, Event, EventType, Record, schema};
use serde_json::{Value, json};

/// A log in a fresh directory under /work's disk when it exists (not tmpfs), else the system temp.
pub fn temp_dir() -> tempfile::TempDir {
    let base = std::env::var_os("IRONCLAW_TEST_TMP")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    tempfile::Builder::new()
        .prefix("ironclaw-audit-")
        .tempdir_in(base)
        .unwrap()
}

pub fn config(dir: &Path) -> AuditConfig {
    AuditConfig {
        path: dir.join("home").join("audit.log"),
        max_size_mb: 100,
        keep_days: 90,
        compress: true,
    }
}

/// One realistic event of every type, with the context the other components emit.
pub fn sample_events(session: &str) -> Vec<Event> {
    let s = session;
    vec![
        Event::new(EventType::GatewayStart, s)
            .field("configHash", "a".repeat(64))
            .field("sandboxMode", "strict")
            .field("skillsAuthorised", 3),
        Event::new(EventType::GatewayStop, s)
            .field("planned", false)
            .field("reason", "no GATEWAY_STOP before this start"),
        Event::new(EventType::SkillCall, s)
            .skill("himalaya")
            .field("authorised", true)
            .field("via", "cli"),
        Event::new(EventType::AllowlistDeny, s)
            .skill("unknown-skill")
            .field("reason", "skill is not in the allowlist"),
        Event::new(EventType::AllowlistViolation, s)
            .skill("himalaya")
            .field("action", "network")
            .field("resource", "attacker.io:80")
            .field(
                "granted",
                json!(["imap.gmail.com:993", "smtp.gmail.com:587"]),
            )
            .field("blocked", true),
        Event::new(EventType::AllowlistChange, s)
            .skill("himalaya")
            .field("change", "grant")
            .field("actor", "uid:1000")
            .field("before", Value::Null)
            .field("after", json!({"network": ["imap.gmail.com:993"]})),
        Event::new(EventType::ConfigChange, s)
            .field("key", "security.sandbox.mode")
            .field("before", "standard")
            .field("after", "strict")
            .field("source", "cli"),
        Event::new(EventType::ChannelMsgReceived, s)
            .field("channel", "telegram")
            .field("senderId", "12345")
            .field("length", 42),
        Event::new(EventType::ChannelMsgBlocked, s)
            .field("channel", "telegram")
            .field("senderId", "666")
            .field("reason", "sender not in allowFrom"),
        Event::new(EventType::InjectionDetected, s)
            .skill("web-fetch")
            .field("source", "https-response")
            .field("categories", json!(["instruction-override"]))
            .field("spans", json!([[10, 42]]))
            .field("decision", "block")
            .field("score", 0.93),
        Event::new(EventType::NetworkBlock, s)
            .skill("himalaya")
            .field("action", "network")
            .field("resource", "attacker.io:443")
            .field("granted", json!(["imap.gmail.com:993"]))
            .field("blocked", true)
            .field("reason", "host not granted"),
        Event::new(EventType::FilesystemBlock, s)
            .skill("himalaya")
            .field("action", "filesystem")
            .field("resource", "/etc/shadow")
            .field("access", "read")
            .field("granted", json!(["/tmp/himalaya:rw"]))
            .field("blocked", true),
        Event::new(EventType::SkillSuspended, s)
            .skill("himalaya")
            .field("reason", "5 violations in 10 minutes")
            .field("until", "2026-04-06T12:23:01.447Z")
            .field("violations", 5),
    ]
}

/// A small event for load tests: `n` identifies it.
pub fn load_event(session: &str, n: u64) -> Event {
    Event::new(EventType::SkillCall, session)
        .skill("load")
        .field("authorised", true)
        .field("via", "cli")
        .field("n", n)
}

/// Every line of a plain log file; panics on a line that is not a valid, schema-conforming record.
pub fn parse_file(path: &Path) -> Vec<Record> {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "{} does not end with a newline",
        path.display()
    );
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{}: torn or invalid line {l:?}: {e}", path.display()));
            schema::validate(&v).unwrap();
            serde_json::from_value::<Record>(v).unwrap()
        })
        .collect()
}

pub fn assert_valid(r: &Record) {
    schema::validate(&r.to_value()).unwrap();
    let line = serde_json::to_string(r).unwrap();
    schema::validate_line(&line).unwrap();
}

/// Asserts event ids are unique and returns them.
pub fn unique_ids(records: &[Record]) -> HashSet<String> {
    let mut ids = HashSet::new();
    for r in records {
        assert!(
            ids.insert(r.event_id.clone()),
            "duplicate eventId {}",
            r.event_id
        );
    }
    ids
}

pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}
