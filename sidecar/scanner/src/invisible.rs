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

#[inline]
fn kind(c: char) -> Option<u8> {
    match c as u32 {
        0x200B..=0x200D | 0x2060..=0x2064 | 0xFEFF => Some(0), // zero-width
        0x202A..=0x202E | 0x2066..=0x2069 | 0x200E | 0x200F => Some(1), // bidi
        0xE0000..=0xE007F => Some(2),                          // tags
        _ => None,
    }
}

/// Count hidden characters (the fast check alone).
pub fn count_hidden(text: &str) -> HiddenCounts {
    let bytes = text.as_bytes();
    let mut c = HiddenCounts::default();
    for i in memchr::memchr3_iter(0xE2, 0xEF, 0xF3, bytes) {
        if let Some(ch) = text.get(i..).and_then(|s| s.chars().next()) {
            match kind(ch) {
                Some(0) => c.zero_width += 1,
                Some(1) => c.bidi += 1,
                Some(2) => c.tags += 1,
                _ => {}
            }
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
        let Some(ch) = text.get(i..).and_then(|s| s.chars().next()) else {
            continue;
        };
        let w = ch.len_utf8();
        match kind(ch) {
            Some(2) => {
                let cp = ch as u32 - 0xE0000;
                let dec_ch = if (0x20..0x7F).contains(&cp) {
                    char::from_u32(cp)
                } else {
                    None
                };
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
            Some(1) => {
                let cp = ch as u32;
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
            Some(0) => {
                // U+FEFF at the very start is a byte-order mark.
                if ch == '\u{FEFF}' && i == 0 {
                    continue;
                }
                // A stray byte-order mark mid-text is a common copy/paste artefact: it only
                // counts when it splits a word.
                if ch != '\u{FEFF}' {
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
            _ => {}
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
