//! `ironclaw.json`: JSON with comments and trailing commas, validated as a whole.
//!
//! - [`load`] reads the file (or the embedded default when there is none), parses, checks every
//!   field and returns the typed [`Config`] with the SHA-256 of the bytes it read.
//! - [`get`] / [`prepare_set`] implement `ironclaw config get/set`: a known key, a value of the
//!   right type, the whole resulting config validated before anything is written, and the edit
//!   applied to the original text so comments and layout survive.

use crate::home::Home;
use ironclaw_crds::channel::{self, RateLimit};
use jsonc_parser::ParseOptions;
use jsonc_parser::cst::{CstInputValue, CstRootNode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// The embedded default configuration (also written on the first `config set`).
pub const DEFAULT_CONFIG: &str = include_str!("default-config.jsonc");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{origin}: not valid JSON (comments and trailing commas are allowed): {message}")]
    Syntax { origin: String, message: String },
    #[error("{origin}: {key}: {message}")]
    Invalid {
        origin: String,
        key: String,
        message: String,
    },
    #[error("unknown config key {key:?}; known keys: {known}")]
    UnknownKey { key: String, known: String },
    #[error("{key}: {value:?} is not {expected}")]
    BadValue {
        key: String,
        value: String,
        expected: String,
    },
    #[error(
        "{key} references ${{{var}}}, which is set neither in the environment nor in {env_file}"
    )]
    MissingVar {
        key: String,
        var: String,
        env_file: String,
    },
    #[error(transparent)]
    Io(#[from] crate::fsutil::PathError),
}

fn invalid(origin: &str, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        origin: origin.to_owned(),
        key: key.into(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SandboxMode {
    #[default]
    Strict,
    Standard,
    AuditOnly,
}

impl SandboxMode {
    pub fn as_str(&self) -> &'static str {
        match self {
            SandboxMode::Strict => "strict",
            SandboxMode::Standard => "standard",
            SandboxMode::AuditOnly => "audit-only",
        }
    }
}

impl fmt::Display for SandboxMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum InjectionMode {
    #[default]
    Flag,
    Block,
    Off,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    #[serde(rename = "$schema", default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    #[serde(default)]
    pub security: Security,
    #[serde(default)]
    pub channels: BTreeMap<String, ChannelConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Security {
    #[serde(default)]
    pub sandbox: SandboxConfig,
    #[serde(default)]
    pub injection_defense: InjectionConfig,
    #[serde(default)]
    pub audit_log: AuditLogConfig,
    #[serde(default)]
    pub auto_suspend: AutoSuspendConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SandboxConfig {
    #[serde(default)]
    pub mode: SandboxMode,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InjectionConfig {
    #[serde(default)]
    pub mode: InjectionMode,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AuditLogConfig {
    pub path: String,
    pub max_size_mb: u64,
    pub keep_days: u32,
    pub compress: bool,
}

impl Default for AuditLogConfig {
    fn default() -> Self {
        AuditLogConfig {
            path: "~/.ironclaw/audit.log".into(),
            max_size_mb: 100,
            keep_days: 90,
            compress: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AutoSuspendConfig {
    pub enabled: bool,
    pub violations_per_window: u32,
    pub window_minutes: u32,
    pub suspend_duration_minutes: u32,
}

impl Default for AutoSuspendConfig {
    fn default() -> Self {
        AutoSuspendConfig {
            enabled: true,
            violations_per_window: 5,
            window_minutes: 10,
            suspend_duration_minutes: 60,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChannelConfig {
    /// Channel type; defaults to the channel's name (`telegram`).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default)]
    pub enabled: bool,
    /// Usually `${TELEGRAM_BOT_TOKEN}`, resolved from the environment or `.env`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot_token: Option<String>,
    /// Always `allowlist` (the default); `open` is refused.
    #[serde(default = "default_dm_policy")]
    pub dm_policy: String,
    #[serde(default)]
    pub allow_from: Vec<String>,
    #[serde(default)]
    pub rate_limit: RateLimit,
}

fn default_dm_policy() -> String {
    channel::DM_POLICY_ALLOWLIST.to_owned()
}

/// A loaded configuration and where it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// The text parsed (the file's, or [`DEFAULT_CONFIG`]).
    pub text: String,
    /// Whether the file exists (false: the embedded default is in force).
    pub from_file: bool,
    pub path: PathBuf,
    /// SHA-256 (hex) of the bytes parsed.
    pub hash: String,
}

fn parse_options() -> ParseOptions {
    ParseOptions {
        allow_comments: true,
        allow_trailing_commas: true,
        allow_loose_object_property_names: false,
        allow_missing_commas: false,
        allow_single_quoted_strings: false,
        allow_hexadecimal_numbers: false,
        allow_unary_plus_numbers: false,
        ..ParseOptions::default()
    }
}

/// Parses JSON-with-comments text into a JSON value.
pub fn parse_value(text: &str, origin: &str) -> Result<Value, ConfigError> {
    let v: Option<Value> =
        jsonc_parser::parse_to_serde_value(text, &parse_options()).map_err(|e| {
            ConfigError::Syntax {
                origin: origin.to_owned(),
                message: e.to_string(),
            }
        })?;
    match v {
        Some(v @ Value::Object(_)) => Ok(v),
        Some(_) => Err(ConfigError::Syntax {
            origin: origin.to_owned(),
            message: "the top level must be an object".into(),
        }),
        None => Ok(Value::Object(Map::new())),
    }
}

/// Checks a JSON value as a complete config: types, enums, ranges, channel policy.
pub fn from_value(v: &Value, origin: &str) -> Result<Config, ConfigError> {
    let cfg: Config = serde_path_to_error::deserialize(v).map_err(|e| {
        let key = e.path().to_string();
        invalid(
            origin,
            if key == "." {
                "(top level)".to_owned()
            } else {
                key
            },
            e.into_inner().to_string(),
        )
    })?;
    validate(&cfg, origin)?;
    Ok(cfg)
}

fn validate(cfg: &Config, origin: &str) -> Result<(), ConfigError> {
    let a = &cfg.security.audit_log;
    if a.path.trim().is_empty() {
        return Err(invalid(
            origin,
            "security.auditLog.path",
            "must not be empty: audit logging cannot be disabled",
        ));
    }
    let ranges: [(&str, u64, u64, u64); 5] = [
        ("security.auditLog.maxSizeMb", a.max_size_mb, 1, 1_048_576),
        ("security.auditLog.keepDays", a.keep_days.into(), 1, 36_500),
        (
            "security.autoSuspend.violationsPerWindow",
            cfg.security.auto_suspend.violations_per_window.into(),
            1,
            1_000_000,
        ),
        (
            "security.autoSuspend.windowMinutes",
            cfg.security.auto_suspend.window_minutes.into(),
            1,
            525_600,
        ),
        (
            "security.autoSuspend.suspendDurationMinutes",
            cfg.security.auto_suspend.suspend_duration_minutes.into(),
            1,
            525_600,
        ),
    ];
    for (key, v, lo, hi) in ranges {
        if v < lo || v > hi {
            return Err(invalid(
                origin,
                key,
                format!("{v} is out of range (allowed: {lo} to {hi})"),
            ));
        }
    }
    for (name, ch) in &cfg.channels {
        let prefix = format!("channels.{name}");
        channel::validate_policy(
            &prefix,
            Some(&ch.dm_policy),
            Some(&ch.allow_from),
            Some(&ch.rate_limit),
        )
        .map_err(|e| invalid(origin, e.field, e.reason))?;
    }
    Ok(())
}

/// Parses and validates config text.
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    from_value(&parse_value(text, origin)?, origin)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Loads `ironclaw.json` from `home`, or the embedded default when the file does not exist.
pub fn load(home: &Home) -> Result<Loaded, ConfigError> {
    let path = home.config_path();
    let (text, from_file) = match crate::fsutil::read_optional(&path)? {
        Some(t) => (t, true),
        None => (DEFAULT_CONFIG.to_owned(), false),
    };
    let origin = if from_file {
        path.display().to_string()
    } else {
        "embedded default config".to_owned()
    };
    let config = parse(&text, &origin)?;
    let hash = sha256_hex(text.as_bytes());
    Ok(Loaded {
        config,
        text,
        from_file,
        path,
        hash,
    })
}

impl Config {
    /// The audit log settings with the path expanded.
    pub fn audit_config(&self, home: &Home) -> crate::audit::AuditConfig {
        let a = &self.security.audit_log;
        crate::audit::AuditConfig {
            path: home.expand(&a.path),
            max_size_mb: a.max_size_mb,
            keep_days: a.keep_days,
            compress: a.compress,
        }
    }

    /// The whole effective config as JSON (defaults filled in).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

/// The type of a settable key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyType {
    Enum(&'static [&'static str]),
    UInt(u64, u64),
    Bool,
    Text,
    Secret,
    StringList,
    Object,
}

const FIXED_KEYS: &[(&str, KeyType)] = &[
    (
        "security.sandbox.mode",
        KeyType::Enum(&["strict", "standard", "audit-only"]),
    ),
    (
        "security.injectionDefense.mode",
        KeyType::Enum(&["flag", "block", "off"]),
    ),
    ("security.auditLog.path", KeyType::Text),
    ("security.auditLog.maxSizeMb", KeyType::UInt(1, 1_048_576)),
    ("security.auditLog.keepDays", KeyType::UInt(1, 36_500)),
    ("security.auditLog.compress", KeyType::Bool),
    ("security.autoSuspend.enabled", KeyType::Bool),
    (
        "security.autoSuspend.violationsPerWindow",
        KeyType::UInt(1, 1_000_000),
    ),
    (
        "security.autoSuspend.windowMinutes",
        KeyType::UInt(1, 525_600),
    ),
    (
        "security.autoSuspend.suspendDurationMinutes",
        KeyType::UInt(1, 525_600),
    ),
];

const CHANNEL_KEYS: &[(&str, KeyType)] = &[
    ("type", KeyType::Text),
    ("enabled", KeyType::Bool),
    ("botToken", KeyType::Secret),
    ("dmPolicy", KeyType::Enum(&["allowlist"])),
    ("allowFrom", KeyType::StringList),
    ("rateLimit.messagesPerHour", KeyType::UInt(1, 1_000_000)),
    ("rateLimit.burstLimit", KeyType::UInt(1, 1_000_000)),
];

fn known_keys() -> String {
    let mut v: Vec<String> = FIXED_KEYS.iter().map(|(k, _)| (*k).to_owned()).collect();
    v.push("channels.<name>".into());
    v.extend(
        CHANNEL_KEYS
            .iter()
            .map(|(k, _)| format!("channels.<name>.{k}")),
    );
    v.join(", ")
}

fn key_type(key: &str) -> Result<KeyType, ConfigError> {
    let unknown = || ConfigError::UnknownKey {
        key: key.to_owned(),
        known: known_keys(),
    };
    if let Some((_, t)) = FIXED_KEYS.iter().find(|(k, _)| *k == key) {
        return Ok(*t);
    }
    if let Some(rest) = key.strip_prefix("channels.") {
        let (name, field) = match rest.split_once('.') {
            Some((n, f)) => (n, Some(f)),
            None => (rest, None),
        };
        if ironclaw_crds::grants::validate_skill_name(name).is_err() {
            return Err(ConfigError::BadValue {
                key: key.to_owned(),
                value: name.to_owned(),
                expected: "a channel name of a-z, 0-9 and '-'".into(),
            });
        }
        return match field {
            None => Ok(KeyType::Object),
            Some(f) => CHANNEL_KEYS
                .iter()
                .find(|(k, _)| *k == f)
                .map(|(_, t)| *t)
                .ok_or_else(unknown),
        };
    }
    Err(unknown())
}

fn bad(key: &str, raw: &str, expected: impl Into<String>) -> ConfigError {
    ConfigError::BadValue {
        key: key.to_owned(),
        value: raw.to_owned(),
        expected: expected.into(),
    }
}

/// Turns the command-line text of a value into JSON of the key's type.
fn coerce(key: &str, t: KeyType, raw: &str) -> Result<Value, ConfigError> {
    // A JSON string literal ("strict") is accepted as well as the bare word.
    let unquoted = serde_json::from_str::<String>(raw).unwrap_or_else(|_| raw.to_owned());
    match t {
        KeyType::Enum(allowed) => {
            if allowed.contains(&unquoted.as_str()) {
                Ok(Value::String(unquoted))
            } else {
                let list = allowed
                    .iter()
                    .map(|a| format!("\"{a}\""))
                    .collect::<Vec<_>>()
                    .join(", ");
                let mut expected = format!("one of {list}");
                if key.ends_with(".dmPolicy") && unquoted == "open" {
                    expected.push_str(
                        " (\"open\" is rejected: every channel requires explicit allowFrom IDs)",
                    );
                }
                Err(bad(key, raw, expected))
            }
        }
        KeyType::UInt(lo, hi) => match unquoted.parse::<u64>() {
            Ok(n) if (lo..=hi).contains(&n) => Ok(Value::from(n)),
            _ => Err(bad(key, raw, format!("a whole number from {lo} to {hi}"))),
        },
        KeyType::Bool => match unquoted.as_str() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(bad(key, raw, "true or false")),
        },
        KeyType::Text | KeyType::Secret => {
            if unquoted.is_empty() {
                Err(bad(key, raw, "a non-empty string"))
            } else {
                Ok(Value::String(unquoted))
            }
        }
        KeyType::StringList => {
            let list: Vec<String> = match serde_json::from_str::<Vec<String>>(raw) {
                Ok(l) => l,
                Err(_) if !raw.trim_start().starts_with('[') => raw
                    .split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect(),
                Err(_) => {
                    return Err(bad(
                        key,
                        raw,
                        "a JSON array of strings or a comma-separated list",
                    ));
                }
            };
            Ok(Value::from(list))
        }
        KeyType::Object => match serde_json::from_str::<Value>(raw) {
            Ok(v @ Value::Object(_)) => Ok(v),
            _ => Err(bad(key, raw, "a JSON object")),
        },
    }
}

fn lookup<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    key.split('.').try_fold(v, |v, seg| v.get(seg))
}

fn set_path(v: &mut Value, key: &str, new: Value) {
    let segs: Vec<&str> = key.split('.').collect();
    let mut cur = v;
    for seg in &segs[..segs.len() - 1] {
        if !cur.get(*seg).is_some_and(Value::is_object)
            && let Value::Object(m) = cur
        {
            m.insert((*seg).to_owned(), Value::Object(Map::new()));
        }
        match cur.get_mut(*seg) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let (Value::Object(m), Some(last)) = (cur, segs.last()) {
        m.insert((*last).to_owned(), new);
    }
}

/// Whether a key holds a secret (its value is shown and logged redacted unless it is a
/// `${VAR}` reference).
pub fn is_secret_key(key: &str) -> bool {
    key.rsplit('.')
        .next()
        .is_some_and(ironclaw_crds::grants::is_secret_like)
}

/// Redacts secret values for output and audit: `${VAR}` references are kept, literals are not.
pub fn redact(key: &str, v: &Value) -> Value {
    match v {
        Value::String(s) if is_secret_key(key) && !is_var_reference(s) => {
            Value::String("[REDACTED]".into())
        }
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), redact(&format!("{key}.{k}"), v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn is_var_reference(s: &str) -> bool {
    s.starts_with("${") && s.ends_with('}') && s.matches("${").count() == 1
}

/// `ironclaw config get KEY`: the effective value (defaults included), secrets redacted.
pub fn get(cfg: &Config, key: &str) -> Result<Value, ConfigError> {
    let all = cfg.to_value();
    if key.is_empty() {
        return Ok(redact("", &all));
    }
    match lookup(&all, key) {
        Some(v) => Ok(redact(key, v)),
        None => {
            // A known key not present (e.g. an unset channel field) is an error naming it.
            key_type(key)?;
            Err(ConfigError::Invalid {
                origin: "config".into(),
                key: key.to_owned(),
                message: "is not set".into(),
            })
        }
    }
}

/// A validated `config set`, not yet written.
#[derive(Debug)]
pub struct PreparedSet {
    pub key: String,
    pub before: Value,
    pub after: Value,
    pub new_text: String,
    pub new_config: Config,
}

impl PreparedSet {
    pub fn changed(&self) -> bool {
        self.before != self.after
    }
}

fn to_cst_input(v: &Value) -> CstInputValue {
    match v {
        Value::Null => CstInputValue::Null,
        Value::Bool(b) => CstInputValue::Bool(*b),
        Value::Number(n) => CstInputValue::Number(n.to_string()),
        Value::String(s) => CstInputValue::String(s.clone()),
        Value::Array(a) => CstInputValue::Array(a.iter().map(to_cst_input).collect()),
        Value::Object(m) => CstInputValue::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), to_cst_input(v)))
                .collect(),
        ),
    }
}

/// Validates `KEY = VALUE` against `current` (the loaded config) and produces the new file text.
/// Nothing is written: the caller stages the text, records CONFIG_CHANGE, then commits.
pub fn prepare_set(
    current: &Loaded,
    key: &str,
    raw_value: &str,
) -> Result<PreparedSet, ConfigError> {
    let t = key_type(key)?;
    let new_value = coerce(key, t, raw_value)?;
    let origin = "new config";
    let mut doc = parse_value(&current.text, &current.path.display().to_string())?;
    set_path(&mut doc, key, new_value.clone());
    let new_config = from_value(&doc, origin)?;

    // Apply the same edit to the concrete syntax tree, keeping comments and layout.
    let root =
        CstRootNode::parse(&current.text, &parse_options()).map_err(|e| ConfigError::Syntax {
            origin: current.path.display().to_string(),
            message: e.to_string(),
        })?;
    let segs: Vec<&str> = key.split('.').collect();
    let mut obj = root.object_value_or_set();
    for seg in &segs[..segs.len() - 1] {
        obj = obj.object_value_or_set(seg);
    }
    let last = segs.last().copied().unwrap_or(key);
    match obj.get(last) {
        Some(prop) => prop.set_value(to_cst_input(&new_value)),
        None => {
            obj.append(last, to_cst_input(&new_value));
        }
    }
    let new_text = root.to_string();
    // The edited text must mean exactly the validated document.
    let reparsed = parse_value(&new_text, origin)?;
    if reparsed != doc {
        return Err(invalid(
            origin,
            key,
            "internal error: the edited file does not match the validated config; nothing written",
        ));
    }
    let before = lookup(&current.config.to_value(), key)
        .cloned()
        .unwrap_or(Value::Null);
    let after = lookup(&new_config.to_value(), key)
        .cloned()
        .unwrap_or(Value::Null);
    Ok(PreparedSet {
        key: key.to_owned(),
        before,
        after,
        new_text,
        new_config,
    })
}

/// Leaf-by-leaf differences between two configs (for hand edits detected at gateway start):
/// `(key, before, after)`, secrets redacted.
pub fn diff(old: &Config, new: &Config) -> Vec<(String, Value, Value)> {
    fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, v) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    flatten(&key, v, out);
                }
            }
            other => {
                out.insert(prefix.to_owned(), other.clone());
            }
        }
    }
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    flatten("", &old.to_value(), &mut a);
    flatten("", &new.to_value(), &mut b);
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter_map(|k| {
            let (x, y) = (
                a.get(k).cloned().unwrap_or(Value::Null),
                b.get(k).cloned().unwrap_or(Value::Null),
            );
            (x != y).then(|| (k.clone(), redact(k, &x), redact(k, &y)))
        })
        .collect()
}

/// Expands `${NAME}` references in a config string from the process environment, then `.env`.
pub fn expand_vars(
    key: &str,
    s: &str,
    dotenv: &BTreeMap<String, String>,
    env_file: &str,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| bad(key, s, "a string with balanced ${NAME} references"))?;
        let var = &after[..end];
        let value = std::env::var(var)
            .ok()
            .or_else(|| dotenv.get(var).cloned())
            .ok_or_else(|| ConfigError::MissingVar {
                key: key.to_owned(),
                var: var.to_owned(),
                env_file: env_file.to_owned(),
            })?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded(text: &str) -> Loaded {
        Loaded {
            config: parse(text, "test").unwrap(),
            text: text.to_owned(),
            from_file: true,
            path: PathBuf::from("ironclaw.json"),
            hash: sha256_hex(text.as_bytes()),
        }
    }

    #[test]
    fn embedded_default_has_the_spec_defaults() {
        let c = parse(DEFAULT_CONFIG, "default").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.security.sandbox.mode, SandboxMode::Strict);
        assert_eq!(c.security.injection_defense.mode, InjectionMode::Flag);
        assert_eq!(
            c.security.audit_log,
            AuditLogConfig {
                path: "~/.ironclaw/audit.log".into(),
                max_size_mb: 100,
                keep_days: 90,
                compress: true
            }
        );
        assert_eq!(
            (
                c.security.auto_suspend.violations_per_window,
                c.security.auto_suspend.window_minutes,
                c.security.auto_suspend.suspend_duration_minutes
            ),
            (5, 10, 60)
        );
    }

    #[test]
    fn spec_channel_example_parses_with_comments() {
        let text = r#"{
          "channels": {
            "telegram": {
              "enabled": true,
              "botToken": "${TELEGRAM_BOT_TOKEN}",
              "dmPolicy": "allowlist",           // only valid option
              "allowFrom": ["8734062810"],       // required — no wildcards
              "rateLimit": { "messagesPerHour": 30, "burstLimit": 5, },
            }
          }
        }"#;
        let c = parse(text, "t").unwrap();
        assert_eq!(c.channels["telegram"].allow_from, vec!["8734062810"]);
    }

    #[test]
    fn bad_configs_name_the_field_and_allowed_values() {
        let cases = [
            (
                r#"{"security":{"sandbox":{"mode":"paranoid"}}}"#,
                "security.sandbox.mode",
                "`strict`, `standard`, `audit-only`",
            ),
            (
                r#"{"security":{"injectionDefense":{"mode":"warn"}}}"#,
                "security.injectionDefense.mode",
                "`flag`, `block`, `off`",
            ),
            (
                r#"{"security":{"auditLog":{"maxSizeMb":0}}}"#,
                "security.auditLog.maxSizeMb",
                "allowed: 1 to",
            ),
            (
                r#"{"security":{"auditLog":{"maxSizeMb":"big"}}}"#,
                "security.auditLog.maxSizeMb",
                "invalid type",
            ),
            (
                r#"{"security":{"auditLog":{"path":""}}}"#,
                "security.auditLog.path",
                "cannot be disabled",
            ),
            (
                r#"{"security":{"sandbox":{"mood":"strict"}}}"#,
                "security.sandbox",
                "unknown field `mood`",
            ),
            (
                r#"{"channels":{"telegram":{"dmPolicy":"open","allowFrom":["1"]}}}"#,
                "channels.telegram.dmPolicy",
                "\"open\" is not allowed",
            ),
            (
                r#"{"channels":{"telegram":{"allowFrom":["*"]}}}"#,
                "channels.telegram.allowFrom[0]",
                "wildcards are not allowed",
            ),
            (
                r#"{"channels":{"telegram":{"enabled":true}}}"#,
                "channels.telegram.allowFrom",
                "required",
            ),
            (r#"{"security": }"#, "not valid JSON", ""),
            (r#"[1]"#, "top level must be an object", ""),
        ];
        for (text, key, msg) in cases {
            let e = parse(text, "ironclaw.json").unwrap_err().to_string();
            assert!(e.contains(key) && e.contains(msg), "{text}\n  -> {e}");
        }
    }

    #[test]
    fn set_keeps_comments_and_validates_first() {
        let cur = loaded(DEFAULT_CONFIG);
        let p = prepare_set(&cur, "security.sandbox.mode", "standard").unwrap();
        assert!(
            p.new_text.contains("// strict: kernel enforcement"),
            "{}",
            p.new_text
        );
        assert!(p.new_text.contains("\"mode\": \"standard\""));
        assert_eq!(p.before, Value::from("strict"));
        assert_eq!(p.after, Value::from("standard"));
        assert_eq!(p.new_config.security.sandbox.mode, SandboxMode::Standard);

        let p = prepare_set(&cur, "channels.telegram.allowFrom", "8734062810,42").unwrap();
        assert_eq!(
            p.new_config.channels["telegram"].allow_from,
            vec!["8734062810", "42"]
        );
        assert!(p.new_text.contains("// Channels: every channel uses"));

        let cases = [
            ("security.sandbox.mod", "strict", "unknown config key"),
            (
                "security.sandbox.mode",
                "paranoid",
                r#"one of "strict", "standard", "audit-only""#,
            ),
            (
                "security.auditLog.maxSizeMb",
                "-1",
                "a whole number from 1 to",
            ),
            ("security.auditLog.compress", "yes", "true or false"),
            ("channels.telegram.dmPolicy", "open", "\"open\" is rejected"),
            (
                "channels.telegram.allowFrom",
                "*",
                "wildcards are not allowed",
            ),
            ("channels.Tele_gram.enabled", "true", "a channel name"),
            (
                "channels.telegram.enabled",
                "true",
                "channels.telegram.allowFrom: required",
            ),
        ];
        for (k, v, want) in cases {
            let e = prepare_set(&cur, k, v).unwrap_err().to_string();
            assert!(e.contains(want), "{k}={v}: {e}");
        }
    }

    #[test]
    fn secrets_are_redacted_unless_references() {
        let text = r#"{"channels":{"t":{"botToken":"123:abc","allowFrom":["1"]},"u":{"botToken":"${U_TOKEN}","allowFrom":["1"]}}}"#;
        let c = parse(text, "t").unwrap();
        assert_eq!(
            get(&c, "channels.t.botToken").unwrap(),
            Value::from("[REDACTED]")
        );
        assert_eq!(
            get(&c, "channels.u.botToken").unwrap(),
            Value::from("${U_TOKEN}")
        );
        assert!(!get(&c, "channels").unwrap().to_string().contains("123:abc"));
        let d = diff(&Config::default(), &c);
        assert!(
            d.iter()
                .all(|(_, a, b)| !a.to_string().contains("abc") && !b.to_string().contains("abc")),
            "{d:?}"
        );
    }

    #[test]
    fn diff_lists_changed_leaves() {
        let a = Config::default();
        let b = parse(
            r#"{"security":{"sandbox":{"mode":"audit-only"},"auditLog":{"keepDays":7}}}"#,
            "t",
        )
        .unwrap();
        let d = diff(&a, &b);
        let keys: Vec<&str> = d.iter().map(|(k, _, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            ["security.auditLog.keepDays", "security.sandbox.mode"]
        );
    }

    #[test]
    fn vars_expand_from_env_file_and_fail_clearly() {
        let mut dot = BTreeMap::new();
        dot.insert("IC_TEST_TOKEN_X".to_owned(), "s3cret".to_owned());
        assert_eq!(
            expand_vars("k", "${IC_TEST_TOKEN_X}", &dot, ".env").unwrap(),
            "s3cret"
        );
        let e = expand_vars(
            "channels.t.botToken",
            "${IC_TEST_MISSING_Y}",
            &dot,
            "~/.ironclaw/.env",
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("IC_TEST_MISSING_Y")
                && e.to_string().contains("~/.ironclaw/.env")
        );
    }
}
