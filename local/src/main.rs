//! `ironclaw`: IronClaw local mode.

fn main() {
    println!("ironclaw {}", env!("CARGO_PKG_VERSION"));
}
