//! TEMPORARY minimal audit log with the agreed API; replaced by the audit branch at merge.
#![allow(missing_docs)]
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::io::Write;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Mutex;

#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub path: PathBuf,
    pub max_size_mb: u64,
    pub keep_days: u32,
    pub compress: bool,
}
impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            path: PathBuf::from("audit.log"),
            max_size_mb: 100,
            keep_days: 90,
            compress: true,
        }
    }
}
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventType {
    GatewayStart,
    GatewayStop,
    SkillCall,
    AllowlistDeny,
    AllowlistViolation,
    AllowlistChange,
    ConfigChange,
    ChannelMsgReceived,
    ChannelMsgBlocked,
    InjectionDetected,
    NetworkBlock,
    FilesystemBlock,
    SkillSuspended,
}
impl EventType {
    pub fn as_str(&self) -> &'static str {
        match self {
            EventType::GatewayStart => "GATEWAY_START",
            EventType::GatewayStop => "GATEWAY_STOP",
            EventType::SkillCall => "SKILL_CALL",
            EventType::AllowlistDeny => "ALLOWLIST_DENY",
            EventType::AllowlistViolation => "ALLOWLIST_VIOLATION",
            EventType::AllowlistChange => "ALLOWLIST_CHANGE",
            EventType::ConfigChange => "CONFIG_CHANGE",
            EventType::ChannelMsgReceived => "CHANNEL_MSG_RECEIVED",
            EventType::ChannelMsgBlocked => "CHANNEL_MSG_BLOCKED",
            EventType::InjectionDetected => "INJECTION_DETECTED",
            EventType::NetworkBlock => "NETWORK_BLOCK",
            EventType::FilesystemBlock => "FILESYSTEM_BLOCK",
            EventType::SkillSuspended => "SKILL_SUSPENDED",
        }
    }
}
impl FromStr for EventType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        serde_json::from_value(Value::String(s.to_owned()))
            .map_err(|_| format!("unknown event {s}"))
    }
}
#[derive(Debug, Clone)]
pub struct Event {
    pub event: EventType,
    pub session_id: String,
    pub skill: Option<String>,
    pub fields: Map<String, Value>,
}
impl Event {
    pub fn new(event: EventType, session_id: impl Into<String>) -> Event {
        Event {
            event,
            session_id: session_id.into(),
            skill: None,
            fields: Map::new(),
        }
    }
    pub fn skill(mut self, name: impl Into<String>) -> Event {
        self.skill = Some(name.into());
        self
    }
    pub fn field(mut self, key: &str, value: impl Into<Value>) -> Event {
        self.fields.insert(key.to_owned(), value.into());
        self
    }
}
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub ts: String,
    pub event: EventType,
    pub event_id: String,
    pub session_id: String,
    pub skill: Option<String>,
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(
        "audit log {path} is not writable: {source}; IronClaw will not start without a writable audit log"
    )]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("audit log {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}
pub struct AuditLog {
    cfg: AuditConfig,
    file: Mutex<std::fs::File>,
}
impl AuditLog {
    pub fn open(cfg: AuditConfig) -> Result<AuditLog, AuditError> {
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(p) = cfg.path.parent() {
            std::fs::create_dir_all(p).map_err(|source| AuditError::Open {
                path: cfg.path.clone(),
                source,
            })?;
        }
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&cfg.path)
            .map_err(|source| AuditError::Open {
                path: cfg.path.clone(),
                source,
            })?;
        Ok(AuditLog {
            cfg,
            file: Mutex::new(file),
        })
    }
    pub fn append(&self, ev: Event) -> Result<Record, AuditError> {
        let ts = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let rec = Record {
            ts,
            event: ev.event,
            event_id: format!("ev_{}", rand::random::<u64>()),
            session_id: ev.session_id,
            skill: ev.skill,
            fields: ev.fields,
        };
        let mut line = serde_json::to_vec(&rec).map_err(|e| AuditError::Io {
            path: self.cfg.path.clone(),
            source: e.into(),
        })?;
        line.push(b'\n');
        let f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        f.lock().map_err(|source| AuditError::Io {
            path: self.cfg.path.clone(),
            source,
        })?;
        let r = (&*f).write_all(&line).and_then(|_| f.sync_data());
        let _ = f.unlock();
        r.map_err(|source| AuditError::Io {
            path: self.cfg.path.clone(),
            source,
        })?;
        Ok(rec)
    }
    pub fn config(&self) -> &AuditConfig {
        &self.cfg
    }
}
pub fn new_session_id() -> String {
    use rand::Rng;
    let s: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(10)
        .map(char::from)
        .collect();
    format!("sess_{s}")
}
pub mod read {
    use super::*;
    #[derive(Debug, Default, Clone)]
    pub struct Query {
        pub last: Option<usize>,
        pub filter: Vec<EventType>,
        pub since: Option<time::OffsetDateTime>,
        pub until: Option<time::OffsetDateTime>,
    }
    pub fn query(cfg: &AuditConfig, q: &Query) -> Result<Vec<Record>, AuditError> {
        let text = std::fs::read_to_string(&cfg.path).map_err(|source| AuditError::Io {
            path: cfg.path.clone(),
            source,
        })?;
        let mut v: Vec<Record> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|r: &Record| q.filter.is_empty() || q.filter.contains(&r.event))
            .collect();
        if let Some(n) = q.last {
            let skip = v.len().saturating_sub(n);
            v.drain(..skip);
        }
        Ok(v)
    }
}
