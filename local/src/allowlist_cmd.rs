//! `ironclaw allowlist grant|revoke|remove|list|unsuspend`.

use clap::{Args, Subcommand};
use ironclaw_crds::{EnvGrant, FsGrant, Grants, NetworkGrant};
use ironclaw_sidecar::allowlist::{self, Change, Outcome};
use ironclaw_sidecar::audit::EventType;
use ironclaw_sidecar::engine::Engine;
use ironclaw_sidecar::home::Home;
use ironclaw_sidecar::suspend;
use serde_json::{Value, json};
use std::io::Write;
use std::process::ExitCode;

#[derive(Args, Debug, Default)]
pub struct GrantFlags {
    /// Destination HOST:PORT (repeatable), e.g. imap.gmail.com:993. A bare '*' host is refused.
    #[arg(long = "network", value_name = "HOST:PORT")]
    pub network: Vec<NetworkGrant>,
    /// Environment variable name or PREFIX_* pattern (repeatable). Patterns never match
    /// secret-looking names (*_API_KEY, *_TOKEN, *SECRET*, ...): grant those by exact name.
    #[arg(long = "env", value_name = "NAME")]
    pub env: Vec<EnvGrant>,
    /// Path with :ro or :rw (repeatable), e.g. ~/.ironclaw/workspace/shared:ro
    #[arg(long = "filesystem", value_name = "PATH:ro|rw")]
    pub filesystem: Vec<FsGrant>,
    /// Allow the skill to execute a shell (read the skill's source first)
    #[arg(long)]
    pub shell: bool,
}

impl GrantFlags {
    fn grants(&self) -> Grants {
        Grants {
            network: self.network.clone(),
            env: self.env.clone(),
            filesystem: self.filesystem.clone(),
            shell: self.shell,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum AllowlistCommand {
    /// Authorise a skill and/or add grants to it
    Grant {
        skill: String,
        #[command(flatten)]
        flags: GrantFlags,
    },
    /// Take grants away from a skill (it stays authorised)
    Revoke {
        skill: String,
        #[command(flatten)]
        flags: GrantFlags,
    },
    /// Remove a skill from the allowlist: it can no longer run
    Remove { skill: String },
    /// Show every authorised skill with its grants and suspension
    List {
        #[arg(long)]
        json: bool,
    },
    /// Lift an auto-suspension
    Unsuspend { skill: String },
    /// After runs in audit-only mode: print the minimal `allowlist grant` that would have let
    /// them succeed (from the skill's non-blocking FILESYSTEM_BLOCK / NETWORK_BLOCK records)
    Suggest { skill: String },
}

pub fn run(home: &Home, cmd: AllowlistCommand, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    match cmd {
        AllowlistCommand::Grant { skill, flags } => {
            change(home, &skill, Change::Grant, &flags.grants(), out)
        }
        AllowlistCommand::Revoke { skill, flags } => {
            let g = flags.grants();
            if g.is_empty() {
                anyhow::bail!(
                    "revoke needs at least one of --network, --env, --filesystem, --shell (to take the skill off the allowlist: `ironclaw allowlist remove {skill}`)"
                );
            }
            change(home, &skill, Change::Revoke, &g, out)
        }
        AllowlistCommand::Remove { skill } => {
            change(home, &skill, Change::Remove, &Grants::default(), out)
        }
        AllowlistCommand::List { json } => list(home, json, out),
        AllowlistCommand::Unsuspend { skill } => unsuspend(home, &skill, out),
        AllowlistCommand::Suggest { skill } => suggest(home, &skill, out),
    }
}

fn change(
    home: &Home,
    skill: &str,
    change: Change,
    grants: &Grants,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let engine = Engine::open(home.clone(), "cli")?;
    let actor = allowlist::actor("cli");
    match allowlist::update(
        home,
        &engine.audit,
        &engine.session_id,
        &actor,
        skill,
        change,
        grants,
    )? {
        Outcome::Unchanged => writeln!(out, "{skill}: nothing changed")?,
        Outcome::Changed { change, after, .. } => {
            writeln!(out, "{skill}: {}", change.as_str())?;
            if let Some(g) = after {
                writeln!(out, "{}", serde_json::to_string_pretty(&g)?)?;
                if g.shell && grants.shell {
                    eprintln!(
                        "warning: {skill} may now execute a shell. In strict mode the shell still runs inside the sandbox; \
in standard and audit-only modes shell access means full access to this user account."
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn list(home: &Home, json_out: bool, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let list = allowlist::load(home)?;
    let now = suspend::now_ms();
    let mut rows = Vec::new();
    for (name, g) in &list.skills {
        let until = suspend::suspended_until(home, name, now)?;
        rows.push(json!({
            "skill": name,
            "grants": g,
            "suspendedUntil": until.map(suspend::format_ms),
        }));
    }
    if json_out {
        writeln!(out, "{}", serde_json::to_string_pretty(&Value::from(rows))?)?;
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        writeln!(out, "the allowlist is empty: no skill can run")?;
    }
    for (name, g) in &list.skills {
        let until = suspend::suspended_until(home, name, now)?;
        writeln!(
            out,
            "{name}{}",
            until
                .map(|u| format!("  [SUSPENDED until {}]", suspend::format_ms(u)))
                .unwrap_or_default()
        )?;
        let join = |v: Vec<String>| {
            if v.is_empty() {
                "-".to_owned()
            } else {
                v.join(", ")
            }
        };
        writeln!(
            out,
            "  network:    {}",
            join(g.network.iter().map(ToString::to_string).collect())
        )?;
        writeln!(
            out,
            "  env:        {}",
            join(g.env.iter().map(ToString::to_string).collect())
        )?;
        writeln!(
            out,
            "  filesystem: {}",
            join(g.filesystem.iter().map(ToString::to_string).collect())
        )?;
        writeln!(out, "  shell:      {}", g.shell)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn unsuspend(home: &Home, skill: &str, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    ironclaw_crds::grants::validate_skill_name(skill)?;
    let engine = Engine::open(home.clone(), "cli")?;
    let now = suspend::now_ms();
    let Some(until) = suspend::suspended_until(home, skill, now)? else {
        writeln!(out, "{skill} is not suspended; nothing changed")?;
        return Ok(ExitCode::SUCCESS);
    };
    engine.emit(
        engine
            .event(EventType::AllowlistChange)
            .skill(skill)
            .field("change", "unsuspend")
            .field("actor", allowlist::actor("cli"))
            .field(
                "before",
                json!({ "suspendedUntil": suspend::format_ms(until) }),
            )
            .field("after", Value::Null),
    )?;
    suspend::unsuspend(home, skill, now)?;
    writeln!(out, "{skill}: unsuspended")?;
    Ok(ExitCode::SUCCESS)
}

/// The grant flags that cover what a skill was observed doing (audit-only records), as pure data.
pub fn suggestion(
    records: &[ironclaw_sidecar::audit::Record],
    user_home: &std::path::Path,
) -> (Vec<String>, Vec<String>) {
    use std::collections::BTreeMap;
    let mut network = std::collections::BTreeSet::new();
    let mut files: BTreeMap<String, bool> = BTreeMap::new();
    let mut shell = false;
    let mut ungrantable = std::collections::BTreeSet::new();
    for r in records
        .iter()
        .filter(|r| r.fields.get("blocked") == Some(&Value::Bool(false)))
    {
        let resource = r
            .fields
            .get("resource")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match r.event {
            EventType::NetworkBlock if resource.parse::<NetworkGrant>().is_ok() => {
                network.insert(resource.to_owned());
            }
            EventType::FilesystemBlock => {
                let access = r
                    .fields
                    .get("access")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let name = std::path::Path::new(resource)
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default();
                if access == "execute"
                    && ["sh", "bash", "dash", "zsh", "ksh", "busybox", "ash", "fish"]
                        .contains(&name)
                {
                    shell = true;
                    continue;
                }
                let rw = !matches!(access, "read" | "stat" | "execute" | "readdir" | "list");
                let path = match std::path::Path::new(resource).strip_prefix(user_home) {
                    Ok(rest)
                        if !user_home.as_os_str().is_empty()
                            && user_home != std::path::Path::new("/") =>
                    {
                        format!("~/{}", rest.display())
                    }
                    _ => resource.to_owned(),
                };
                *files.entry(path).or_default() |= rw;
            }
            EventType::AllowlistViolation => {
                ungrantable.insert(format!(
                    "{}: {resource}",
                    r.fields
                        .get("action")
                        .and_then(Value::as_str)
                        .unwrap_or("?")
                ));
            }
            _ => {}
        }
    }
    let mut flags: Vec<String> = network
        .into_iter()
        .map(|n| format!("--network {n}"))
        .collect();
    flags.extend(
        files
            .into_iter()
            .map(|(p, rw)| format!("--filesystem '{p}:{}'", if rw { "rw" } else { "ro" })),
    );
    if shell {
        flags.push("--shell".into());
    }
    (flags, ungrantable.into_iter().collect())
}

fn suggest(home: &Home, skill: &str, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    use ironclaw_sidecar::audit::read;
    ironclaw_crds::grants::validate_skill_name(skill)?;
    let cfg = ironclaw_sidecar::config::load(home)?
        .config
        .audit_config(home);
    let q = read::Query {
        filter: vec![
            EventType::NetworkBlock,
            EventType::FilesystemBlock,
            EventType::AllowlistViolation,
        ],
        ..Default::default()
    };
    let records: Vec<_> = read::query(&cfg, &q)?
        .into_iter()
        .filter(|r| r.skill.as_deref() == Some(skill))
        .collect();
    let (flags, ungrantable) = suggestion(&records, &home.user_home);
    if flags.is_empty() && ungrantable.is_empty() {
        writeln!(
            out,
            "# no audit-only observations for {skill}: run it with security.sandbox.mode audit-only first"
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(out, "ironclaw allowlist grant {skill} {}", flags.join(" "))?;
    for u in ungrantable {
        writeln!(out, "# not grantable (always denied): {u}")?;
    }
    Ok(ExitCode::SUCCESS)
}
