//! What the proxy reports: one [`BlockEvent`] per refused (or, in audit-only mode, would-be
//! refused) connection attempt, handed to an [`EventSink`] before the client hears anything.

use std::net::IpAddr;

/// Enforcement mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Refuse what the grants do not allow.
    Enforce,
    /// Allow everything, still report what would have been refused (`blocked: false`).
    AuditOnly,
}

/// Why an attempt was (or would have been) refused. A bounded set: [`BlockReason::as_str`] is
/// used as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockReason {
    /// No grant covers the host:port as the skill named it.
    NotGranted,
    /// The name resolved to a private, loopback, link-local, unspecified, multicast, reserved …
    /// address that no grant names literally.
    PrivateAddress,
    /// The name resolved to a cloud metadata address that no grant names literally.
    MetadataAddress,
    /// The name could not be resolved (or resolved to nothing).
    ResolveFailed,
    /// The request was not a well-formed proxy request (e.g. origin-form, a bad authority, an
    /// `https://` URL outside CONNECT, a wildcard host).
    BadRequest,
}

impl BlockReason {
    pub const ALL: [BlockReason; 5] = [
        BlockReason::NotGranted,
        BlockReason::PrivateAddress,
        BlockReason::MetadataAddress,
        BlockReason::ResolveFailed,
        BlockReason::BadRequest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BlockReason::NotGranted => "not_granted",
            BlockReason::PrivateAddress => "private_address",
            BlockReason::MetadataAddress => "metadata_address",
            BlockReason::ResolveFailed => "resolve_failed",
            BlockReason::BadRequest => "bad_request",
        }
    }

    /// A short human explanation (sent to the client in the refusal body).
    pub fn describe(self) -> &'static str {
        match self {
            BlockReason::NotGranted => "host:port is not in this skill's network grants",
            BlockReason::PrivateAddress => {
                "the name resolves to a non-public address that no grant names"
            }
            BlockReason::MetadataAddress => {
                "the name resolves to a cloud metadata address that no grant names"
            }
            BlockReason::ResolveFailed => "the name could not be resolved",
            BlockReason::BadRequest => "not a valid proxy request",
        }
    }
}

impl std::fmt::Display for BlockReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One refused (or would-be refused) attempt. Carries no message content: only the destination,
/// the checked address, the reason and the grants in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockEvent {
    /// The host as the skill named it (lower-cased; IPv6 without brackets). Bounded in length.
    pub host: String,
    pub port: u16,
    /// The resolved address that was refused (address checks only).
    pub address: Option<IpAddr>,
    pub reason: BlockReason,
    /// The network grants in force, as written (`imap.gmail.com:993`).
    pub granted: Vec<String>,
    /// `true` when the attempt was refused; `false` in audit-only mode.
    pub blocked: bool,
}

impl BlockEvent {
    /// `host:port` as the spec's `resource` field (IPv6 in brackets).
    pub fn resource(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The event's own fields for a NETWORK_BLOCK audit line (the caller adds `ts`,
    /// `sessionId` and `skill`): `event`, `action`, `resource`, `granted`, `blocked`, `reason`
    /// and, when an address was checked, `address`.
    pub fn audit_fields(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        m.insert("event".into(), "NETWORK_BLOCK".into());
        m.insert("action".into(), "network".into());
        m.insert("resource".into(), self.resource().into());
        m.insert("granted".into(), self.granted.clone().into());
        m.insert("blocked".into(), self.blocked.into());
        m.insert("reason".into(), self.reason.as_str().into());
        if let Some(a) = self.address {
            m.insert("address".into(), a.to_string().into());
        }
        m
    }
}

/// Receives block events. `report` is synchronous and may block (the audit log fsyncs a line):
/// the proxy calls it on a blocking thread and waits for it to return before it answers the
/// client, so an acknowledged refusal is always on record.
pub trait EventSink: Send + Sync {
    fn report(&self, ev: BlockEvent);
}

/// Writes each event as one JSON line to standard error (the standalone binary's sink).
#[derive(Debug, Default, Clone, Copy)]
pub struct StderrJsonSink;

impl EventSink for StderrJsonSink {
    fn report(&self, ev: BlockEvent) {
        use std::io::Write;
        let line = serde_json::Value::Object(ev.audit_fields()).to_string();
        // One write_all of a whole line under the stderr lock: lines never interleave.
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(format!("{line}\n").as_bytes());
        let _ = err.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_fields_match_the_spec_example() {
        let ev = BlockEvent {
            host: "attacker.io".into(),
            port: 80,
            address: None,
            reason: BlockReason::NotGranted,
            granted: vec!["imap.gmail.com:993".into(), "smtp.gmail.com:587".into()],
            blocked: true,
        };
        let v = serde_json::Value::Object(ev.audit_fields());
        assert_eq!(
            v,
            serde_json::json!({"event":"NETWORK_BLOCK","action":"network","resource":"attacker.io:80",
                "granted":["imap.gmail.com:993","smtp.gmail.com:587"],"blocked":true,"reason":"not_granted"})
        );
        let v6 = BlockEvent {
            host: "::1".into(),
            port: 8080,
            address: Some("::1".parse().unwrap()),
            reason: BlockReason::PrivateAddress,
            granted: vec![],
            blocked: false,
        };
        assert_eq!(v6.resource(), "[::1]:8080");
        assert_eq!(v6.audit_fields()["address"], "::1");
    }

    #[test]
    fn reasons_are_a_bounded_distinct_set() {
        let names: std::collections::HashSet<_> =
            BlockReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), BlockReason::ALL.len());
    }
}
