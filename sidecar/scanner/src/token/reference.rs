//! The tokenizer as it was before the word scan became word-at-a-time (SWAR): a byte-at-a-time
//! oracle kept for tests only. `tests::fast_path_equals_reference` feeds both the evaluation
//! corpora and generated hostile text and requires identical token streams and segments, so the
//! committed model weights (trained on this stream) stay valid. (Encoded-blob candidates are
//! found apart, by `blobs::scan_blocks`, with their own byte-at-a-time oracle.)
#![allow(dead_code)]

use super::{MAX_SEGMENT_TOKENS, MAX_TOKEN, Sink, Token, hash_at, hash_bytes};
use crate::fold::{Folded, fold_char, leet};

const F_ALPHA: u8 = 1;
const F_DIGIT: u8 = 2;
const F_UPPER: u8 = 4;

const fn word_table() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 128 {
        let b = i as u8;
        t[i] = if b.is_ascii_uppercase() {
            F_ALPHA | F_UPPER
        } else if b.is_ascii_lowercase() || b == b'_' {
            F_ALPHA
        } else if b.is_ascii_digit() {
            F_DIGIT
        } else {
            0
        };
        i += 1;
    }
    t
}
static WORD: [u8; 256] = word_table();

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
    seg_open: bool,
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
            seg_open: false,
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
                hash: hash_bytes(&self.join[..self.join_len]),
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
            hash: hash_bytes(&self.buf[..self.len]),
            start: self.start,
            end,
            mixed_script: self.confusable && self.ascii_alpha,
            leet: leet_word,
            caps: self.upper >= 2 && self.upper as usize * 10 >= self.len * 8,
            joined: false,
        };
        sink.token(&t);
        self.seg_tokens += 1;
        self.seg_open = true;
    }

    /// Emit a word made only of ASCII letters/digits/underscore, straight from the source.
    #[inline]
    fn emit_ascii<S: Sink>(
        &mut self,
        whole: &[u8],
        raw: &[u8],
        start: usize,
        flags: u8,
        sink: &mut S,
    ) {
        let len = raw.len();
        let end = start + len;
        // Spaced-out single letters.
        if len == 1 && flags & F_ALPHA != 0 {
            let l = raw[0].to_ascii_lowercase();
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
        } else if self.join_len > 0 {
            self.flush_join(sink);
        }
        let leet_word = flags & (F_ALPHA | F_DIGIT) == (F_ALPHA | F_DIGIT);
        let caps = flags & F_UPPER != 0 && {
            let up = raw.iter().filter(|b| b.is_ascii_uppercase()).count();
            up >= 2 && up * 10 >= len * 8
        };
        let text: &[u8] = if leet_word {
            let n = len.min(MAX_TOKEN);
            for (d, s) in self.buf[..n].iter_mut().zip(raw) {
                *d = leet(s.to_ascii_lowercase());
            }
            &self.buf[..n]
        } else {
            raw
        };
        let hash = if leet_word {
            hash_bytes(text)
        } else {
            hash_at(whole, start, len)
        };
        let t = Token {
            text,
            hash,
            start,
            end,
            mixed_script: false,
            leet: leet_word,
            caps,
            joined: false,
        };
        sink.token(&t);
        self.seg_tokens += 1;
        self.seg_open = true;
    }

    #[inline]
    fn end_segment<S: Sink>(&mut self, end: usize, sink: &mut S) {
        if self.join_len > 0 {
            self.flush_join(sink);
        }
        if self.seg_open {
            sink.segment_end(end);
        }
        self.seg_open = false;
        self.seg_tokens = 0;
    }
}

/// Tokenize `text`, feeding `sink`.
pub(crate) fn tokenize<S: Sink>(text: &str, sink: &mut S) {
    let bytes = text.as_bytes();
    let n = bytes.len();
    let mut st = State::new();
    let mut i = 0;
    while i < n {
        let b = bytes[i];
        let class = CLASS[b as usize];
        if (class == ALPHA || class == DIGIT) && !st.in_tok {
            // ASCII word fast path.
            let start = i;
            let lim = (start + MAX_TOKEN).min(n);
            let mut flags = 0u8;
            while i < lim {
                let f = WORD[bytes[i] as usize];
                if f == 0 {
                    break;
                }
                flags |= f;
                i += 1;
            }
            if i < lim && bytes[i] >= 0x80 {
                // The word goes on with non-ASCII letters: continue on the general path.
                st.begin(start);
                for &c in &bytes[start..i] {
                    if c.is_ascii_uppercase() {
                        st.upper += 1;
                    }
                    st.push(c.to_ascii_lowercase());
                }
                st.has_alpha = flags & F_ALPHA != 0;
                st.ascii_alpha = st.has_alpha;
                st.has_digit = flags & F_DIGIT != 0;
                continue;
            }
            st.emit_ascii(bytes, &bytes[start..i], start, flags, sink);
            if st.seg_tokens >= MAX_SEGMENT_TOKENS {
                st.end_segment(i, sink);
            }
            continue;
        }
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
                st.end_segment(i, sink);
                i += 1;
            }
            SENT => {
                st.end_token(i, sink);
                sink.punct(b, i);
                let next = bytes.get(i + 1).copied().unwrap_or(b'\n');
                if matches!(CLASS[next as usize], SPACE | NEWLINE) {
                    st.end_segment(i + 1, sink);
                }
                i += 1;
            }
            PUNCT => {
                st.end_token(i, sink);
                sink.punct(b, i);
                i += 1;
            }
            _ => {
                // Non-ASCII: decode one char (the input is valid UTF-8).
                let Some(c) = text.get(i..).and_then(|s| s.chars().next()) else {
                    i += 1;
                    continue;
                };
                let w = c.len_utf8();
                match fold_char(c) {
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
    }
    st.end_token(n, sink);
    st.end_segment(n, sink);
}
