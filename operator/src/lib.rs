//! IronClaw Kubernetes operator: reconciles `Skill`s into sandboxed workloads.
//!
//! reconcile = validate → build ([`workload::build`], pure) → apply (server-side apply, owner
//! references) → status. See `docs/operator.md`.

pub mod authz;
pub mod seccomp;
pub mod workload;
