//! `ironclaw`: IronClaw local mode — the CLI and the gateway.
//!
//! State lives in `IRONCLAW_HOME` (default `~/.ironclaw`). Commands run the policy engine
//! in-process; shared state is kept in files under a lock, so they agree with a running gateway.

mod allowlist_cmd;
mod config_cmd;
mod doctor;
mod gateway;
mod run;
mod skill_cmd;

use clap::{Parser, Subcommand};
use ironclaw_sidecar::home::Home;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "ironclaw",
    version,
    about = "IronClaw local mode: run AI-agent skills under kernel-enforced grants, with a mandatory audit log",
    long_about = "IronClaw local mode: run AI-agent skills under kernel-enforced grants, with a mandatory audit log.\n\n\
State lives in $IRONCLAW_HOME (default ~/.ironclaw): ironclaw.json (config), .env (secrets), \
allowlist.json, skills/, workspace/, audit.log."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Read or change ironclaw.json (validated before anything is written; comments kept)
    #[command(subcommand)]
    Config(config_cmd::ConfigCommand),
    /// Authorise skills and manage their grants
    #[command(subcommand)]
    Allowlist(allowlist_cmd::AllowlistCommand),
    /// Install, list and run skills
    #[command(subcommand)]
    Skill(skill_cmd::SkillCommand),
    /// Start, stop or query the gateway daemon
    #[command(subcommand)]
    Gateway(gateway::GatewayCommand),
    /// Read the audit log: tail, show (filters), export (JSON or CSV)
    #[command(subcommand)]
    Audit(ironclaw_sidecar::audit::cli::AuditCommand),
    /// Check the live config and files against the security checklist
    Doctor(doctor::DoctorArgs),
    /// Scan content for prompt injection (exit 1 when flagged); --eval measures the scanner on JSONL sets
    Scan(ironclaw_scanner::cli::ScanArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let home = Home::from_env()?;
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Config(c) => config_cmd::run(&home, c, &mut out),
        Command::Allowlist(c) => allowlist_cmd::run(&home, c, &mut out),
        Command::Skill(c) => skill_cmd::run(&home, c, &mut out),
        Command::Gateway(c) => gateway::run(&home, c, &mut out),
        Command::Doctor(a) => doctor::run(&home, &a, &mut out),
        Command::Scan(a) => {
            let code = ironclaw_scanner::cli::run(&a, &mut out)?;
            Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
        }
        Command::Audit(c) => {
            let cfg = ironclaw_sidecar::config::load(&home)?
                .config
                .audit_config(&home);
            ironclaw_sidecar::audit::cli::run(&cfg, &c, &mut out)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
