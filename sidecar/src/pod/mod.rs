//! The in-pod `ironclaw-sidecar` binary's pieces: the policy the operator mounts
//! (`policy.json`), the exec wrapper that sandboxes the skill in place, and the installer.

pub mod agent;
pub mod exec;
pub mod install;
pub mod policy;
pub mod profiles;

pub use policy::{PodPolicy, PolicyError};
