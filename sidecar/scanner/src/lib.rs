//! IronClaw prompt-injection defense.
//!
//! * **Level 1** ([`tagging`]): every piece of retrieved content is wrapped as
//!   `[UNTRUSTED source=… id=NONCE] … [/UNTRUSTED id=NONCE]` with a fresh random nonce, forged or
//!   look-alike markers inside the content are neutralised, and a [`ProvenanceLedger`] lets the
//!   gateway refuse skill calls whose context contains flagged or unknown wrapper ids.
//! * **Level 2** ([`Scanner`]): rules over normalised text (case, spacing, punctuation between
//!   letters, homoglyphs, leetspeak, NFKC folded), hidden-character checks (zero-width, bidi,
//!   Unicode tag characters decoded and rescanned), decode-and-rescan of base64/hex/morse blobs,
//!   and a small learned stage (hashed word n-gram logistic model, weights in `model/`).
//!
//! Time is linear in the input on every path and nothing panics on any input (fuzzed).

mod category;
pub mod cli;
mod encoded;
pub mod eval;
mod fold;
mod invisible;
pub mod model;
mod rules;
mod scan;
pub mod tagging;
#[cfg(test)]
mod test_corpus;
mod token;
#[doc(hidden)]
pub mod train_support;

use std::ops::Range;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use category::Category;
pub use invisible::{HiddenCounts, count_hidden};
pub use scan::{FLAG_SCORE, normalise};
pub use tagging::{
    ContextCheck, LedgerError, ProvenanceLedger, SYSTEM_PROMPT, Tagged, tag_untrusted,
};

/// `security.injectionDefense.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Content passes, marked, and the model is told (the default).
    #[default]
    Flag,
    /// Flagged content is refused.
    Block,
    /// No scanning (not recommended).
    Off,
}

/// An unknown mode string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid injection defense mode {0:?}: expected one of \"flag\", \"block\", \"off\"")]
pub struct ModeParseError(pub String);

impl FromStr for Mode {
    type Err = ModeParseError;
    fn from_str(s: &str) -> Result<Mode, ModeParseError> {
        match s {
            "flag" => Ok(Mode::Flag),
            "block" => Ok(Mode::Block),
            "off" => Ok(Mode::Off),
            other => Err(ModeParseError(other.to_string())),
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Flag => "flag",
            Mode::Block => "block",
            Mode::Off => "off",
        })
    }
}

/// What happens to the content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Flag,
    Block,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Flag => "flag",
            Decision::Block => "block",
        }
    }
}

/// One signal: its category, the byte range of the scanned text it covers, its score in
/// `[0, 1]` and the name of the rule (or stage) that produced it. Never the content itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub category: Category,
    pub span: Range<usize>,
    pub score: f32,
    pub rule: &'static str,
}

/// The scan result: everything an INJECTION_DETECTED audit event needs (decision, score,
/// categories, spans) and no content.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScanResult {
    pub decision: Decision,
    /// Highest finding score (0 when nothing was found).
    pub score: f32,
    /// Distinct categories, sorted.
    pub categories: Vec<Category>,
    /// Findings sorted by span start.
    pub findings: Vec<Finding>,
}

impl ScanResult {
    fn allow() -> ScanResult {
        ScanResult {
            decision: Decision::Allow,
            score: 0.0,
            categories: Vec::new(),
            findings: Vec::new(),
        }
    }

    /// True when the content was flagged or blocked.
    pub fn detected(&self) -> bool {
        self.decision != Decision::Allow
    }

    /// Byte spans of all findings (for the audit event).
    pub fn spans(&self) -> Vec<Range<usize>> {
        self.findings.iter().map(|f| f.span.clone()).collect()
    }
}

/// The embedded, trained weights.
pub(crate) static WEIGHTS: &[u8] = include_bytes!("../model/weights.bin");

/// The prompt-injection scanner. Cheap to clone (shared state); `Send + Sync`.
#[derive(Clone)]
pub struct Scanner {
    engine: Arc<scan::Engine>,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanner")
            .field("model_threshold", &self.engine.model.threshold)
            .finish()
    }
}

/// Building a scanner failed (only possible with custom weights).
#[derive(Debug, thiserror::Error)]
pub enum ScannerError {
    #[error(transparent)]
    Model(#[from] model::ModelError),
    #[error("rule pattern failed to compile: {0}")]
    Rule(#[from] regex::Error),
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner::new()
    }
}

impl Scanner {
    /// The scanner with the embedded rules and weights.
    ///
    /// The rules and weights are compile-time constants checked by this crate's tests
    /// (`embedded_model_and_rules_load`), so this cannot fail at run time.
    #[allow(clippy::expect_used)]
    pub fn new() -> Scanner {
        Scanner::try_new().expect("embedded rules and weights are validated by the crate's tests")
    }

    /// The scanner with the embedded rules and weights, reporting errors.
    pub fn try_new() -> Result<Scanner, ScannerError> {
        Scanner::with_model(model::Model::from_bytes(WEIGHTS)?)
    }

    /// A scanner with other weights (training and experiments).
    pub fn with_model(model: model::Model) -> Result<Scanner, ScannerError> {
        Ok(Scanner {
            engine: Arc::new(scan::Engine::new(model)?),
        })
    }

    /// The learned stage's probability threshold.
    pub fn model_threshold(&self) -> f32 {
        self.engine.model.threshold
    }

    /// Scan `text`. `Mode::Off` returns `Allow` without looking at the text.
    pub fn scan(&self, text: &str, mode: Mode) -> ScanResult {
        if mode == Mode::Off {
            return ScanResult::allow();
        }
        let mut findings: Vec<Finding> = self
            .engine
            .findings(text, 0)
            .into_iter()
            .filter(|f| f.score >= FLAG_SCORE)
            .collect();
        if findings.is_empty() {
            return ScanResult::allow();
        }
        findings.sort_by(|a, b| {
            a.span
                .start
                .cmp(&b.span.start)
                .then(a.span.end.cmp(&b.span.end))
                .then(a.category.cmp(&b.category))
        });
        findings.dedup_by(|a, b| a.span == b.span && a.category == b.category && a.rule == b.rule);
        let score = findings.iter().fold(0f32, |m, f| m.max(f.score));
        let mut categories: Vec<Category> = findings.iter().map(|f| f.category).collect();
        categories.sort();
        categories.dedup();
        let decision = if mode == Mode::Block {
            Decision::Block
        } else {
            Decision::Flag
        };
        ScanResult {
            decision,
            score,
            categories,
            findings,
        }
    }

    /// (segments, segments sent to the rule stage) for `text` (benchmark diagnostics).
    #[doc(hidden)]
    pub fn segment_stats(&self, text: &str) -> (usize, usize) {
        // The segments not kept are sent nowhere.
        let fast = self.engine.segments(text, false);
        let t = self.engine.model.threshold;
        let sent = fast
            .segs
            .iter()
            .filter(|s| self.engine.any_rule(s.mask) || self.engine.model.probability(s.sum) >= t)
            .count();
        (fast.seen, sent)
    }

    /// Per rule: (name, segments of `text` whose anchors let the rule run).
    #[doc(hidden)]
    pub fn rule_anchor_hits(&self, text: &str) -> Vec<(&'static str, usize)> {
        let segs = self.engine.segments(text, true).segs;
        rules::RULES
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let need = rules::required_mask(i);
                (
                    r.name,
                    segs.iter().filter(|s| s.mask & need == need).count(),
                )
            })
            .collect()
    }

    /// The learned stage's probability for each segment (for the training/eval tools).
    #[doc(hidden)]
    pub fn segment_probabilities(&self, text: &str) -> Vec<(Range<usize>, f32)> {
        let segs = self.engine.segments(text, true).segs;
        segs.iter()
            .map(|s| (s.start..s.end, self.engine.model.probability(s.sum)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_model_and_rules_load() {
        let s = Scanner::try_new().unwrap();
        assert!(s.model_threshold() > 0.0 && s.model_threshold() < 1.0);
    }

    #[test]
    fn mode_parses_and_lists_allowed_values() {
        assert_eq!("block".parse::<Mode>().unwrap(), Mode::Block);
        let e = "deny".parse::<Mode>().unwrap_err().to_string();
        assert!(
            e.contains("\"flag\"")
                && e.contains("\"block\"")
                && e.contains("\"off\"")
                && e.contains("deny"),
            "{e}"
        );
        assert_eq!(serde_json::to_string(&Decision::Flag).unwrap(), "\"flag\"");
    }
}
