//! Argument parsers: names, durations and headers checked before anything is sent.

use std::time::Duration;

/// A valid signal name or topic (the library's one naming rule).
pub(crate) fn name(s: &str) -> Result<String, String> {
    ephemeral::Name::new(s)
        .map(|_| s.to_owned())
        .map_err(|e| e.to_string())
}

/// A bus name: one path-safe word (the bus's own rule, so nothing can land outside the
/// parent directory).
pub(crate) fn bus_name(s: &str) -> Result<ephemeral_bus::BusName, String> {
    ephemeral_bus::BusName::new(s).map_err(|e| e.to_string())
}

/// A human duration: `500ms`, `2s`, `1m30s`, `1h`.
pub(crate) fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration ({e}): write it like 500ms, 2s, 1m30s or 1h"))
}

/// A positive human duration.
pub(crate) fn positive_duration(s: &str) -> Result<Duration, String> {
    let d = duration(s)?;
    if d.is_zero() {
        return Err(format!(
            "`{s}` is zero: give a positive duration such as 1s"
        ));
    }
    Ok(d)
}

/// A `key=value` header (the value is sent as a string).
pub(crate) fn header(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!(
            "`{s}` is not a header: write it as key=value, e.g. --header tenant=acme"
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Component, Path};

    use ephemeral_bus::BusOptions;
    use proptest::prelude::*;

    proptest! {
        /// No `--bus` value the command accepts can name a directory outside the parent.
        #[test]
        fn an_accepted_bus_name_stays_inside_the_parent(
            name in prop_oneof![
                "[a-zA-Z0-9_-]{1,40}",
                "(\\.\\./|/|x|\\.|\u{0}|é|😀| |-|_){0,10}",
                any::<String>(),
            ]
        ) {
            let parent = Path::new("/parent/of/buses");
            if let Ok(bus) = super::bus_name(&name) {
                let dir = BusOptions::default().dir(parent).bus_dir(&bus);
                prop_assert_eq!(dir.parent(), Some(parent));
                let last = dir.components().next_back();
                prop_assert!(matches!(last, Some(Component::Normal(_))), "{:?}", dir);
                let escapes = name.contains(['/', '.', '\\', '\u{0}']);
                prop_assert!(!escapes, "accepted {:?}", name);
            }
        }
    }
}
