//! The `Channel` custom resource: a messaging channel and its access policy.
//!
//! The policy fields follow [`crate::channel`]: `dmPolicy` must be `allowlist`, `allowFrom`
//! lists specific sender IDs (no `*`), and rate limiting defaults to 30 messages per sender
//! per hour with a burst of 5.

// kube's `printcolumn(...)` attributes repeat `type_` by design.
#![allow(clippy::duplicated_attributes)]

use crate::channel::{DEFAULT_BURST_LIMIT, DEFAULT_MESSAGES_PER_HOUR, RateLimit, validate_policy};
use crate::schema::{Condition, FieldError, SENDER_ID_PATTERN, SecretKeyRef};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A messaging channel the agent listens on, with its access policy.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "ironclaw.dev",
    version = "v1alpha1",
    kind = "Channel",
    namespaced,
    status = "ChannelStatus",
    shortname = "ch",
    category = "ironclaw",
    doc = "A messaging channel and its access policy: dmPolicy allowlist only, explicit allowFrom sender IDs, per-sender rate limits.",
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(name = "Enabled", type_ = "boolean", json_path = ".spec.enabled"),
    printcolumn(
        name = "Valid",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Valid\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.dmPolicy == 'allowlist'",
        "message": "dmPolicy must be \"allowlist\": \"open\" is not allowed, every channel requires explicit allowFrom IDs"
    },
    {
        "rule": "self.allowFrom.size() > 0 && self.allowFrom.all(id, !id.contains('*'))",
        "message": "allowFrom must list specific sender IDs; '*' and an empty list are not allowed"
    }
]))]
pub struct ChannelSpec {
    /// Channel type.
    #[serde(rename = "type")]
    pub type_: ChannelType,
    /// Whether the channel is active.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The Secret key holding the bot token.
    pub bot_token_secret_ref: SecretKeyRef,
    /// Direct-message policy. Only `allowlist` is accepted (`open` is refused).
    #[serde(default)]
    pub dm_policy: DmPolicy,
    /// Sender IDs allowed to message this channel: at least one, no wildcards.
    #[schemars(length(min = 1), inner(regex(pattern = SENDER_ID_PATTERN), length(min = 1, max = 256)))]
    pub allow_from: Vec<String>,
    /// Per-sender rate limit (on by default).
    #[serde(default)]
    pub rate_limit: ChannelRateLimit,
}

fn default_true() -> bool {
    true
}

/// Supported channel types.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChannelType {
    /// Telegram bot.
    Telegram,
    /// Discord bot.
    Discord,
    /// Slack app.
    Slack,
    /// Signal.
    Signal,
    /// WhatsApp.
    Whatsapp,
    /// Matrix.
    Matrix,
}

/// Direct-message policy: IronClaw accepts only `allowlist`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DmPolicy {
    /// Only senders listed in `allowFrom` may message the agent.
    #[default]
    Allowlist,
}

/// Per-sender rate limit of a channel.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.burstLimit <= self.messagesPerHour",
    "message": "burstLimit cannot exceed messagesPerHour"
}]))]
pub struct ChannelRateLimit {
    /// Messages one sender may send per hour (default 30).
    #[serde(default = "default_per_hour")]
    #[schemars(range(min = 1))]
    pub messages_per_hour: u32,
    /// Messages one sender may send in any 60 seconds (default 5).
    #[serde(default = "default_burst")]
    #[schemars(range(min = 1))]
    pub burst_limit: u32,
}

fn default_per_hour() -> u32 {
    DEFAULT_MESSAGES_PER_HOUR
}
fn default_burst() -> u32 {
    DEFAULT_BURST_LIMIT
}

impl Default for ChannelRateLimit {
    fn default() -> Self {
        ChannelRateLimit {
            messages_per_hour: DEFAULT_MESSAGES_PER_HOUR,
            burst_limit: DEFAULT_BURST_LIMIT,
        }
    }
}

impl From<ChannelRateLimit> for RateLimit {
    fn from(r: ChannelRateLimit) -> Self {
        RateLimit {
            messages_per_hour: r.messages_per_hour,
            burst_limit: r.burst_limit,
        }
    }
}

impl ChannelSpec {
    /// Validates the policy with [`crate::channel::validate_policy`] (field paths `spec.…`).
    pub fn validate(&self) -> Result<(), FieldError> {
        let dm = match self.dm_policy {
            DmPolicy::Allowlist => "allowlist",
        };
        validate_policy(
            "spec",
            Some(dm),
            Some(&self.allow_from),
            Some(&RateLimit::from(self.rate_limit)),
        )
        .map_err(|e| FieldError::new(e.field, e.reason))
    }
}

/// Observed state of a Channel.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelStatus {
    /// `Valid`: whether the policy passed validation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
