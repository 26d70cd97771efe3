//! The naming rule against a plain reading of DESIGN.md's rule, on random strings that mix
//! ASCII, wildcards, dots, `+`, whitespace, control and multi-byte characters.

use ephemeral::{Name, validate_name};
use proptest::prelude::*;

#[path = "support/fuzz_checks.rs"]
#[allow(dead_code)]
mod checks;

use checks::name_rule as reference;

fn text() -> impl Strategy<Value = String> {
    let chars = prop::sample::select(vec![
        'a', 'Z', '0', '.', '+', ':', '-', '*', '?', ',', ' ', '\t', '\u{7f}', '\u{0}', 'é',
        '\u{a0}', '\u{2003}', '日',
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
