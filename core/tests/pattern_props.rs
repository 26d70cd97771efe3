//! `Pattern` against a reference implementation: each pattern translated to an anchored regex.
//!
//! Hand-written matchers get backtracking wrong (the classic bug is `*` followed by a literal
//! that also occurs earlier in the name), so the matcher is checked against the `regex` crate
//! on random patterns and names drawn from a small alphabet that makes collisions likely.
//! Set `PROPTEST_CASES` to run more cases than the default.

use ephemeral::Pattern;
use proptest::prelude::*;
#[path = "support/fuzz_checks.rs"]
#[allow(dead_code)]
mod checks;

use checks::reference;

fn reference_matches(pattern: &str, name: &str) -> bool {
    reference(pattern).is_some_and(|re| re.is_match(name))
}

/// Names over a small alphabet (dots, a literal `+` and a multi-byte character included).
fn name() -> impl Strategy<Value = String> {
    proptest::collection::vec(prop::sample::select(vec!['a', 'b', '.', '+', 'é']), 0..12)
        .prop_map(|chars| chars.into_iter().collect())
}

/// Patterns over the same alphabet plus every wildcard, commas and spaces.
fn pattern() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop::sample::select(vec!['a', 'b', '.', '+', 'é', '*', '?', ',', ' ']),
        0..10,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(4096),
        ..ProptestConfig::default()
    })]

    #[test]
    fn matches_like_the_regex_reference(pattern in pattern(), name in name()) {
        let compiled = Pattern::new(&pattern);
        prop_assert_eq!(
            compiled.matches(&name),
            reference_matches(&pattern, &name),
            "pattern {:?} on name {:?}", pattern, name
        );
    }

    /// A name built from the pattern itself (wildcards filled in) must match: random names
    /// alone rarely hit the long, deep cases.
    #[test]
    fn instances_of_a_pattern_match(pattern in pattern(), fill in name(), one in prop::sample::select(vec!['a', '.', 'é'])) {
        let Some(alt) = pattern.split(',').map(str::trim).find(|a| !a.is_empty()) else {
            return Ok(());
        };
        let instance: String = alt
            .split('.')
            .map(|segment| {
                if segment == "+" {
                    fill.replace('.', "")
                } else {
                    segment
                        .chars()
                        .map(|c| match c {
                            '*' => fill.clone(),
                            '?' => one.to_string(),
                            c => c.to_string(),
                        })
                        .collect()
                }
            })
            .collect::<Vec<String>>()
            .join(".");
        prop_assert!(reference_matches(&pattern, &instance), "reference disagrees with its own instance");
        prop_assert!(Pattern::new(&pattern).matches(&instance), "pattern {:?} on its instance {:?}", pattern, instance);
    }

    #[test]
    fn exactness_agrees_with_the_reference(pattern in pattern()) {
        let compiled = Pattern::new(&pattern);
        if let Some(exact) = compiled.as_exact() {
            prop_assert!(reference_matches(&pattern, exact));
            prop_assert!(!compiled.has_wildcards());
        }
        // Empty: no alternative left, or each spells out a character no name may hold.
        let matches_no_name = pattern
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .all(|a| a.chars().any(|c| c.is_whitespace() || c.is_control()));
        prop_assert_eq!(compiled.is_empty(), matches_no_name);
        if reference(&pattern).is_none() {
            prop_assert!(compiled.is_empty());
        }
    }
}

#[test]
fn the_reference_agrees_on_the_documented_examples() {
    let cases = [
        ("error.*", "error.db.timeout", true),
        ("news.+", "news.sports", true),
        ("news.+", "news.sports.eu", false),
        ("news.*", "news.sports.eu", true),
        ("a+b", "a+b", true),
        ("a+b", "ab", false),
        ("job.?", "job.1", true),
        ("job.?", "job.12", false),
        ("error.*, timeout.*", "timeout.x", true),
        ("", "anything", false),
        ("*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaab", true),
        ("*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false),
    ];
    for (pattern, name, expected) in cases {
        assert_eq!(
            reference_matches(pattern, name),
            expected,
            "reference: {pattern} on {name}"
        );
        assert_eq!(
            Pattern::new(pattern).matches(name),
            expected,
            "pattern: {pattern} on {name}"
        );
    }
}
