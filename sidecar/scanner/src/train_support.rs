//! Feature extraction exposed for `examples/train.rs` (not a stable API).

use std::ops::Range;

use crate::model::SegmentFeatures;
use crate::token::{Sink, Token, tokenize};

/// One segment's hashed feature indices.
#[derive(Debug, Clone)]
pub struct SegmentRow {
    pub span: Range<usize>,
    pub features: Vec<u32>,
    /// Hash of the normalised words (to find segments shared with benign documents).
    pub key: u64,
    /// Hashes of the word trigrams (to find fragments of benign text).
    pub shingles: Vec<u64>,
}

struct Collect {
    feats: SegmentFeatures,
    cur: Vec<u32>,
    start: usize,
    key: u64,
    last: [u64; 2],
    shingles: Vec<u64>,
    rows: Vec<SegmentRow>,
}

impl Sink for Collect {
    fn token(&mut self, t: &Token<'_>) {
        if self.feats.tokens() == 0 {
            self.start = t.start;
        }
        self.key = self.key.rotate_left(13) ^ t.hash;
        if self.feats.tokens() >= 2 {
            self.shingles
                .push(self.last[0].rotate_left(7) ^ self.last[1].rotate_left(19) ^ t.hash);
        }
        self.last = [self.last[1], t.hash];
        let cur = &mut self.cur;
        self.feats.token(t, |i| cur.push(i));
    }
    fn segment_end(&mut self, end: usize) {
        if self.feats.tokens() == 0 {
            return;
        }
        let cur = &mut self.cur;
        self.feats.finish(|i| cur.push(i));
        self.rows.push(SegmentRow {
            span: self.start..end,
            features: std::mem::take(&mut self.cur),
            key: self.key,
            shingles: std::mem::take(&mut self.shingles),
        });
        self.key = 0;
        self.last = [0; 2];
    }
}

/// Segments of `text` with their features, exactly as the scanner computes them.
pub fn segment_features(text: &str) -> Vec<SegmentRow> {
    let mut c = Collect {
        feats: SegmentFeatures::default(),
        cur: Vec::new(),
        start: 0,
        key: 0,
        last: [0; 2],
        shingles: Vec::new(),
        rows: Vec::new(),
    };
    tokenize(text, &mut c);
    c.rows
}

/// Size of the hashed feature space.
pub const FEATURES: usize = 1 << crate::model::BITS;
