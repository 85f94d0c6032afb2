//! The evaluation corpora as plain texts, for unit tests that compare a fast path with its
//! oracle on real documents. The sets live outside the repository (`$IRONCLAW_EVALS_DIR`, else
//! `<repo>/../shared/evals/injection`, as in `tests/eval_dev.rs`); their absence fails the test.

use std::path::PathBuf;
use std::sync::OnceLock;

/// The five development files.
pub(crate) const FILES: [&str; 5] = [
    "benign_corpus_dev.jsonl",
    "agentdojo_dev.jsonl",
    "bipia_train.jsonl",
    "spikee_dev.jsonl",
    "spikee_encoded_dev.jsonl",
];

fn dir() -> PathBuf {
    std::env::var("IRONCLAW_EVALS_DIR").map_or_else(
        |_| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/evals/injection")
        },
        PathBuf::from,
    )
}

/// The `text` of every record of the five files (read once per test binary).
pub(crate) fn eval_texts() -> &'static [String] {
    static TEXTS: OnceLock<Vec<String>> = OnceLock::new();
    TEXTS.get_or_init(read)
}

#[allow(clippy::unwrap_used, clippy::expect_used)]
fn read() -> Vec<String> {
    let dir = dir();
    let mut out = Vec::new();
    for name in FILES {
        let path = dir.join(name);
        let raw = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}: set IRONCLAW_EVALS_DIR to the directory holding the injection sets",
                path.display()
            )
        });
        for line in raw.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            out.push(v["text"].as_str().unwrap().to_string());
        }
    }
    out
}
