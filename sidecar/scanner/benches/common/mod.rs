//! The benign corpus the benchmarks run on, loaded once per bench binary.

use std::path::{Path, PathBuf};

/// `$IRONCLAW_EVALS_DIR`, else `<repo>/../shared/evals/injection`.
pub fn evals_dir() -> PathBuf {
    if let Ok(d) = std::env::var("IRONCLAW_EVALS_DIR") {
        return PathBuf::from(d);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/evals/injection")
}

/// The benign corpus's path and the `text` of each of its records.
pub fn benign_corpus() -> (PathBuf, Vec<String>) {
    let path = evals_dir().join("benign_corpus_dev.jsonl");
    let raw = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (set IRONCLAW_EVALS_DIR)", path.display()));
    let docs = raw
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    (path, docs)
}
