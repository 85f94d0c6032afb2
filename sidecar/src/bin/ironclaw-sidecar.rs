//! The in-pod `ironclaw-sidecar` binary: `exec` (skill wrapper) and `install-wrapper`
//! (init container).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ironclaw_sidecar::pod::{PodPolicy, exec, install};

#[derive(Parser)]
#[command(name = "ironclaw-sidecar", about = "IronClaw in-pod sidecar")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Sandbox this process from the policy, then exec COMMAND.
    Exec {
        #[arg(long)]
        policy: PathBuf,
        /// The skill's install folder (read + execute); defaults to the workspace.
        #[arg(long)]
        skill_dir: Option<PathBuf>,
        #[arg(last = true, required = true, num_args = 1..)]
        command: Vec<OsString>,
    },
    /// Copy this executable into DIR as `ironclaw-sidecar`, mode 0555.
    InstallWrapper { dir: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res: Result<(), String> = match cli.cmd {
        Cmd::Exec {
            policy,
            skill_dir,
            command,
        } => PodPolicy::load(&policy)
            .map_err(|e| e.to_string())
            .and_then(|p| {
                exec::run(&p, skill_dir.as_deref(), &command)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }),
        Cmd::InstallWrapper { dir } => std::env::current_exe()
            .map_err(|e| format!("install-wrapper: locating own executable: {e}"))
            .and_then(|me| install::install_wrapper(&me, &dir).map_err(|e| e.to_string()))
            .map(|dest| println!("installed {}", dest.display())),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ironclaw-sidecar: {e}");
            ExitCode::from(126)
        }
    }
}
