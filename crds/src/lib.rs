//! IronClaw API types.
//!
//! - [`grants`]: the grant vocabulary (network, env, filesystem, shell) shared by local mode, the
//!   sandbox, the egress proxy and the operator.
//! - [`channel`]: channel access policy (`dmPolicy`, `allowFrom`, `rateLimit`).
//! - [`skill`], [`allowlist`], [`channel_resource`]: the `Skill`, `Allowlist` and `Channel`
//!   custom resources (`ironclaw.dev/v1alpha1`), whose fields use the grant vocabulary's
//!   textual forms; [`schema`] holds their shared pieces and [`crd`] generates the CRDs.

pub mod allowlist;
pub mod channel;
pub mod channel_resource;
pub mod crd;
pub mod grants;
pub mod schema;
pub mod skill;

pub use grants::{Access, EnvGrant, FsGrant, GrantError, Grants, Host, Missing, NetworkGrant};
