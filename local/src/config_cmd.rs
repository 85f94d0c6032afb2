//! `ironclaw config get|set|path`.

use clap::Subcommand;
use ironclaw_sidecar::config;
use ironclaw_sidecar::engine::Engine;
use ironclaw_sidecar::home::Home;
use serde_json::Value;
use std::io::Write;
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print a key's effective value (defaults included; secrets redacted). No KEY: everything.
    Get {
        /// Dotted key, e.g. security.sandbox.mode
        key: Option<String>,
    },
    /// Set a key. The whole resulting config is validated first; on any error the file is untouched.
    Set {
        /// Dotted key, e.g. security.sandbox.mode
        key: String,
        /// New value: a word, number, true/false, a JSON array or a comma-separated list
        value: String,
    },
    /// Print the config file's path
    Path,
}

pub fn print_value(out: &mut dyn Write, v: &Value) -> std::io::Result<()> {
    match v {
        Value::String(s) => writeln!(out, "{s}"),
        Value::Object(_) | Value::Array(_) => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(v).unwrap_or_default()
        ),
        other => writeln!(out, "{other}"),
    }
}

pub fn run(home: &Home, cmd: ConfigCommand, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    match cmd {
        ConfigCommand::Get { key } => {
            let loaded = config::load(home)?;
            let v = config::get(&loaded.config, key.as_deref().unwrap_or(""))?;
            print_value(out, &v)?;
        }
        ConfigCommand::Set { key, value } => {
            let mut engine = Engine::open(home.clone(), "cli")?;
            match engine.set_config(&key, &value)? {
                Some((before, after)) => writeln!(out, "{key}: {before} -> {after}")?,
                None => writeln!(out, "{key} is already {value}; nothing changed")?,
            }
        }
        ConfigCommand::Path => writeln!(out, "{}", home.config_path().display())?,
    }
    Ok(ExitCode::SUCCESS)
}
