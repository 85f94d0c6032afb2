//! IronClaw Kubernetes operator: reconciles `Skill`s into sandboxed workloads.
//!
//! reconcile = validate → build ([`workload::build`], pure) → apply (server-side apply, owner
//! references) → status. See `docs/operator.md`.

pub mod audit;
pub mod authz;
pub mod leader;
pub mod metrics;
pub mod reconcile;
pub mod run;
pub mod seccomp;
pub mod workload;
