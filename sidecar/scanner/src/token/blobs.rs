//! Candidate encoded blobs, found apart from the word scan with byte-class masks.
//!
//! - base64 / hex: a maximal run of at least [`MIN_BLOB`] bytes from `A-Z a-z 0-9 _ + / = -`;
//! - morse: a maximal run of at least [`MIN_MORSE`] bytes from `. - /` and blanks (space, tab,
//!   other ASCII controls except line ends, DEL) in which the marks `.` and `-` are at least
//!   half of the bytes.
//!
//! Runs are found 64 bytes at a time: a block with no run of the minimum length inside costs a
//! few bit operations (about 5 GB/s on the benign corpus with AVX2, 7% of the fast pass).
//! [`reference`] is the byte-at-a-time definition the tests compare against.

use super::{Blob, BlobKind, MIN_BLOB, MIN_MORSE};

/// Class masks of a 64-byte block (bit k is byte `base + k`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Block {
    /// base64 / hex alphabet (with `_` and `-`).
    b64: u64,
    /// Bytes that continue a morse run.
    morse: u64,
    /// Morse marks (`.` and `-`).
    marks: u64,
    /// `<` and `|`: chat-template tokens (`<|…|>`) are found in the same pass.
    lt: u64,
    pipe: u64,
}

#[inline]
fn is_b64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'/' | b'=' | b'-')
}

/// A blank: space, tab, DEL and the ASCII controls other than line ends (the tokenizer's
/// separators).
#[inline]
pub(crate) fn is_blank(b: u8) -> bool {
    (b < 0x20 && !(0x0a..=0x0d).contains(&b)) || b == b' ' || b == 0x7f
}

#[inline]
fn is_morse(b: u8) -> bool {
    is_blank(b) || matches!(b, b'.' | b'-' | b'/')
}

/// Byte classes by nibble: a byte's class bits are `hi[b >> 4] & lo[b & 15]`. Each bit is a
/// set of high nibbles times a set of low nibbles; a class is the union of its bits; bytes
/// of 0x80 and above have none (high nibbles 8 ..= 15 have no bit).
#[derive(Debug)]
struct Nibbles {
    hi: [u8; 16],
    lo: [u8; 16],
}

/// [`Nibbles`] from `(bit, high nibbles, low nibbles)` (nibble sets as 16-bit masks).
const fn nibbles(bits: &[(u8, u16, u16)]) -> Nibbles {
    let mut t = Nibbles {
        hi: [0; 16],
        lo: [0; 16],
    };
    let mut i = 0;
    while i < bits.len() {
        let (bit, hi, lo) = bits[i];
        let mut n = 0;
        while n < 16 {
            if hi & (1 << n) != 0 {
                t.hi[n] |= 1 << bit;
            }
            if lo & (1 << n) != 0 {
                t.lo[n] |= 1 << bit;
            }
            n += 1;
        }
        i += 1;
    }
    t
}

/// A nibble set from a list of nibbles.
const fn set(ns: &[u8]) -> u16 {
    let mut m = 0u16;
    let mut i = 0;
    while i < ns.len() {
        m |= 1 << ns[i];
        i += 1;
    }
    m
}

/// Nibbles 0 ..= 9.
const DIGITS: u16 = 0x03ff;
/// Bits 0 ..= 4 of the first table: the base64 / hex alphabet.
const A_B64: u8 = 0x1f;
/// Bits 0 ..= 3 of the second table: bytes that continue a morse run.
const B_MORSE: u8 = 0x0f;

/// The two nibble tables of the AVX2 block classifier (checked against [`Block::at_scalar`] on
/// every byte value).
static NIBBLES: (Nibbles, Nibbles) = (
    nibbles(&[
        // `+`, `-`, `/` (0x2b, 0x2d, 0x2f).
        (0, set(&[2]), set(&[0xb, 0xd, 0xf])),
        // `0` ..= `9`, `=` (0x30 ..= 0x39, 0x3d).
        (1, set(&[3]), DIGITS | set(&[0xd])),
        // `A` ..= `O`, `a` ..= `o` (0x41 ..= 0x4f, 0x61 ..= 0x6f).
        (2, set(&[4, 6]), 0xfffe),
        // `P` ..= `Z`, `p` ..= `z` (0x50 ..= 0x5a, 0x70 ..= 0x7a).
        (3, set(&[5, 7]), 0x07ff),
        // `_` (0x5f).
        (4, set(&[5]), set(&[0xf])),
        // `<` (0x3c): bit 5.
        (5, set(&[3]), set(&[0xc])),
        // `|` (0x7c): bit 6.
        (6, set(&[7]), set(&[0xc])),
    ]),
    nibbles(&[
        // Blanks 0x00 ..= 0x09, 0x0e ..= 0x1f (not the line ends 0x0a ..= 0x0d).
        (0, set(&[0, 1]), DIGITS | set(&[0xe, 0xf])),
        (1, set(&[1]), set(&[0xa, 0xb, 0xc, 0xd])),
        // Space, `-`, `.`, `/` (0x20, 0x2d ..= 0x2f).
        (2, set(&[2]), set(&[0, 0xd, 0xe, 0xf])),
        // DEL (0x7f).
        (3, set(&[7]), set(&[0xf])),
        // The marks `-` and `.` (0x2d, 0x2e): bit 4.
        (4, set(&[2]), set(&[0xd, 0xe])),
    ]),
);

impl Block {
    /// Portable version, one byte at a time (also the oracle of the SSE2 version).
    #[cfg_attr(target_arch = "x86_64", allow(dead_code))]
    fn at_scalar(chunk: &[u8]) -> Block {
        let mut k = Block::default();
        for (i, &b) in chunk.iter().enumerate().take(64) {
            k.b64 |= u64::from(is_b64(b)) << i;
            k.morse |= u64::from(is_morse(b)) << i;
            k.marks |= u64::from(b == b'.' || b == b'-') << i;
            k.lt |= u64::from(b == b'<') << i;
            k.pipe |= u64::from(b == b'|') << i;
        }
        k
    }

    /// x86-64 version: sixteen bytes per step with SSE2 (part of the x86-64 baseline).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "sse2")]
    fn at_sse2(chunk: &[u8]) -> Block {
        use std::arch::x86_64::{
            __m128i, _mm_and_si128, _mm_andnot_si128, _mm_cmpeq_epi8, _mm_cmpgt_epi8,
            _mm_cmplt_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
        };
        #[target_feature(enable = "sse2")]
        #[inline]
        fn within(x: __m128i, lo: u8, hi: u8) -> __m128i {
            _mm_and_si128(
                _mm_cmpgt_epi8(x, _mm_set1_epi8(lo as i8 - 1)),
                _mm_cmplt_epi8(x, _mm_set1_epi8(hi as i8 + 1)),
            )
        }
        #[target_feature(enable = "sse2")]
        #[inline]
        fn eq(x: __m128i, b: u8) -> __m128i {
            _mm_cmpeq_epi8(x, _mm_set1_epi8(b as i8))
        }
        let mut buf = [0u8; 64];
        let full: &[u8; 64] = match chunk.first_chunk::<64>() {
            Some(c) => c,
            None => {
                let n = chunk.len().min(64);
                buf[..n].copy_from_slice(&chunk[..n]);
                &buf
            }
        };
        let mut k = Block::default();
        for (j, piece) in full.chunks_exact(16).enumerate() {
            // SAFETY: `piece` is exactly 16 readable bytes; the load is unaligned.
            let x = unsafe { _mm_loadu_si128(piece.as_ptr().cast::<__m128i>()) };
            let alnum = _mm_or_si128(
                within(x, b'0', b'9'),
                _mm_or_si128(within(x, b'A', b'Z'), within(x, b'a', b'z')),
            );
            let dash = eq(x, b'-');
            let slash = eq(x, b'/');
            let b64 = _mm_or_si128(
                _mm_or_si128(alnum, _mm_or_si128(eq(x, b'_'), eq(x, b'+'))),
                _mm_or_si128(_mm_or_si128(slash, eq(x, b'=')), dash),
            );
            // Signed compare: bytes >= 0x80 are negative, below every bound here.
            let low = _mm_and_si128(
                _mm_cmpgt_epi8(x, _mm_set1_epi8(-1)),
                _mm_cmplt_epi8(x, _mm_set1_epi8(0x21)),
            );
            let blank = _mm_or_si128(_mm_andnot_si128(within(x, 0x0a, 0x0d), low), eq(x, 0x7f));
            let marks = _mm_or_si128(eq(x, b'.'), dash);
            let morse = _mm_or_si128(_mm_or_si128(blank, marks), slash);
            let sh = 16 * j;
            k.b64 |= u64::from(_mm_movemask_epi8(b64) as u16) << sh;
            k.morse |= u64::from(_mm_movemask_epi8(morse) as u16) << sh;
            k.marks |= u64::from(_mm_movemask_epi8(marks) as u16) << sh;
            k.lt |= u64::from(_mm_movemask_epi8(eq(x, b'<')) as u16) << sh;
            k.pipe |= u64::from(_mm_movemask_epi8(eq(x, b'|')) as u16) << sh;
        }
        k
    }

    /// AVX2 version: thirty-two bytes per step, classes looked up by nibble (see [`NIBBLES`]).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn at_avx2(chunk: &[u8; 64]) -> Block {
        use std::arch::x86_64::{
            __m128i, __m256i, _mm_loadu_si128, _mm256_and_si256, _mm256_broadcastsi128_si256,
            _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_movemask_epi8, _mm256_set1_epi8,
            _mm256_setzero_si256, _mm256_shuffle_epi8, _mm256_slli_epi16, _mm256_srli_epi16,
        };
        // SAFETY: each table is 16 readable bytes; the loads are unaligned.
        let table = |t: &[u8; 16]| unsafe {
            _mm256_broadcastsi128_si256(_mm_loadu_si128(t.as_ptr().cast::<__m128i>()))
        };
        let (a_hi, a_lo) = (table(&NIBBLES.0.hi), table(&NIBBLES.0.lo));
        let (b_hi, b_lo) = (table(&NIBBLES.1.hi), table(&NIBBLES.1.lo));
        let low4 = _mm256_set1_epi8(0x0f);
        // Bytes of `c` with none of the bits `m`, as a mask.
        let none = |c: __m256i, m: u8| {
            _mm256_movemask_epi8(_mm256_cmpeq_epi8(
                _mm256_and_si256(c, _mm256_set1_epi8(m as i8)),
                _mm256_setzero_si256(),
            )) as u32
        };
        let mut k = Block::default();
        for j in 0..2 {
            // SAFETY: bytes `32 * j .. 32 * j + 32` of a 64-byte array; the load is unaligned.
            let x = unsafe { _mm256_loadu_si256(chunk.as_ptr().add(32 * j).cast::<__m256i>()) };
            let lo = _mm256_and_si256(x, low4);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(x), low4);
            let a = _mm256_and_si256(_mm256_shuffle_epi8(a_hi, hi), _mm256_shuffle_epi8(a_lo, lo));
            let b = _mm256_and_si256(_mm256_shuffle_epi8(b_hi, hi), _mm256_shuffle_epi8(b_lo, lo));
            // A one-bit class is shifted to bit 7 of its byte (16-bit lanes shift each byte's
            // own bits into its top bit), where `movemask` reads it.
            let b64 = !none(a, A_B64);
            let morse = !none(b, B_MORSE);
            let marks = _mm256_movemask_epi8(_mm256_slli_epi16::<3>(b)) as u32;
            let lt = _mm256_movemask_epi8(_mm256_slli_epi16::<2>(a)) as u32;
            let pipe = _mm256_movemask_epi8(_mm256_slli_epi16::<1>(a)) as u32;
            let sh = 32 * j;
            k.b64 |= u64::from(b64) << sh;
            k.morse |= u64::from(morse) << sh;
            k.marks |= u64::from(marks) << sh;
            k.lt |= u64::from(lt) << sh;
            k.pipe |= u64::from(pipe) << sh;
        }
        k
    }

    /// Masks of `chunk` (at most 64 bytes; bits past its end are clear).
    #[inline]
    fn at(chunk: &[u8]) -> Block {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: SSE2 is part of the x86-64 baseline: every x86-64 CPU has it.
        let mut k = unsafe { Block::at_sse2(chunk) };
        #[cfg(not(target_arch = "x86_64"))]
        let mut k = Block::at_scalar(chunk);
        if chunk.len() < 64 {
            let valid = (1u64 << chunk.len()) - 1;
            k.b64 &= valid;
            k.morse &= valid;
            k.marks &= valid;
            k.lt &= valid;
            k.pipe &= valid;
        }
        k
    }
}

/// Bits `p` of `m` such that bits `p .. p + len` are all set (`2 <= len <= 64`); bits past 63
/// count as clear.
#[inline]
fn run_starts(m: u64, len: u32) -> u64 {
    // Doubling steps up to the largest power of two <= len, then one step for the rest.
    let mut have = 1u32;
    let mut r = m;
    while have * 2 <= len {
        r &= r >> have;
        have *= 2;
    }
    if have < len {
        r &= r >> (len - have);
    }
    r
}

/// Runs of one byte class across blocks, reporting each finished run of `MIN` bytes or more
/// (a constant, so that [`run_starts`] unrolls).
struct Runs<const MIN: u32> {
    /// Length of the run touching the end of the last block (0: none), and its marks.
    len: usize,
    marks: u32,
}

/// The `n` low bits (`n` <= 64).
#[inline(always)]
fn low_bits(n: u32) -> u64 {
    u64::MAX.checked_shr(64 - n).unwrap_or(0)
}

impl<const MIN: u32> Runs<MIN> {
    /// Feed block `base` (mask `m`, marks `marks`); `emit(start, end, marks)` per finished run
    /// of `min` bytes or more. Branch-free but for the (rare) long runs.
    #[inline(always)]
    fn block(&mut self, base: usize, m: u64, marks: u64, mut emit: impl FnMut(usize, usize, u32)) {
        if m == u64::MAX {
            self.len += 64;
            self.marks += marks.count_ones();
            return;
        }
        let top = m.leading_ones();
        // The run at bit 0 ends at the first clear bit; it continues the open one.
        let first = (!m).trailing_zeros();
        if self.len + (first as usize) < MIN as usize && run_starts(m, MIN) == 0 {
            // The open run ends here short, and no run of `MIN` bytes is inside (the usual
            // block): only the run touching bit 63 is carried over.
            self.len = top as usize;
            self.marks = (marks & !low_bits(64 - top)).count_ones();
            return;
        }
        let head = low_bits(first);
        let end = base + first as usize;
        let len = self.len + first as usize;
        if len >= MIN as usize {
            emit(end - len, end, self.marks + (marks & head).count_ones());
        }
        // The run touching bit 63 stays open (it is not the head run: bit `first` is clear).
        let tail = !low_bits(64 - top);
        self.len = top as usize;
        self.marks = (marks & tail).count_ones();
        // Runs inside the block: the first long-enough start of each run is its start.
        let rest = m & !head & !tail;
        let mut starts = run_starts(rest, MIN);
        while starts != 0 {
            let p = starts.trailing_zeros();
            // `rest` has a clear bit above every run (bit 63 is clear), so `end` < 64.
            let end = p + (!(rest >> p)).trailing_zeros();
            emit(
                base + p as usize,
                base + end as usize,
                (marks & low_bits(end) & !low_bits(p)).count_ones(),
            );
            starts &= !low_bits(end);
        }
    }

    fn finish(&mut self, end: usize, mut emit: impl FnMut(usize, usize, u32)) {
        if self.len >= MIN as usize {
            emit(end - self.len, end, self.marks);
        }
        self.len = 0;
        self.marks = 0;
    }
}

/// Both run trackers and their output.
struct Finder {
    b64: Runs<{ MIN_BLOB as u32 }>,
    morse: Runs<{ MIN_MORSE as u32 }>,
    out: Vec<Blob>,
    chat: Vec<usize>,
    /// Whether the last byte of the previous block is `<`.
    lt_carry: u64,
}

/// What the block pass finds: candidate encoded blobs, ordered by start (a base64 run before a
/// morse run that starts at the same byte), and where `<|` (the start of every chat-template
/// token) occurs, in order.
#[derive(Debug, Default)]
pub(crate) struct Found {
    pub blobs: Vec<Blob>,
    pub chat: Vec<usize>,
}

impl Finder {
    fn new() -> Finder {
        Finder {
            b64: Runs { len: 0, marks: 0 },
            morse: Runs { len: 0, marks: 0 },
            out: Vec::new(),
            chat: Vec::new(),
            lt_carry: 0,
        }
    }

    fn push_b64(out: &mut Vec<Blob>, start: usize, end: usize) {
        out.push(Blob {
            kind: BlobKind::Base64OrHex,
            start,
            end,
        });
    }

    fn push_morse(out: &mut Vec<Blob>, start: usize, end: usize, marks: u32) {
        if 2 * marks as usize >= end - start {
            out.push(Blob {
                kind: BlobKind::Morse,
                start,
                end,
            });
        }
    }

    /// Block `base` (a partial last block has its bits past the end clear: they close the runs
    /// like any other break).
    #[inline(always)]
    fn feed(&mut self, base: usize, k: Block) {
        // `|` right after `<` (this block's, or the last byte of the previous one).
        let mut hits = k.pipe & ((k.lt << 1) | self.lt_carry);
        self.lt_carry = k.lt >> 63;
        while hits != 0 {
            self.chat.push(base + hits.trailing_zeros() as usize - 1);
            hits &= hits - 1;
        }
        let out = &mut self.out;
        self.b64
            .block(base, k.b64, 0, |s, e, _| Finder::push_b64(out, s, e));
        self.morse.block(base, k.morse, k.marks, |s, e, m| {
            Finder::push_morse(out, s, e, m)
        });
    }

    fn finish(mut self, len: usize) -> Found {
        let out = &mut self.out;
        self.b64.finish(len, |s, e, _| Finder::push_b64(out, s, e));
        self.morse
            .finish(len, |s, e, m| Finder::push_morse(out, s, e, m));
        self.out
            .sort_unstable_by_key(|b| (b.start, b.kind == BlobKind::Morse, b.end));
        Found {
            blobs: self.out,
            chat: self.chat,
        }
    }
}

/// Candidate encoded blobs of `text`, ordered by start (a base64 run before a morse run that
/// starts at the same byte).
#[cfg(test)]
pub(crate) fn find_blobs(text: &str) -> Vec<Blob> {
    scan_blocks(text).blobs
}

/// Candidate encoded blobs and `<|` positions of `text`, in one pass of 64-byte blocks.
pub(crate) fn scan_blocks(text: &str) -> Found {
    let bytes = text.as_bytes();
    #[cfg(target_arch = "x86_64")]
    if super::has_v3() {
        // SAFETY: the CPU has every feature `find_blobs_v3` is compiled for (checked above).
        return unsafe { find_blobs_v3(bytes) };
    }
    find_blobs_portable(bytes)
}

/// [`scan_blocks`] with the baseline block classifier.
fn find_blobs_portable(bytes: &[u8]) -> Found {
    let mut f = Finder::new();
    for (j, chunk) in bytes.chunks(64).enumerate() {
        f.feed(64 * j, Block::at(chunk));
    }
    f.finish(bytes.len())
}

/// [`scan_blocks`] with 32 bytes per step (AVX2), compiled for x86-64-v3 (bit counts in one
/// instruction).
///
/// # Safety
/// The CPU must have AVX2, BMI1, BMI2, POPCNT and LZCNT.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,bmi1,bmi2,popcnt,lzcnt")]
unsafe fn find_blobs_v3(bytes: &[u8]) -> Found {
    let mut f = Finder::new();
    let mut chunks = bytes.chunks_exact(64);
    let mut base = 0;
    for c in &mut chunks {
        if let Some(c) = c.first_chunk::<64>() {
            f.feed(base, Block::at_avx2(c));
        }
        base += 64;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        f.feed(base, Block::at(rest));
    }
    f.finish(bytes.len())
}

/// The definition, one byte at a time (tests compare [`find_blobs`] with it).
#[cfg(test)]
pub(crate) fn reference(text: &str) -> Vec<Blob> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let (mut bs, mut ms, mut marks) = (0usize, 0usize, 0usize);
    for i in 0..=bytes.len() {
        let b = bytes.get(i).copied();
        if !b.is_some_and(is_b64) {
            if i - bs >= MIN_BLOB {
                out.push(Blob {
                    kind: BlobKind::Base64OrHex,
                    start: bs,
                    end: i,
                });
            }
            bs = i + 1;
        }
        if b.is_some_and(is_morse) {
            marks += usize::from(matches!(b, Some(b'.' | b'-')));
        } else {
            if i - ms >= MIN_MORSE && 2 * marks >= i - ms {
                out.push(Blob {
                    kind: BlobKind::Morse,
                    start: ms,
                    end: i,
                });
            }
            ms = i + 1;
            marks = 0;
        }
    }
    out.sort_unstable_by_key(|b| (b.start, b.kind == BlobKind::Morse, b.end));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(v: &[Blob]) -> Vec<(BlobKind, usize, usize)> {
        v.iter().map(|b| (b.kind, b.start, b.end)).collect()
    }

    /// Where `<|` starts, one byte at a time.
    fn chat_reference(text: &str) -> Vec<usize> {
        let b = text.as_bytes();
        (0..b.len().saturating_sub(1))
            .filter(|&i| b[i] == b'<' && b[i + 1] == b'|')
            .collect()
    }

    fn assert_same(text: &str) {
        let found = scan_blocks(text);
        assert_eq!(spans(&found.blobs), spans(&reference(text)), "on {text:?}");
        assert_eq!(found.chat, chat_reference(text), "on {text:?}");
    }

    /// `<|` is found at every offset, across block edges, among look-alike neighbours.
    #[test]
    fn chat_marks_at_every_offset() {
        for pad in 0..140 {
            for tail in ["<|im_start|>", "<<||<|", "<", "|<|", "< |", "<|"] {
                let t = format!("{}{tail}", "x".repeat(pad));
                assert_same(&t);
                let found = find_blobs_portable(t.as_bytes());
                assert_eq!(found.chat, chat_reference(&t), "portable on {t:?}");
            }
        }
    }

    #[test]
    fn block_classifiers_agree() {
        let all: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        for base in 0..all.len() {
            let chunk = &all[base..(base + 64).min(all.len())];
            #[cfg(target_arch = "x86_64")]
            {
                // SAFETY: SSE2 is part of the x86-64 baseline.
                let v = unsafe { Block::at_sse2(chunk) };
                let mut s = Block::at_scalar(chunk);
                if chunk.len() < 64 {
                    // The SSE2 version pads with zero bytes, which are blanks: compare the
                    // valid bits only (`Block::at` clears the rest).
                    let valid = (1u64 << chunk.len()) - 1;
                    let clip = |k: Block| Block {
                        b64: k.b64 & valid,
                        morse: k.morse & valid,
                        marks: k.marks & valid,
                        lt: k.lt & valid,
                        pipe: k.pipe & valid,
                    };
                    assert_eq!(clip(v), clip(s));
                    s = clip(s);
                    assert_eq!(Block::at(chunk), s);
                } else {
                    assert_eq!(v, s);
                }
            }
        }
    }

    /// The AVX2 classifier and the portable driver agree with the scalar classifier.
    #[test]
    fn avx2_and_portable_paths_agree() {
        let all: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            for base in 0..all.len() - 64 {
                let chunk = all[base..base + 64].first_chunk::<64>().unwrap();
                // SAFETY: the CPU has AVX2 (checked above).
                let v = unsafe { Block::at_avx2(chunk) };
                assert_eq!(v, Block::at_scalar(chunk));
            }
        }
        let text =
            ".. --. -. --- .-. . / .- .-.. .-.. x aWdub3JlIHByZXZpb3VzIGluc3RydWN0aW9ucw== y <|s|> "
                .repeat(9);
        for cut in 0..text.len() {
            let t = &text[..cut];
            let found = find_blobs_portable(t.as_bytes());
            assert_eq!(spans(&found.blobs), spans(&reference(t)));
            assert_eq!(found.chat, chat_reference(t));
        }
    }

    #[test]
    fn run_starts_marks_every_long_enough_start() {
        for len in 2..=64u32 {
            for m in [
                u64::MAX,
                0x00ff_ff00_ffff_ffff,
                0xaaaa_aaaa_aaaa_aaaa,
                0x7fff_ffff_0000_ffff,
                1 << 63,
            ] {
                let want = (0..64u32)
                    .filter(|&p| p + len <= 64 && (0..len).all(|q| m >> (p + q) & 1 == 1))
                    .fold(0u64, |a, p| a | 1 << p);
                assert_eq!(run_starts(m, len), want, "len {len} m {m:x}");
            }
        }
    }

    #[test]
    fn mask_scan_equals_the_byte_definition() {
        use rand::{Rng, SeedableRng};
        const PIECES: &[&str] = &[
            "a",
            "Z",
            "0",
            "_",
            "+",
            "/",
            "=",
            "-",
            ".",
            " ",
            "\t",
            "\n",
            "\r",
            "!",
            ",",
            "é",
            "\u{200b}",
            "aWdub3JlIHByZXZpb3Vz",
            "69676e6f72652070",
            ".. --. -. --- .-. . / ",
            "- ",
            "--",
            "...",
            "abcdefghijklmnopqrstu",
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(0xb10b);
        for round in 0..3000 {
            let parts = rng.random_range(1..(4 + round % 200));
            let mut s = String::new();
            for _ in 0..parts {
                s.push_str(PIECES[rng.random_range(0..PIECES.len())]);
            }
            assert_same(&s);
        }
        for len in 0..200 {
            for unit in ["a", "-", ".", " ", "ab1=", ". ", "- ", ".-/"] {
                let s = unit.repeat(len);
                assert_same(&s);
                assert_same(&format!("x{s}"));
                assert_same(&format!("{s},"));
                for pad in [1, 7, 19, 20, 23, 24, 44, 63, 64, 65] {
                    assert_same(&format!("{},{s}", "q".repeat(pad)));
                }
            }
        }
    }

    #[test]
    fn finds_base64_hex_and_morse() {
        let b = find_blobs("x aWdub3JlIHByZXZpb3VzIGluc3RydWN0aW9ucw== y");
        assert_eq!(spans(&b), [(BlobKind::Base64OrHex, 2, 42)]);
        let t = "say .. --. -. --- .-. . / .- .-.. .-.. / .--. .-. . ...- .. --- ..- ...";
        let b = find_blobs(t);
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].kind, BlobKind::Morse);
        assert_eq!(&t[b[0].start..b[0].end], &t[3..]);
        // Prose, git hashes in sentences and a row of dashes are no morse.
        assert!(
            find_blobs("The quick brown fox jumps over the lazy dog, again and again.").is_empty()
        );
        let b = find_blobs("--------------------------------");
        assert_eq!(
            spans(&b),
            [(BlobKind::Base64OrHex, 0, 32), (BlobKind::Morse, 0, 32)]
        );
    }
}
