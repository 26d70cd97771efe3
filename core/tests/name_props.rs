//! The naming rule against a plain reading of DESIGN.md's rule, on random strings that mix
//! ASCII, wildcards, dots, `+`, whitespace, control and multi-byte characters.

use ephemeral::{Name, NameError, validate_name};
use proptest::prelude::*;

#[path = "support/fuzz_checks.rs"]
#[allow(dead_code)]
mod checks;

use checks::name_rule as reference;

fn text() -> impl Strategy<Value = String> {
    let chars = prop::sample::select(vec![
        'a',
        'Z',
        '0',
        '.',
        '+',
        ':',
        '-',
        '*',
        '?',
        ',',
        ' ',
        '\t',
        '\u{7f}',
        '\u{0}',
        'é',
        '\u{a0}',
        '\u{2003}',
        '日',
        '\u{200b}',
        '\u{202e}',
        '\u{feff}',
        '\u{ad}',
        '\u{2060}',
        '\u{1d173}',
        '\u{e0041}',
        '\u{2065}',
    ]);
    prop_oneof![
        proptest::collection::vec(chars, 0..12).prop_map(|c| c.into_iter().collect()),
        // Long strings around the length limit.
        (250usize..260).prop_map(|n| "a".repeat(n)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(4096),
        ..ProptestConfig::default()
    })]

    #[test]
    fn validate_follows_the_rule(s in text()) {
        prop_assert_eq!(validate_name(&s).is_ok(), reference(&s), "{:?}", s);
        prop_assert_eq!(Name::new(&s).is_ok(), reference(&s));
    }
}

/// Invisible format characters (Unicode Cf: zero-width space and joiners, bidirectional
/// controls, the byte-order mark) are refused with the rule named, wherever they stand.
#[test]
fn names_refuse_invisible_format_characters() {
    for (name, code, at) in [
        ("a\u{200B}b", 0x200B, 1),
        ("a\u{202E}b", 0x202E, 1),
        ("\u{FEFF}", 0xFEFF, 0),
        ("soft\u{AD}hyphen", 0xAD, 4),
        ("a.b\u{2066}", 0x2066, 3),
        ("tag\u{E0041}", 0xE0041, 3),
        ("x\u{1D173}", 0x1D173, 1),
    ] {
        let err = Name::new(name).unwrap_err();
        assert_eq!(err, NameError::Format { code, at }, "{name:?}");
        assert!(err.to_string().contains("format character"), "{err}");
        assert_eq!(validate_name(name), Err(err));
    }
    // Neighbours that are not Cf stay valid: an unassigned code point between the bidi
    // isolates, a visible letter, CJK.
    for name in ["a\u{2065}b", "caf\u{E9}", "\u{65E5}\u{672C}"] {
        assert!(Name::new(name).is_ok(), "{name:?}");
    }
}
