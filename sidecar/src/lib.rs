//! IronClaw enforcement engine: audit log, policy, suspension, metrics, and the in-pod sidecar binary.
pub mod audit;
