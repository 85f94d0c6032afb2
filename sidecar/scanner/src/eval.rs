//! Evaluation over JSONL sets `{"text","label","source",…}`: recall per set, per source and
//! per attack family, false-positive rates, and throughput.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::{Category, Decision, Mode, Scanner};

/// Failure reading an evaluation set.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: invalid JSON record: {source}")]
    Json {
        path: PathBuf,
        line: usize,
        source: serde_json::Error,
    },
    #[error("{path}:{line}: field \"label\" is {label:?}; expected \"injection\" or \"benign\"")]
    Label {
        path: PathBuf,
        line: usize,
        label: String,
    },
    #[error("cannot write predictions: {0}")]
    Predictions(std::io::Error),
}

/// One evaluation record.
#[derive(Debug, Clone, Deserialize)]
pub struct Record {
    pub text: String,
    pub label: String,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub attack: Option<String>,
    #[serde(default)]
    pub jailbreak: Option<String>,
}

impl Record {
    pub fn is_injection(&self) -> bool {
        self.label == "injection"
    }

    /// Attack family: the record's `attack` or `jailbreak` field with a trailing `-N` removed.
    pub fn family(&self) -> Option<String> {
        let a = self.attack.as_deref().or(self.jailbreak.as_deref())?;
        let trimmed = match a.rfind('-') {
            Some(i) if a[i + 1..].chars().all(|c| c.is_ascii_digit()) && i + 1 < a.len() => &a[..i],
            _ => a,
        };
        Some(trimmed.to_string())
    }
}

/// Read one JSONL set (blank lines skipped).
pub fn read_set(path: &Path) -> Result<Vec<Record>, EvalError> {
    let f = std::fs::File::open(path).map_err(|source| EvalError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|source| EvalError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let r: Record = serde_json::from_str(&line).map_err(|source| EvalError::Json {
            path: path.to_path_buf(),
            line: i + 1,
            source,
        })?;
        if r.label != "injection" && r.label != "benign" {
            return Err(EvalError::Label {
                path: path.to_path_buf(),
                line: i + 1,
                label: r.label,
            });
        }
        out.push(r);
    }
    Ok(out)
}

/// Detected / total counter.
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq)]
pub struct Count {
    pub detected: usize,
    pub total: usize,
}

impl Count {
    fn add(&mut self, hit: bool) {
        self.total += 1;
        self.detected += usize::from(hit);
    }
    /// Fraction detected (0 when empty).
    pub fn rate(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.detected as f64 / self.total as f64
        }
    }
}

/// Figures for one set (one input file).
#[derive(Debug, Default, Clone, Serialize)]
pub struct SetReport {
    pub name: String,
    /// Injections detected (recall).
    pub injections: Count,
    /// Benign rows flagged (false positives).
    pub benign: Count,
    pub by_source: BTreeMap<String, (Count, Count)>,
    pub by_family: BTreeMap<String, Count>,
    pub bytes: usize,
    #[serde(skip)]
    pub elapsed: Duration,
}

/// The whole evaluation.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Report {
    pub sets: Vec<SetReport>,
    pub categories: BTreeMap<String, usize>,
    pub bytes: usize,
    pub seconds: f64,
    pub mb_per_s: f64,
}

impl Report {
    pub fn set(&self, name: &str) -> Option<&SetReport> {
        self.sets.iter().find(|s| s.name == name)
    }
}

/// One prediction line.
#[derive(Debug, Serialize)]
struct Prediction<'a> {
    index: usize,
    decision: Decision,
    categories: &'a [Category],
}

fn set_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Evaluate `paths` in order; when `predictions` is given, one JSON line per record is written
/// to it in input order (`index` counts records from 0 across all files).
pub fn evaluate(
    scanner: &Scanner,
    mode: Mode,
    paths: &[PathBuf],
    mut predictions: Option<&mut dyn Write>,
) -> Result<Report, EvalError> {
    let mut report = Report::default();
    let mut index = 0usize;
    let mut total_time = Duration::ZERO;
    for path in paths {
        let records = read_set(path)?;
        let mut sr = SetReport {
            name: set_name(path),
            ..SetReport::default()
        };
        for r in &records {
            let t0 = Instant::now();
            let res = scanner.scan(&r.text, mode);
            let dt = t0.elapsed();
            sr.elapsed += dt;
            sr.bytes += r.text.len();
            let hit = res.detected();
            let entry = sr.by_source.entry(r.source.clone()).or_default();
            if r.is_injection() {
                sr.injections.add(hit);
                entry.0.add(hit);
                if let Some(f) = r.family() {
                    sr.by_family.entry(f).or_default().add(hit);
                }
            } else {
                sr.benign.add(hit);
                entry.1.add(hit);
            }
            for c in &res.categories {
                *report.categories.entry(c.as_str().to_string()).or_default() += 1;
            }
            if let Some(w) = predictions.as_deref_mut() {
                let line = serde_json::to_string(&Prediction {
                    index,
                    decision: res.decision,
                    categories: &res.categories,
                })
                .map_err(|e| EvalError::Predictions(std::io::Error::other(e)))?;
                writeln!(w, "{line}").map_err(EvalError::Predictions)?;
            }
            index += 1;
        }
        total_time += sr.elapsed;
        report.bytes += sr.bytes;
        report.sets.push(sr);
    }
    report.seconds = total_time.as_secs_f64();
    report.mb_per_s = if report.seconds > 0.0 {
        report.bytes as f64 / 1e6 / report.seconds
    } else {
        0.0
    };
    Ok(report)
}

fn pct(c: &Count) -> String {
    format!("{:6.2}% ({}/{})", 100.0 * c.rate(), c.detected, c.total)
}

/// Human-readable report.
pub fn write_text(report: &Report, out: &mut dyn Write) -> std::io::Result<()> {
    for s in &report.sets {
        writeln!(
            out,
            "== {} ({} bytes, {:.1} MB/s)",
            s.name,
            s.bytes,
            if s.elapsed.as_secs_f64() > 0.0 {
                s.bytes as f64 / 1e6 / s.elapsed.as_secs_f64()
            } else {
                0.0
            }
        )?;
        if s.injections.total > 0 {
            writeln!(out, "  recall        {}", pct(&s.injections))?;
        }
        if s.benign.total > 0 {
            writeln!(out, "  false-pos     {}", pct(&s.benign))?;
        }
        for (src, (inj, ben)) in &s.by_source {
            let mut line = format!("  source {src:<42}");
            if inj.total > 0 {
                line.push_str(&format!(" recall {}", pct(inj)));
            }
            if ben.total > 0 {
                line.push_str(&format!(" fpr {}", pct(ben)));
            }
            writeln!(out, "{line}")?;
        }
        for (fam, c) in &s.by_family {
            writeln!(out, "  family {fam:<42} recall {}", pct(c))?;
        }
    }
    writeln!(out, "== categories (records): {:?}", report.categories)?;
    writeln!(
        out,
        "== throughput: {} bytes in {:.3} s = {:.1} MB/s (single thread, scan only)",
        report.bytes, report.seconds, report.mb_per_s
    )?;
    Ok(())
}
