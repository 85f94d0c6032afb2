//! `ironclaw skill install|list|run`.

use clap::Subcommand;
use ironclaw_sidecar::allowlist;
use ironclaw_sidecar::home::Home;
use ironclaw_sidecar::skill;
use ironclaw_sidecar::suspend;
use serde_json::{Value, json};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum SkillCommand {
    /// Copy a skill folder (with its skill.json) into $IRONCLAW_HOME/skills/<name>/
    Install { path: PathBuf },
    /// Show each installed skill: requested vs granted, and whether it is suspended
    List {
        #[arg(long)]
        json: bool,
    },
    /// Run a skill's own entrypoint under the configured sandbox, with extra arguments
    Run {
        skill: String,
        /// Resolver override for the egress proxy, NAME=IP[,IP] (repeatable; tests, split DNS)
        #[arg(long = "resolve", value_name = "NAME=IP")]
        resolve: Vec<ironclaw_proxy::StaticResolver>,
        /// Arguments passed to the skill's entrypoint (after `--`)
        #[arg(last = true)]
        args: Vec<std::ffi::OsString>,
    },
}

pub fn run(home: &Home, cmd: SkillCommand, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    match cmd {
        SkillCommand::Install { path } => {
            let m = skill::install(home, &path)?;
            writeln!(
                out,
                "installed {} {} into {}",
                m.name,
                m.version,
                home.skill_dir(&m.name).display()
            )?;
            let list = allowlist::load(home)?;
            if !list.skills.contains_key(&m.name) {
                writeln!(
                    out,
                    "{} is not on the allowlist yet: it cannot run until you `ironclaw allowlist grant {}`",
                    m.name, m.name
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
        SkillCommand::List { json } => list(home, json, out),
        SkillCommand::Run {
            skill,
            resolve,
            args,
        } => crate::run::run(home, &skill, &args, &resolve),
    }
}

fn list(home: &Home, json_out: bool, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let allow = allowlist::load(home)?;
    let now = suspend::now_ms();
    let mut rows = Vec::new();
    for (name, m) in skill::list(home)? {
        let until = suspend::suspended_until(home, &name, now)?;
        let row = match m {
            Err(e) => json!({ "name": name, "error": e.to_string() }),
            Ok(m) => {
                let granted = allow.skills.get(&name);
                let (effective, missing) = granted.map(|g| g.effective(&m.requests)).unzip();
                json!({
                    "name": name,
                    "version": m.version,
                    "allowlisted": granted.is_some(),
                    "requested": m.requests,
                    "granted": effective,
                    "missing": missing,
                    "suspended": until.is_some(),
                    "suspendedUntil": until.map(suspend::format_ms),
                })
            }
        };
        rows.push(row);
    }
    if json_out {
        writeln!(out, "{}", serde_json::to_string_pretty(&Value::from(rows))?)?;
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        writeln!(out, "no skills installed (ironclaw skill install PATH)")?;
    }
    for r in rows {
        let name = r["name"].as_str().unwrap_or_default();
        if let Some(e) = r.get("error") {
            writeln!(out, "{name}  BROKEN: {}", e.as_str().unwrap_or_default())?;
            continue;
        }
        let status = if r["suspended"] == true {
            format!(
                "SUSPENDED until {}",
                r["suspendedUntil"].as_str().unwrap_or_default()
            )
        } else if r["allowlisted"] == true {
            "authorised".to_owned()
        } else {
            "NOT on the allowlist".to_owned()
        };
        writeln!(
            out,
            "{name} {}  [{status}]",
            r["version"].as_str().unwrap_or_default()
        )?;
        writeln!(out, "  requested: {}", r["requested"])?;
        writeln!(out, "  granted:   {}", r["granted"])?;
        if r["missing"].as_object().is_some_and(|m| !m.is_empty()) {
            writeln!(
                out,
                "  pending:   {} (requested, not granted)",
                r["missing"]
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
