//! Reversals that came before their originals: the original is declined 05 if it
//! arrives later. Bounded like the journal (TIGER_STYLE: a limit on everything): an
//! orphan is forgotten with the idempotency window, past which a late original is
//! decided as new anyway, and past `ORPHANS_MAX` the oldest goes first. Acquirers send
//! such reversals after every timeout; unbounded, the sets grew for as long as the
//! switch ran.

use std::collections::{HashSet, VecDeque};

use super::journal::KeyDigest;

/// Orphans remembered at most (two 16-byte digests and an order entry each).
pub const ORPHANS_MAX: usize = 1 << 18;

/// Which index an orphan is remembered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum By {
    /// The original's request key (F41, F11, F7 and the acquirer).
    Key,
    /// The acquirer, terminal and RRN, when the reversal did not say which message.
    Rrn,
}

#[derive(Debug, Default)]
pub struct Orphans {
    keys: HashSet<KeyDigest>,
    rrns: HashSet<KeyDigest>,
    /// When each was remembered, oldest first; each digest once.
    order: VecDeque<(i64, By, KeyDigest)>,
}

impl Orphans {
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn insert_key(&mut self, key: KeyDigest, at_ms: i64) {
        if self.keys.insert(key) {
            self.remember(By::Key, key, at_ms);
        }
    }

    pub fn insert_rrn(&mut self, rrn: KeyDigest, at_ms: i64) {
        if self.rrns.insert(rrn) {
            self.remember(By::Rrn, rrn, at_ms);
        }
    }

    pub fn contains_key(&self, key: &KeyDigest) -> bool {
        self.keys.contains(key)
    }

    pub fn contains_rrn(&self, rrn: &KeyDigest) -> bool {
        self.rrns.contains(rrn)
    }

    /// Forgets the orphans remembered before `cutoff_ms`, oldest first.
    pub fn forget_before(&mut self, cutoff_ms: i64) {
        while self
            .order
            .front()
            .is_some_and(|(at_ms, _, _)| *at_ms < cutoff_ms)
        {
            self.forget_oldest();
        }
    }

    fn remember(&mut self, by: By, digest: KeyDigest, at_ms: i64) {
        self.order.push_back((at_ms, by, digest));
        while self.order.len() > ORPHANS_MAX {
            self.forget_oldest();
        }
        debug_assert_eq!(self.keys.len() + self.rrns.len(), self.order.len());
    }

    fn forget_oldest(&mut self) {
        if let Some((_, by, digest)) = self.order.pop_front() {
            let removed = match by {
                By::Key => self.keys.remove(&digest),
                By::Rrn => self.rrns.remove(&digest),
            };
            debug_assert!(removed, "an orphan in the order is in its set");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authoriser::journal::Digester;
    use crate::domain::request::RequestKey;

    fn digests(n: usize) -> Vec<KeyDigest> {
        let digester = Digester::default();
        (0..n)
            .map(|i| {
                digester.key(
                    crate::authoriser::state::KeyGroup::Financial,
                    &RequestKey {
                        acquirer: "360001".into(),
                        terminal: "T1".into(),
                        stan: format!("{i:06}"),
                        transmitted: "1124120000".into(),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn orphans_are_forgotten_with_the_window_oldest_first() {
        let d = digests(3);
        let mut orphans = Orphans::default();
        orphans.insert_key(d[0], 100);
        orphans.insert_rrn(d[1], 200);
        orphans.insert_key(d[2], 300);
        orphans.insert_key(d[0], 400); // again: still remembered from its first time
        assert_eq!(orphans.len(), 3);
        orphans.forget_before(201);
        assert!(!orphans.contains_key(&d[0]));
        assert!(!orphans.contains_rrn(&d[1]));
        assert!(orphans.contains_key(&d[2]));
        assert_eq!(orphans.len(), 1);
        orphans.forget_before(i64::MAX);
        assert!(orphans.is_empty());
    }

    #[test]
    fn orphans_are_bounded_by_count() {
        let d = digests(ORPHANS_MAX + 2);
        let mut orphans = Orphans::default();
        for (i, digest) in d.iter().enumerate() {
            orphans.insert_key(*digest, i as i64);
        }
        assert_eq!(orphans.len(), ORPHANS_MAX);
        assert!(!orphans.contains_key(&d[0]));
        assert!(!orphans.contains_key(&d[1]));
        assert!(orphans.contains_key(&d[2]));
        assert!(orphans.contains_key(&d[ORPHANS_MAX + 1]));
    }
}
