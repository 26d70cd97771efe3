//! Patterns over signal names: `*`, `?`, comma alternatives and the `+` segment wildcard.

use std::fmt;
use std::sync::Arc;

/// A compiled pattern over [`Name`](crate::Name)s.
///
/// The language, compatible with the .NET original plus one addition for topic routing:
///
/// | pattern | matches |
/// |---|---|
/// | `error.db` | exactly `error.db` (no wildcard means an exact match) |
/// | `error.*` | `error.db`, `error.db.timeout`: `*` is any run of characters, dots included |
/// | `job.?` | `job.1`, `job.x`: `?` is exactly one character |
/// | `error.*,timeout.*` | either alternative; surrounding whitespace is ignored |
/// | `news.+` | `news.sports`, not `news.sports.eu`: a `+` standing as a whole segment is one segment |
/// | `a+b` | exactly `a+b`: a `+` inside a segment is literal |
///
/// Matching is case-sensitive. Every string is a valid pattern (an empty alternative matches
/// nothing), so the sink's queries take `&str`; compile a `Pattern` once with [`Pattern::new`]
/// for hot paths. Matching never backtracks exponentially: it simulates the pattern as a small
/// automaton, `O(pattern length × name length)` at worst, with fast paths for exact names and
/// `prefix.*`.
///
/// # Examples
///
/// ```
/// use ephemeral::Pattern;
///
/// let p = Pattern::new("error.*,timeout.+");
/// assert!(p.matches("error.db.timeout"));
/// assert!(p.matches("timeout.db"));
/// assert!(!p.matches("timeout.db.read"));
/// assert!(!p.matches("warning.db"));
/// ```
#[derive(Clone)]
pub struct Pattern {
    source: Arc<str>,
    alternatives: Arc<[Alternative]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Alternative {
    /// No wildcard: the name must be equal.
    Exact(Box<str>),
    /// `literal*` with no other wildcard: the name must start with the literal.
    Prefix(Box<str>),
    /// Anything else: simulated token by token.
    General(Box<[Token]>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Char(char),
    /// `?`: exactly one character.
    One,
    /// `*`: any run of characters, dots included.
    Any,
    /// `+` as a whole segment: any run of characters without a dot.
    Segment,
}

impl Pattern {
    /// Compiles `pattern`. Every string is a valid pattern.
    #[must_use]
    pub fn new(pattern: &str) -> Self {
        let alternatives = pattern
            .split(',')
            .map(str::trim)
            .filter(|alt| !alt.is_empty())
            .map(compile_alternative)
            .collect();
        Self {
            source: Arc::from(pattern),
            alternatives,
        }
    }

    /// The text this pattern was compiled from.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether `name` matches any alternative of this pattern.
    #[must_use]
    pub fn matches(&self, name: &str) -> bool {
        self.alternatives.iter().any(|alt| alt.matches(name))
    }

    /// If this pattern is a single exact name (no wildcard, no alternatives), that name.
    ///
    /// Exact patterns are answered by the sink in `O(1)` without consulting any memo.
    #[must_use]
    pub fn as_exact(&self) -> Option<&str> {
        match &*self.alternatives {
            [Alternative::Exact(name)] => Some(name),
            _ => None,
        }
    }

    /// Whether this pattern contains any wildcard (`*`, `?` or a `+` segment).
    #[must_use]
    pub fn has_wildcards(&self) -> bool {
        self.alternatives
            .iter()
            .any(|alt| !matches!(alt, Alternative::Exact(_)))
    }

    /// Whether this pattern can match no [`Name`](crate::Name) at all: it has no non-empty
    /// alternative (`""`, `" , "`), or each alternative holds, outside its wildcards, a
    /// character no name may hold (whitespace, a control or an invisible format character: `"a b"`). Durable
    /// subscriptions refuse such a pattern, on the bus and over NATS alike.
    ///
    /// # Examples
    ///
    /// ```
    /// use ephemeral::Pattern;
    ///
    /// assert!(Pattern::new(" , ").is_empty());
    /// assert!(Pattern::new("a b,c\td.*").is_empty());
    /// assert!(!Pattern::new("a b,error.*").is_empty());
    /// ```
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.alternatives.iter().all(Alternative::matches_no_name)
    }
}

/// What no name may hold (see [`validate`](crate::name::validate)) and a pattern may spell
/// out literally.
fn never_in_a_name(c: char) -> bool {
    c.is_whitespace() || c.is_control() || crate::name::is_format(c)
}

fn compile_alternative(alt: &str) -> Alternative {
    let mut tokens = Vec::with_capacity(alt.len());
    for (index, segment) in alt.split('.').enumerate() {
        if index > 0 {
            tokens.push(Token::Char('.'));
        }
        if segment == "+" {
            tokens.push(Token::Segment);
            continue;
        }
        for ch in segment.chars() {
            tokens.push(match ch {
                '*' => Token::Any,
                '?' => Token::One,
                c => Token::Char(c),
            });
        }
    }
    // Runs of `*` are one `*`; this also keeps the automaton small.
    tokens.dedup_by(|a, b| *a == Token::Any && *b == Token::Any);

    let literal = |toks: &[Token]| -> Option<String> {
        toks.iter()
            .map(|t| match t {
                Token::Char(c) => Some(*c),
                _ => None,
            })
            .collect()
    };
    if let Some(exact) = literal(&tokens) {
        return Alternative::Exact(exact.into_boxed_str());
    }
    if let Some((Token::Any, head)) = tokens.split_last()
        && let Some(prefix) = literal(head)
    {
        return Alternative::Prefix(prefix.into_boxed_str());
    }
    Alternative::General(tokens.into_boxed_slice())
}

impl Alternative {
    /// Whether no valid name can match this alternative (a literal character names never hold).
    fn matches_no_name(&self) -> bool {
        match self {
            Self::Exact(literal) | Self::Prefix(literal) => literal.chars().any(never_in_a_name),
            Self::General(tokens) => tokens
                .iter()
                .any(|t| matches!(t, Token::Char(c) if never_in_a_name(*c))),
        }
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            Alternative::Exact(exact) => &**exact == name,
            Alternative::Prefix(prefix) => name.starts_with(&**prefix),
            Alternative::General(tokens) => simulate(tokens, name),
        }
    }
}

/// Runs the pattern as a nondeterministic automaton whose states are token positions.
///
/// Each input character advances every live state at once, so the cost is bounded by
/// `tokens × characters` whatever the pattern: there is no backtracking to go wrong.
fn simulate(tokens: &[Token], name: &str) -> bool {
    let states = tokens.len() + 1;
    // Most patterns are short: keep the state sets on the stack.
    if states <= 64 {
        simulate_small(tokens, name)
    } else {
        simulate_large(tokens, name, states)
    }
}

fn simulate_small(tokens: &[Token], name: &str) -> bool {
    let closure = |mut set: u64| -> u64 {
        // A `*` or `+` may match nothing: a state before one also stands after it.
        for (i, tok) in tokens.iter().enumerate() {
            if set & (1 << i) != 0 && matches!(tok, Token::Any | Token::Segment) {
                set |= 1 << (i + 1);
            }
        }
        set
    };
    let mut current = closure(1);
    for ch in name.chars() {
        let mut next = 0u64;
        for (i, tok) in tokens.iter().enumerate() {
            if current & (1 << i) == 0 {
                continue;
            }
            match *tok {
                Token::Char(c) if c == ch => next |= 1 << (i + 1),
                Token::One => next |= 1 << (i + 1),
                Token::Any => next |= 1 << i,
                Token::Segment if ch != '.' => next |= 1 << i,
                _ => {}
            }
        }
        current = closure(next);
        if current == 0 {
            return false;
        }
    }
    current & (1 << tokens.len()) != 0
}

fn simulate_large(tokens: &[Token], name: &str, states: usize) -> bool {
    let closure = |set: &mut Vec<bool>| {
        for (i, tok) in tokens.iter().enumerate() {
            if set[i] && matches!(tok, Token::Any | Token::Segment) {
                set[i + 1] = true;
            }
        }
    };
    let mut current = vec![false; states];
    current[0] = true;
    closure(&mut current);
    let mut next = vec![false; states];
    for ch in name.chars() {
        next.iter_mut().for_each(|s| *s = false);
        for (i, tok) in tokens.iter().enumerate() {
            if !current[i] {
                continue;
            }
            match *tok {
                Token::Char(c) if c == ch => next[i + 1] = true,
                Token::One => next[i + 1] = true,
                Token::Any => next[i] = true,
                Token::Segment if ch != '.' => next[i] = true,
                _ => {}
            }
        }
        closure(&mut next);
        std::mem::swap(&mut current, &mut next);
        if !current.iter().any(|s| *s) {
            return false;
        }
    }
    current[tokens.len()]
}

impl From<&str> for Pattern {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl From<&String> for Pattern {
    fn from(value: &String) -> Self {
        Self::new(value)
    }
}

impl From<String> for Pattern {
    fn from(value: String) -> Self {
        Self::new(&value)
    }
}

impl From<&Pattern> for Pattern {
    fn from(value: &Pattern) -> Self {
        value.clone()
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Pattern {}

impl std::hash::Hash for Pattern {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.source.hash(state);
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Pattern").field(&&*self.source).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_wildcards() {
        let m = |p: &str, n: &str| Pattern::new(p).matches(n);
        assert!(m("a.b", "a.b"));
        assert!(!m("a.b", "a.bc"));
        assert!(m("error.*", "error.db.timeout"));
        assert!(m("error.*", "error."));
        assert!(!m("error.*", "error"));
        assert!(m("*", "anything.at.all"));
        assert!(m("*.timeout", "error.db.timeout"));
        assert!(m("job.?", "job.1"));
        assert!(!m("job.?", "job.12"));
        assert!(m("job.?", "job.é"));
        assert!(m("error.*,timeout.*", "timeout.x"));
        assert!(m(" error.* , timeout.* ", "error.x"));
        assert!(!m("Error.*", "error.x"));
    }

    #[test]
    fn plus_is_one_segment_only_when_whole() {
        let m = |p: &str, n: &str| Pattern::new(p).matches(n);
        assert!(m("news.+", "news.sports"));
        assert!(!m("news.+", "news.sports.eu"));
        assert!(m("news.*", "news.sports.eu"));
        assert!(m("+.db", "error.db"));
        assert!(!m("+.db", "error.x.db"));
        assert!(m("a.+.c", "a.b.c"));
        assert!(m("a+b", "a+b"));
        assert!(!m("a+b", "aab"));
    }

    #[test]
    fn empty_pattern_matches_nothing() {
        assert!(!Pattern::new("").matches("a"));
        assert!(Pattern::new("").is_empty());
        assert!(!Pattern::new(",,").matches("a"));
        assert!(Pattern::new(",,").is_empty());
        // Literal whitespace or control characters: no name can hold them.
        for nothing in ["a b", "a b.*", "*.x\ty", "a\u{7}?", "a b,c d"] {
            assert!(Pattern::new(nothing).is_empty(), "{nothing:?}");
        }
        for something in ["a", "a b,c", "*", "?.x", "a.+"] {
            assert!(!Pattern::new(something).is_empty(), "{something:?}");
        }
    }

    #[test]
    fn exactness() {
        assert_eq!(Pattern::new("a.b").as_exact(), Some("a.b"));
        assert_eq!(Pattern::new("a.*").as_exact(), None);
        assert_eq!(Pattern::new("a,b").as_exact(), None);
        assert!(Pattern::new("a.*").has_wildcards());
        assert!(!Pattern::new("a,b").has_wildcards());
    }

    #[test]
    fn long_patterns_use_the_large_automaton() {
        let p = format!("{}*{}", "a".repeat(70), "b?");
        let name = format!("{}xyzb1", "a".repeat(70));
        assert!(Pattern::new(&p).matches(&name));
        assert!(!Pattern::new(&p).matches(&"a".repeat(75)));
    }

    #[test]
    fn pathological_star_runs_are_fast() {
        let p = Pattern::new(&"*a".repeat(40));
        assert!(!p.matches(&"a".repeat(39)));
        assert!(p.matches(&"a".repeat(200)));
    }
}
