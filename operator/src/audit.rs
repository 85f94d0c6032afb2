//! Audit records the operator writes (ALLOWLIST_DENY, ALLOWLIST_VIOLATION): one JSON object
//! per line on stdout, in the audit format (`ts`, `event`, `sessionId`, `skill`, context),
//! until the cluster-wide collector takes them. Each line is written with one `write_all`
//! under a lock and flushed before the decision is recorded in the status, so a record is
//! never torn and never missing for a decision the status shows.

use serde::Serialize;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// The operator's audit events (names from the spec).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum AuditEvent {
    /// A skill without an Allowlist entry: no workload.
    #[serde(rename = "ALLOWLIST_DENY")]
    AllowlistDeny,
    /// A skill requests more than its grants: it runs with the intersection only.
    #[serde(rename = "ALLOWLIST_VIOLATION")]
    AllowlistViolation,
}

impl AuditEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditEvent::AllowlistDeny => "ALLOWLIST_DENY",
            AuditEvent::AllowlistViolation => "ALLOWLIST_VIOLATION",
        }
    }
}

/// One audit line.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    pub ts: String,
    pub event: AuditEvent,
    pub session_id: String,
    pub skill: String,
    pub namespace: String,
    /// `start` for a denied skill; `network` / `env` / `filesystem` / `shell` for a request
    /// beyond the grants.
    pub action: String,
    pub resource: String,
    pub granted: Vec<String>,
    pub blocked: bool,
    /// Unique id for de-duplication by the collector.
    pub event_id: String,
    /// The skill's metadata.generation the decision was made for.
    pub generation: Option<i64>,
    pub source: &'static str,
}

/// Writes audit lines to a sink (stdout in production).
#[derive(Clone)]
pub struct AuditLog {
    sink: Arc<Mutex<Box<dyn Write + Send>>>,
    session_id: String,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("session_id", &self.session_id)
            .finish()
    }
}

fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    now.format(&fmt)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

fn random_hex(bytes: usize) -> String {
    let v: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    hex::encode(v)
}

impl AuditLog {
    /// An audit log writing to `sink`.
    pub fn new(sink: Box<dyn Write + Send>) -> Self {
        AuditLog {
            sink: Arc::new(Mutex::new(sink)),
            session_id: format!("op_{}", random_hex(6)),
        }
    }

    /// An audit log on stdout.
    pub fn stdout() -> Self {
        Self::new(Box::new(std::io::stdout()))
    }

    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// Builds a record with the time, session and a fresh event id filled in.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &self,
        event: AuditEvent,
        skill: &str,
        namespace: &str,
        action: &str,
        resource: &str,
        granted: Vec<String>,
        generation: Option<i64>,
    ) -> AuditRecord {
        AuditRecord {
            ts: now_rfc3339(),
            event,
            session_id: self.session_id.clone(),
            skill: skill.to_owned(),
            namespace: namespace.to_owned(),
            action: action.to_owned(),
            resource: resource.to_owned(),
            granted,
            blocked: true,
            event_id: random_hex(12),
            generation,
            source: "operator",
        }
    }

    /// Writes the records, each as one line, and flushes.
    pub fn write(&self, records: &[AuditRecord]) -> std::io::Result<()> {
        let mut buf = Vec::new();
        for r in records {
            serde_json::to_writer(&mut buf, r)?;
            buf.push(b'\n');
        }
        let mut sink = self
            .sink
            .lock()
            .map_err(|_| std::io::Error::other("audit sink lock poisoned"))?;
        sink.write_all(&buf)?;
        sink.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn records_are_single_json_lines_in_the_audit_format() {
        let buf = Buf::default();
        let log = AuditLog::new(Box::new(buf.clone()));
        let r = log.record(
            AuditEvent::AllowlistViolation,
            "himalaya",
            "agents",
            "network",
            "attacker.io:80",
            vec!["imap.gmail.com:993".into()],
            Some(2),
        );
        log.write(&[r.clone(), r]).unwrap();
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["event"], "ALLOWLIST_VIOLATION");
        assert_eq!(v["skill"], "himalaya");
        assert_eq!(v["resource"], "attacker.io:80");
        assert_eq!(v["granted"][0], "imap.gmail.com:993");
        assert_eq!(v["blocked"], true);
        assert!(v["sessionId"].as_str().unwrap().starts_with("op_"));
        assert!(v["ts"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn concurrent_writers_never_tear_lines() {
        let buf = Buf::default();
        let log = AuditLog::new(Box::new(buf.clone()));
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        let r = log.record(
                            AuditEvent::AllowlistDeny,
                            &format!("s{i}"),
                            "n",
                            "start",
                            "skill",
                            vec![],
                            None,
                        );
                        log.write(&[r]).unwrap();
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let mut n = 0;
        for l in text.lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["event"], "ALLOWLIST_DENY");
            n += 1;
        }
        assert_eq!(n, 1600);
    }
}
