//! IronClaw enforcement engine.
//!
//! One library does all policy work for both homes: the local gateway and CLI (crate `ironclaw`)
//! and the in-pod sidecar. Modules:
//! - [`home`]: where state lives (`IRONCLAW_HOME`, default `~/.ironclaw`)
//! - [`config`]: `ironclaw.json` (JSON with comments), validation, `config get/set`
//! - [`allowlist`]: the allowlist file and its changes
//! - [`suspend`]: violation windows and auto-suspension
//! - [`skill`]: skill manifests (`skill.json`) and installation
//! - [`engine`]: the policy decisions that tie them to the audit log
//! - [`audit`]: the mandatory audit log
//! - [`fsutil`]: locked, atomic, durable file updates shared by the above

pub mod allowlist;
pub mod audit;
pub mod config;
pub mod engine;
pub mod envfile;
pub mod fsutil;
pub mod home;
pub mod pod;
pub mod skill;
pub mod suspend;
