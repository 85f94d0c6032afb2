//! Train the learned stage of the injection scanner and write `model/weights.bin`.
//!
//! ```text
//! cargo run --release -p ironclaw-scanner --example train -- \
//!     [--evals DIR] [--out sidecar/scanner/model/weights.bin] [--cv 4] [--seed 7]
//! ```
//! DIR defaults to `$IRONCLAW_EVALS_DIR`, else `<repo>/../shared/evals/injection`.
//!
//! Model: logistic regression on hashed word unigrams, bigrams, sentence-initial words and a few
//! segment flags (see `src/model.rs`), one example per segment (sentence or line). Labels are
//! per document, so training is multiple-instance: every segment of a benign document is a
//! negative; in an injected document, segments that also occur in benign documents are
//! dropped and, after the first round, only the segments the model already finds most
//! injection-like stay positive. AdaGrad, L2, a few epochs per round.
//!
//! With `--cv K` it first runs a grouped K-fold cross-validation where whole groups are held
//! out together — AgentDojo injection goals, BIPIA attack families, Spikee jailbreak templates
//! (all languages of a template together), benign documents by source file — trains on the
//! rest, calibrates the threshold on the training benign rows only, and reports the *complete*
//! scanner (rules + learned stage + decoders) on the held-out part. These are the honest
//! "unseen templates/goals" figures; the dev-set figures of the final model are optimistic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use ironclaw_scanner::eval::{Record, read_set};
use ironclaw_scanner::model::Model;
use ironclaw_scanner::train_support::{FEATURES, SegmentRow, segment_features};
use ironclaw_scanner::{Mode, Scanner};

const SETS: &[&str] = &[
    "agentdojo_dev",
    "bipia_train",
    "spikee_dev",
    "spikee_encoded_dev",
    "benign_corpus_dev",
];

/// Target false-positive rates for the learned stage alone (the rules use the rest of the
/// budget): benign corpus, and the sets' own benign rows.
const FPR_CORPUS: f64 = 0.003;
const FPR_SETS: f64 = 0.002;
/// Weight of a segment from a set's own benign rows (in-domain negatives are scarce).
const IN_DOMAIN_NEG: f32 = 5.0;
/// Total positive weight as a share of the total negative weight.
const POS_SHARE: f32 = 0.3;

struct Doc {
    set: usize,
    rec: Record,
    group: String,
    segs: Vec<SegmentRow>,
}

fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
    }
    h
}

fn strip_suffixes(s: &str) -> String {
    // "debug-01-ga" -> "debug", "Information Retrieval-3" -> "Information Retrieval"
    let mut parts: Vec<&str> = s.split('-').collect();
    while parts.len() > 1 {
        let last = parts[parts.len() - 1];
        if last.chars().all(|c| c.is_ascii_digit())
            || (last.len() == 2 && last.chars().all(|c| c.is_ascii_lowercase()))
        {
            parts.pop();
        } else {
            break;
        }
    }
    parts.join("-")
}

fn group_of(set: &str, rec: &Record, extra: &serde_json::Value, idx: usize) -> String {
    let f = |k: &str| extra.get(k).and_then(|v| v.as_str()).map(str::to_string);
    if rec.label == "benign" {
        return match f("path") {
            Some(p) => format!("benign:{p}"),
            None => format!("benign:{set}:{idx}"),
        };
    }
    match set {
        "agentdojo_dev" => format!(
            "ad:{}",
            f("injection_task").or(f("attack")).unwrap_or_default()
        ),
        "bipia_train" => format!("bipia:{}", strip_suffixes(&f("attack").unwrap_or_default())),
        _ => format!(
            "spikee:{}",
            strip_suffixes(&f("jailbreak").unwrap_or_default())
        ),
    }
}

struct Trainer {
    w: Vec<f32>,
    g2: Vec<f32>,
    bias: f32,
    gb: f32,
}

impl Trainer {
    fn new() -> Trainer {
        Trainer {
            w: vec![0.0; FEATURES],
            g2: vec![0.0; FEATURES],
            bias: -4.0,
            gb: 0.0,
        }
    }
    fn logit(&self, f: &[u32]) -> f32 {
        self.bias + f.iter().map(|&i| self.w[i as usize]).sum::<f32>()
    }
    fn step(&mut self, f: &[u32], y: f32, weight: f32, lr: f32, l2: f32) {
        let p = 1.0 / (1.0 + (-self.logit(f)).exp());
        let g = (p - y) * weight;
        for &i in f {
            let i = i as usize;
            let gi = g + l2 * self.w[i];
            self.g2[i] += gi * gi;
            self.w[i] -= lr * gi / (self.g2[i].sqrt() + 1e-6);
        }
        self.gb += g * g;
        self.bias -= lr * g / (self.gb.sqrt() + 1e-6);
    }
}

fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Train on the docs selected by `train`; returns the quantised model with a calibrated threshold.
/// A segment of an injected document that is (a fragment of) benign text: the same words as a
/// benign segment, or mostly made of word trigrams seen in benign documents.
fn is_benign_text(s: &SegmentRow, keys: &HashSet<u64>, shingles: &HashSet<u64>) -> bool {
    if keys.contains(&s.key) {
        return true;
    }
    if s.shingles.len() < 4 {
        return false;
    }
    let seen = s.shingles.iter().filter(|h| shingles.contains(h)).count();
    seen * 10 >= s.shingles.len() * 7
}

fn train(
    docs: &[Doc],
    train_ix: &[usize],
    benign_keys: &HashSet<u64>,
    benign_shingles: &HashSet<u64>,
    seed: u64,
) -> Model {
    let mut t = Trainer::new();
    // Candidate positive segments per injected document.
    let cands: Vec<(usize, Vec<usize>)> = train_ix
        .iter()
        .filter(|&&d| docs[d].rec.is_injection())
        .map(|&d| {
            (
                d,
                (0..docs[d].segs.len())
                    .filter(|&s| !is_benign_text(&docs[d].segs[s], benign_keys, benign_shingles))
                    .collect::<Vec<_>>(),
            )
        })
        .filter(|(_, c)| !c.is_empty())
        .collect();
    let negs: Vec<(usize, usize)> = train_ix
        .iter()
        .filter(|&&d| !docs[d].rec.is_injection())
        .flat_map(|&d| (0..docs[d].segs.len()).map(move |s| (d, s)))
        .collect();
    let mut rng = Rng(seed | 1);
    let rounds = 3;
    for round in 0..rounds {
        // Choose positives: each injected document contributes a total weight of one, spread
        // over all its candidate segments in the first round and over its (at most three)
        // most injection-like segments afterwards.
        let mut pos: Vec<(usize, usize, f32)> = Vec::new();
        let mut extra_negs: Vec<(usize, usize)> = Vec::new();
        for (d, c) in &cands {
            if round == 0 {
                let w = 1.0 / c.len() as f32;
                pos.extend(c.iter().map(|&s| (*d, s, w)));
            } else {
                let mut scored: Vec<(f32, usize)> = c
                    .iter()
                    .map(|&s| (t.logit(&docs[*d].segs[s].features), s))
                    .collect();
                scored.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap());
                let max = scored[0].0;
                let keep: Vec<usize> = scored
                    .iter()
                    .take(3)
                    .filter(|x| x.0 >= max - 2.0)
                    .map(|x| x.1)
                    .collect();
                let w = 1.0 / keep.len() as f32;
                pos.extend(keep.into_iter().map(|s| (*d, s, w)));
                // The clearly ordinary rest of an injected document (its e-mail headers, table
                // rows, YAML fields) is in-domain benign text.
                extra_negs.extend(
                    scored
                        .iter()
                        .skip(3)
                        .filter(|x| x.0 < max - 4.0)
                        .map(|x| (*d, x.1)),
                );
            }
        }
        let neg_w = |d: usize| {
            if SETS[docs[d].set] == "benign_corpus_dev" {
                1.0
            } else {
                IN_DOMAIN_NEG
            }
        };
        let total_neg: f32 = negs.iter().map(|&(d, _)| neg_w(d)).sum();
        let total_pos: f32 = pos.iter().map(|p| p.2).sum();
        let pos_scale = (total_neg / total_pos.max(1.0) * POS_SHARE).max(1.0);
        let mut all: Vec<(usize, usize, f32, f32)> = negs
            .iter()
            .map(|&(d, s)| (d, s, 0.0, neg_w(d)))
            .chain(extra_negs.iter().map(|&(d, s)| (d, s, 0.0, 1.0)))
            .chain(pos.iter().map(|&(d, s, w)| (d, s, 1.0, w * pos_scale)))
            .collect();
        let epochs = if round == rounds - 1 { 4 } else { 2 };
        for _ in 0..epochs {
            for i in (1..all.len()).rev() {
                let j = (rng.next() % (i as u64 + 1)) as usize;
                all.swap(i, j);
            }
            for &(d, s, y, wt) in &all {
                t.step(&docs[d].segs[s].features, y, wt, 0.05, 1e-5);
            }
        }
    }
    // Calibrate on the training benign rows: doc score = max segment probability.
    let mut corpus: Vec<f32> = Vec::new();
    let mut sets: Vec<f32> = Vec::new();
    for &d in train_ix {
        if docs[d].rec.is_injection() {
            continue;
        }
        let m = docs[d]
            .segs
            .iter()
            .map(|s| sigmoid(t.logit(&s.features)))
            .fold(0f32, f32::max);
        if SETS[docs[d].set] == "benign_corpus_dev" {
            corpus.push(m)
        } else {
            sets.push(m)
        }
    }
    let q = |v: &mut Vec<f32>, rate: f64| -> f32 {
        if v.is_empty() {
            return 0.5;
        }
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let k = ((v.len() as f64) * (1.0 - rate)).floor() as usize;
        v[k.min(v.len() - 1)]
    };
    let thr = q(&mut corpus, FPR_CORPUS)
        .max(q(&mut sets, FPR_SETS))
        .clamp(0.5, 0.999)
        + 1e-4;
    Model::quantise(&t.w, t.bias, thr.min(0.9999))
}

#[derive(Default, Clone, Copy)]
struct C {
    hit: usize,
    n: usize,
}
impl C {
    fn pct(&self) -> String {
        format!(
            "{:6.2}% ({}/{})",
            if self.n == 0 {
                0.0
            } else {
                100.0 * self.hit as f64 / self.n as f64
            },
            self.hit,
            self.n
        )
    }
}

fn evals_dir(arg: Option<PathBuf>) -> PathBuf {
    if let Some(d) = arg {
        return d;
    }
    if let Ok(d) = std::env::var("IRONCLAW_EVALS_DIR") {
        return PathBuf::from(d);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/evals/injection")
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut dir = None;
    let mut out = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/model/weights.bin"));
    let mut cv = 0usize;
    let mut seed = 7u64;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--evals" => dir = args.next().map(PathBuf::from),
            "--out" => out = PathBuf::from(args.next().expect("--out needs a path")),
            "--cv" => {
                cv = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--cv needs a number")
            }
            "--seed" => {
                seed = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--seed needs a number")
            }
            other => panic!(
                "unknown argument {other:?}; expected --evals DIR, --out FILE, --cv K, --seed N"
            ),
        }
    }
    let dir = evals_dir(dir);
    let mut docs = Vec::new();
    for (si, set) in SETS.iter().enumerate() {
        let path = dir.join(format!("{set}.jsonl"));
        let recs =
            read_set(&path).unwrap_or_else(|e| panic!("{e} (set IRONCLAW_EVALS_DIR or --evals)"));
        let raw: Vec<serde_json::Value> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        for (i, (rec, extra)) in recs.into_iter().zip(raw).enumerate() {
            let segs = segment_features(&rec.text);
            let group = group_of(set, &rec, &extra, i);
            docs.push(Doc {
                set: si,
                rec,
                group,
                segs,
            });
        }
    }
    let benign_keys: HashSet<u64> = docs
        .iter()
        .filter(|d| !d.rec.is_injection())
        .flat_map(|d| d.segs.iter().map(|s| s.key))
        .collect();
    let benign_shingles: HashSet<u64> = docs
        .iter()
        .filter(|d| !d.rec.is_injection())
        .flat_map(|d| d.segs.iter().flat_map(|s| s.shingles.iter().copied()))
        .collect();
    eprintln!(
        "{} documents, {} segments",
        docs.len(),
        docs.iter().map(|d| d.segs.len()).sum::<usize>()
    );

    if cv > 1 {
        let mut per_set: BTreeMap<&str, (C, C)> = BTreeMap::new();
        let mut per_src: BTreeMap<String, (C, C)> = BTreeMap::new();
        for fold in 0..cv {
            let (held, tr): (Vec<usize>, Vec<usize>) =
                (0..docs.len()).partition(|&d| fnv(&docs[d].group) % cv as u64 == fold as u64);
            let model = train(
                &docs,
                &tr,
                &benign_keys,
                &benign_shingles,
                seed + fold as u64,
            );
            eprintln!(
                "fold {fold}: {} train / {} held out, threshold {:.4}",
                tr.len(),
                held.len(),
                model.threshold()
            );
            let scanner = Scanner::with_model(model).expect("scanner");
            for &d in &held {
                let hit = scanner.scan(&docs[d].rec.text, Mode::Flag).detected();
                let e = per_set.entry(SETS[docs[d].set]).or_default();
                let s = per_src.entry(docs[d].rec.source.clone()).or_default();
                let c = if docs[d].rec.is_injection() {
                    (&mut e.0, &mut s.0)
                } else {
                    (&mut e.1, &mut s.1)
                };
                c.0.n += 1;
                c.0.hit += usize::from(hit);
                c.1.n += 1;
                c.1.hit += usize::from(hit);
            }
        }
        println!("== grouped {cv}-fold cross-validation (complete scanner, held-out groups)");
        for (set, (inj, ben)) in &per_set {
            println!("  {set:<22} recall {}  fpr {}", inj.pct(), ben.pct());
        }
        for (src, (inj, ben)) in &per_src {
            println!("    {src:<44} recall {}  fpr {}", inj.pct(), ben.pct());
        }
    }

    let all: Vec<usize> = (0..docs.len()).collect();
    let model = train(&docs, &all, &benign_keys, &benign_shingles, seed);
    eprintln!("final model: threshold {:.4}", model.threshold());
    std::fs::write(&out, model.to_bytes())
        .unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
    eprintln!("wrote {}", out.display());
}
