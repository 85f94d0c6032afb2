//! `ironclaw-operator`: runs in or out of cluster with the usual kubeconfig rules. Audit
//! records go to stdout as JSON lines; logs go to stderr.

use clap::Parser;
use ironclaw_operator::audit::AuditLog;
use ironclaw_operator::run::{Args, run};
use std::process::ExitCode;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn")),
        )
        .init();
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ironclaw-operator: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args, AuditLog::stdout())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ironclaw-operator: {e}");
            ExitCode::FAILURE
        }
    }
}
