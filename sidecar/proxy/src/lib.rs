//! IronClaw egress proxy: host:port grants enforced after name resolution.
