//! Event types, the builder callers use, and the on-disk record.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Every kind of security-relevant event (the spec's table plus SKILL_SUSPENDED).
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
    /// All event types, in the spec's order.
    pub const ALL: [EventType; 13] = [
        EventType::GatewayStart,
        EventType::GatewayStop,
        EventType::SkillCall,
        EventType::AllowlistDeny,
        EventType::AllowlistViolation,
        EventType::AllowlistChange,
        EventType::ConfigChange,
        EventType::ChannelMsgReceived,
        EventType::ChannelMsgBlocked,
        EventType::InjectionDetected,
        EventType::NetworkBlock,
        EventType::FilesystemBlock,
        EventType::SkillSuspended,
    ];

    /// The name as written in the log (`ALLOWLIST_VIOLATION`).
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

    /// The allowed names, comma separated (for error messages).
    pub fn allowed_names() -> String {
        EventType::ALL
            .iter()
            .map(EventType::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown event type name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event type {name:?}; allowed: {allowed}")]
pub struct UnknownEventType {
    pub name: String,
    pub allowed: String,
}

impl FromStr for EventType {
    type Err = UnknownEventType;

    /// Exact, case-sensitive names as in the log (`NETWORK_BLOCK`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventType::ALL
            .iter()
            .copied()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownEventType {
                name: s.to_string(),
                allowed: EventType::allowed_names(),
            })
    }
}

/// What a caller wants recorded. `ts` and `eventId` are added by [`super::AuditLog::append`].
#[derive(Clone, Debug, PartialEq)]
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

    /// The skill the event is about.
    pub fn skill(mut self, name: impl Into<String>) -> Event {
        self.skill = Some(name.into());
        self
    }

    /// One context field (camelCase key). Reserved keys are refused by `append`.
    pub fn field(mut self, key: &str, value: impl Into<Value>) -> Event {
        self.fields.insert(key.to_string(), value.into());
        self
    }
}

/// Keys every record has; the context may not use them.
pub const RESERVED_KEYS: [&str; 5] = ["ts", "event", "eventId", "sessionId", "skill"];

/// One line of the log. Serialises flat, in this key order:
/// `{"ts":"2026-04-06T11:23:01.447Z","event":"...","eventId":"...","sessionId":"...","skill":"..."|null, ...fields}`
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub ts: String,
    pub event: EventType,
    pub event_id: String,
    pub session_id: String,
    pub skill: Option<String>,
    pub fields: Map<String, Value>,
}

impl Record {
    /// The record as a JSON object (the same shape as its log line).
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("ts".into(), Value::String(self.ts.clone()));
        m.insert("event".into(), Value::String(self.event.as_str().into()));
        m.insert("eventId".into(), Value::String(self.event_id.clone()));
        m.insert("sessionId".into(), Value::String(self.session_id.clone()));
        m.insert(
            "skill".into(),
            self.skill.clone().map(Value::String).unwrap_or(Value::Null),
        );
        for (k, v) in &self.fields {
            if !RESERVED_KEYS.contains(&k.as_str()) {
                m.insert(k.clone(), v.clone());
            }
        }
        Value::Object(m)
    }
}

impl Serialize for Record {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let extra = self
            .fields
            .keys()
            .filter(|k| !RESERVED_KEYS.contains(&k.as_str()))
            .count();
        let mut map = serializer.serialize_map(Some(5 + extra))?;
        map.serialize_entry("ts", &self.ts)?;
        map.serialize_entry("event", self.event.as_str())?;
        map.serialize_entry("eventId", &self.event_id)?;
        map.serialize_entry("sessionId", &self.session_id)?;
        map.serialize_entry("skill", &self.skill)?;
        for (k, v) in &self.fields {
            if !RESERVED_KEYS.contains(&k.as_str()) {
                map.serialize_entry(k, v)?;
            }
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Record {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut m = Map::<String, Value>::deserialize(deserializer)?;
        let mut take_str = |key: &'static str| -> Result<String, D::Error> {
            match m.remove(key) {
                Some(Value::String(s)) => Ok(s),
                Some(other) => Err(de::Error::custom(format!(
                    "{key} must be a string, found {other}"
                ))),
                None => Err(de::Error::missing_field(key)),
            }
        };
        let ts = take_str("ts")?;
        let event_name = take_str("event")?;
        let event_id = take_str("eventId")?;
        let session_id = take_str("sessionId")?;
        let event = EventType::from_str(&event_name).map_err(de::Error::custom)?;
        let skill = match m.remove("skill") {
            Some(Value::String(s)) => Some(s),
            Some(Value::Null) => None,
            Some(other) => {
                return Err(de::Error::custom(format!(
                    "skill must be a string or null, found {other}"
                )));
            }
            None => return Err(de::Error::missing_field("skill")),
        };
        Ok(Record {
            ts,
            event,
            event_id,
            session_id,
            skill,
            fields: m,
        })
    }
}
