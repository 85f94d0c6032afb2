//! Best-of-N timing of the scanner's passes over the benign corpus (a bench binary, not a test),
//! used while tuning the tokenizer: `fast` is the fast pass alone (tokenizer, learned stage,
//! anchor words, blob candidates), `scan` the whole scan; `--split` also times the ASCII-only
//! and the other documents apart. No baseline here: the ratios to the regex alternation come
//! from `benches/speed.rs`.
//!
//! `cargo bench -p ironclaw-scanner --bench fastpass -- [fast|scan|synthetic] [--passes N] [--split]
//! [--per-doc]`
//! (`synthetic`: ns per word on generated word streams, see [`synthetic`])
//! (with `PASSES=1` under `valgrind --tool=cachegrind`, instruction counts that do not depend on
//! the machine's load).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use ironclaw_scanner::{Mode, Scanner};

mod common;

/// Best MB/s of `passes` passes of `f` over `docs`, and a checksum of its results. With
/// `per_doc`, each document is timed alone and the MB/s is that of the sum of each
/// document's best time (steadier on a busy machine: a slow moment spoils one document's
/// time in one pass, not a whole pass).
fn best(docs: &[&String], passes: usize, f: impl Fn(&str) -> usize) -> (f64, usize) {
    let bytes: usize = docs.iter().map(|d| d.len()).sum();
    let per_doc = std::env::args().any(|a| a == "--per-doc");
    let (mut top, mut sum) = (0f64, 0usize);
    let mut mins = vec![f64::MAX; docs.len()];
    for _ in 0..passes {
        let t = Instant::now();
        for (d, min) in docs.iter().zip(&mut mins) {
            let t = per_doc.then(Instant::now);
            sum = sum.wrapping_add(f(d));
            if let Some(t) = t {
                *min = min.min(t.elapsed().as_secs_f64());
            }
        }
        top = top.max(bytes as f64 / 1e6 / t.elapsed().as_secs_f64());
    }
    if per_doc {
        top = bytes as f64 / 1e6 / mins.iter().sum::<f64>();
    }
    (top, sum)
}

/// The fast pass on generated text: ns per word for predictable and unpredictable word
/// streams, with and without anchor words and segment ends (what costs what, apart from the
/// corpus's variety).
fn synthetic(passes: usize) {
    const PLAIN: [&str; 15] = [
        "the", "network", "value", "returns", "of", "and", "server", "data", "file", "table",
        "column", "index", "string", "cache", "memory",
    ];
    // Six of these fifteen are anchor words of some rule.
    const ANCHORS: [&str; 15] = [
        "the",
        "system",
        "network",
        "function",
        "value",
        "returns",
        "configuration",
        "of",
        "and",
        "server",
        "request",
        "data",
        "user",
        "file",
        "with",
    ];
    let scanner = Scanner::new();
    let mut x = 12345u64;
    let mut next = move || {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        x >> 33
    };
    for (name, vocab) in [("plain words", PLAIN), ("40% anchor words", ANCHORS)] {
        let (mut cycle, mut random, mut ends) = (String::new(), String::new(), String::new());
        let mut k = 0;
        while random.len() < 20_000_000 {
            cycle.push_str(vocab[k % 5]);
            cycle.push(' ');
            k += 1;
            let w = vocab[next() as usize % vocab.len()];
            random.push_str(w);
            random.push(' ');
            ends.push_str(w);
            // A sentence end after one word in six, at random.
            ends.push_str(if next() % 6 == 0 { ".\n" } else { " " });
        }
        for (what, text) in [
            ("a cycle of five words", &cycle),
            ("random words", &random),
            ("random words, random sentence ends", &ends),
        ] {
            let words = text.split_ascii_whitespace().count();
            let (mbs, _) = best(&[text], passes, |d| scanner.segment_stats(d).0);
            let ns = text.len() as f64 / mbs / 1e6 * 1e9 / words as f64;
            println!("{name}, {what}: {mbs:.1} MB/s, {ns:.2} ns per word");
        }
    }
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
    if args.iter().any(|a| a == "synthetic") {
        synthetic(passes);
        return;
    }
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
