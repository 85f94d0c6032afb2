//! Pieces shared by the custom resources: the OpenAPI patterns that mirror the grant
//! vocabulary's parsers ([`crate::grants`]), Secret references, status conditions and the
//! field-path errors the operator reports.
//!
//! The patterns are the API server's first line of defence (every server enforces `pattern`,
//! `enum` and `minItems`); the Rust parsers in [`crate::grants`] remain the authority: the
//! operator re-validates every field with them and reports a precise error in the status.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A skill name: a DNS-1123 label (see [`crate::grants::validate_skill_name`]).
pub const SKILL_NAME_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// A network grant or request, `host:port`: a DNS name (optionally `*.`-prefixed), an IPv4
/// literal or a bracketed IPv6 literal, and a port from 1 to 65535.
pub const NETWORK_PATTERN: &str = concat!(
    r"^(\[[0-9A-Fa-f:.]+\]",
    r"|(\*\.)?[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*\.?)",
    r":([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$"
);

/// A filesystem grant or request: `PATH:ro` or `PATH:rw`.
pub const FILESYSTEM_PATTERN: &str = r"^[^\n]*[^:\n]:(ro|rw)$";

/// An env request: an exact variable name or a prefix pattern ending in `*`.
pub const ENV_REQUEST_PATTERN: &str = r"^[A-Za-z_][A-Za-z0-9_]*\*?$";

/// An env grant in an Allowlist: an exact variable name (its value comes from one Secret key).
pub const ENV_NAME_PATTERN: &str = r"^[A-Za-z_][A-Za-z0-9_]*$";

/// A Secret name (DNS-1123 subdomain).
pub const SECRET_NAME_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// A key in a Secret's data.
pub const SECRET_KEY_PATTERN: &str = r"^[-._a-zA-Z0-9]+$";

/// A channel sender ID in `allowFrom`: anything without `*` or whitespace.
pub const SENDER_ID_PATTERN: &str = r"^[^*\s]+$";

/// A reference to one key of a Secret in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyRef {
    /// Name of the Secret, in the namespace of the object that references it.
    #[schemars(regex(pattern = SECRET_NAME_PATTERN), length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret's data whose value is used.
    #[schemars(regex(pattern = SECRET_KEY_PATTERN), length(min = 1, max = 253))]
    pub key: String,
}

/// Status of a condition.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// Not known yet.
    Unknown,
}

impl ConditionStatus {
    pub fn from_bool(b: bool) -> Self {
        if b { Self::True } else { Self::False }
    }
}

/// One observation of an object's state, in the usual Kubernetes shape.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type, e.g. `Authorised`, `Ready`, `Suspended`, `PendingGrants`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// Machine-readable reason in CamelCase, e.g. `NotAllowlisted`.
    pub reason: String,
    /// Human-readable explanation.
    pub message: String,
    /// When the status last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    /// The object's `metadata.generation` this condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A field of a custom resource that failed validation, with its dotted path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    /// Dotted path of the field, e.g. `spec.requests.network[1]`.
    pub field: String,
    /// What is wrong and what is allowed.
    pub reason: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
