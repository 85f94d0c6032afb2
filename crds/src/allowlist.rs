//! The `Allowlist` custom resource: the grants an operator of the allowlist gives to named
//! skills in its namespace. A skill's grants are the union of every entry naming it in its
//! namespace (across all Allowlists there).
//!
//! Same vocabulary as local mode's `ironclaw allowlist grant`; in a pod an env grant also
//! names the Secret key its value comes from, so env grants here are exact names.

// kube's `printcolumn(...)` attributes repeat `type_` by design.
#![allow(clippy::duplicated_attributes)]

use crate::grants::{EnvGrant, FsGrant, Grants, NetworkGrant, validate_skill_name};
use crate::schema::{
    ENV_NAME_PATTERN, FILESYSTEM_PATTERN, FieldError, NETWORK_PATTERN, SKILL_NAME_PATTERN,
    SecretKeyRef,
};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Grants for named skills in this namespace. Whoever may edit Allowlists decides what skills
/// may do; whoever may create Skills cannot widen that.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "ironclaw.dev",
    version = "v1alpha1",
    kind = "Allowlist",
    namespaced,
    shortname = "al",
    category = "ironclaw",
    doc = "Grants for named skills in this namespace. A skill's grants are the union of every entry naming it in its namespace; a skill no entry names gets no workload.",
    printcolumn(
        name = "Skills",
        type_ = "string",
        description = "Skills this Allowlist grants to",
        json_path = ".spec.skills[*].name"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AllowlistSpec {
    /// One entry per skill (several entries, here or in other Allowlists of the namespace,
    /// may name the same skill: their grants add up).
    #[serde(default)]
    pub skills: Vec<AllowlistEntry>,
}

/// The grants given to one skill.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AllowlistEntry {
    /// Name of the Skill in this namespace (a DNS-1123 label).
    #[schemars(regex(pattern = SKILL_NAME_PATTERN), length(min = 1, max = 63))]
    pub name: String,
    /// Destinations the skill may reach, as `host:port` (e.g. `imap.gmail.com:993`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(regex(pattern = NETWORK_PATTERN), length(max = 262)))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.all(x, x.matches('^[^/]+:[0-9]+$'))",
        "message": "network grants are HOST:PORT, e.g. imap.gmail.com:993 (no URL, no wildcard port)"
    }]))]
    pub network: Vec<String>,
    /// Environment variables the skill receives, each with the Secret key holding its value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvSecretGrant>,
    /// Filesystem paths with `:ro` or `:rw`, relative to the workspace root (e.g. `shared:ro`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(regex(pattern = FILESYSTEM_PATTERN), length(max = 4096)))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.all(x, x.endsWith(':ro') || x.endsWith(':rw'))",
        "message": "filesystem grants are PATH:ro or PATH:rw, e.g. shared:ro"
    }]))]
    pub filesystem: Vec<String>,
    /// Whether the skill may execute a shell. Review the skill's source before granting this.
    #[serde(default)]
    pub shell: bool,
}

/// An env grant: an exact variable name and the Secret key its value comes from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvSecretGrant {
    /// Exact variable name, e.g. `IMAP_PASSWORD` (patterns are local-mode only: in a pod each
    /// variable needs its own Secret key).
    #[schemars(regex(pattern = ENV_NAME_PATTERN), length(min = 1, max = 253))]
    pub name: String,
    /// The Secret key (in this namespace) holding the variable's value.
    pub secret_key_ref: SecretKeyRef,
}

impl AllowlistEntry {
    /// Parses the entry with the grant vocabulary's parsers; `prefix` is this entry's field
    /// path (e.g. `spec.skills[0]`), used in errors.
    pub fn grants(&self, prefix: &str) -> Result<Grants, FieldError> {
        validate_skill_name(&self.name)
            .map_err(|e| FieldError::new(format!("{prefix}.name"), e.to_string()))?;
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
        for (i, e) in self.env.iter().enumerate() {
            let field = format!("{prefix}.env[{i}].name");
            match e.name.parse::<EnvGrant>() {
                Ok(EnvGrant::Exact(n)) => g.env.push(EnvGrant::Exact(n)),
                Ok(EnvGrant::Prefix(_)) => {
                    return Err(FieldError::new(
                        field,
                        format!(
                            "{:?}: a pattern cannot name one Secret key; grant each variable by its exact name",
                            e.name
                        ),
                    ));
                }
                Err(err) => return Err(FieldError::new(field, err.to_string())),
            }
        }
        for (i, s) in self.filesystem.iter().enumerate() {
            let f: FsGrant = s.parse().map_err(|e| {
                FieldError::new(format!("{prefix}.filesystem[{i}]"), format!("{e}"))
            })?;
            g.filesystem.push(f);
        }
        Ok(g)
    }

    /// The Secret key granted for the exact variable `name`, if any.
    pub fn secret_for(&self, name: &str) -> Option<&SecretKeyRef> {
        self.env
            .iter()
            .find(|e| e.name == name)
            .map(|e| &e.secret_key_ref)
    }
}
