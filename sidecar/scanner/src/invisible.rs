//! Invisible, bidi-control and Unicode tag characters on the raw bytes (before any folding).
//!
//! All of them are multi-byte UTF-8 sequences whose lead byte is 0xE2 (U+2000–U+2FFF),
//! 0xEF (U+F000–U+FFFF) or 0xF3 (planes 14–15), so `memchr3` skips ordinary text at memory speed.

use crate::Category;

/// One run of hidden characters found in the raw text.
#[derive(Debug, Clone)]
pub(crate) struct Hidden {
    pub category: Category,
    pub rule: &'static str,
    pub start: usize,
    pub end: usize,
    pub score: f32,
    /// For tag-character runs: the ASCII text they spell ("ASCII smuggling").
    pub decoded: Option<String>,
}

/// Counts only (used by the speed benchmark for the raw invisible check).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HiddenCounts {
    pub zero_width: usize,
    pub bidi: usize,
    pub tags: usize,
}

/// A hidden character, read from its UTF-8 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// U+200B–U+200D, U+2060–U+2064, U+FEFF (`bom`).
    ZeroWidth { bom: bool },
    /// U+200E/U+200F, U+202A–U+202E, U+2066–U+2069: the code point.
    Bidi(u32),
    /// U+E0000–U+E007F: the code point minus 0xE0000.
    Tag(u8),
}

/// The hidden character whose UTF-8 encoding starts at `bytes[i]`, and its length, decided
/// from the raw bytes (no `char` decoding): every hidden character is three bytes
/// `E2 80 8B..8F`, `E2 80 AA..AE`, `E2 81 A0..A4`, `E2 81 A6..A9`, `EF BB BF`, or four bytes
/// `F3 A0 80..81 80..BF`. The common `E2` characters of ordinary text (curly quotes, dashes,
/// bullets: `E2 80 90..A7`, `E2 80 B0..`, `E2 82..`) are rejected on their second or third
/// byte.
#[inline]
fn kind_at(bytes: &[u8], i: usize) -> Option<(Kind, usize)> {
    let b1 = *bytes.get(i + 1)?;
    let b2 = *bytes.get(i + 2)?;
    match (bytes.get(i)?, b1, b2) {
        (0xE2, 0x80, 0x8B..=0x8D) | (0xE2, 0x81, 0xA0..=0xA4) => {
            Some((Kind::ZeroWidth { bom: false }, 3))
        }
        (0xE2, 0x80 | 0x81, 0x8E | 0x8F | 0xAA..=0xAE | 0xA6..=0xA9) => {
            // E2 80 A6..A9 is U+2026–U+2029 (ellipsis, separators), E2 81 8E/8F and
            // E2 81 AA..AE are U+204E/F and U+206A–U+206E: not hidden here.
            let cp = 0x2000 | (u32::from(b1 & 0x3F) << 6) | u32::from(b2 & 0x3F);
            matches!(cp, 0x200E | 0x200F | 0x202A..=0x202E | 0x2066..=0x2069)
                .then_some((Kind::Bidi(cp), 3))
        }
        (0xEF, 0xBB, 0xBF) => Some((Kind::ZeroWidth { bom: true }, 3)),
        (0xF3, 0xA0, 0x80 | 0x81) => {
            let b3 = *bytes.get(i + 3)?;
            Some((Kind::Tag(((b2 & 1) << 6) | (b3 & 0x3F)), 4))
        }
        _ => None,
    }
}

/// Count hidden characters (the fast check alone).
pub fn count_hidden(text: &str) -> HiddenCounts {
    let bytes = text.as_bytes();
    let mut c = HiddenCounts::default();
    for i in memchr::memchr3_iter(0xE2, 0xEF, 0xF3, bytes) {
        match kind_at(bytes, i) {
            Some((Kind::ZeroWidth { .. }, _)) => c.zero_width += 1,
            Some((Kind::Bidi(_), _)) => c.bidi += 1,
            Some((Kind::Tag(_), _)) => c.tags += 1,
            None => {}
        }
    }
    c
}

fn is_word_byte(b: Option<&u8>) -> bool {
    b.is_some_and(|b| b.is_ascii_alphanumeric())
}

/// A run of hidden characters at `s..e` sits between two ASCII letters/digits.
fn inside_word(bytes: &[u8], s: usize, e: usize) -> bool {
    s > 0 && is_word_byte(bytes.get(s - 1)) && is_word_byte(bytes.get(e))
}

/// Find hidden-character findings in `text`.
pub(crate) fn scan_hidden(text: &str) -> Vec<Hidden> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut zw_inside_words = 0usize;
    let mut zw_total = 0usize;
    let mut zw_first: Option<(usize, usize)> = None;
    let mut zw_run: Option<(usize, usize)> = None;
    let mut tag_run: Option<(usize, usize, String)> = None;
    let mut it = memchr::memchr3_iter(0xE2, 0xEF, 0xF3, bytes);
    let flush_tags = |run: Option<(usize, usize, String)>, out: &mut Vec<Hidden>| {
        if let Some((s, e, dec)) = run {
            // A lone flag-emoji tag sequence (U+1F3F4 + tags) is legitimate.
            let after_flag = text.get(..s).is_some_and(|p| p.ends_with('\u{1F3F4}'));
            if !after_flag
                || dec
                    .chars()
                    .any(|c| !c.is_ascii_lowercase() && !c.is_ascii_digit())
            {
                out.push(Hidden {
                    category: Category::InvisibleCharacters,
                    rule: "unicode_tag_characters",
                    start: s,
                    end: e,
                    score: 0.95,
                    decoded: Some(dec),
                });
            }
        }
    };
    for i in &mut it {
        let Some((kind, w)) = kind_at(bytes, i) else {
            continue;
        };
        match kind {
            Kind::Tag(cp) => {
                let dec_ch = (0x20..0x7F).contains(&cp).then_some(char::from(cp));
                match &mut tag_run {
                    Some((_, e, dec)) if *e == i => {
                        *e = i + w;
                        if let Some(d) = dec_ch {
                            dec.push(d);
                        }
                    }
                    _ => {
                        flush_tags(tag_run.take(), &mut out);
                        let mut dec = String::new();
                        if let Some(d) = dec_ch {
                            dec.push(d);
                        }
                        tag_run = Some((i, i + w, dec));
                    }
                }
            }
            Kind::Bidi(cp) => {
                let (rule, score) = match cp {
                    0x202D | 0x202E => ("bidi_override", 0.85),
                    0x202A..=0x202C | 0x2066..=0x2069 => ("bidi_embedding_or_isolate", 0.6),
                    _ => continue, // LRM/RLM marks are ordinary in right-to-left text
                };
                out.push(Hidden {
                    category: Category::BidiOverride,
                    rule,
                    start: i,
                    end: i + w,
                    score,
                    decoded: None,
                });
            }
            Kind::ZeroWidth { bom } => {
                // U+FEFF at the very start is a byte-order mark.
                if bom && i == 0 {
                    continue;
                }
                // A stray byte-order mark mid-text is a common copy/paste artefact: it only
                // counts when it splits a word.
                if !bom {
                    zw_total += 1;
                }
                if zw_first.is_none() {
                    zw_first = Some((i, i + w));
                }
                // Runs of adjacent hidden characters are judged once, when the run ends.
                match zw_run {
                    Some((_, e)) if e == i => zw_run = zw_run.map(|(s, _)| (s, i + w)),
                    _ => {
                        if let Some((s, e)) = zw_run.take() {
                            zw_inside_words += usize::from(inside_word(bytes, s, e));
                        }
                        zw_run = Some((i, i + w));
                    }
                }
            }
        }
    }
    flush_tags(tag_run.take(), &mut out);
    if let Some((s, e)) = zw_run.take() {
        zw_inside_words += usize::from(inside_word(bytes, s, e));
    }
    if (zw_inside_words >= 1 || zw_total >= 3)
        && let Some((s, e)) = zw_first
    {
        out.push(Hidden {
            category: Category::InvisibleCharacters,
            rule: if zw_inside_words >= 1 {
                "zero_width_inside_word"
            } else {
                "zero_width_characters"
            },
            start: s,
            end: e,
            score: if zw_inside_words >= 2 || zw_total >= 5 {
                0.8
            } else {
                0.6
            },
            decoded: None,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `char`-decoding classifier this module used before `kind_at` (kept as the oracle).
    fn kind_reference(c: char) -> Option<Kind> {
        match c as u32 {
            0x200B..=0x200D | 0x2060..=0x2064 => Some(Kind::ZeroWidth { bom: false }),
            0xFEFF => Some(Kind::ZeroWidth { bom: true }),
            cp @ (0x202A..=0x202E | 0x2066..=0x2069 | 0x200E | 0x200F) => Some(Kind::Bidi(cp)),
            cp @ 0xE0000..=0xE007F => Some(Kind::Tag((cp - 0xE0000) as u8)),
            _ => None,
        }
    }

    /// Every Unicode scalar value, alone and followed by text: the byte-level decision equals
    /// the decoded one, with the character's own length.
    #[test]
    fn byte_level_kind_equals_the_decoded_kind_for_every_character() {
        let mut hidden = 0usize;
        for cp in 0..=0x10FFFFu32 {
            let Some(c) = char::from_u32(cp) else {
                continue;
            };
            for tail in ["", "x", "\u{200B}"] {
                let s = format!("{c}{tail}");
                let want = kind_reference(c).map(|k| (k, c.len_utf8()));
                assert_eq!(kind_at(s.as_bytes(), 0), want, "U+{cp:04X}");
                hidden += usize::from(want.is_some());
            }
        }
        assert_eq!(hidden, 3 * (3 + 5 + 1 + 2 + 5 + 4 + 128));
    }

    /// `count_hidden` as it was (a `char` decoded at each lead byte).
    fn count_hidden_reference(text: &str) -> HiddenCounts {
        let mut c = HiddenCounts::default();
        for i in memchr::memchr3_iter(0xE2, 0xEF, 0xF3, text.as_bytes()) {
            match text
                .get(i..)
                .and_then(|s| s.chars().next())
                .and_then(kind_reference)
            {
                Some(Kind::ZeroWidth { .. }) => c.zero_width += 1,
                Some(Kind::Bidi(_)) => c.bidi += 1,
                Some(Kind::Tag(_)) => c.tags += 1,
                None => {}
            }
        }
        c
    }

    /// The same counts as the decoding version on the evaluation sets and on generated text
    /// dense in hidden characters and their `E2`/`EF`/`F3` neighbours.
    #[test]
    fn counts_equal_the_decoding_version() {
        use rand::{Rng, SeedableRng};
        const PIECES: &[&str] = &[
            "a",
            " ",
            "\u{200B}",
            "\u{200D}",
            "\u{200E}",
            "\u{2019}",
            "\u{2026}",
            "\u{2029}",
            "\u{202E}",
            "\u{2060}",
            "\u{2065}",
            "\u{2069}",
            "\u{206A}",
            "\u{FEFF}",
            "\u{FEFE}",
            "\u{E0041}",
            "\u{E007F}",
            "\u{E0080}",
            "\u{F0000}",
            "\u{1F3F4}",
            "é",
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x41d);
        let mut total = HiddenCounts::default();
        let generated = (0..5000).map(|_| {
            let n = rng.random_range(0..40);
            (0..n)
                .map(|_| PIECES[rng.random_range(0..PIECES.len())])
                .collect::<String>()
        });
        for text in crate::test_corpus::eval_texts()
            .iter()
            .cloned()
            .chain(generated)
        {
            let c = count_hidden(&text);
            assert_eq!(c, count_hidden_reference(&text), "{text:?}");
            total.zero_width += c.zero_width;
            total.bidi += c.bidi;
            total.tags += c.tags;
        }
        assert!(
            total.zero_width > 1000 && total.bidi > 1000 && total.tags > 1000,
            "{total:?}"
        );
    }

    #[test]
    fn tag_smuggling_is_decoded() {
        let hidden: String = "ignore this"
            .chars()
            .map(|c| char::from_u32(0xE0000 + c as u32).unwrap_or(c))
            .collect();
        let text = format!("Hello {hidden} world");
        let h = scan_hidden(&text);
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].decoded.as_deref(), Some("ignore this"));
        assert_eq!(&text[h[0].start..h[0].end], hidden);
    }

    #[test]
    fn flag_emoji_is_not_smuggling() {
        let england = "\u{1F3F4}\u{E0067}\u{E0062}\u{E0065}\u{E006E}\u{E0067}\u{E007F}";
        assert!(scan_hidden(&format!("Go {england}!")).is_empty());
    }

    #[test]
    fn zero_width_and_bidi() {
        assert!(scan_hidden("a normal\u{2019}s text").is_empty());
        let h = scan_hidden("ig\u{200B}nore");
        assert_eq!(h[0].rule, "zero_width_inside_word");
        let h = scan_hidden("file\u{202E}txt.exe");
        assert_eq!(h[0].category, Category::BidiOverride);
        assert!(scan_hidden("\u{FEFF}text").is_empty());
        assert_eq!(count_hidden("a\u{200B}b\u{202E}\u{E0041}").tags, 1);
    }
}
