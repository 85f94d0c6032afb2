//! Character folding shared by the tokenizer, the rule stage and the wrapper-forgery check:
//! invisible characters, homoglyphs (Cyrillic/Greek look-alikes), fullwidth and other
//! compatibility forms (NFKC), accents, and leetspeak digits.

use unicode_normalization::char::decompose_compatible;

/// How a single non-ASCII character is treated before matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Folded {
    /// Invisible/format character: dropped without breaking the surrounding word.
    Invisible,
    /// Folds to this lowercase ASCII letter or digit; `confusable` is true when the source
    /// character is a look-alike from another script (homoglyph) rather than a compatibility form.
    Ascii { byte: u8, confusable: bool },
    /// A letter of another script that has no ASCII look-alike: kept (lowercased).
    Letter(char),
    /// Punctuation, symbol or space: a word separator.
    Separator,
}

/// True for characters that render as nothing (zero-width, bidi controls, tag characters,
/// variation selectors, fillers). These are removed before matching.
pub(crate) fn is_invisible(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x034F | 0x061C | 0x115F | 0x1160 | 0x17B4 | 0x17B5 | 0x180B..=0x180F
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F
        | 0x3164 | 0xFE00..=0xFE0F | 0xFEFF | 0xFFA0 | 0x1D173..=0x1D17A
        | 0xE0000..=0xE007F | 0xE0100..=0xE01EF)
}

/// Cyrillic, Greek and Latin-extension look-alikes of ASCII letters (lowercase forms).
fn confusable(c: char) -> Option<u8> {
    Some(match c {
        'а' | 'α' | 'ɑ' => b'a',
        'в' | 'β' | 'ь' => b'b',
        'с' | 'ϲ' => b'c',
        'ԁ' => b'd',
        'е' | 'ε' | 'ё' => b'e',
        'ɡ' | 'ց' => b'g',
        'һ' | 'н' | 'η' => b'h',
        'і' | 'ι' | 'ӏ' | 'ı' | 'ї' => b'i',
        'ј' | 'ϳ' => b'j',
        'к' | 'κ' => b'k',
        'м' | 'μ' => b'm',
        'ո' => b'n',
        'о' | 'ο' | 'σ' | 'ө' => b'o',
        'р' | 'ρ' => b'p',
        'ԛ' => b'q',
        'г' => b'r',
        'ѕ' => b's',
        'т' | 'τ' => b't',
        'υ' | 'ս' => b'u',
        'ѵ' | 'ν' => b'v',
        'ԝ' | 'ω' | 'ѡ' => b'w',
        'х' | 'χ' => b'x',
        'у' | 'γ' | 'ү' => b'y',
        'ζ' => b'z',
        _ => return None,
    })
}

/// Code points below this are folded once into a table (Latin, Greek, Cyrillic, Armenian,
/// general punctuation, letterlike symbols …: what ordinary text and most homoglyphs use).
const TABLE_END: u32 = 0x3000;

/// [`fold_char`] through a table built once per process for U+0080..U+2FFF.
#[inline]
pub(crate) fn fold_char_cached(c: char) -> Folded {
    static TABLE: std::sync::OnceLock<Vec<Folded>> = std::sync::OnceLock::new();
    let cp = c as u32;
    if !(0x80..TABLE_END).contains(&cp) {
        return fold_char(c);
    }
    let t = TABLE.get_or_init(|| {
        (0x80..TABLE_END)
            .map(|cp| char::from_u32(cp).map_or(Folded::Separator, fold_char))
            .collect()
    });
    t.get((cp - 0x80) as usize)
        .copied()
        .unwrap_or_else(|| fold_char(c))
}

/// Scripts without case, look-alikes or compatibility decompositions: CJK unified
/// ideographs (and extension A), Hiragana, Katakana, Hangul syllables. Each such character
/// folds to itself (`the_fold_shortcut_ranges_fold_to_themselves` checks every one).
const PLAIN_LETTER_RANGES: &[(u32, u32)] = &[
    (0x3041, 0x3096),
    (0x30A1, 0x30FA),
    (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF),
    (0xAC00, 0xD7A3),
];

/// Whether code point `cp` is in [`PLAIN_LETTER_RANGES`] (it folds to itself, a letter).
#[inline]
pub(crate) fn is_plain_letter(cp: u32) -> bool {
    PLAIN_LETTER_RANGES
        .iter()
        .any(|&(lo, hi)| (lo..=hi).contains(&cp))
}

/// Fold one non-ASCII character.
pub(crate) fn fold_char(c: char) -> Folded {
    if is_plain_letter(c as u32) {
        return Folded::Letter(c);
    }
    fold_char_slow(c)
}

fn fold_char_slow(c: char) -> Folded {
    if is_invisible(c) {
        return Folded::Invisible;
    }
    let cp = c as u32;
    // Fullwidth ASCII (U+FF01..U+FF5E) is a fixed offset from ASCII.
    if (0xFF01..=0xFF5E).contains(&cp) {
        let b = (cp - 0xFEE0) as u8;
        return if b.is_ascii_alphanumeric() {
            Folded::Ascii {
                byte: b.to_ascii_lowercase(),
                confusable: false,
            }
        } else {
            Folded::Separator
        };
    }
    let lower = c.to_lowercase().next().unwrap_or(c);
    if let Some(b) = confusable(lower) {
        return Folded::Ascii {
            byte: b,
            confusable: true,
        };
    }
    if !c.is_alphanumeric() {
        return Folded::Separator;
    }
    // Compatibility decomposition: math alphanumerics, circled/superscript letters, ligature
    // parts, accented letters (the accent is dropped).
    let mut first: Option<char> = None;
    let mut only_marks = true;
    decompose_compatible(lower, |d| {
        if first.is_none() {
            first = Some(d);
        } else if !('\u{0300}'..='\u{036F}').contains(&d) {
            only_marks = false;
        }
    });
    if let Some(f) = first {
        if only_marks && f.is_ascii_alphanumeric() {
            return Folded::Ascii {
                byte: f.to_ascii_lowercase() as u8,
                confusable: false,
            };
        }
        if only_marks && let Some(b) = confusable(f.to_lowercase().next().unwrap_or(f)) {
            return Folded::Ascii {
                byte: b,
                confusable: true,
            };
        }
    }
    Folded::Letter(lower)
}

/// Leetspeak digit → letter, used for words that mix letters and digits ("y0ur", "1nstruct10ns").
pub(crate) fn leet(b: u8) -> u8 {
    LEET[b as usize]
}

/// The letters the digits 0 ..= 9 stand for in leetspeak.
pub(crate) const LEET_LETTERS: [u8; 10] = *b"oizeasgtbg";

/// [`leet`] as a table: digits read as the letters they stand for, other bytes unchanged.
static LEET: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = i as u8;
        i += 1;
    }
    let mut d = 0;
    while d < 10 {
        t[b'0' as usize + d] = LEET_LETTERS[d];
        d += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leet_digits_read_as_letters() {
        let got: Vec<u8> = b"0123456789".iter().map(|&b| leet(b)).collect();
        assert_eq!(got, b"oizeasgtbg");
        for b in (0..=255u8).filter(|b| !b.is_ascii_digit()) {
            assert_eq!(leet(b), b);
        }
    }

    #[test]
    fn folds_homoglyphs_fullwidth_and_accents() {
        assert_eq!(
            fold_char('і'),
            Folded::Ascii {
                byte: b'i',
                confusable: true
            }
        );
        assert_eq!(
            fold_char('Ѕ'),
            Folded::Ascii {
                byte: b's',
                confusable: true
            }
        );
        assert_eq!(
            fold_char('Ｉ'),
            Folded::Ascii {
                byte: b'i',
                confusable: false
            }
        );
        assert_eq!(
            fold_char('é'),
            Folded::Ascii {
                byte: b'e',
                confusable: false
            }
        );
        assert_eq!(
            fold_char('𝐢'),
            Folded::Ascii {
                byte: b'i',
                confusable: false
            }
        );
        assert_eq!(fold_char('\u{200B}'), Folded::Invisible);
        assert_eq!(fold_char('\u{E0041}'), Folded::Invisible);
        assert_eq!(fold_char('ß'), Folded::Letter('ß'));
        assert_eq!(fold_char('’'), Folded::Separator);
        assert_eq!(leet(b'3'), b'e');
    }

    #[test]
    fn the_fold_shortcut_ranges_fold_to_themselves() {
        for &(lo, hi) in PLAIN_LETTER_RANGES {
            for cp in lo..=hi {
                let c = char::from_u32(cp).unwrap();
                assert_eq!(fold_char_slow(c), Folded::Letter(c), "U+{cp:04X}");
            }
        }
    }

    #[test]
    fn the_fold_table_equals_fold_char() {
        for cp in 0x80..0x3100u32 {
            if let Some(c) = char::from_u32(cp) {
                assert_eq!(fold_char_cached(c), fold_char(c), "U+{cp:04X}");
            }
        }
    }
}
