//! A signal window as a user would write it without `ephemeral`: a
//! `Mutex<VecDeque<(String, Instant)>>` with a fixed capacity, queried by scanning it with a
//! `*`/`?` wildcard match.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A bounded window of `(name, timestamp)` pairs behind one mutex; the oldest entry is dropped
/// when it is full.
#[derive(Debug)]
pub struct MutexWindow {
    entries: Mutex<VecDeque<(String, Instant)>>,
    capacity: usize,
    max_age: Duration,
}

impl MutexWindow {
    /// An empty window of `capacity` entries (at least one) whose entries live for `max_age`.
    #[must_use]
    pub fn new(capacity: usize, max_age: Duration) -> Self {
        let capacity = capacity.max(1);
        Self {
            entries: Mutex::new(VecDeque::with_capacity(capacity)),
            capacity,
            max_age,
        }
    }

    /// Appends `name` stamped now, dropping the oldest entry when the window is full.
    pub fn raise(&self, name: &str) {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.capacity {
            entries.pop_front();
        }
        entries.push_back((name.to_owned(), now));
    }

    /// How many entries the window holds (live or not).
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether the window is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a live entry matches `pattern`, by scanning the whole window.
    #[must_use]
    pub fn has_match(&self, pattern: &str) -> bool {
        let now = Instant::now();
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.iter().any(|(name, at)| {
            now.saturating_duration_since(*at) < self.max_age && wildcard_match(pattern, name)
        })
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters (dots included)
/// and `?` exactly one character; everything else is literal and case-sensitive.
///
/// The classic linear backtracking match (only the last `*` is revisited).
#[must_use]
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and the text position it is currently taken to cover up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'?' {
            pi += 1;
            ti += char_len(t[ti]);
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            let st = st + char_len(t[st]);
            star = Some((sp, st));
            pi = sp + 1;
            ti = st;
        } else {
            return false;
        }
    }
    p[pi.min(p.len())..].iter().all(|&b| b == b'*')
}

/// The length of the UTF-8 character starting with `lead`, so `?` and `*` step over whole
/// characters.
fn char_len(lead: u8) -> usize {
    match lead {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_matches_like_the_original() {
        assert!(wildcard_match("error.*", "error.db.timeout"));
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("*.timeout", "error.db.timeout"));
        assert!(wildcard_match("e?ror.*", "error.x"));
        assert!(wildcard_match("a*b*c", "axxbyyc"));
        assert!(wildcard_match("é?", "éa"));
        assert!(wildcard_match("?b", "éb"));
        assert!(!wildcard_match("error.*", "metric.n1"));
        assert!(!wildcard_match("error.*", "error"));
        assert!(!wildcard_match("a*b*c", "axxbyy"));
        assert!(!wildcard_match("Error", "error"));
        assert!(!wildcard_match("?", ""));
    }

    #[test]
    fn window_drops_oldest_at_capacity_and_scans() {
        let w = MutexWindow::new(3, Duration::from_secs(60));
        for name in ["error.a", "b", "c", "d"] {
            w.raise(name);
        }
        assert_eq!(w.len(), 3);
        assert!(
            !w.has_match("error.*"),
            "error.a was the oldest and is gone"
        );
        assert!(w.has_match("?"));
    }
}
