//! Channel access policy shared by local config (`channels.<name>`) and the `Channel` resource.
//!
//! IronClaw accepts exactly one DM policy, `allowlist`: `open` is refused, `allowFrom` must list
//! specific sender IDs (no `*`), and rate limiting is on by default (30 messages per user per
//! hour, at most 5 in any 60 seconds).

use serde::{Deserialize, Serialize};

/// Default `rateLimit.messagesPerHour`.
pub const DEFAULT_MESSAGES_PER_HOUR: u32 = 30;
/// Default `rateLimit.burstLimit` (messages in any 60 seconds).
pub const DEFAULT_BURST_LIMIT: u32 = 5;

/// Why a channel policy was refused; `field` is the dotted path of the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ChannelError {
    pub field: String,
    pub reason: String,
}

/// Per-sender rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimit {
    /// Messages one sender may send per hour.
    #[serde(default = "default_per_hour")]
    pub messages_per_hour: u32,
    /// Messages one sender may send in any 60 seconds.
    #[serde(default = "default_burst")]
    pub burst_limit: u32,
}

fn default_per_hour() -> u32 {
    DEFAULT_MESSAGES_PER_HOUR
}
fn default_burst() -> u32 {
    DEFAULT_BURST_LIMIT
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            messages_per_hour: DEFAULT_MESSAGES_PER_HOUR,
            burst_limit: DEFAULT_BURST_LIMIT,
        }
    }
}

/// The only DM policy value IronClaw accepts.
pub const DM_POLICY_ALLOWLIST: &str = "allowlist";

/// Validates a channel's access fields. `prefix` is the field path of the channel
/// (e.g. `channels.telegram` or `spec`), used in error messages.
pub fn validate_policy(
    prefix: &str,
    dm_policy: Option<&str>,
    allow_from: Option<&[String]>,
    rate_limit: Option<&RateLimit>,
) -> Result<(), ChannelError> {
    let field = |f: &str| format!("{prefix}.{f}");
    match dm_policy {
        None | Some(DM_POLICY_ALLOWLIST) => {}
        Some("open") => {
            return Err(ChannelError {
                field: field("dmPolicy"),
                reason: "\"open\" is not allowed: every channel requires explicit allowFrom IDs (allowed value: \"allowlist\")".into(),
            });
        }
        Some(other) => {
            return Err(ChannelError {
                field: field("dmPolicy"),
                reason: format!("{other:?} is not a valid policy (allowed value: \"allowlist\")"),
            });
        }
    }
    let ids = allow_from.unwrap_or_default();
    if ids.is_empty() {
        return Err(ChannelError {
            field: field("allowFrom"),
            reason: "required: list the sender IDs allowed to message this channel".into(),
        });
    }
    for (i, id) in ids.iter().enumerate() {
        if id.contains('*') {
            return Err(ChannelError {
                field: format!("{}[{i}]", field("allowFrom")),
                reason: format!("{id:?}: wildcards are not allowed; list specific user IDs"),
            });
        }
        if id.trim().is_empty() {
            return Err(ChannelError {
                field: format!("{}[{i}]", field("allowFrom")),
                reason: "empty ID".into(),
            });
        }
    }
    if let Some(rl) = rate_limit {
        if rl.messages_per_hour == 0 {
            return Err(ChannelError {
                field: field("rateLimit.messagesPerHour"),
                reason: "must be at least 1".into(),
            });
        }
        if rl.burst_limit == 0 {
            return Err(ChannelError {
                field: field("rateLimit.burstLimit"),
                reason: "must be at least 1".into(),
            });
        }
        if rl.burst_limit > rl.messages_per_hour {
            return Err(ChannelError {
                field: field("rateLimit.burstLimit"),
                reason: format!(
                    "{} is more than messagesPerHour ({})",
                    rl.burst_limit, rl.messages_per_hour
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn open_policy_and_wildcards_are_refused_with_the_field() {
        let ok = ids(&["8734062810"]);
        validate_policy("channels.telegram", Some("allowlist"), Some(&ok), None).unwrap();
        validate_policy(
            "channels.telegram",
            None,
            Some(&ok),
            Some(&RateLimit::default()),
        )
        .unwrap();
        let e = validate_policy("channels.telegram", Some("open"), Some(&ok), None).unwrap_err();
        assert_eq!(e.field, "channels.telegram.dmPolicy");
        assert!(e.to_string().contains("\"open\" is not allowed"));
        let e = validate_policy("spec", None, Some(&ids(&["1", "*"])), None).unwrap_err();
        assert_eq!(e.field, "spec.allowFrom[1]");
        let e = validate_policy("spec", None, Some(&[]), None).unwrap_err();
        assert_eq!(e.field, "spec.allowFrom");
        let e = validate_policy("spec", None, None, None).unwrap_err();
        assert_eq!(e.field, "spec.allowFrom");
        let e = validate_policy("spec", Some("pairing"), Some(&ok), None).unwrap_err();
        assert!(e.reason.contains("allowed value: \"allowlist\""));
        let rl = RateLimit {
            messages_per_hour: 3,
            burst_limit: 5,
        };
        let e = validate_policy("spec", None, Some(&ok), Some(&rl)).unwrap_err();
        assert_eq!(e.field, "spec.rateLimit.burstLimit");
    }

    #[test]
    fn rate_limit_defaults_follow_the_spec() {
        let rl: RateLimit = serde_json::from_str("{}").unwrap();
        assert_eq!(
            rl,
            RateLimit {
                messages_per_hour: 30,
                burst_limit: 5
            }
        );
    }
}
