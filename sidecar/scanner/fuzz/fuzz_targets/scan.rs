#![no_main]
//! Fuzz the whole scanner and the tagging path: no input may panic, and results must be
//! internally consistent (spans inside the input, scores in range, one wrapper pair).

use ironclaw_scanner::{Decision, Mode, Scanner, tag_untrusted};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static SCANNER: OnceLock<Scanner> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let scanner = SCANNER.get_or_init(Scanner::new);
    for mode in [Mode::Flag, Mode::Block] {
        let r = scanner.scan(&text, mode);
        assert!((0.0..=1.0).contains(&r.score));
        assert_eq!(r.decision == Decision::Allow, r.findings.is_empty());
        for f in &r.findings {
            assert!(f.span.start <= f.span.end && f.span.end <= text.len(), "{f:?}");
        }
    }
    let t = tag_untrusted("fuzz", &text);
    assert_eq!(ironclaw_scanner::tagging::context_ids(&t.text).first(), Some(&t.id));
});
