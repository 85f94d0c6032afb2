//! IronClaw API types.
//!
//! - [`grants`]: the grant vocabulary (network, env, filesystem, shell) shared by local mode, the
//!   sandbox, the egress proxy and the operator.
//! - [`channel`]: channel access policy (`dmPolicy`, `allowFrom`, `rateLimit`).

pub mod channel;
pub mod grants;

pub use grants::{Access, EnvGrant, FsGrant, GrantError, Grants, Host, Missing, NetworkGrant};
