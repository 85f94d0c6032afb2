//! One linear pass that splits text into normalised words and segments (sentences / lines).
//! Both the learned stage and the rule stage consume this stream, so training and inference see
//! exactly the same features. Candidate encoded blobs (base64, hex, morse) are found apart, by
//! [`scan_blocks`].

use crate::fold::{Folded, fold_char_cached, leet};

mod blobs;
#[cfg(target_arch = "x86_64")]
mod simd;
#[cfg(test)]
pub(crate) use blobs::find_blobs;
pub(crate) use blobs::is_blank;
pub(crate) use blobs::scan_blocks;

/// Longest word kept in full; longer runs are split.
pub(crate) const MAX_TOKEN: usize = 48;
/// A segment is closed after this many words even without a sentence end.
pub(crate) const MAX_SEGMENT_TOKENS: u32 = 64;
/// Shortest base64/hex run worth decoding.
pub(crate) const MIN_BLOB: usize = 20;
/// Shortest morse run worth decoding.
pub(crate) const MIN_MORSE: usize = 24;

/// A normalised word.
#[derive(Debug)]
pub(crate) struct Token<'a> {
    /// Lowercase, folded, leet-decoded bytes (UTF-8); ASCII words are given as written (the
    /// word hash folds their case), and left empty for a sink whose [`Sink::TEXT`] is false.
    pub text: &'a [u8],
    pub hash: u64,
    /// Byte range in the scanned text.
    pub start: usize,
    pub end: usize,
    /// Mixed ASCII letters and look-alike letters of another script.
    pub mixed_script: bool,
    /// Digits were read as letters.
    pub leet: bool,
    /// Word was written in capitals (two letters or more).
    pub caps: bool,
    /// Synthesised from spaced-out letters ("i g n o r e").
    pub joined: bool,
}

/// Receiver of the token stream.
pub(crate) trait Sink {
    /// Whether the sink wants [`Sink::punct`] calls: a sink that does not lets the tokenizer
    /// pass over punctuation and blanks without looking at them one by one.
    const PUNCT: bool = true;
    /// Whether the sink reads [`Token::text`] of ASCII words (when not, it may be empty
    /// there).
    const TEXT: bool = true;
    fn token(&mut self, t: &Token<'_>);
    /// ASCII punctuation byte at `pos` (not letters, digits or whitespace).
    #[inline]
    fn punct(&mut self, _b: u8, _pos: usize) {}
    /// The current segment ended at byte `end`.
    fn segment_end(&mut self, end: usize);
    /// Plain ASCII words in a row (no segment end between them), for a sink without
    /// punctuation: the same as one [`Sink::token`] call per word [`PlainRun::for_each`]
    /// gives, which a sink may do faster.
    #[inline(always)]
    fn plain_words(&mut self, run: PlainRun<'_>) {
        let bytes = run.bytes;
        run.for_each(|w| {
            let t = Token {
                text: if Self::TEXT {
                    bytes.get(w.start..w.start + w.len).unwrap_or(&[])
                } else {
                    &[]
                },
                hash: w.hash,
                start: w.start,
                end: w.start + w.len,
                mixed_script: false,
                leet: w.leet,
                caps: w.caps,
                joined: false,
            };
            self.token(&t);
        });
    }
}

/// Words of a plain window (see `plain_window`) between two segment ends: each ASCII, at most
/// `MAX_TOKEN` bytes, inside the window; letters mixed with digits (leetspeak) only for a sink
/// that does not read the text of ASCII words.
pub(crate) struct PlainRun<'a> {
    pub bytes: &'a [u8],
    /// The window's 80 bytes from `base`, when the text has them (one load per word hash).
    chunk: Option<&'a [u8; 80]>,
    base: usize,
    /// Bit k: a word starts at `base + k`.
    starts: u64,
    /// The window's word bytes, capitals and digits.
    word: u64,
    upper: u64,
    digit: u64,
    /// Some word mixes letters and digits.
    leet: bool,
}

/// One word of a [`PlainRun`].
pub(crate) struct PlainWord {
    pub start: usize,
    pub len: usize,
    /// Written in capitals ([`Token::caps`]).
    pub caps: bool,
    /// Letters mixed with digits: the digits are read as letters ([`Token::leet`]).
    pub leet: bool,
    pub hash: u64,
}

impl PlainRun<'_> {
    /// Where the first word starts (`None` for no word).
    #[inline(always)]
    pub fn first(&self) -> Option<usize> {
        (self.starts != 0).then(|| self.base + self.starts.trailing_zeros() as usize)
    }

    /// `f` on each word in order, with its hash ([`hash_at`]).
    #[inline(always)]
    pub fn for_each(self, f: impl FnMut(PlainWord)) {
        // A word in capitals has two capitals side by side (two or more, and 80% of it):
        // without such a pair in the window, no word needs its capitals counted.
        let caps = self.upper & (self.upper >> 1) != 0;
        let at = |_, len, start| hash_at(self.bytes, start, len);
        match (self.chunk, caps, self.leet) {
            (_, _, true) => self.each::<true, true>(at, f),
            (Some(c), false, false) => self
                .each::<false, false>(|off, len, start| hash_in(c, off, len, start, self.bytes), f),
            (Some(c), true, false) => self
                .each::<true, false>(|off, len, start| hash_in(c, off, len, start, self.bytes), f),
            (None, false, false) => self.each::<false, false>(at, f),
            (None, true, false) => self.each::<true, false>(at, f),
        }
    }

    #[inline(always)]
    fn each<const CAPS: bool, const LEET: bool>(
        &self,
        hash: impl Fn(usize, usize, usize) -> u64,
        mut f: impl FnMut(PlainWord),
    ) {
        let mut starts = self.starts;
        while starts != 0 {
            // Below 64: `starts` is not zero.
            let off = starts.trailing_zeros() as usize & 63;
            starts &= starts - 1;
            // The word ends inside the window: `len` < 64 (and <= MAX_TOKEN).
            let len = (!(self.word >> off)).trailing_zeros() as usize & 63;
            let keep = (1u64 << len) - 1;
            let caps = CAPS && in_capitals(((self.upper >> off) & keep).count_ones(), len);
            let start = self.base + off;
            let digits = (self.digit >> off) & keep;
            if LEET && digits != 0 && digits != keep {
                f(PlainWord {
                    start,
                    len,
                    caps,
                    leet: true,
                    hash: leet_hash(self.bytes, start, len),
                });
                continue;
            }
            f(PlainWord {
                start,
                len,
                caps,
                leet: false,
                hash: hash(off, len, start),
            });
        }
    }
}

/// The hash of the `len` (<= `MAX_TOKEN`) bytes at `start` with their digits read as letters
/// (what [`State::emit_leet`] hashes).
#[inline(never)]
pub(crate) fn leet_hash(bytes: &[u8], start: usize, len: usize) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if len > 0
        && len <= 16
        && std::arch::is_x86_feature_detected!("ssse3")
        && let Some(w) = bytes.get(start..).and_then(<[u8]>::first_chunk::<16>)
    {
        // SAFETY: the CPU has SSSE3 (checked above).
        return unsafe { leet_hash16_ssse3(w, len) };
    }
    // Byte by byte: one narrow store per byte, then wide loads (slower: the loads wait for
    // the stores).
    let mut buf = [0u8; MAX_TOKEN + 16];
    let n = len.min(MAX_TOKEN);
    for (d, s) in buf
        .iter_mut()
        .zip(bytes.get(start..start + n).unwrap_or(&[]))
    {
        *d = leet(*s);
    }
    hash_at(&buf, 0, n)
}

/// [`leet_hash`] of a word of `len` (1 ..= 16) bytes at the start of `w`, in registers: the
/// digits are mapped to their letters with one shuffle (a table of 16 lanes), so no byte goes
/// through memory.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "ssse3")]
fn leet_hash16_ssse3(w: &[u8; 16], len: usize) -> u64 {
    use std::arch::x86_64::{
        __m128i, _mm_and_si128, _mm_andnot_si128, _mm_cmpeq_epi8, _mm_cvtsi128_si64,
        _mm_loadu_si128, _mm_min_epu8, _mm_or_si128, _mm_set1_epi8, _mm_shuffle_epi8, _mm_sub_epi8,
        _mm_unpackhi_epi64,
    };
    // Digit d's letter in lane d (lanes 10 ..= 15 are never picked for a digit).
    const LANES: [u8; 16] = {
        let mut t = [0u8; 16];
        let mut d = 0;
        while d < 10 {
            t[d] = crate::fold::LEET_LETTERS[d];
            d += 1;
        }
        t
    };
    let lanes = &LANES;
    // SAFETY: `w` and `lanes` are 16 readable bytes; the loads are unaligned.
    let (x, table) = unsafe {
        (
            _mm_loadu_si128(w.as_ptr().cast::<__m128i>()),
            _mm_loadu_si128(lanes.as_ptr().cast::<__m128i>()),
        )
    };
    let d = _mm_sub_epi8(x, _mm_set1_epi8(b'0' as i8));
    // Digits: `d` <= 9 as an unsigned byte.
    let digit = _mm_cmpeq_epi8(_mm_min_epu8(d, _mm_set1_epi8(9)), d);
    let letters = _mm_shuffle_epi8(table, d);
    let y = _mm_or_si128(_mm_and_si128(digit, letters), _mm_andnot_si128(digit, x));
    let a = _mm_cvtsi128_si64(y) as u64;
    let b = _mm_cvtsi128_si64(_mm_unpackhi_epi64(y, y)) as u64;
    hash_words(a, b, len)
}

/// [`hash_at`] of the word of `len` bytes at `off` in a window's 80 bytes `c` (`start` in
/// `bytes`).
#[inline(always)]
fn hash_in(c: &[u8; 80], off: usize, len: usize, start: usize, bytes: &[u8]) -> u64 {
    if len <= 16 {
        // `off` < 64: the 16 bytes are inside `c`.
        let off = off & 63;
        hash16(&c[off..off + 16], len)
    } else {
        hash_at(bytes, start, len)
    }
}

/// Kind of candidate encoded blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlobKind {
    Base64OrHex,
    Morse,
}

#[derive(Debug, Clone)]
pub(crate) struct Blob {
    pub kind: BlobKind,
    pub start: usize,
    pub end: usize,
}

/// Fast word hash. ASCII case is folded inside the hash (every byte is OR-ed with 0x20), so
/// an ASCII word hashes the same from the raw text as from its lowercased form.
#[inline]
pub(crate) fn hash_bytes(b: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    const CASE: u64 = 0x2020_2020_2020_2020;
    let mut h: u64 = b.len() as u64;
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let mut a = [0u8; 8];
        a.copy_from_slice(c);
        h = (h.rotate_left(5) ^ (u64::from_le_bytes(a) | CASE)).wrapping_mul(K);
    }
    let rem = chunks.remainder();
    if !rem.is_empty() {
        // Assembled byte by byte: a variable-length copy would be a `memcpy` call per word.
        let v = rem
            .iter()
            .enumerate()
            .fold(0u64, |v, (i, &x)| v | (u64::from(x) << (8 * i)));
        let mask = CASE & (u64::MAX >> (8 * (8 - rem.len())));
        h = (h.rotate_left(5) ^ (v | mask)).wrapping_mul(K);
    }
    h ^ (h >> 29)
}

/// `hash_bytes(&bytes[start..start + len])` with a single load for short words.
#[inline]
pub(crate) fn hash_at(bytes: &[u8], start: usize, len: usize) -> u64 {
    if len > 0
        && len <= 16
        && let Some(w) = bytes.get(start..).and_then(<[u8]>::first_chunk::<16>)
    {
        return hash16(w, len);
    }
    hash_bytes(bytes.get(start..start + len).unwrap_or(&[]))
}

/// For a word of `len` (1 ..= 16) bytes: the masks of its first and second 8-byte chunk.
// (Entries past 16 are never used: the table has 32 so that `len & 31` indexes it.)
const MASKS: [(u64, u64); 32] = {
    // The low `n` bytes (0 ..= 8) of a word.
    const fn keep(n: usize) -> u64 {
        if n >= 8 {
            u64::MAX
        } else {
            (1u64 << (8 * n)) - 1
        }
    }
    let mut t = [(0u64, 0u64); 32];
    let mut len = 0;
    while len < 32 {
        t[len] = (
            keep(if len < 8 { len } else { 8 }),
            keep(len.saturating_sub(8)),
        );
        len += 1;
    }
    t
};

/// `hash_bytes` of the first `len` (1 ..= 16) bytes of `w` (16 bytes or more), with one load
/// per 8 bytes.
#[inline(always)]
fn hash16(w: &[u8], len: usize) -> u64 {
    let (Some(a), Some(b)) = (
        w.first_chunk::<8>(),
        w.get(8..).and_then(<[u8]>::first_chunk::<8>),
    ) else {
        return hash_bytes(w.get(..len).unwrap_or(w));
    };
    hash_words(u64::from_le_bytes(*a), u64::from_le_bytes(*b), len)
}

/// `hash_bytes` of the first `len` (1 ..= 16) bytes of the two little-endian words `a`, `b`.
#[inline(always)]
fn hash_words(a: u64, b: u64, len: usize) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    const CASE: u64 = 0x2020_2020_2020_2020;
    // One or two rounds of `hash_bytes` (a full or partial 8-byte chunk, then the rest), both
    // computed and the second kept by a select: word lengths vary too much for a branch to be
    // predicted.
    let (m1, m2) = MASKS[len & 31];
    let first = (a | CASE) & m1;
    let h1 = ((len as u64).rotate_left(5) ^ first).wrapping_mul(K);
    let second = (b | CASE) & m2;
    let h2 = (h1.rotate_left(5) ^ second).wrapping_mul(K);
    let h = if len > 8 { h2 } else { h1 };
    h ^ (h >> 29)
}

/// Bytes of a `u64` word, for the SWAR (SIMD-within-a-register) word scanner.
const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Per byte of `x7` (every byte < 0x80): high bit set iff the byte is >= `n` (`n` <= 0x80).
/// Setting each byte's high bit first keeps the subtraction from borrowing across bytes.
#[inline(always)]
const fn ge(x7: u64, n: u8) -> u64 {
    ((x7 | HI) - LO * n as u64) & HI
}

/// Class masks of eight bytes (the high bit of each byte lane is the answer for that byte).
#[derive(Debug, Clone, Copy)]
struct Lanes {
    /// ASCII letter, digit or `_`.
    word: u64,
    upper: u64,
    digit: u64,
    /// Line ends and non-ASCII bytes.
    stop: u64,
    /// Sentence marks (`.`, `!`, `?`).
    sent: u64,
    /// Blanks and line ends (what ends a segment after a sentence mark).
    after: u64,
    /// Other ASCII punctuation (class `PUNCT`).
    punct: u64,
}

#[inline(always)]
fn lanes(x: u64) -> Lanes {
    let high = x & HI;
    let x7 = x & !HI;
    let digit = ge(x7, b'0') & !ge(x7, b'9' + 1) & !high;
    let upper = ge(x7, b'A') & !ge(x7, b'Z' + 1) & !high;
    let lower = ge(x7, b'a') & !ge(x7, b'z' + 1) & !high;
    let z = x7 ^ (LO * b'_' as u64);
    let underscore = !((z | HI) - LO) & HI & !high;
    let line_end = ge(x7, 0x0a) & !ge(x7, 0x0e);
    let del = !(((x7 ^ (LO * 0x7f)) | HI) - LO) & HI;
    let space = ((!ge(x7, 0x21) & !line_end) | del) & HI & !high;
    let eq = |b: u8| !(((x7 ^ (LO * b as u64)) | HI) - LO) & HI & !high;
    let sent = eq(b'.') | eq(b'!') | eq(b'?');
    let word = digit | upper | lower | underscore;
    let line_end = line_end & HI & !high;
    Lanes {
        word,
        upper,
        digit,
        stop: line_end | high,
        sent,
        after: space | line_end,
        punct: HI & !(word | space | line_end | sent | high),
    }
}

/// The high bit of each byte lane of `m` (nothing else may be set), gathered into the low
/// eight bits: lane k's bit (7 + 8k) is carried to bit 56 + k by the term 2^(7(7 - k)); the
/// other products land below bit 56 or on bits already set only by their own lane, so
/// nothing carries into the top byte.
#[inline(always)]
const fn gather(m: u64) -> u64 {
    m.wrapping_mul(0x0002_0408_1020_4081) >> 56
}

/// Eight bytes of `bytes` from `at` (little endian), zero past the end.
#[inline(always)]
fn load8(bytes: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    match bytes.get(at..at + 8) {
        Some(w) => a.copy_from_slice(w),
        None => {
            let tail = bytes.get(at..).unwrap_or(&[]);
            a[..tail.len()].copy_from_slice(tail);
        }
    }
    u64::from_le_bytes(a)
}

/// Byte classes of the 64 bytes from `base` (bit k is byte `base + k`; zero past the end).
#[derive(Debug, Clone, Copy, Default)]
struct Window {
    word: u64,
    upper: u64,
    digit: u64,
    /// Where the word scan must stop: line ends, non-ASCII bytes, and sentence marks that may
    /// end a segment (followed by a blank or a line end, or last in the window).
    stop: u64,
    /// ASCII punctuation, sentence marks included (for sinks that want it).
    punct: u64,
    /// Non-ASCII bytes.
    high: u64,
}

/// The `stop` and `punct` masks of a window from its byte-class masks: a sentence mark stops
/// the scan only when the next byte is a blank or a line end (bytes past the end of the text
/// read as blanks, as the segment rule wants), or when the next byte is outside the window.
#[inline(always)]
fn stop_and_punct(stop: u64, sent: u64, after: u64, punct: u64) -> (u64, u64) {
    let sent_end = sent & ((after >> 1) | (1 << 63));
    (stop | sent_end, punct | sent)
}

impl Window {
    /// Portable version: eight bytes per step in a `u64`.
    #[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
    #[inline]
    fn at_swar(bytes: &[u8], base: usize) -> Window {
        let mut w = Window::default();
        let (mut sent, mut after) = (0u64, 0u64);
        for k in 0..8 {
            let l = lanes(load8(bytes, base + 8 * k));
            w.word |= gather(l.word) << (8 * k);
            w.upper |= gather(l.upper) << (8 * k);
            w.digit |= gather(l.digit) << (8 * k);
            w.stop |= gather(l.stop) << (8 * k);
            w.punct |= gather(l.punct) << (8 * k);
            w.high |= gather(load8(bytes, base + 8 * k) & HI) << (8 * k);
            sent |= gather(l.sent) << (8 * k);
            after |= gather(l.after) << (8 * k);
        }
        (w.stop, w.punct) = stop_and_punct(w.stop, sent, after, w.punct);
        w
    }

    /// x86-64 version: sixteen bytes per step with SSE2. Compiled only when SSE2 is enabled
    /// (it is part of the x86-64 baseline), without `#[target_feature]` so that it inlines
    /// into the driver.
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    #[inline(always)]
    fn at_sse2(bytes: &[u8], base: usize) -> Window {
        use std::arch::x86_64::{
            __m128i, _mm_and_si128, _mm_andnot_si128, _mm_cmpeq_epi8, _mm_cmpgt_epi8,
            _mm_cmplt_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set_epi64x,
            _mm_set1_epi8,
        };
        // Signed byte compares: bytes >= 0x80 are negative, so below every ASCII bound.
        #[inline(always)]
        fn within(x: __m128i, lo: u8, hi: u8) -> __m128i {
            // SAFETY: SSE2 intrinsics, compiled only with SSE2 enabled (cfg above).
            unsafe {
                _mm_and_si128(
                    _mm_cmpgt_epi8(x, _mm_set1_epi8(lo as i8 - 1)),
                    _mm_cmplt_epi8(x, _mm_set1_epi8(hi as i8 + 1)),
                )
            }
        }
        let mut win = Window::default();
        let (mut sent_all, mut after) = (0u64, 0u64);
        let whole = bytes.get(base..base + 64);
        for k in 0..4 {
            let at = base + 16 * k;
            // SAFETY: SSE2 intrinsics, compiled only with SSE2 enabled (cfg above); the
            // unaligned load reads `16 * k .. 16 * k + 16` of `w`, which has 64 bytes.
            let (word, space, line_end, sent, high, upper, digit) = unsafe {
                let x = match whole {
                    Some(w) => _mm_loadu_si128(w.as_ptr().add(16 * k).cast::<__m128i>()),
                    None => _mm_set_epi64x(load8(bytes, at + 8) as i64, load8(bytes, at) as i64),
                };
                let d = within(x, b'0', b'9');
                let u = within(x, b'A', b'Z');
                let l = within(x, b'a', b'z');
                let us = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'_' as i8));
                let w = _mm_or_si128(_mm_or_si128(d, u), _mm_or_si128(l, us));
                // Blanks: 0x00..=0x20 except the line ends 0x0a..=0x0d, and DEL.
                let low = _mm_and_si128(
                    _mm_cmpgt_epi8(x, _mm_set1_epi8(-1)),
                    _mm_cmplt_epi8(x, _mm_set1_epi8(0x21)),
                );
                let line_end = within(x, 0x0a, 0x0d);
                let sp = _mm_or_si128(
                    _mm_andnot_si128(line_end, low),
                    _mm_cmpeq_epi8(x, _mm_set1_epi8(0x7f)),
                );
                let sent = _mm_or_si128(
                    _mm_cmpeq_epi8(x, _mm_set1_epi8(b'.' as i8)),
                    _mm_or_si128(
                        _mm_cmpeq_epi8(x, _mm_set1_epi8(b'!' as i8)),
                        _mm_cmpeq_epi8(x, _mm_set1_epi8(b'?' as i8)),
                    ),
                );
                (
                    _mm_movemask_epi8(w) as u16,
                    _mm_movemask_epi8(sp) as u16,
                    _mm_movemask_epi8(line_end) as u16,
                    _mm_movemask_epi8(sent) as u16,
                    // Non-ASCII bytes: the sign bit itself.
                    _mm_movemask_epi8(x) as u16,
                    _mm_movemask_epi8(u) as u16,
                    _mm_movemask_epi8(d) as u16,
                )
            };
            let sh = 16 * k;
            win.word |= u64::from(word) << sh;
            win.upper |= u64::from(upper) << sh;
            win.digit |= u64::from(digit) << sh;
            win.stop |= u64::from(line_end | high) << sh;
            win.high |= u64::from(high) << sh;
            win.punct |= u64::from(!(word | space | line_end | sent | high)) << sh;
            sent_all |= u64::from(sent) << sh;
            after |= u64::from(space | line_end) << sh;
        }
        (win.stop, win.punct) = stop_and_punct(win.stop, sent_all, after, win.punct);
        win
    }

    /// AVX2 version: thirty-two bytes per step.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn at_avx2(bytes: &[u8], base: usize) -> Window {
        use simd::{eq, within};
        use std::arch::x86_64::{
            __m256i, _mm256_and_si256, _mm256_andnot_si256, _mm256_cmpgt_epi8, _mm256_loadu_si256,
            _mm256_movemask_epi8, _mm256_or_si256, _mm256_set1_epi8,
        };
        let mut padded = [0u8; 64];
        let block: &[u8; 64] = match bytes.get(base..).and_then(|b| b.first_chunk::<64>()) {
            Some(b) => b,
            None => {
                // The end of the text: zero bytes past it (they read as blanks).
                let tail = bytes.get(base..).unwrap_or(&[]);
                padded[..tail.len()].copy_from_slice(tail);
                &padded
            }
        };
        let mut win = Window::default();
        let (mut sent_all, mut after) = (0u64, 0u64);
        for k in 0..2 {
            // SAFETY: bytes `32 * k .. 32 * k + 32` of a 64-byte array; the load is unaligned.
            let x = unsafe { _mm256_loadu_si256(block.as_ptr().add(32 * k).cast::<__m256i>()) };
            let d = within(x, b'0', b'9');
            let u = within(x, b'A', b'Z');
            let l = within(x, b'a', b'z');
            let w = _mm256_or_si256(_mm256_or_si256(d, u), _mm256_or_si256(l, eq(x, b'_')));
            // Blanks: 0x00..=0x20 except the line ends 0x0a..=0x0d, and DEL.
            let low = _mm256_and_si256(
                _mm256_cmpgt_epi8(x, _mm256_set1_epi8(-1)),
                _mm256_cmpgt_epi8(_mm256_set1_epi8(0x21), x),
            );
            let line_end = within(x, 0x0a, 0x0d);
            let sp = _mm256_or_si256(_mm256_andnot_si256(line_end, low), eq(x, 0x7f));
            let sent = _mm256_or_si256(eq(x, b'.'), _mm256_or_si256(eq(x, b'!'), eq(x, b'?')));
            let mask = |v: __m256i| u64::from(_mm256_movemask_epi8(v) as u32);
            let (word, space, line_end, sent) = (mask(w), mask(sp), mask(line_end), mask(sent));
            // Non-ASCII bytes: the sign bit itself.
            let high = mask(x);
            let sh = 32 * k;
            win.word |= word << sh;
            win.upper |= mask(u) << sh;
            win.digit |= mask(d) << sh;
            win.stop |= (line_end | high) << sh;
            win.high |= high << sh;
            win.punct |= (!(word | space | line_end | sent | high) & 0xffff_ffff) << sh;
            sent_all |= sent << sh;
            after |= (space | line_end) << sh;
        }
        (win.stop, win.punct) = stop_and_punct(win.stop, sent_all, after, win.punct);
        win
    }

    #[inline]
    fn at(bytes: &[u8], base: usize) -> Window {
        #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
        {
            Window::at_sse2(bytes, base)
        }
        #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
        {
            Window::at_swar(bytes, base)
        }
    }
}

// Byte classes for the ASCII fast path.
const SPACE: u8 = 0;
const NEWLINE: u8 = 1;
const SENT: u8 = 2;
const ALPHA: u8 = 3;
const DIGIT: u8 = 4;
const PUNCT: u8 = 5;
const HIGH: u8 = 6;

const fn class_table() -> [u8; 256] {
    let mut t = [PUNCT; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = if b >= 0x80 {
            HIGH
        } else if b == b'\n' || b == b'\r' || b == 0x0b || b == 0x0c {
            NEWLINE
        } else if b == b' ' || b == b'\t' || b < 0x20 || b == 0x7f {
            SPACE
        } else if b == b'.' || b == b'!' || b == b'?' {
            SENT
        } else if b.is_ascii_alphabetic() || b == b'_' {
            ALPHA
        } else if b.is_ascii_digit() {
            DIGIT
        } else {
            PUNCT
        };
        i += 1;
    }
    t
}
static CLASS: [u8; 256] = class_table();

/// An ASCII word taken whole from the window: `len` (<= `MAX_TOKEN`) bytes at `start`, whether
/// it has letters (or `_`) and digits, and its number of capitals.
#[derive(Debug, Clone, Copy)]
struct AsciiWord {
    start: usize,
    len: usize,
    alpha: bool,
    digit: bool,
    upper: u32,
}

struct State {
    buf: [u8; MAX_TOKEN + 4],
    len: usize,
    start: usize,
    in_tok: bool,
    has_alpha: bool,
    has_digit: bool,
    upper: u32,
    confusable: bool,
    ascii_alpha: bool,
    seg_tokens: u32,
    // spaced-letter joining ("i g n o r e")
    join: [u8; MAX_TOKEN],
    join_len: usize,
    join_start: usize,
    join_last_end: usize,
}

impl State {
    fn new() -> Self {
        State {
            buf: [0; MAX_TOKEN + 4],
            len: 0,
            start: 0,
            in_tok: false,
            has_alpha: false,
            has_digit: false,
            upper: 0,
            confusable: false,
            ascii_alpha: false,
            seg_tokens: 0,
            join: [0; MAX_TOKEN],
            join_len: 0,
            join_start: 0,
            join_last_end: 0,
        }
    }

    #[inline]
    fn begin(&mut self, pos: usize) {
        self.in_tok = true;
        self.len = 0;
        self.start = pos;
        self.has_alpha = false;
        self.has_digit = false;
        self.upper = 0;
        self.confusable = false;
        self.ascii_alpha = false;
    }

    #[inline]
    fn push(&mut self, b: u8) {
        if self.len < MAX_TOKEN {
            self.buf[self.len] = b;
            self.len += 1;
        }
    }

    fn flush_join<S: Sink>(&mut self, sink: &mut S) {
        if self.join_len >= 4 {
            let t = Token {
                text: &self.join[..self.join_len],
                hash: hash_at(&self.join, 0, self.join_len),
                start: self.join_start,
                end: self.join_last_end,
                mixed_script: false,
                leet: false,
                caps: false,
                joined: true,
            };
            sink.token(&t);
        }
        self.join_len = 0;
    }

    #[inline]
    fn end_token<S: Sink>(&mut self, end: usize, sink: &mut S) {
        if !self.in_tok {
            return;
        }
        self.in_tok = false;
        if self.len == 0 {
            return;
        }
        let leet_word = self.has_alpha && self.has_digit;
        if leet_word {
            for b in &mut self.buf[..self.len] {
                *b = leet(*b);
            }
        }
        // Spaced-out single letters: a run of one-letter words one separator apart.
        if self.len == 1 && self.has_alpha && self.buf[0].is_ascii_alphabetic() {
            if self.join_len > 0
                && self.start == self.join_last_end + 1
                && self.join_len < MAX_TOKEN
            {
                self.join[self.join_len] = self.buf[0];
                self.join_len += 1;
                self.join_last_end = end;
            } else {
                self.flush_join(sink);
                self.join[0] = self.buf[0];
                self.join_len = 1;
                self.join_start = self.start;
                self.join_last_end = end;
            }
        } else if self.join_len > 0 {
            self.flush_join(sink);
        }
        let t = Token {
            text: &self.buf[..self.len],
            hash: hash_at(&self.buf, 0, self.len),
            start: self.start,
            end,
            mixed_script: self.confusable && self.ascii_alpha,
            leet: leet_word,
            caps: in_capitals(self.upper, self.len),
            joined: false,
        };
        sink.token(&t);
        self.seg_tokens += 1;
    }

    /// Emit a word made only of ASCII letters/digits/underscore, straight from the source.
    #[inline(always)]
    fn emit_ascii<S: Sink>(&mut self, bytes: &[u8], w: AsciiWord, sink: &mut S) {
        // One test for the rare kinds (evaluated without short-circuits): a one-letter word,
        // the word after a run of four or more (spaced-out letters: they make a word of their
        // own), and letters mixed with digits.
        if ((w.len == 1) & w.alpha) | (self.join_len >= 4) | (w.alpha & w.digit) {
            self.emit_rare(bytes, w, sink);
        } else {
            // A shorter run of one-letter words ends here without a word of its own.
            self.join_len = 0;
            emit_plain(bytes, w.start, w.len, w.upper, sink);
        }
        self.seg_tokens += 1;
    }

    /// The rare kinds of [`State::emit_ascii`].
    #[inline(never)]
    fn emit_rare<S: Sink>(&mut self, bytes: &[u8], w: AsciiWord, sink: &mut S) {
        if (w.len == 1 && w.alpha) || self.join_len > 0 {
            self.join_step(bytes, w.start, w.len, w.alpha, sink);
        }
        if w.alpha && w.digit {
            self.emit_leet(bytes, w.start, w.len, w.upper, sink);
        } else {
            emit_plain(bytes, w.start, w.len, w.upper, sink);
        }
    }

    /// The spaced-letter step of [`State::emit_ascii`] (a one-letter word, or the first word
    /// after one).
    fn join_step<S: Sink>(
        &mut self,
        bytes: &[u8],
        start: usize,
        len: usize,
        alpha: bool,
        sink: &mut S,
    ) {
        let end = start + len;
        if len == 1 && alpha {
            let l = bytes.get(start).map_or(0, u8::to_ascii_lowercase);
            if self.join_len > 0 && start == self.join_last_end + 1 && self.join_len < MAX_TOKEN {
                self.join[self.join_len] = l;
                self.join_len += 1;
                self.join_last_end = end;
            } else {
                self.flush_join(sink);
                self.join[0] = l;
                self.join_len = 1;
                self.join_start = start;
                self.join_last_end = end;
            }
        } else {
            self.flush_join(sink);
        }
    }

    /// A word of ASCII letters and digits: the digits are read as letters.
    fn emit_leet<S: Sink>(
        &mut self,
        bytes: &[u8],
        start: usize,
        len: usize,
        upper: u32,
        sink: &mut S,
    ) {
        let end = start + len;
        let raw = bytes.get(start..end).unwrap_or(&[]);
        let n = len.min(MAX_TOKEN);
        for (d, s) in self.buf[..n].iter_mut().zip(raw) {
            *d = leet(s.to_ascii_lowercase());
        }
        let t = Token {
            text: &self.buf[..n],
            // (From the text, not from `buf`: the hash does not wait for its byte stores.)
            hash: leet_hash(bytes, start, n),
            start,
            end,
            mixed_script: false,
            leet: true,
            caps: in_capitals(upper, len),
            joined: false,
        };
        sink.token(&t);
    }

    /// Open a word on the general path with its ASCII beginning (`len` bytes at `start`).
    fn begin_ascii(&mut self, bytes: &[u8], start: usize, len: usize, alpha: bool, digit: bool) {
        self.begin(start);
        for &c in bytes.get(start..start + len).unwrap_or(&[]) {
            if c.is_ascii_uppercase() {
                self.upper += 1;
            }
            self.push(c.to_ascii_lowercase());
        }
        self.has_alpha = alpha;
        self.ascii_alpha = alpha;
        self.has_digit = digit;
    }

    #[inline]
    fn end_segment<S: Sink>(&mut self, end: usize, sink: &mut S) {
        if self.join_len > 0 {
            self.flush_join(sink);
        }
        // A segment is open once it has a word (spaced-letter words come after their letters).
        if self.seg_tokens > 0 {
            sink.segment_end(end);
        }
        self.seg_tokens = 0;
    }

    /// A line end at `pos` (class `NEWLINE`): ends the segment.
    #[inline(always)]
    fn line_end<S: Sink>(&mut self, pos: usize, sink: &mut S) {
        self.end_segment(pos, sink);
    }

    /// `.`, `!` or `?` at `pos`: ends the segment when a blank or line end follows.
    #[inline(always)]
    fn sentence_mark<S: Sink>(&mut self, bytes: &[u8], pos: usize, sink: &mut S) {
        if S::PUNCT {
            sink.punct(bytes[pos], pos);
        }
        let next = bytes.get(pos + 1).copied().unwrap_or(b'\n');
        if matches!(CLASS[next as usize], SPACE | NEWLINE) {
            self.end_segment(pos + 1, sink);
        }
    }
}

/// A word of `len` bytes with `upper` capitals counts as written in capitals: two capitals or
/// more, and at least 80% of it.
#[inline(always)]
fn in_capitals(upper: u32, len: usize) -> bool {
    upper >= 2 && upper as usize * 10 >= len * 8
}

/// An ASCII word of letters or of digits, straight from the source: `len` (<= `MAX_TOKEN`)
/// bytes at `start`, with `upper` capitals.
#[inline(always)]
fn emit_plain<S: Sink>(bytes: &[u8], start: usize, len: usize, upper: u32, sink: &mut S) {
    let t = Token {
        text: if S::TEXT {
            bytes.get(start..start + len).unwrap_or(&[])
        } else {
            &[]
        },
        hash: hash_at(bytes, start, len),
        start,
        end: start + len,
        mixed_script: false,
        leet: false,
        caps: in_capitals(upper, len),
        joined: false,
    };
    sink.token(&t);
}

/// One step of the byte-at-a-time tokenizer at `i` (a byte the window driver does not take:
/// non-ASCII text, and ASCII bytes that continue a word begun with non-ASCII letters); returns
/// where the next step starts.
#[inline]
fn general<S: Sink>(st: &mut State, text: &str, i: usize, sink: &mut S) -> usize {
    let bytes = text.as_bytes();
    let mut i = i;
    let b = bytes[i];
    let class = CLASS[b as usize];
    match class {
        ALPHA => {
            if !st.in_tok {
                st.begin(i);
            }
            st.has_alpha = true;
            st.ascii_alpha = true;
            if b.is_ascii_uppercase() {
                st.upper += 1;
            }
            st.push(b.to_ascii_lowercase());
            if st.len >= MAX_TOKEN {
                st.end_token(i + 1, sink);
            }
            i += 1;
        }
        DIGIT => {
            if !st.in_tok {
                st.begin(i);
            }
            st.has_digit = true;
            st.push(b);
            if st.len >= MAX_TOKEN {
                st.end_token(i + 1, sink);
            }
            i += 1;
        }
        SPACE => {
            st.end_token(i, sink);
            i += 1;
        }
        NEWLINE => {
            st.end_token(i, sink);
            st.line_end(i, sink);
            i += 1;
        }
        SENT => {
            st.end_token(i, sink);
            st.sentence_mark(bytes, i, sink);
            i += 1;
        }
        PUNCT => {
            st.end_token(i, sink);
            if S::PUNCT {
                sink.punct(b, i);
            }
            i += 1;
        }
        _ => {
            // CJK and Hangul letters (three bytes each, folding to themselves) in a row: taken
            // here with the same steps as one `Folded::Letter` each, without a decode or a
            // fold per character.
            if (0xe3..=0xed).contains(&b) {
                let j = plain_letters(st, bytes, i, sink);
                if j > i {
                    return j;
                }
            }
            // Non-ASCII: decode one char (the input is valid UTF-8).
            let Some(c) = text.get(i..).and_then(|s| s.chars().next()) else {
                return i + 1;
            };
            let w = c.len_utf8();
            match fold_char_cached(c) {
                Folded::Invisible => {
                    // Dropped: does not break the word it sits in.
                }
                Folded::Ascii { byte, confusable } => {
                    if !st.in_tok {
                        st.begin(i);
                    }
                    st.confusable |= confusable;
                    if byte.is_ascii_digit() {
                        st.has_digit = true;
                    } else {
                        st.has_alpha = true;
                        if c.is_uppercase() {
                            st.upper += 1;
                        }
                    }
                    st.push(byte);
                    if st.len >= MAX_TOKEN {
                        st.end_token(i + w, sink);
                    }
                }
                Folded::Letter(l) => {
                    if !st.in_tok {
                        st.begin(i);
                    }
                    st.has_alpha = true;
                    let mut tmp = [0u8; 4];
                    for &x in l.encode_utf8(&mut tmp).as_bytes() {
                        st.push(x);
                    }
                    if st.len + 4 >= MAX_TOKEN {
                        st.end_token(i + w, sink);
                    }
                }
                Folded::Separator => {
                    st.end_token(i, sink);
                    // Unicode line/paragraph separators end a segment.
                    if c == '\u{2028}' || c == '\u{2029}' || c == '\u{85}' {
                        st.end_segment(i, sink);
                    }
                }
            }
            i += w;
        }
    }
    if st.seg_tokens >= MAX_SEGMENT_TOKENS && !st.in_tok {
        st.end_segment(i, sink);
    }
    i
}

/// Tokenize `text`, feeding `sink` (candidate encoded blobs are found apart, by
/// [`scan_blocks`]).
///
/// A 64-byte class window (word bytes, capitals, digits, stops, punctuation) lets ASCII words
/// be taken whole and everything between them be skipped to the next byte that matters: a
/// word, a line end, a sentence mark, a non-ASCII byte, or punctuation for a sink that wants it.
/// Non-ASCII text goes through [`general`], one character at a time. The result is exactly that
/// of the byte-at-a-time tokenizer (`reference.rs`, checked by `fast_path_equals_reference`).
///
/// On x86-64 CPUs with AVX2, BMI1/2, POPCNT and LZCNT (x86-64-v3) the same driver runs compiled
/// for those instructions, with a 32-bytes-per-step window; elsewhere with the baseline.
pub(crate) fn tokenize<S: Sink>(text: &str, sink: &mut S) {
    #[cfg(target_arch = "x86_64")]
    if has_v3() {
        // SAFETY: the CPU has every feature `tokenize_v3` is compiled for (checked just above).
        unsafe { tokenize_v3(text, sink) };
        return;
    }
    drive::<S, false>(text, sink);
}

/// Whether the CPU has the x86-64-v3 features the fast tokenizer is compiled for.
#[cfg(target_arch = "x86_64")]
#[inline]
pub(super) fn has_v3() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("bmi1")
        && std::arch::is_x86_feature_detected!("bmi2")
        && std::arch::is_x86_feature_detected!("popcnt")
        && std::arch::is_x86_feature_detected!("lzcnt")
}

/// [`drive`] compiled for x86-64-v3.
///
/// # Safety
/// The CPU must have AVX2, BMI1, BMI2, POPCNT and LZCNT.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,bmi1,bmi2,popcnt,lzcnt")]
unsafe fn tokenize_v3<S: Sink>(text: &str, sink: &mut S) {
    drive::<S, true>(text, sink);
}

/// The class window at `base`: AVX2 when `V3` (only ever set by [`tokenize_v3`]).
#[inline(always)]
fn window<const V3: bool>(bytes: &[u8], base: usize) -> Window {
    #[cfg(target_arch = "x86_64")]
    if V3 {
        // SAFETY: `V3` is only true inside `tokenize_v3`, which runs only on CPUs with AVX2.
        return unsafe { Window::at_avx2(bytes, base) };
    }
    Window::at(bytes, base)
}

/// The tokenizer's driver (see [`tokenize`]).
///
/// Each 64-byte window yields one event mask: word starts, line ends, non-ASCII bytes,
/// sentence marks that may end a segment, and punctuation for a sink that wants it. The events
/// are taken in order; a word that runs past the window, and text after a stretch handled by
/// [`general`], start a new window there (so a window always begins outside a word).
#[inline(always)]
fn drive<S: Sink, const V3: bool>(text: &str, sink: &mut S) {
    let bytes = text.as_bytes();
    let n = bytes.len();
    let mut st = State::new();
    let mut base = 0;
    'windows: while base < n {
        let win = window::<V3>(bytes, base);
        if !S::PUNCT
            && let Some(next) = plain_window(&mut st, bytes, base, &win, sink)
        {
            base = next;
            continue;
        }
        let starts = win.word & !(win.word << 1);
        let mut events = starts | win.stop | if S::PUNCT { win.punct } else { 0 };
        while events != 0 {
            let off = events.trailing_zeros() as usize;
            events &= events - 1;
            let i = base + off;
            if (starts >> off) & 1 != 0 {
                // An ASCII word (bytes past the end of the text are zero: never word bytes).
                let len = (!(win.word >> off)).trailing_zeros() as usize;
                if off + len >= 64 && off > 0 {
                    // It runs past the window: take it from a window that starts with it.
                    base = i;
                    continue 'windows;
                }
                let piece = len.min(MAX_TOKEN);
                // `piece` < 64, so the mask is exact.
                let keep = (1u64 << piece) - 1;
                let digit = (win.digit >> off) & keep;
                let alpha = (win.word >> off) & !(win.digit >> off) & keep != 0;
                let upper = ((win.upper >> off) & keep).count_ones();
                if len > MAX_TOKEN {
                    // Longer than a token: its first `MAX_TOKEN` bytes, then the rest as a
                    // word of its own (from a window that starts with it).
                    let w = AsciiWord {
                        start: i,
                        len: piece,
                        alpha,
                        digit: digit != 0,
                        upper,
                    };
                    st.emit_ascii(bytes, w, sink);
                    if st.seg_tokens >= MAX_SEGMENT_TOKENS {
                        st.end_segment(i + piece, sink);
                    }
                    base = i + piece;
                    continue 'windows;
                }
                // `off + len` < 64 here (off = 0 means len <= MAX_TOKEN).
                if len < MAX_TOKEN && (win.high >> (off + len)) & 1 != 0 {
                    // The word goes on with non-ASCII letters: continue on the general path.
                    st.begin_ascii(bytes, i, len, alpha, digit != 0);
                    base = general_run(&mut st, text, i + len, sink);
                    continue 'windows;
                }
                let w = AsciiWord {
                    start: i,
                    len,
                    alpha,
                    digit: digit != 0,
                    upper,
                };
                st.emit_ascii(bytes, w, sink);
                if st.seg_tokens >= MAX_SEGMENT_TOKENS {
                    st.end_segment(i + len, sink);
                }
                continue;
            }
            // Line ends, sentence marks and punctuation between words: the same steps as in
            // `general`, with no word to end; non-ASCII text goes to `general`.
            let b = bytes[i];
            match CLASS[b as usize] {
                NEWLINE => st.line_end(i, sink),
                SENT => st.sentence_mark(bytes, i, sink),
                PUNCT => sink.punct(b, i),
                _ => {
                    base = general_run(&mut st, text, i, sink);
                    continue 'windows;
                }
            }
        }
        base += 64;
    }
    st.end_token(n, sink);
    st.end_segment(n, sink);
}

/// Windows taken by [`plain_window`] (tests check that the generated texts reach it).
#[cfg(test)]
static PLAIN_WINDOWS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The window at `base` when it is plain text, for a sink without punctuation: every word in
/// it ASCII, at most `MAX_TOKEN` bytes, of letters or of digits (leetspeak too when the sink
/// does not read the text), no two one-letter words one byte apart, no spaced-letter run open
/// before it that its first word continues, and too few words to reach `MAX_SEGMENT_TOKENS`.
/// Such a window needs none of the event loop's tests per word: its words and segment ends
/// are taken in order by two loops, and where the next window starts is returned. Any other window returns `None` with nothing done (the event loop takes it). The
/// result is the event loop's, word for word (checked against the reference tokenizer).
#[inline(always)]
fn plain_window<S: Sink>(
    st: &mut State,
    bytes: &[u8],
    base: usize,
    win: &Window,
    sink: &mut S,
) -> Option<usize> {
    let word = win.word;
    let starts = word & !(word << 1);
    let alpha = word & !win.digit;
    // One-letter words (a letter or `_`): a start whose next byte is no word byte.
    let single = starts & !(word >> 1) & alpha;
    // A letter next to a digit: some word mixes them (leetspeak: taken here only for a sink
    // that does not read the text, see `PlainRun`).
    let mixed = (win.digit & (alpha >> 1)) | (alpha & (win.digit >> 1));
    // Runs of more than `MAX_TOKEN` (48) word bytes: bit i of `r{k}` is set when bytes
    // i .. i + k are all word bytes.
    // Such a run covers bytes 15 ..= 48: only then are the runs measured.
    const MIDDLE: u64 = ((1 << 34) - 1) << 15;
    let long = if word & MIDDLE == MIDDLE {
        let r2 = word & (word >> 1);
        let r4 = r2 & (r2 >> 2);
        let r8 = r4 & (r4 >> 4);
        let r16 = r8 & (r8 >> 8);
        let r32 = r16 & (r16 >> 16);
        r32 & (r16 >> 32) & (word >> 48)
    } else {
        0
    };
    // A word reaching the window's last byte may go on past it: the next window starts there.
    let limit = 64 - (!word).leading_zeros();
    // A spaced-letter run still open (shorter than four letters: none is emitted) must not go
    // on with this window's first word.
    let open_ok = st.join_len == 0 || {
        let first = starts.trailing_zeros();
        let goes_on =
            (single >> (first & 63)) & 1 != 0 && base + first as usize == st.join_last_end + 1;
        st.join_len < 4 && !goes_on
    };
    let plain = (win.high == 0)
        & open_ok
        & (single & (single >> 2) == 0)
        & ((mixed == 0) | !S::TEXT)
        & (long == 0)
        & (limit > 0)
        & (st.seg_tokens + starts.count_ones() < MAX_SEGMENT_TOKENS);
    if !plain {
        return None;
    }
    #[cfg(test)]
    PLAIN_WINDOWS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // Words starting below `limit` (`limit` > 0: the shift is below 64).
    let mut words = starts & (u64::MAX >> (64 - limit));
    // Line ends and sentence marks (all below `limit`: the bytes above it are word bytes).
    let mut stops = win.stop;
    let chunk = bytes.get(base..).and_then(<[u8]>::first_chunk::<80>);
    // Whether a segment end came after the last word (it closes any spaced-letter run).
    let mut closed = false;
    loop {
        // The bits below the next stop (all of them when there is none).
        let before = stops.wrapping_sub(1) & !stops;
        let now = words & before;
        words &= !before;
        if now != 0 {
            st.seg_tokens += now.count_ones();
            sink.plain_words(PlainRun {
                bytes,
                chunk,
                base,
                starts: now,
                word,
                upper: win.upper,
                digit: win.digit,
                leet: mixed != 0,
            });
            closed = false;
        }
        if stops == 0 {
            break;
        }
        let i = base + stops.trailing_zeros() as usize;
        stops &= stops - 1;
        // (No non-ASCII byte here: a stop is a line end or a sentence mark.)
        if CLASS[usize::from(bytes.get(i).copied().unwrap_or(0))] == NEWLINE {
            st.line_end(i, sink);
            closed = true;
        } else {
            st.sentence_mark(bytes, i, sink);
            // A sentence mark ends the segment (and the run) when a blank or a line end
            // follows.
            closed |= st.seg_tokens == 0;
        }
    }
    // A one-letter word last in the window, with no segment end after it, opens a
    // spaced-letter run (one letter long: no two are one byte apart here); any other word
    // ends it.
    // (With no word here and no segment end, a run open before the window stays open.)
    let taken = starts & (u64::MAX >> (64 - limit));
    if taken != 0 || closed {
        st.join_len = 0;
    }
    if taken != 0 && !closed {
        let last = 63 - taken.leading_zeros() as usize;
        if (single >> last) & 1 != 0 {
            let i = base + last;
            st.join[0] = bytes.get(i).map_or(0, u8::to_ascii_lowercase);
            st.join_len = 1;
            st.join_start = i;
            st.join_last_end = i + 1;
        }
    }
    Some(base + limit as usize)
}

/// The run of three-byte plain letters (see `fold::is_plain_letter`) at `i` in `bytes` (valid
/// UTF-8), taken as [`general`] takes each: pushed to the open word (a word opens at the
/// first), the word ended when it nears `MAX_TOKEN` bytes, the segment when it reaches
/// `MAX_SEGMENT_TOKENS` words. Returns where the run ends (`i`: none there).
#[inline(never)]
fn plain_letters<S: Sink>(st: &mut State, bytes: &[u8], i: usize, sink: &mut S) -> usize {
    let mut j = i;
    while let Some(&[b0, b1, b2]) = bytes.get(j..).and_then(<[u8]>::first_chunk::<3>) {
        // A lead byte of a three-byte sequence (0xe3 ..= 0xed), whose two continuation bytes
        // follow in valid UTF-8.
        if !(0xe3..=0xed).contains(&b0) {
            break;
        }
        let cp = (u32::from(b0 & 0x0f) << 12) | (u32::from(b1 & 0x3f) << 6) | u32::from(b2 & 0x3f);
        if !crate::fold::is_plain_letter(cp) {
            break;
        }
        if !st.in_tok {
            st.begin(j);
        }
        st.has_alpha = true;
        st.push(b0);
        st.push(b1);
        st.push(b2);
        j += 3;
        if st.len + 4 >= MAX_TOKEN {
            st.end_token(j, sink);
        }
        if st.seg_tokens >= MAX_SEGMENT_TOKENS && !st.in_tok {
            st.end_segment(j, sink);
        }
    }
    j
}

/// [`general`] from `i` for as long as a word is open or the text is not ASCII; returns where
/// the window driver takes over again (outside a word).
#[inline(never)]
fn general_run<S: Sink>(st: &mut State, text: &str, i: usize, sink: &mut S) -> usize {
    let bytes = text.as_bytes();
    let mut i = i;
    while i < bytes.len() && (st.in_tok || bytes[i] >= 0x80) {
        i = general(st, text, i, sink);
    }
    i
}

#[cfg(test)]
mod reference;

#[cfg(test)]
mod tests {
    use super::*;

    /// The leetspeak hash (one shuffle for words of up to 16 bytes) equals the hash of the
    /// word with its digits mapped one byte at a time, for every length and byte mix: digits,
    /// their neighbours `/` and `:`, letters, `_` and bytes of 0x80 and above.
    #[test]
    fn leet_hash_equals_the_mapped_bytes_hash() {
        use rand::{Rng, SeedableRng};
        const BYTES: &[u8] = b"0123456789/:aZz_\x80\xff\x2f\x3a";
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x1ee7);
        for _ in 0..20000 {
            let text: Vec<u8> = (0..40)
                .map(|_| BYTES[rng.random_range(0..BYTES.len())])
                .collect();
            for len in 1..=MAX_TOKEN.min(24) {
                let start = rng.random_range(0..8);
                let mapped: Vec<u8> = text[start..start + len]
                    .iter()
                    .map(|&b| crate::fold::leet(b))
                    .collect();
                assert_eq!(
                    leet_hash(&text, start, len),
                    hash_bytes(&mapped),
                    "{:?}",
                    &text[start..start + len]
                );
            }
        }
    }

    #[derive(Default)]
    struct Collect {
        words: Vec<String>,
        segs: Vec<usize>,
    }
    impl Sink for Collect {
        fn token(&mut self, t: &Token<'_>) {
            self.words
                .push(String::from_utf8_lossy(t.text).to_ascii_lowercase());
        }
        fn segment_end(&mut self, end: usize) {
            self.segs.push(end);
        }
    }

    fn words(s: &str) -> Vec<String> {
        let mut c = Collect::default();
        tokenize(s, &mut c);
        c.words
    }

    /// Everything a sink can see, in order.
    #[derive(Default, PartialEq, Debug)]
    struct Record(Vec<String>);
    impl Sink for Record {
        fn token(&mut self, t: &Token<'_>) {
            self.0.push(format!(
                "t {:?} {:x} {}..{} m{} l{} c{} j{}",
                String::from_utf8_lossy(t.text),
                t.hash,
                t.start,
                t.end,
                t.mixed_script,
                t.leet,
                t.caps,
                t.joined,
            ));
        }
        fn punct(&mut self, b: u8, pos: usize) {
            self.0.push(format!("p {b} {pos}"));
        }
        fn segment_end(&mut self, end: usize) {
            self.0.push(format!("s {end}"));
        }
    }

    /// The same events without punctuation: what a sink with `PUNCT = false` must see.
    #[derive(Default, PartialEq, Debug)]
    struct Words(Record);
    impl Sink for Words {
        const PUNCT: bool = false;
        fn token(&mut self, t: &Token<'_>) {
            self.0.token(t);
        }
        fn punct(&mut self, _b: u8, _pos: usize) {
            unreachable!("punct called on a sink that does not want it");
        }
        fn segment_end(&mut self, end: usize) {
            self.0.segment_end(end);
        }
    }

    /// The same events without the text of ASCII words: what a sink with `TEXT = false` (and
    /// no punctuation) must see (its plain windows take leetspeak too).
    #[derive(Default, PartialEq, Debug)]
    struct Hashes(Record);
    impl Sink for Hashes {
        const PUNCT: bool = false;
        const TEXT: bool = false;
        fn token(&mut self, t: &Token<'_>) {
            let ascii = t.text.is_ascii() && !t.mixed_script && !t.joined;
            let t = Token {
                text: if ascii { &[] } else { t.text },
                ..*t
            };
            self.0.token(&t);
        }
        fn segment_end(&mut self, end: usize) {
            self.0.segment_end(end);
        }
    }

    fn assert_same(text: &str) {
        let (mut fast, mut slow, mut words, mut hashes) = (
            Record::default(),
            Record::default(),
            Words::default(),
            Hashes::default(),
        );
        tokenize(text, &mut fast);
        tokenize(text, &mut words);
        tokenize(text, &mut hashes);
        reference::tokenize(text, &mut slow);
        let mut slow_hashes = Hashes::default();
        reference::tokenize(text, &mut slow_hashes);
        assert_eq!(
            hashes, slow_hashes,
            "a sink without text differs from the reference on {text:?}"
        );
        // The baseline driver too, where `tokenize` took the x86-64-v3 one.
        let mut base = Record::default();
        drive::<_, false>(text, &mut base);
        assert_eq!(
            base, fast,
            "baseline and dispatched drivers differ on {text:?}"
        );
        let no_punct: Vec<&String> = slow.0.iter().filter(|e| !e.starts_with("p ")).collect();
        let words: Vec<&String> = words.0.0.iter().collect();
        if fast != slow || words != no_punct {
            let at = fast.0.iter().zip(&slow.0).position(|(a, b)| a != b);
            let wat = words.iter().zip(&no_punct).position(|(a, b)| a != b);
            panic!(
                "fast path differs from the reference on {text:?}: first difference at event {at:?}: {:?} vs {:?}; without punctuation at {wat:?}",
                at.and_then(|k| fast.0.get(k)),
                at.and_then(|k| slow.0.get(k)),
            );
        }
    }

    /// Both window classifiers agree with the byte classes on every byte value at every lane.
    #[test]
    fn window_classifiers_agree_with_the_byte_classes() {
        // Every byte value, then sentence marks before and after blanks, line ends and words.
        const MIX: &[u8] = b". .\n.a!?\t.\r?.x.!\x7f.\x0b.\xc3\xa9.";
        let all: Vec<u8> = (0..=255u8)
            .chain(0..=255u8)
            .rev()
            .chain(0..=255u8)
            .chain((0..600).map(|i| MIX[(i * 7 + i / 13) % MIX.len()]))
            .collect();
        for base in 0..all.len() {
            let w = Window::at_swar(&all, base);
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2 (checked just above).
                let v = unsafe { Window::at_avx2(&all, base) };
                assert_eq!(
                    (v.word, v.upper, v.digit, v.stop, v.punct, v.high),
                    (w.word, w.upper, w.digit, w.stop, w.punct, w.high)
                );
            }
            #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
            {
                let v = Window::at_sse2(&all, base);
                assert_eq!(
                    (v.word, v.upper, v.digit, v.stop, v.punct, v.high),
                    (w.word, w.upper, w.digit, w.stop, w.punct, w.high)
                );
            }
            for k in 0..64 {
                // Past the end the window reads zero bytes; the driver never looks there.
                let Some(b) = all.get(base + k).copied() else {
                    break;
                };
                let b = Some(b);
                let bit = |m: u64| m >> k & 1 == 1;
                let class = b.map(|b| CLASS[b as usize]);
                assert_eq!(bit(w.word), matches!(class, Some(ALPHA | DIGIT)), "{b:?}");
                assert_eq!(bit(w.digit), matches!(class, Some(DIGIT)), "{b:?}");
                assert_eq!(
                    bit(w.upper),
                    b.is_some_and(|b| b.is_ascii_uppercase()),
                    "{b:?}"
                );
                // Bytes past the end read as blanks.
                let next = all.get(base + k + 1).map_or(SPACE, |&n| CLASS[n as usize]);
                let sent_end = class == Some(SENT) && (k == 63 || matches!(next, SPACE | NEWLINE));
                assert_eq!(
                    bit(w.stop),
                    matches!(class, Some(NEWLINE | HIGH)) || sent_end,
                    "{b:?}"
                );
                assert_eq!(bit(w.punct), matches!(class, Some(PUNCT | SENT)), "{b:?}");
                assert_eq!(bit(w.high), matches!(class, Some(HIGH)), "{b:?}");
            }
        }
    }

    /// The window driver must see exactly what the byte-at-a-time tokenizer sees (the model
    /// weights were trained on that stream): generated hostile text with every byte class,
    /// words across window edges, long words, blobs and morse, mixed scripts, separators.
    #[test]
    fn fast_path_equals_reference_on_generated_text() {
        use rand::{Rng, SeedableRng};
        const PIECES: &[&str] = &[
            "a",
            "I",
            "ignore",
            "Previous",
            "INSTRUCTIONS",
            "x9",
            "l33t",
            "h3ll0",
            "_",
            "snake_case",
            " ",
            "  ",
            "\t",
            " \t ",
            "\n",
            "\r\n",
            "\x0b",
            "\x0c",
            "\x7f",
            "\x01",
            ".",
            "!",
            "?",
            ". ",
            "! ",
            "?\n",
            "...",
            "-",
            "--",
            "+",
            "/",
            "=",
            "==",
            ",",
            ":",
            "(",
            ")",
            "<",
            "<|",
            "|>",
            "'",
            "\"",
            "#",
            "@",
            "é",
            "café",
            "naïve",
            "і",
            "ѕ",
            "ο",
            "Ignоre",
            "\u{200b}",
            "ig\u{200b}nore",
            "\u{2028}",
            "\u{2029}",
            "\u{85}",
            "—",
            "’",
            "日本語",
            "😀",
            "\u{e0041}",
            "ＩＧＮＯＲＥ",
            "Ⅻ",
            "ﬁ",
            "aWdub3JlIHByZXZpb3VzIGluc3RydWN0aW9ucw==",
            "69676e6f72652070726576696f7573",
            ".. --. -. --- .-. . / .- .-.. .-..",
            "i g n o r e",
            "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz_ABCDEFGH",
            "0123456789012345678901234567890123456789012345678",
            "e.g.",
            "v1.2.3",
            "x86_64",
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x1c1a);
        for round in 0..4000 {
            let parts = rng.random_range(1..(8 + round % 120));
            let mut s = String::new();
            for _ in 0..parts {
                s.push_str(PIECES[rng.random_range(0..PIECES.len())]);
            }
            assert_same(&s);
            // The same text at every offset of the first window, so that words and runs of
            // blanks cross the 64-byte window edges at every position.
            if round % 40 == 0 {
                for pad in 0..70 {
                    assert_same(&format!("{}{s}", "a".repeat(pad)));
                    assert_same(&format!("{}{s}", " ".repeat(pad)));
                }
            }
        }
        // Long single-class runs (word pieces of MAX_TOKEN, blanks, blobs).
        for len in [1, 7, 8, 9, 47, 48, 49, 63, 64, 65, 96, 97, 200] {
            assert_same(&"a".repeat(len));
            assert_same(&format!("{}é", "b".repeat(len)));
            assert_same(&format!("{} x", "\t".repeat(len)));
            assert_same(&format!("{}\n", "ab1=".repeat(len)));
            assert_same(&"- ".repeat(len));
        }
    }

    /// Plain text (what `plain_window` takes whole) with everything that makes a window not
    /// plain mixed in at random places: one-letter words and spaced letters, leetspeak, words
    /// in capitals, long words, sentence and line ends at every offset, runs of 64 words.
    #[test]
    fn plain_windows_equal_reference() {
        use rand::{Rng, SeedableRng};
        use std::sync::atomic::Ordering;
        const WORDS: &[&str] = &[
            "the",
            "network",
            "a",
            "I",
            "x",
            "_",
            "of",
            "42",
            "2024",
            "mp3",
            "h264",
            "x86_64",
            "l33t",
            "R2D2",
            "ABC",
            "NASA",
            "Ignore",
            "iGNORE",
            "PREVIOUS",
            "u",
            "Ok",
            "abcdefghijklmnopq",
            "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklm",
            "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvw",
            "snake_case_name",
        ];
        const SEPS: &[&str] = &[
            " ", " ", " ", " ", "  ", ", ", ". ", ".\n", "\n", "! ", "?", ".", "-", " (", ") ",
            "\t", "\r\n", " é ", "—",
        ];
        let before = PLAIN_WINDOWS.load(Ordering::Relaxed);
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x9a1d);
        for round in 0..3000 {
            let n = rng.random_range(1..(4 + round % 200));
            let mut s = String::new();
            for _ in 0..n {
                // Mostly ordinary words and blanks, as in prose and code.
                let w = if rng.random_range(0..4) == 0 {
                    WORDS[rng.random_range(0..WORDS.len())]
                } else {
                    WORDS[rng.random_range(0..2)]
                };
                s.push_str(w);
                let sep = if rng.random_range(0..3) == 0 {
                    SEPS[rng.random_range(0..SEPS.len())]
                } else {
                    " "
                };
                s.push_str(sep);
            }
            assert_same(&s);
            assert_same(s.trim_end());
        }
        // Spaced letters across window edges, and a run of words reaching MAX_SEGMENT_TOKENS.
        for pad in 0..140 {
            let prefix = format!("{}{}", "ab ".repeat(pad / 3), "c".repeat(pad % 3 + 2));
            assert_same(&format!("{prefix} i g n o r e all"));
            assert_same(&format!("{prefix} a b c"));
            assert_same(&format!("{prefix} a b c d all"));
        }
        assert_same(&"word ".repeat(200));
        assert!(
            PLAIN_WINDOWS.load(Ordering::Relaxed) > before + 10_000,
            "the generated texts did not reach the plain-window path"
        );
    }

    /// The same on the evaluation corpora (real documents, code, e-mails, tables).
    #[test]
    fn fast_path_equals_reference_on_the_evaluation_sets() {
        let texts = crate::test_corpus::eval_texts();
        for t in texts {
            assert_same(t);
        }
        assert!(texts.len() > 1000, "only {} texts compared", texts.len());
    }

    #[test]
    fn normalises_case_leet_homoglyphs_invisible_and_spacing() {
        let w = words("IGNORE y0ur іnѕtruсtіоnѕ ig\u{200B}nore i g n o r e");
        assert_eq!(
            w,
            [
                "ignore",
                "your",
                "instructions",
                "ignore",
                "i",
                "g",
                "n",
                "o",
                "r",
                "e",
                "ignore"
            ]
        );
    }

    /// `hash_bytes` as the model was trained with (remainder copied into a zeroed buffer).
    fn hash_bytes_as_trained(b: &[u8]) -> u64 {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        const CASE: u64 = 0x2020_2020_2020_2020;
        let mut h: u64 = b.len() as u64;
        let mut chunks = b.chunks_exact(8);
        for c in &mut chunks {
            let mut a = [0u8; 8];
            a.copy_from_slice(c);
            h = (h.rotate_left(5) ^ (u64::from_le_bytes(a) | CASE)).wrapping_mul(K);
        }
        let rem = chunks.remainder();
        if !rem.is_empty() {
            let mut a = [0u8; 8];
            a[..rem.len()].copy_from_slice(rem);
            let mask = CASE & (u64::MAX >> (8 * (8 - rem.len())));
            h = (h.rotate_left(5) ^ (u64::from_le_bytes(a) | mask)).wrapping_mul(K);
        }
        h ^ (h >> 29)
    }

    #[test]
    fn word_hash_is_the_one_the_model_was_trained_with() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for len in 0..64 {
            for _ in 0..50 {
                let w: Vec<u8> = (0..len).map(|_| rng.random::<u8>()).collect();
                assert_eq!(hash_bytes(&w), hash_bytes_as_trained(&w), "{w:?}");
            }
        }
    }

    #[test]
    fn single_load_hash_matches_the_reference() {
        let text =
            b"Ignore PREVIOUS instructions_x 12ab and a veryverylongword, longer_than_sixteen.";
        let mut i = 0;
        while i < text.len() {
            for len in 1..=24 {
                if i + len <= text.len() {
                    assert_eq!(hash_at(text, i, len), hash_bytes(&text[i..i + len]));
                }
            }
            i += 1;
        }
        assert_eq!(hash_bytes(b"IGNORE"), hash_bytes(b"ignore"));
    }

    #[test]
    fn segments_on_sentences_and_lines() {
        let mut c = Collect::default();
        tokenize("One two. Three\nfour e.g.five", &mut c);
        assert_eq!(c.segs.len(), 3);
    }
}
