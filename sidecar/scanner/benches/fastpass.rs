//! Best-of-N timing of the scanner's passes over the benign corpus (a bench binary, not a test),
//! used while tuning the tokenizer: `fast` is the fast pass alone (tokenizer, learned stage,
//! anchor words, blob candidates), `scan` the whole scan; `--split` also times the ASCII-only
//! and the other documents apart. No baseline here: the ratios to the regex alternation come
//! from `benches/speed.rs`.
//!
//! `cargo bench -p ironclaw-scanner --bench fastpass -- [fast|scan] [--passes N] [--split]`
//! (with `PASSES=1` under `valgrind --tool=cachegrind`, instruction counts that do not depend on
//! the machine's load).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use ironclaw_scanner::{Mode, Scanner};

mod common;

/// Best MB/s of `passes` passes of `f` over `docs`, and a checksum of its results.
fn best(docs: &[&String], passes: usize, f: impl Fn(&str) -> usize) -> (f64, usize) {
    let bytes: usize = docs.iter().map(|d| d.len()).sum();
    let (mut top, mut sum) = (0f64, 0usize);
    for _ in 0..passes {
        let t = Instant::now();
        for d in docs {
            sum = sum.wrapping_add(f(d));
        }
        top = top.max(bytes as f64 / 1e6 / t.elapsed().as_secs_f64());
    }
    (top, sum)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let whole = args.iter().any(|a| a == "scan");
    let split = args.iter().any(|a| a == "--split");
    let passes = args
        .iter()
        .position(|a| a == "--passes")
        .and_then(|i| args.get(i + 1))
        .or(std::env::var("PASSES").ok().as_ref())
        .and_then(|p| p.parse().ok())
        .unwrap_or(15usize);
    let (_, docs) = common::benign_corpus();
    let scanner = Scanner::new();
    let run = |d: &str| {
        if whole {
            scanner.scan(d, Mode::Flag).findings.len()
        } else {
            scanner.segment_stats(d).0
        }
    };
    let all: Vec<&String> = docs.iter().collect();
    let (mbs, sum) = best(&all, passes, run);
    let what = if whole { "scan" } else { "fast pass" };
    println!("{what}: best of {passes} passes {mbs:.1} MB/s (checksum {sum})");
    if split {
        let (ascii, other): (Vec<&String>, Vec<&String>) = all.iter().partition(|d| d.is_ascii());
        for (name, set) in [("ASCII-only documents", ascii), ("other documents", other)] {
            let bytes: usize = set.iter().map(|d| d.len()).sum();
            let (mbs, _) = best(&set, passes, run);
            println!(
                "  {name}: {} docs, {:.1} MB, {mbs:.1} MB/s",
                set.len(),
                bytes as f64 / 1e6
            );
        }
    }
}
