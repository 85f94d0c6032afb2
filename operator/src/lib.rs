//! IronClaw Kubernetes operator.
