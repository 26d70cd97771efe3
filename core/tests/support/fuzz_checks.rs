//! The properties the fuzz targets check, shared with the replay test (`fuzz_replay.rs`) so a
//! corpus entry or a crash found by the fuzzer is also an ordinary test.
//!
//! Each check panics with a message when the property does not hold; it never panics on
//! inputs that are merely invalid.

use ephemeral::{Pattern, command, validate_name};
use regex::Regex;

/// The naming rule, read plainly from DESIGN.md.
pub(crate) fn name_rule(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= ephemeral::MAX_NAME_LEN
        && !s.chars().any(|c| {
            c.is_whitespace() || c.is_control() || is_cf(c) || matches!(c, '*' | '?' | ',')
        })
        && !s.split('.').any(|segment| segment == "+")
}

/// Unicode general category Cf (format characters), from the Unicode 15 tables.
fn is_cf(c: char) -> bool {
    const CF: &[(u32, u32)] = &[
        (0xAD, 0xAD),
        (0x600, 0x605),
        (0x61C, 0x61C),
        (0x6DD, 0x6DD),
        (0x70F, 0x70F),
        (0x890, 0x891),
        (0x8E2, 0x8E2),
        (0x180E, 0x180E),
        (0x200B, 0x200F),
        (0x202A, 0x202E),
        (0x2060, 0x2064),
        (0x2066, 0x206F),
        (0xFEFF, 0xFEFF),
        (0xFFF9, 0xFFFB),
        (0x110BD, 0x110BD),
        (0x110CD, 0x110CD),
        (0x13430, 0x1343F),
        (0x1BCA0, 0x1BCA3),
        (0x1D173, 0x1D17A),
        (0xE0001, 0xE0001),
        (0xE0020, 0xE007F),
    ];
    let c = u32::from(c);
    CF.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
}

/// `validate_name` never panics and agrees with the rule.
pub(crate) fn name(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    assert_eq!(
        validate_name(s).is_ok(),
        name_rule(s),
        "validate_name({s:?})"
    );
}

/// The pattern language as a regex: the reference the matcher is checked against.
pub(crate) fn reference(pattern: &str) -> Option<Regex> {
    let alternatives: Vec<String> = pattern
        .split(',')
        .map(str::trim)
        .filter(|alt| !alt.is_empty())
        .map(|alt| {
            alt.split('.')
                .map(|segment| {
                    if segment == "+" {
                        return "[^.]*".to_owned();
                    }
                    segment
                        .chars()
                        .map(|ch| match ch {
                            '*' => ".*".to_owned(),
                            '?' => ".".to_owned(),
                            c => regex::escape(&c.to_string()),
                        })
                        .collect()
                })
                .collect::<Vec<String>>()
                .join(r"\.")
        })
        .collect();
    if alternatives.is_empty() {
        return None;
    }
    regex::RegexBuilder::new(&format!("(?s)^(?:{})$", alternatives.join("|")))
        .size_limit(1 << 24)
        .build()
        .ok()
}

/// `Pattern` matches exactly like the regex reference. The input is `pattern\0name`.
pub(crate) fn pattern(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Some((pattern, name)) = s.split_once('\0') else {
        return;
    };
    let compiled = Pattern::new(pattern);
    let expected = match reference(pattern) {
        Some(re) => re.is_match(name),
        None if compiled.is_empty() => false,
        // The reference refused to build (too large): nothing to compare with.
        None => return,
    };
    assert_eq!(
        compiled.matches(name),
        expected,
        "pattern {pattern:?} on name {name:?}"
    );
}

/// The command parser never panics, and its answers agree with each other. The input is
/// `name\ncommand`.
pub(crate) fn command(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let (name, cmd) = s.split_once('\n').unwrap_or((s, "set"));
    let payload = command::payload(name, cmd);
    if payload.is_some() {
        assert!(
            command::is_command(name, cmd),
            "payload without is_command: {name:?} {cmd:?}"
        );
        assert!(name.contains(':'));
    }
    match command::parse::<u32>(name, cmd) {
        Ok(Some(_)) | Err(_) => assert!(payload.is_some()),
        Ok(None) => assert!(payload.is_none()),
    }
    let _ = command::duration(name, cmd);
    let _ = command::parse_duration(name);
}
