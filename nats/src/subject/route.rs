//! Pattern routing: the widest exact NATS subscriptions for a pattern, plus a local filter.

use ephemeral::Pattern;

use super::{MESSAGES, push_segment};
use crate::NatsError;

/// The NATS subscriptions that carry a pattern, see [`route`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The subjects to subscribe to (relative to `<prefix>.s.`), pairwise disjoint, so no
    /// message arrives twice.
    pub subjects: Vec<String>,
    /// Whether the subjects carry exactly the names the pattern matches; when false, every
    /// delivery must be checked with [`Pattern::matches`].
    pub exact: bool,
}

/// One NATS subject token of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(String),
    /// `*`: exactly one token.
    One,
    /// `>`: one or more tokens; always last.
    Rest,
}

/// The widest exact NATS subscriptions for `pattern` (relative to `<prefix>.s.`).
///
/// Per comma alternative, segment by segment:
///
/// | pattern segment | NATS token | exact? |
/// |---|---|---|
/// | literal (no `*`, `?`) | its encoding | yes |
/// | exactly `+` | `*` (`+` may match an empty segment, whose token `%` is one token too) | yes |
/// | exactly `*`, as the last segment | `>` (`*` may match nothing: `a.` is `a.%`) | yes |
/// | any other `*`, any `?` | `>`, and the walk stops: `*` and `?` may match dots | no |
///
/// Alternatives covered by another are dropped and overlapping ones merged into one wider
/// subject, so a message arrives at most once; a merge makes the route inexact. An
/// alternative with whitespace or a control character in a literal segment matches no name
/// and is left out.
///
/// # Errors
///
/// [`NatsError::EmptyPattern`] when no alternative can match any name.
///
/// # Examples
///
/// ```
/// use ephemeral_nats::subject::route;
///
/// let r = route("orders.+.created,error.*")?;
/// assert_eq!(r.subjects, ["orders.*.created", "error.>"]);
/// assert!(r.exact);
///
/// let r = route("job.?")?;
/// assert_eq!(r.subjects, ["job.>"]);
/// assert!(!r.exact); // `job.12` arrives and is filtered out locally
/// # Ok::<(), ephemeral_nats::NatsError>(())
/// ```
pub fn route(pattern: &str) -> Result<Route, NatsError> {
    let mut exact = true;
    let mut routes: Vec<Vec<Tok>> = Vec::new();
    for alternative in pattern.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        let Some((tokens, alt_exact)) = route_alternative(alternative) else {
            continue;
        };
        exact &= alt_exact;
        routes.push(tokens);
    }
    if routes.is_empty() {
        return Err(NatsError::EmptyPattern {
            pattern: pattern.to_owned(),
        });
    }
    // Drop covered routes, merge overlapping ones, until the rest are pairwise disjoint.
    'again: loop {
        for i in 0..routes.len() {
            for j in 0..routes.len() {
                if i == j {
                    continue;
                }
                if covers(&routes[i], &routes[j]) {
                    routes.remove(j);
                    continue 'again;
                }
            }
        }
        for i in 0..routes.len() {
            for j in (i + 1)..routes.len() {
                if overlaps(&routes[i], &routes[j]) {
                    let merged = merge(&routes[i], &routes[j]);
                    routes.remove(j);
                    routes[i] = merged;
                    exact = false;
                    continue 'again;
                }
            }
        }
        break;
    }
    Ok(Route {
        subjects: routes.iter().map(|r| render(r)).collect(),
        exact,
    })
}

/// The tokens of one alternative and whether they are exact; `None` when it matches nothing.
fn route_alternative(alternative: &str) -> Option<(Vec<Tok>, bool)> {
    let segments: Vec<&str> = alternative.split('.').collect();
    let mut tokens = Vec::with_capacity(segments.len());
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        if *segment == "+" {
            tokens.push(Tok::One);
        } else if *segment == "*" && last {
            tokens.push(Tok::Rest);
            return Some((tokens, true));
        } else if segment.contains(['*', '?']) {
            // What comes next can match dots: no more token boundaries are known. The
            // literal text before the wildcard cannot be checked here either (`a*` matches
            // `a.b` whose first token is `a`), so the whole rest is `>`. Whitespace anywhere
            // in the rest still means no match.
            if segments[i..]
                .iter()
                .any(|s| s.chars().any(|c| c.is_whitespace() || c.is_control()))
            {
                return None;
            }
            tokens.push(Tok::Rest);
            return Some((tokens, false));
        } else {
            if segment.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return None;
            }
            let mut lit = String::new();
            push_segment(&mut lit, segment);
            tokens.push(Tok::Lit(lit));
        }
    }
    Some((tokens, true))
}

fn render(tokens: &[Tok]) -> String {
    let mut out = String::new();
    for (i, t) in tokens.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        match t {
            Tok::Lit(s) => out.push_str(s),
            Tok::One => out.push('*'),
            Tok::Rest => out.push('>'),
        }
    }
    out
}

/// Whether every subject `b` matches is matched by `a`.
fn covers(a: &[Tok], b: &[Tok]) -> bool {
    for (i, ta) in a.iter().enumerate() {
        let Some(tb) = b.get(i) else {
            return false;
        };
        match (ta, tb) {
            (Tok::Rest, _) => return true,
            (_, Tok::Rest) => return false,
            (Tok::One, _) => {}
            (Tok::Lit(_), Tok::One) => return false,
            (Tok::Lit(x), Tok::Lit(y)) if x != y => return false,
            (Tok::Lit(_), Tok::Lit(_)) => {}
        }
    }
    a.len() == b.len()
}

/// Whether some subject matches both.
fn overlaps(a: &[Tok], b: &[Tok]) -> bool {
    let mut i = 0;
    loop {
        match (a.get(i), b.get(i)) {
            (Some(Tok::Rest), Some(_)) | (Some(_), Some(Tok::Rest)) => return true,
            (None, None) => return true,
            (None, Some(_)) | (Some(_), None) => return false,
            (Some(Tok::Lit(x)), Some(Tok::Lit(y))) if x != y => return false,
            _ => {}
        }
        i += 1;
    }
}

/// The narrowest token list covering both `a` and `b` (which overlap).
fn merge(a: &[Tok], b: &[Tok]) -> Vec<Tok> {
    let mut out = Vec::new();
    for i in 0.. {
        match (a.get(i), b.get(i)) {
            (None, None) => break,
            (Some(Tok::Rest), _) | (_, Some(Tok::Rest)) | (None, Some(_)) | (Some(_), None) => {
                out.push(Tok::Rest);
                break;
            }
            (Some(x), Some(y)) if x == y => out.push(x.clone()),
            _ => out.push(Tok::One),
        }
    }
    out
}

/// Whether NATS would deliver `subject` to a subscription on `filter` (both relative).
#[cfg(test)]
pub(crate) fn nats_matches(filter: &str, subject: &str) -> bool {
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

/// A compiled route for a subscription: the subjects and, if inexact, the local filter.
#[derive(Debug, Clone)]
pub(crate) struct Routed {
    pub(crate) subjects: Vec<String>,
    pub(crate) filter: Option<Pattern>,
}

pub(crate) fn routed(prefix: &str, pattern: &str) -> Result<Routed, NatsError> {
    let r = route(pattern)?;
    Ok(Routed {
        subjects: r
            .subjects
            .iter()
            .map(|s| format!("{prefix}.{MESSAGES}.{s}"))
            .collect(),
        filter: (!r.exact).then(|| Pattern::new(pattern)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_follow_the_table() {
        let r = |p: &str| route(p).unwrap();
        assert_eq!(r("a.b").subjects, ["a.b"]);
        assert!(r("a.b").exact);
        assert_eq!(r("a.+").subjects, ["a.*"]);
        assert!(r("a.+").exact);
        assert_eq!(r("a.*").subjects, ["a.>"]);
        assert!(r("a.*").exact);
        assert_eq!(r("*").subjects, [">"]);
        assert!(r("*").exact);
        assert_eq!(r("a*").subjects, [">"]);
        assert!(!r("a*").exact);
        assert_eq!(r("a.*.c").subjects, ["a.>"]);
        assert!(!r("a.*.c").exact);
        assert_eq!(r("job.?").subjects, ["job.>"]);
        assert_eq!(r("a..b").subjects, ["a.%.b"]);
        assert_eq!(r("a.*,a.b").subjects, ["a.>"]);
        assert!(r("a.*,a.b").exact);
        assert_eq!(r("a.+.c,+.b.c").subjects, ["*.*.c"]);
        assert!(!r("a.+.c,+.b.c").exact);
        assert!(matches!(route(""), Err(NatsError::EmptyPattern { .. })));
        assert!(matches!(route(" , "), Err(NatsError::EmptyPattern { .. })));
        assert!(matches!(
            route("a b.c"),
            Err(NatsError::EmptyPattern { .. })
        ));
        assert_eq!(r("a b.c,d").subjects, ["d"]);
    }

    #[test]
    fn nats_matching_model() {
        assert!(nats_matches("a.*", "a.b"));
        assert!(!nats_matches("a.*", "a.b.c"));
        assert!(nats_matches("a.>", "a.b.c"));
        assert!(!nats_matches("a.>", "a"));
        assert!(nats_matches(">", "a"));
        assert!(!nats_matches("a.b", "a.b.c"));
    }
}
