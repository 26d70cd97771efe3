//! Read-side of the sink's state: pattern resolution through the memo, and the queries.
//!
//! A query never scans the window. An exact name is one hash lookup. A pattern is resolved to
//! the interned names it matches, memoised per pattern and valid until the set of interned
//! names changes (a new name, or a sweep of idle ones); answering then costs one lookup per
//! matching name, which is at most the number of distinct names.

use std::hash::BuildHasher;
use std::ops::ControlFlow;

use hashbrown::HashTable;

use tokio::time::Instant;

use super::stamp::Stamp;
use super::state::{NameEntry, Slot, State};
use crate::{OperationId, Pattern, Signal};

pub(crate) struct Memo {
    generation: u64,
    /// The indexes (in `State::entries`) of the matching interned names, valid for
    /// `generation` only.
    names: Vec<usize>,
}

/// How a query string resolved.
#[derive(Clone, Copy)]
pub(super) enum Resolved {
    /// The string is a plain name: look it up directly.
    Exact,
    /// The string is a pattern with a current memo entry.
    Memo,
}

/// Whether `pattern` can only be a plain name (no wildcard, alternative or padding).
///
/// Padding is any Unicode whitespace, as [`Pattern::new`] trims it: `"error.db\u{A0}"` must
/// resolve through `Pattern` (and match `error.db`), not be looked up as a name that can never
/// exist. Non-ASCII text is rare in names, so ASCII strings keep the byte-wise test.
fn is_plain(pattern: &str) -> bool {
    let special = |c: char| matches!(c, '*' | '?' | ',' | '+') || c.is_whitespace();
    if pattern.is_ascii() {
        !pattern.bytes().any(|b| special(char::from(b)))
    } else {
        !pattern.chars().any(special)
    }
}

impl State {
    /// Makes sure `pattern` can be answered, computing its memo entry if needed.
    pub(super) fn resolve(&mut self, pattern: &str) -> Resolved {
        if is_plain(pattern) {
            return Resolved::Exact;
        }
        let generation = self.generation;
        if let Some(memo) = self.memo.get_mut(pattern) {
            if memo.generation != generation {
                let compiled = Pattern::new(pattern);
                memo.names = matching(&self.names, &self.entries, &compiled);
                memo.generation = generation;
                self.counters.memo_recomputes += 1;
            }
            return Resolved::Memo;
        }
        if self.memo.len() >= self.max_patterns {
            // Bounded: forgetting every memoised pattern costs one recomputation each.
            self.memo.clear();
            self.counters.memo_resets += 1;
        }
        let compiled = Pattern::new(pattern);
        let names = matching(&self.names, &self.entries, &compiled);
        self.memo
            .insert(Box::from(pattern), Memo { generation, names });
        self.counters.memo_recomputes += 1;
        Resolved::Memo
    }

    /// Visits the entry of every interned name matching `pattern` (resolved just before).
    pub(super) fn visit(
        &self,
        pattern: &str,
        how: Resolved,
        mut f: impl FnMut(&NameEntry) -> ControlFlow<()>,
    ) {
        match how {
            Resolved::Exact => {
                if let Some(entry) = self.entry(pattern, self.hasher.hash_one(pattern)) {
                    let _ = f(entry);
                }
            }
            Resolved::Memo => {
                let Some(memo) = self.memo.get(pattern) else {
                    return;
                };
                for &index in &memo.names {
                    if let Some(entry) = self.entries.get(index)
                        && f(entry).is_break()
                    {
                        return;
                    }
                }
            }
        }
    }

    pub(super) fn has_signal(&mut self, now: Instant, pattern: &str) -> bool {
        self.purge(now);
        self.any_entry(pattern, |entry| !entry.is_idle())
    }

    /// Whether the entry of some name matching `pattern` passes `test`.
    fn any_entry(&mut self, pattern: &str, test: impl Fn(&NameEntry) -> bool) -> bool {
        let how = self.resolve(pattern);
        let mut found = false;
        self.visit(pattern, how, |entry| {
            found = test(entry);
            if found {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        found
    }

    pub(super) fn count(&mut self, now: Instant, pattern: &str) -> usize {
        self.purge(now);
        let how = self.resolve(pattern);
        let mut count = 0;
        self.visit(pattern, how, |entry| {
            count += entry.seqs.len() + entry.held.len();
            ControlFlow::Continue(())
        });
        count
    }

    pub(super) fn count_since(&mut self, now: Instant, pattern: &str, since: Instant) -> usize {
        self.purge(now);
        let how = self.resolve(pattern);
        let since = Stamp::of(since);
        let mut count = 0;
        self.visit(pattern, how, |entry| {
            // Timestamps rise with sequence numbers, so the recent ones are a suffix.
            let older = entry
                .seqs
                .partition_point(|seq| self.slot(*seq).is_some_and(|s| s.stamp < since));
            count += entry.seqs.len() - older;
            count += entry
                .held
                .iter()
                .filter(|seq| self.holds.get(seq).is_some_and(|s| s.timestamp >= since))
                .count();
            ControlFlow::Continue(())
        });
        count
    }

    pub(super) fn latest(&mut self, now: Instant, pattern: &str) -> Option<Signal> {
        self.purge(now);
        let how = self.resolve(pattern);
        let mut best: Option<u64> = None;
        self.visit(pattern, how, |entry| {
            let newest = entry.seqs.back().copied().max(entry.held.last().copied());
            best = best.max(newest);
            ControlFlow::Continue(())
        });
        best.and_then(|seq| self.signal(seq))
    }

    /// Whether a held condition matches `pattern`.
    pub(super) fn has_hold(&mut self, pattern: &str) -> bool {
        self.any_entry(pattern, |entry| !entry.held.is_empty())
    }

    /// Copies of the held conditions matching `pattern`, oldest first.
    pub(super) fn holds(&mut self, pattern: &str) -> Vec<Signal> {
        self.matching_signals(pattern, false)
    }

    pub(super) fn sense(&mut self, now: Instant, pattern: &str) -> Vec<Signal> {
        self.purge(now);
        self.matching_signals(pattern, true)
    }

    /// Copies of the held conditions matching `pattern` and, with `window`, of its window
    /// signals too, oldest (lowest sequence) first.
    fn matching_signals(&mut self, pattern: &str, window: bool) -> Vec<Signal> {
        let how = self.resolve(pattern);
        let mut seqs = Vec::new();
        self.visit(pattern, how, |entry| {
            if window {
                seqs.extend(entry.seqs.iter().copied());
            }
            seqs.extend(entry.held.iter().copied());
            ControlFlow::Continue(())
        });
        seqs.sort_unstable();
        seqs.into_iter()
            .filter_map(|seq| self.signal(seq))
            .collect()
    }

    /// The sequence numbers of live window signals matching `pattern` (holds excluded).
    pub(super) fn window_seqs(&mut self, now: Instant, pattern: &str) -> Vec<u64> {
        self.purge(now);
        let how = self.resolve(pattern);
        let mut seqs = Vec::new();
        self.visit(pattern, how, |entry| {
            seqs.extend(entry.seqs.iter().copied());
            ControlFlow::Continue(())
        });
        seqs
    }

    pub(super) fn signals_of(&mut self, now: Instant, op: OperationId) -> Vec<Signal> {
        self.purge(now);
        let mut out: Vec<Signal> = self
            .ops
            .get(&op)
            .into_iter()
            .flatten()
            .filter_map(|seq| self.signal(*seq))
            .collect();
        out.extend(
            self.holds
                .values()
                .filter(|s| s.operation() == Some(op))
                .cloned(),
        );
        out.sort_unstable_by_key(|s| s.sequence);
        out
    }

    /// A copy of the live signal (window or hold) with this sequence number.
    pub(super) fn signal(&self, seq: u64) -> Option<Signal> {
        if let Some(held) = self.holds.get(&seq) {
            return Some(held.clone());
        }
        self.slot(seq).map(|slot| slot.signal(&self.entries))
    }

    /// The live window slot with this sequence number.
    pub(super) fn slot(&self, seq: u64) -> Option<&Slot> {
        let index = self.window.binary_search_by_key(&seq, |s| s.seq).ok()?;
        let slot = &self.window[index];
        slot.live.then_some(slot)
    }

    /// The earliest instant at which a live window signal matching `pattern` expires.
    pub(super) fn next_expiry(&mut self, now: Instant, pattern: &str) -> Option<Instant> {
        self.purge(now);
        let how = self.resolve(pattern);
        let mut earliest: Option<Instant> = None;
        let max_age = self.max_age;
        self.visit(pattern, how, |entry| {
            for seq in &entry.seqs {
                if let Some(s) = self.slot(*seq) {
                    let by_age = s.stamp.instant().checked_add(max_age);
                    let at = match (by_age, s.expires_at()) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    if let Some(at) = at {
                        earliest = Some(earliest.map_or(at, |e| e.min(at)));
                    }
                }
            }
            ControlFlow::Continue(())
        });
        earliest
    }
}

fn matching(names: &HashTable<usize>, entries: &[NameEntry], pattern: &Pattern) -> Vec<usize> {
    names
        .iter()
        .copied()
        .filter(|&i| pattern.matches(&entries[i].name))
        .collect()
}
