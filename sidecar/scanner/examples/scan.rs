//! Stand-alone front end for `ironclaw scan` (the same `cli::run` the `ironclaw` binary embeds):
//! `cargo run --release -p ironclaw-scanner --example scan -- [FILE|-] [--json] [--eval …]`.

use clap::Parser;

#[derive(Parser)]
#[command(name = "ironclaw-scan", about = "IronClaw prompt-injection scanner")]
struct Cli {
    #[command(flatten)]
    args: ironclaw_scanner::cli::ScanArgs,
}

fn main() {
    let cli = Cli::parse();
    let mut out = std::io::stdout().lock();
    match ironclaw_scanner::cli::run(&cli.args, &mut out) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}
