//! Server versions: what a feature needs, checked against what the server reports.

use crate::NatsError;

/// `major.minor.patch` of a version string such as `2.15.1`, `v2.11.0-RC.1`.
fn parse_version(version: &str) -> Option<(u64, u64, u64)> {
    let version = version.trim().trim_start_matches('v');
    let core = version.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    let major = parts.next()??;
    let minor = parts.next().unwrap_or(Some(0))?;
    let patch = parts.next().unwrap_or(Some(0))?;
    Some((major, minor, patch))
}

/// [`NatsError::ServerTooOld`] unless `have` ≥ `need`.
pub(crate) fn check_version(
    have: &str,
    need: &'static str,
    feature: &'static str,
) -> Result<(), NatsError> {
    let too_old = || NatsError::ServerTooOld {
        have: have.to_owned(),
        need,
        feature,
    };
    let have_v = parse_version(have).ok_or_else(too_old)?;
    // `need` is ours and always parses; a typo in it must not pass silently.
    let need_v = parse_version(need).ok_or_else(too_old)?;
    if have_v < need_v {
        Err(too_old())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare() {
        assert!(check_version("2.15.1", "2.11.0", "x").is_ok());
        assert!(check_version("2.11.0", "2.11.0", "x").is_ok());
        assert!(check_version("v2.11.0-RC.2", "2.11", "x").is_ok());
        assert!(check_version("3.0.0", "2.11.0", "x").is_ok());
        assert!(check_version("2.10.25", "2.11.0", "x").is_err());
        assert!(check_version("", "2.11.0", "x").is_err());
        assert!(check_version("banana", "2.11.0", "x").is_err());
    }

    #[test]
    fn an_old_server_is_named_with_the_feature() {
        let error = check_version("2.9.10", "2.11.0", "keyed work queues").unwrap_err();
        let NatsError::ServerTooOld {
            have,
            need,
            feature,
        } = &error
        else {
            panic!("{error:?}");
        };
        assert_eq!(
            (have.as_str(), *need, *feature),
            ("2.9.10", "2.11.0", "keyed work queues")
        );
        let text = error.to_string();
        assert!(
            text.contains("2.9.10") && text.contains("keyed work queues"),
            "{text}"
        );
        assert!(text.contains("upgrade"), "{text}");
    }
}
