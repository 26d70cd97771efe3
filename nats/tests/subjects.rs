//! Names and patterns ↔ subjects, as properties (no server): the encoding is injective and
//! round-trips, and a pattern's route covers every matching name, exactly once, with the
//! local filter making delivery exact.

use ephemeral::{Name, Pattern};
use ephemeral_nats::subject::{decode, encode, route};
use proptest::prelude::*;

/// What NATS delivers: `*` is one token, `>` one or more, the rest literal.
fn nats_matches(filter: &str, subject: &str) -> bool {
    let mut subject = subject.split('.');
    for f in filter.split('.') {
        match (f, subject.next()) {
            (">", Some(_)) => return true,
            (_, None) => return false,
            ("*", Some(_)) => {}
            (f, Some(s)) if f == s => {}
            _ => return false,
        }
    }
    subject.next().is_none()
}

/// Name segments, rich in the awkward cases.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(">".to_owned()),
        Just("%".to_owned()),
        Just("%3E".to_owned()),
        Just("%25".to_owned()),
        Just("a".to_owned()),
        Just("b".to_owned()),
        Just("ab".to_owned()),
        Just("é".to_owned()),
        Just("a+b".to_owned()),
        Just("$x:1".to_owned()),
        "[ab>%]{1,3}",
    ]
}

fn name() -> impl Strategy<Value = Name> {
    prop::collection::vec(segment(), 1..5).prop_filter_map("a valid name", |segments| {
        Name::new(&segments.join(".")).ok()
    })
}

/// Pattern segments: literals, `+`, `*`, and wildcards inside segments.
fn pattern_segment() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => segment(),
        2 => Just("+".to_owned()),
        2 => Just("*".to_owned()),
        1 => Just("a*".to_owned()),
        1 => Just("*b".to_owned()),
        1 => Just("?".to_owned()),
        1 => Just("a?".to_owned()),
    ]
}

fn alternative() -> impl Strategy<Value = String> {
    prop::collection::vec(pattern_segment(), 1..4).prop_map(|s| s.join("."))
}

fn pattern() -> impl Strategy<Value = String> {
    prop::collection::vec(alternative(), 1..4).prop_map(|a| a.join(","))
}

/// Names that match `pattern` by construction: each wildcard replaced by something it
/// matches (so the property is not tested only on misses).
fn instantiate(pattern: &str, fill: &[String]) -> Vec<String> {
    let mut fills = fill.iter().cycle();
    let mut next = || fills.next().cloned().unwrap_or_default();
    pattern
        .split(',')
        .map(|alt| {
            alt.split('.')
                .map(|seg| {
                    if seg == "+" {
                        next().replace('.', "")
                    } else {
                        let mut out = String::new();
                        for ch in seg.chars() {
                            match ch {
                                '*' => out.push_str(&next()),
                                '?' => out.push(next().chars().next().unwrap_or('.')),
                                c => out.push(c),
                            }
                        }
                        out
                    }
                })
                .collect::<Vec<_>>()
                .join(".")
        })
        .collect()
}

proptest! {
    #[test]
    fn names_round_trip_through_their_subject(name in name()) {
        let subject = encode(&name);
        prop_assert_eq!(decode(&subject), Some(name.clone()));
        // Nothing the server would drop or read as a wildcard.
        for token in subject.split('.') {
            prop_assert!(!token.is_empty(), "{subject}");
            prop_assert!(token != ">" && token != "*", "{subject}");
        }
    }

    #[test]
    fn a_subject_decodes_to_at_most_the_name_that_encodes_to_it(subject in "[ab.%>3E25]{1,12}") {
        if let Some(name) = decode(&subject) {
            prop_assert_eq!(encode(&name), subject);
        }
    }

    #[test]
    fn different_names_have_different_subjects(a in name(), b in name()) {
        prop_assert_eq!(a == b, encode(&a) == encode(&b));
    }

    #[test]
    fn a_route_delivers_every_match_once_and_the_filter_makes_it_exact(
        pattern in pattern(),
        names in prop::collection::vec(name(), 1..12),
        fill in prop::collection::vec("[ab.%>]{0,3}", 1..6),
    ) {
        let Ok(route) = route(&pattern) else {
            // Only when no alternative can match any name.
            prop_assert!(names.iter().all(|n| !Pattern::new(&pattern).matches(n)));
            return Ok(());
        };
        let compiled = Pattern::new(&pattern);
        let candidates = names
            .iter()
            .map(|n| n.to_string())
            .chain(instantiate(&pattern, &fill))
            .filter_map(|n| Name::new(&n).ok());
        for name in candidates {
            let subject = encode(&name);
            let hits = route.subjects.iter().filter(|f| nats_matches(f, &subject)).count();
            let matches = compiled.matches(&name);
            prop_assert!(hits <= 1, "{name} delivered {hits} times by {:?}", route.subjects);
            if matches {
                prop_assert_eq!(hits, 1, "{} matches {} but {:?} miss it", name, pattern, route.subjects);
            }
            if route.exact {
                prop_assert_eq!(hits == 1, matches, "{} vs exact route {:?}", name, route.subjects);
            }
            let delivered = hits == 1 && (route.exact || matches);
            prop_assert_eq!(delivered, matches);
        }
    }
}
