//! The learned stage: a hashed word-unigram/bigram logistic model scored per segment.
//! Weights are trained by `examples/train.rs` on the development sets and committed as
//! `model/weights.bin` (format below); the feature extraction here is the one used in training.
//!
//! File format (little endian): magic `ICWM`, u32 version (1), u32 bits, f32 scale, f32 bias,
//! f32 threshold (probability), then `2^bits` i8 weights (weight = i8 * scale).

use crate::token::Token;

/// Hashed feature space size (log2).
pub const BITS: u32 = 16;
/// Number of weights.
const SIZE: usize = 1 << BITS;
/// The previous-word state of a segment's first word: its "bigram" feature
/// `index(prev.rotate_left(23) ^ h ^ 2)` is then `index(h ^ 3)`, the sentence-initial feature,
/// with no branch.
const FIRST: u64 = 1u64.rotate_right(23);
const MAGIC: &[u8; 4] = b"ICWM";
const HEADER: usize = 24;

#[inline]
const fn index(x: u64) -> u32 {
    (x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - BITS)) as u32
}

/// Per-segment feature generator shared by training and inference.
#[derive(Debug, Clone)]
pub struct SegmentFeatures {
    prev: u64,
    /// Four 16-bit counters (one addition per word): words, words in capitals, words with
    /// look-alike letters, leetspeak words. A segment has at most 64 words plus one
    /// spaced-letter word per four of them, so no counter reaches 2^16.
    counts: u64,
    joined: u32,
}

const NTOK: u32 = 0;
const CAPS: u32 = 16;
const MIXED: u32 = 32;
const LEET: u32 = 48;

impl Default for SegmentFeatures {
    fn default() -> Self {
        SegmentFeatures {
            prev: FIRST,
            counts: 0,
            joined: 0,
        }
    }
}

impl SegmentFeatures {
    #[inline]
    fn count(&self, at: u32) -> u32 {
        ((self.counts >> at) & 0xffff) as u32
    }

    /// Features contributed by one token.
    #[inline]
    pub(crate) fn token(&mut self, t: &Token<'_>, mut f: impl FnMut(u32)) {
        let h = t.hash;
        f(index(h ^ 0x01));
        // The bigram with the previous word, or (first word: `prev` is `FIRST`) the
        // sentence-initial feature `index(h ^ 0x03)`.
        f(index(self.prev.rotate_left(23) ^ h ^ 0x02));
        self.prev = h;
        self.counts += (1 << NTOK)
            | (u64::from(t.caps) << CAPS)
            | (u64::from(t.mixed_script) << MIXED)
            | (u64::from(t.leet) << LEET);
        self.joined += u32::from(t.joined);
    }

    /// The summed weights of the features [`SegmentFeatures::token`] gives an ASCII word that
    /// is not spaced-letter, with hash `h`.
    #[inline(always)]
    pub(crate) fn plain_word(&mut self, h: u64, caps: bool, leet: bool, model: &Model) -> i32 {
        let s = model.weight(index(h ^ 0x01))
            + model.weight(index(self.prev.rotate_left(23) ^ h ^ 0x02));
        self.prev = h;
        self.counts += (1 << NTOK) | (u64::from(caps) << CAPS) | (u64::from(leet) << LEET);
        s
    }

    /// Segment-level features, emitted once at the end; resets the generator.
    #[inline]
    pub(crate) fn finish(&mut self, mut f: impl FnMut(u32)) {
        let len_bucket = match self.count(NTOK) {
            0..=1 => 0u64,
            2..=3 => 1,
            4..=7 => 2,
            8..=15 => 3,
            16..=31 => 4,
            _ => 5,
        };
        f(index(0x10_0000 + len_bucket));
        if self.count(CAPS) >= 2 {
            f(index(0x20_0001));
        }
        if self.count(MIXED) >= 1 {
            f(index(0x20_0002));
        }
        if self.count(LEET) >= 2 {
            f(index(0x20_0003));
        }
        if self.joined >= 1 {
            f(index(0x20_0004));
        }
        *self = SegmentFeatures::default();
    }

    /// The summed weights of the features [`SegmentFeatures::finish`] emits, without a
    /// branch (the scanner's fast pass); resets the generator.
    #[inline]
    pub(crate) fn finish_sum(&mut self, model: &Model) -> i32 {
        const LEN: [u32; 6] = [
            index(0x10_0000),
            index(0x10_0001),
            index(0x10_0002),
            index(0x10_0003),
            index(0x10_0004),
            index(0x10_0005),
        ];
        // 0..=1 words: bucket 0, 2..=3: 1, 4..=7: 2, 8..=15: 3, 16..=31: 4, more: 5.
        let bucket = (31 - self.count(NTOK).max(1).leading_zeros()).min(5) as usize;
        let on = |c: bool| -i32::from(c);
        let s = model.weight(LEN[bucket])
            + (model.weight(index(0x20_0001)) & on(self.count(CAPS) >= 2))
            + (model.weight(index(0x20_0002)) & on(self.count(MIXED) >= 1))
            + (model.weight(index(0x20_0003)) & on(self.count(LEET) >= 2))
            + (model.weight(index(0x20_0004)) & on(self.joined >= 1));
        *self = SegmentFeatures::default();
        s
    }

    /// The largest sum [`SegmentFeatures::finish_sum`] can give with `model`.
    fn max_finish(model: &Model) -> i32 {
        let len = (0..6u64)
            .map(|b| model.weight(index(0x10_0000 + b)))
            .max()
            .unwrap_or(0);
        (1..=4u64)
            .map(|f| model.weight(index(0x20_0000 + f)).max(0))
            .sum::<i32>()
            + len
    }

    /// Start a new segment without its segment-level features (a segment dismissed early).
    #[inline]
    pub(crate) fn reset(&mut self) {
        *self = SegmentFeatures::default();
    }

    /// Tokens seen so far in this segment.
    pub(crate) fn tokens(&self) -> u32 {
        self.count(NTOK)
    }
    pub(crate) fn obfuscated(&self) -> u32 {
        let leet = self.count(LEET);
        self.count(MIXED) + self.joined + if leet >= 2 { leet } else { 0 }
    }
    pub(crate) fn mixed_script(&self) -> u32 {
        self.count(MIXED)
    }
}

/// Error loading a weights file.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model weights: bad magic/version (expected ICWM v1)")]
    BadHeader,
    #[error("model weights: expected {expected} bytes for {bits} bits, found {found}")]
    BadLength {
        bits: u32,
        expected: usize,
        found: usize,
    },
    #[error("model weights: bits {found} does not match this build's feature space ({expected})")]
    BadBits { expected: u32, found: u32 },
    #[error("model weights: non-finite or non-positive scale, or non-finite bias/threshold")]
    NotFinite,
}

/// Loaded weights.
#[derive(Debug, Clone)]
pub struct Model {
    pub(crate) weights: Box<[i8; SIZE]>,
    pub(crate) scale: f32,
    pub(crate) bias: f32,
    /// Probability at which a segment is flagged (read with [`Model::threshold`]; fixed at
    /// construction because `min_flag_sum` derives from it).
    pub(crate) threshold: f32,
    /// A weight sum below which no segment can reach `threshold` (the logistic function is
    /// monotone), so that most segments are decided without computing a probability.
    pub(crate) min_flag_sum: i32,
    /// The largest weight sum a segment's segment-level features can add: a segment whose
    /// word weights stay below `min_flag_sum - max_finish` cannot be flagged.
    pub(crate) max_finish: i32,
}

fn f32_at(b: &[u8], at: usize) -> f32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        a.copy_from_slice(s);
    }
    f32::from_le_bytes(a)
}

impl Model {
    /// Parse a weights file.
    pub fn from_bytes(b: &[u8]) -> Result<Model, ModelError> {
        if b.len() < HEADER || &b[..4] != MAGIC || b[4..8] != 1u32.to_le_bytes() {
            return Err(ModelError::BadHeader);
        }
        let bits = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
        if bits != BITS {
            return Err(ModelError::BadBits {
                expected: BITS,
                found: bits,
            });
        }
        let expected = HEADER + (1usize << bits);
        if b.len() != expected {
            return Err(ModelError::BadLength {
                bits,
                expected,
                found: b.len(),
            });
        }
        let (scale, bias, threshold) = (f32_at(b, 12), f32_at(b, 16), f32_at(b, 20));
        if !scale.is_finite() || !bias.is_finite() || !threshold.is_finite() {
            return Err(ModelError::NotFinite);
        }
        if scale <= 0.0 {
            return Err(ModelError::NotFinite);
        }
        let weights = b[HEADER..].iter().map(|&x| x as i8).collect();
        Ok(Model::new(weights, scale, bias, threshold))
    }

    /// Serialise (used by the training example).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(HEADER + self.weights.len());
        v.extend_from_slice(MAGIC);
        v.extend_from_slice(&1u32.to_le_bytes());
        v.extend_from_slice(&BITS.to_le_bytes());
        v.extend_from_slice(&self.scale.to_le_bytes());
        v.extend_from_slice(&self.bias.to_le_bytes());
        v.extend_from_slice(&self.threshold.to_le_bytes());
        v.extend(self.weights.iter().map(|&w| w as u8));
        v
    }

    /// Quantise float weights.
    pub fn quantise(w: &[f32], bias: f32, threshold: f32) -> Model {
        let max = w.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-6);
        let scale = max / 127.0;
        let weights = w
            .iter()
            .map(|x| (x / scale).round().clamp(-127.0, 127.0) as i8)
            .collect();
        Model::new(weights, scale, bias, threshold)
    }

    /// `weights` has `2^BITS` entries (a shorter list is padded with zeros, a longer one cut).
    fn new(weights: Vec<i8>, scale: f32, bias: f32, threshold: f32) -> Model {
        let mut all = Box::new([0i8; SIZE]);
        for (d, w) in all.iter_mut().zip(weights) {
            *d = w;
        }
        let mut m = Model {
            weights: all,
            scale,
            bias,
            threshold,
            min_flag_sum: i32::MIN,
            max_finish: 0,
        };
        m.max_finish = SegmentFeatures::max_finish(&m);
        // Smallest sum whose probability reaches the threshold (binary search on the
        // monotone logistic), less a margin for rounding; sums never leave ±2^20.
        let (mut lo, mut hi) = (-(1i32 << 20), 1i32 << 20);
        if m.probability(hi) >= threshold {
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if m.probability(mid) >= threshold {
                    hi = mid;
                } else {
                    lo = mid + 1;
                }
            }
            m.min_flag_sum = lo.saturating_sub(2);
        } else {
            m.min_flag_sum = i32::MAX;
        }
        m
    }

    /// Probability at which a segment is flagged.
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    #[inline]
    pub(crate) fn weight(&self, idx: u32) -> i32 {
        // `idx` comes from `index`, so it is below `SIZE`; the mask makes that visible.
        i32::from(self.weights[idx as usize & (SIZE - 1)])
    }

    /// Logistic probability for an accumulated integer weight sum.
    #[inline]
    pub(crate) fn probability(&self, sum: i32) -> f32 {
        let z = self.bias + self.scale * sum as f32;
        1.0 / (1.0 + (-z).exp())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The integer pre-check never hides a segment the probability would flag.
    #[test]
    fn min_flag_sum_is_a_lower_bound_of_the_flagging_sums() {
        let m = Model::from_bytes(include_bytes!("../model/weights.bin")).unwrap();
        let limit = 64 * 2 * 127 + 5 * 127;
        for sum in -limit..=limit {
            if m.probability(sum) >= m.threshold {
                assert!(
                    sum >= m.min_flag_sum,
                    "sum {sum} flags but is below {}",
                    m.min_flag_sum
                );
            }
        }
        assert!(m.probability(m.min_flag_sum + 2) >= m.threshold);
        assert!(m.probability(m.min_flag_sum + 1) < m.threshold);
    }

    /// The branch-free segment features sum to what `finish` emits, for every count.
    #[test]
    fn finish_sum_equals_the_emitted_features() {
        let m = Model::from_bytes(include_bytes!("../model/weights.bin")).unwrap();
        for ntok in 0..200 {
            for flags in 0..16u32 {
                let caps = if flags & 1 != 0 {
                    2 + ntok % 3
                } else {
                    ntok % 2
                };
                let mixed = (flags >> 1) & 1;
                let leet = if flags & 4 != 0 { 2 } else { ntok % 2 };
                let f = SegmentFeatures {
                    prev: 7,
                    counts: u64::from(ntok)
                        | u64::from(caps) << CAPS
                        | u64::from(mixed) << MIXED
                        | u64::from(leet) << LEET,
                    joined: (flags >> 3) & 1,
                };
                assert_eq!(
                    (f.tokens(), f.mixed_script(), f.count(CAPS), f.count(LEET)),
                    (ntok, mixed, caps, leet)
                );
                let (mut a, mut b) = (f.clone(), f);
                let mut want = 0;
                a.finish(|i| want += m.weight(i));
                assert!(want <= m.max_finish, "ntok {ntok} flags {flags}: {want}");
                assert_eq!(b.finish_sum(&m), want, "ntok {ntok} flags {flags}");
                assert_eq!(b.counts, 0);
                assert_eq!(b.prev, FIRST);
            }
        }
    }

    /// The branch-free first word: its second feature is the sentence-initial one,
    /// `index(h ^ 3)`, and every later word's is the bigram with the word before it.
    #[test]
    fn plain_word_equals_the_emitted_features() {
        let m = Model::from_bytes(include_bytes!("../model/weights.bin")).unwrap();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for round in 0..2000u32 {
            let (mut by_token, mut plain) =
                (SegmentFeatures::default(), SegmentFeatures::default());
            let (mut want, mut got) = (0i32, 0i32);
            for k in 0..(round % 9 + 1) {
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1442695040888963407);
                let (caps, leet) = ((x >> 7) & 1 == 1, (x >> 9) & 3 == 0);
                let t = Token {
                    text: b"w",
                    hash: x,
                    start: k as usize,
                    end: k as usize + 1,
                    mixed_script: false,
                    leet,
                    caps,
                    joined: false,
                };
                by_token.token(&t, |i| want += m.weight(i));
                got += plain.plain_word(x, caps, leet, &m);
            }
            assert_eq!(got, want);
            // The segment-level features see the same counts.
            assert_eq!(plain.finish_sum(&m), by_token.finish_sum(&m));
        }
    }

    #[test]
    fn first_word_gets_the_sentence_initial_feature() {
        let tok = |hash: u64| Token {
            text: b"w",
            hash,
            start: 0,
            end: 1,
            mixed_script: false,
            leet: false,
            caps: false,
            joined: false,
        };
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..1000 {
            let (a, b) = (x, x.rotate_left(17) ^ 0x5555);
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let mut f = SegmentFeatures::default();
            let mut got = Vec::new();
            f.token(&tok(a), |i| got.push(i));
            f.token(&tok(b), |i| got.push(i));
            f.finish(|_| {});
            // After `finish` the next word is a first word again.
            f.token(&tok(b), |i| got.push(i));
            let bigram = index(a.rotate_left(23) ^ b ^ 0x02);
            let want = [index(a ^ 1), index(a ^ 3), index(b ^ 1), bigram];
            assert_eq!(got[..4], want);
            assert_eq!(got[4..], [index(b ^ 1), index(b ^ 3)]);
        }
    }

    #[test]
    fn weights_file_round_trips_and_bad_files_are_refused() {
        let w: Vec<f32> = (0..(1usize << BITS))
            .map(|i| ((i % 7) as f32 - 3.0) * 0.1)
            .collect();
        let m = Model::quantise(&w, -2.0, 0.8);
        let bytes = m.to_bytes();
        let back = Model::from_bytes(&bytes).unwrap();
        assert_eq!(back.weights, m.weights);
        assert_eq!(back.threshold, 0.8);
        assert!(matches!(
            Model::from_bytes(b"nope"),
            Err(ModelError::BadHeader)
        ));
        assert!(matches!(
            Model::from_bytes(&bytes[..bytes.len() - 1]),
            Err(ModelError::BadLength { .. })
        ));
        let mut other_bits = bytes.clone();
        other_bits[8] = 18;
        assert!(matches!(
            Model::from_bytes(&other_bits),
            Err(ModelError::BadBits { found: 18, .. })
        ));
        let mut nan = bytes;
        nan[20..24].copy_from_slice(&f32::NAN.to_le_bytes());
        assert!(matches!(
            Model::from_bytes(&nan),
            Err(ModelError::NotFinite)
        ));
    }
}
