//! The `Skill` custom resource: what a skill is (image, command) and what it requests.
//!
//! Requests use the grant vocabulary's textual forms ([`crate::grants`]); the schema carries
//! patterns that mirror the parsers, and [`SkillSpec::requested_grants`] parses every field
//! with those parsers, naming the field on error.

// kube's `printcolumn(...)` attributes repeat `type_` by design.
#![allow(clippy::duplicated_attributes)]

use crate::grants::{EnvGrant, FsGrant, Grants, NetworkGrant};
use crate::schema::{
    Condition, ENV_REQUEST_PATTERN, FILESYSTEM_PATTERN, FieldError, NETWORK_PATTERN,
};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Condition type: the skill has an Allowlist entry in its namespace.
pub const CONDITION_AUTHORISED: &str = "Authorised";
/// Condition type: the skill's workload is running.
pub const CONDITION_READY: &str = "Ready";
/// Condition type: the skill is suspended (no workload).
pub const CONDITION_SUSPENDED: &str = "Suspended";
/// Condition type: the skill requests grants its Allowlist entries do not give.
pub const CONDITION_PENDING_GRANTS: &str = "PendingGrants";

/// A skill: a container image and command run inside the IronClaw sandbox, with the
/// capabilities it requests. It gets a workload only when an Allowlist entry in its namespace
/// names it, and then only the intersection of what it requests and what is granted.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "ironclaw.dev",
    version = "v1alpha1",
    kind = "Skill",
    namespaced,
    status = "SkillStatus",
    shortname = "sk",
    category = "ironclaw",
    doc = "A skill: a container image and command run inside the IronClaw sandbox, with the capabilities it requests. It gets a workload only when an Allowlist entry in its namespace names it, and then only what is both requested and granted.",
    printcolumn(
        name = "Authorised",
        type_ = "string",
        description = "Whether an Allowlist entry names this skill",
        json_path = ".status.conditions[?(@.type==\"Authorised\")].status"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        description = "Whether the skill's workload is running",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Pending",
        type_ = "string",
        description = "Requested grants that the Allowlist does not give",
        json_path = ".status.pendingGrants"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SkillSpec {
    /// Container image of the skill, e.g. `localhost/himalaya:1.2.0`. Pin a tag or a digest.
    #[schemars(length(min = 1, max = 512))]
    pub image: String,
    /// Image pull policy of the skill container (`Always`, `IfNotPresent` or `Never`); the
    /// Kubernetes default applies when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    /// The skill's entrypoint and its fixed arguments. The skill runs this command and nothing
    /// else, started through the IronClaw exec wrapper.
    #[schemars(length(min = 1))]
    pub command: Vec<String>,
    /// Further arguments appended to `command`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// What the skill requests. It gets only what an Allowlist entry also grants.
    #[serde(default)]
    pub requests: SkillRequests,
    /// When true the skill has no workload (status `Suspended=True`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
}

/// Image pull policy of the skill container (`Always`, `IfNotPresent` or `Never`); the
/// Kubernetes default applies when unset.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    /// Always pull.
    Always,
    /// Pull when the image is not present on the node.
    IfNotPresent,
    /// Never pull: the image must be present on the node.
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// Capabilities a skill requests, in the grant vocabulary's textual forms.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SkillRequests {
    /// Outbound destinations as `host:port` (e.g. `imap.gmail.com:993`, `*.example.com:443`,
    /// `[2001:db8::1]:443`). Reached only through the sidecar's egress proxy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(regex(pattern = NETWORK_PATTERN), length(max = 262)))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.all(x, x.matches('^[^/]+:[0-9]+$'))",
        "message": "network requests are HOST:PORT, e.g. imap.gmail.com:993 (no URL, no wildcard port)"
    }]))]
    pub network: Vec<String>,
    /// Environment variable names (e.g. `IMAP_PASSWORD`) or prefix patterns (`AWS_*`; a
    /// pattern never matches a secret-looking name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(regex(pattern = ENV_REQUEST_PATTERN), length(max = 253)))]
    pub env: Vec<String>,
    /// Filesystem paths with `:ro` or `:rw`, relative to the workspace root (e.g. `shared:ro`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(regex(pattern = FILESYSTEM_PATTERN), length(max = 4096)))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.all(x, x.endsWith(':ro') || x.endsWith(':rw'))",
        "message": "filesystem requests are PATH:ro or PATH:rw, e.g. shared:ro"
    }]))]
    pub filesystem: Vec<String>,
    /// Whether the skill may execute a shell.
    #[serde(default)]
    pub shell: bool,
}

impl SkillRequests {
    /// Parses every entry with the grant vocabulary's parsers. `prefix` is the field path of
    /// this object (e.g. `spec.requests`), used in errors.
    pub fn to_grants(&self, prefix: &str) -> Result<Grants, FieldError> {
        let mut g = Grants {
            shell: self.shell,
            ..Grants::default()
        };
        for (i, s) in self.network.iter().enumerate() {
            let n: NetworkGrant = s
                .parse()
                .map_err(|e| FieldError::new(format!("{prefix}.network[{i}]"), format!("{e}")))?;
            g.network.push(n);
        }
        for (i, s) in self.env.iter().enumerate() {
            let e: EnvGrant = s
                .parse()
                .map_err(|e| FieldError::new(format!("{prefix}.env[{i}]"), format!("{e}")))?;
            g.env.push(e);
        }
        for (i, s) in self.filesystem.iter().enumerate() {
            let f: FsGrant = s.parse().map_err(|e| {
                FieldError::new(format!("{prefix}.filesystem[{i}]"), format!("{e}"))
            })?;
            g.filesystem.push(f);
        }
        Ok(g)
    }

    /// The textual form of a grant set (the inverse of [`SkillRequests::to_grants`]).
    pub fn from_grants(g: &Grants) -> Self {
        SkillRequests {
            network: g.network.iter().map(ToString::to_string).collect(),
            env: g.env.iter().map(ToString::to_string).collect(),
            filesystem: g.filesystem.iter().map(ToString::to_string).collect(),
            shell: g.shell,
        }
    }
}

impl SkillSpec {
    /// The parsed requests; errors name the field (`spec.requests.…`).
    pub fn requested_grants(&self) -> Result<Grants, FieldError> {
        self.requests.to_grants("spec.requests")
    }

    /// Checks the fields the schema cannot fully express.
    pub fn validate(&self) -> Result<Grants, FieldError> {
        if self.image.trim().is_empty() {
            return Err(FieldError::new(
                "spec.image",
                "required: the skill's container image",
            ));
        }
        if self.command.is_empty() {
            return Err(FieldError::new(
                "spec.command",
                "required: the skill's entrypoint, e.g. [\"himalaya\", \"serve\"]",
            ));
        }
        self.requested_grants()
    }
}

/// Observed state of a Skill, written by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SkillStatus {
    /// `Authorised`, `Ready`, `Suspended` and `PendingGrants`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// What the workload actually gets: requests ∩ Allowlist grants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_grants: Option<SkillRequests>,
    /// Requested but not granted, e.g. `network attacker.io:80, shell`; empty when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_grants: Option<String>,
    /// File name of the generated seccomp profile in the nodes' seccomp root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp_profile: Option<String>,
    /// SHA-256 (hex) of the generated seccomp profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp_profile_hash: Option<String>,
    /// Name of the Deployment that runs the skill, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
}

impl SkillStatus {
    /// The condition of type `t`, if present.
    pub fn condition(&self, t: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == t)
    }
}
