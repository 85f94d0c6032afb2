//! Speed benchmark (a bench binary, not a test): the scanner end to end on the benign corpus,
//! single thread, against baselines measured in the same run on the same text:
//!   * a plain case-insensitive `regex` alternation of ~100 injection phrases,
//!   * `memchr` counting one byte (the memory-speed bound),
//!   * the scanner's hidden-character check alone (`count_hidden`),
//!   * optionally Python `re` with the same phrases (bench/python_re_baseline.py).
//!
//! Each measurement is repeated; medians and ratios are printed.
//!
//! `cargo bench -p ironclaw-scanner --bench speed` (needs the evaluation sets: see README of
//! docs/benchmarks.md; `IRONCLAW_EVALS_DIR` or `<repo>/../shared/evals/injection`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use ironclaw_scanner::{Mode, Scanner, count_hidden};

mod common;

const PHRASES: &str = include_str!("../bench/phrases.txt");
const RUNS: usize = 9;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Median MB/s of `f` over all documents.
fn measure(docs: &[String], bytes: usize, mut f: impl FnMut(&str) -> usize) -> f64 {
    let mut rates = Vec::new();
    for _ in 0..RUNS {
        let t0 = Instant::now();
        let mut acc = 0usize;
        for d in docs {
            acc = acc.wrapping_add(f(d));
        }
        black_box(acc);
        rates.push(bytes as f64 / 1e6 / t0.elapsed().as_secs_f64());
    }
    median(rates)
}

fn main() {
    let (path, docs) = common::benign_corpus();
    let bytes: usize = docs.iter().map(String::len).sum();
    let phrases: Vec<&str> = PHRASES
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let alternation = format!(
        "(?i){}",
        phrases
            .iter()
            .map(|p| regex::escape(p))
            .collect::<Vec<_>>()
            .join("|")
    );
    let re = regex::Regex::new(&alternation).unwrap();
    let scanner = Scanner::new();
    let (segs, sent) = docs
        .iter()
        .map(|d| scanner.segment_stats(d))
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    println!(
        "benign corpus: {} documents, {:.1} MB, {} phrases in the regex baseline",
        docs.len(),
        bytes as f64 / 1e6,
        phrases.len()
    );
    println!(
        "segments: {segs}, sent to the rule stage: {sent} ({:.2}%)",
        100.0 * sent as f64 / segs.max(1) as f64
    );

    if std::env::var_os("SCANNER_RULE_STATS").is_some() {
        let mut tot: Vec<(&str, usize)> = Vec::new();
        for d in &docs {
            for (i, (n, c)) in scanner.rule_anchor_hits(d).into_iter().enumerate() {
                if tot.len() <= i {
                    tot.push((n, 0));
                }
                tot[i].1 += c;
            }
        }
        for (n, c) in tot {
            println!("  rule {n:<32} runs on {c} segments");
        }
    }
    // Interleave the measurements so machine noise hits all of them alike.
    let mut r_scan = Vec::new();
    let mut r_regex = Vec::new();
    let mut r_memchr = Vec::new();
    let mut r_hidden = Vec::new();
    let mut r_fast = Vec::new();
    for _ in 0..3 {
        r_fast.push(measure(&docs, bytes, |d| scanner.segment_stats(d).0));
        r_scan.push(measure(&docs, bytes, |d| {
            scanner.scan(d, Mode::Flag).findings.len()
        }));
        r_regex.push(measure(&docs, bytes, |d| re.find_iter(d).count()));
        r_memchr.push(measure(&docs, bytes, |d| {
            memchr::memchr_iter(0xF3, d.as_bytes()).count()
        }));
        r_hidden.push(measure(&docs, bytes, |d| {
            let c = count_hidden(d);
            c.zero_width + c.bidi + c.tags
        }));
    }
    let (scan, rx, mc, hid) = (
        median(r_scan),
        median(r_regex),
        median(r_memchr),
        median(r_hidden),
    );
    println!("scanner end to end        {scan:10.1} MB/s");
    println!(
        "  (tokenizer + learned stage alone {:.1} MB/s)",
        median(r_fast)
    );
    println!(
        "regex alternation         {rx:10.1} MB/s   scanner/regex  = {:.2}x",
        scan / rx
    );
    println!("memchr byte count         {mc:10.1} MB/s");
    println!(
        "hidden-char check alone   {hid:10.1} MB/s   hidden/memchr  = {:.2}x",
        hid / mc
    );

    // Python `re` baseline (same phrases, same text), when python3 is present.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/python_re_baseline.py");
    match std::process::Command::new("python3")
        .arg(&script)
        .arg(&path)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/phrases.txt"))
        .output()
    {
        Ok(o) if o.status.success() => {
            let s = String::from_utf8_lossy(&o.stdout);
            if let Some(py) = s
                .split_whitespace()
                .next()
                .and_then(|x| x.parse::<f64>().ok())
            {
                println!(
                    "python re alternation     {py:10.1} MB/s   scanner/python = {:.0}x",
                    scan / py
                );
            }
        }
        Ok(o) => println!(
            "python re baseline failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => println!("python re baseline not run: {e}"),
    }
}
