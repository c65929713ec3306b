//! A card's standing as the card events say, and the deny list built from it.
//!
//! The deny list's version is the highest `card_events` sequence number. A terminal
//! that holds version N asks `since=N` and gets what to add and remove. Expiry comes
//! with the calendar, not with an event, so an expired card is sent in `added` on every
//! delta: a terminal's list is a set, and adding what it holds changes nothing, while
//! leaving it out would let a terminal that missed the month never learn of it.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::authoriser::{DENY_CLEARED, DENY_NEGATIVE};
use crate::policy::CardStatus;

/// One row of `card_events`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventRow {
    pub seq: i64,
    pub card_sha: String,
    pub event: String,
}

/// What the events say about one card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CardFlags {
    pub status: CardStatus,
    pub pin_locked: bool,
    /// A purse of the family is below zero after a forced advice.
    pub purse_negative: bool,
}

impl Default for CardFlags {
    fn default() -> CardFlags {
        CardFlags {
            status: CardStatus::Active,
            pin_locked: false,
            purse_negative: false,
        }
    }
}

impl CardFlags {
    /// Applies one event the way the authoriser does (authoriser/load.rs): the last
    /// status event decides the status; a PIN lock holds until a PIN unlock.
    pub fn apply(&mut self, event: &str) {
        match event {
            "pin_locked" => self.pin_locked = true,
            "pin_unlock" => self.pin_locked = false,
            DENY_NEGATIVE => self.purse_negative = true,
            DENY_CLEARED => self.purse_negative = false,
            "unblock" => self.status = CardStatus::Active,
            other => {
                if let Some(status) = CardStatus::from_name(other) {
                    self.status = status;
                }
            }
        }
    }

    pub fn denied(self) -> bool {
        self.status != CardStatus::Active || self.pin_locked || self.purse_negative
    }
}

/// The answer of `GET /api/v1/denylist`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct DenyList {
    pub version: i64,
    /// The lists are the whole deny list rather than a change: `since` was 0, or ahead
    /// of this switch's version (a terminal from another database), so replace.
    pub full: bool,
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

/// The change from version `since` to now. `events` in sequence order; `expired` the
/// SHA-256 of every card past its expiry month.
pub fn deny_list(events: &[EventRow], expired: &BTreeSet<String>, since: i64) -> DenyList {
    let version = events.last().map_or(0, |e| e.seq);
    let full = since <= 0 || since > version;
    let then = if full {
        BTreeSet::new()
    } else {
        denied_at(events, since)
    };
    let mut now = denied_at(events, version);
    now.extend(expired.iter().cloned());
    DenyList {
        version,
        full,
        added: now.difference(&then).cloned().collect(),
        removed: then.difference(&now).cloned().collect(),
    }
}

/// Cards the events up to `seq` leave blocked, lost, stolen or PIN-locked.
fn denied_at(events: &[EventRow], seq: i64) -> BTreeSet<String> {
    let mut flags: std::collections::HashMap<&str, CardFlags> = std::collections::HashMap::new();
    for e in events.iter().take_while(|e| e.seq <= seq) {
        flags
            .entry(e.card_sha.as_str())
            .or_default()
            .apply(&e.event);
    }
    flags
        .into_iter()
        .filter(|(_, f)| f.denied())
        .map(|(sha, _)| sha.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: i64, card: &str, event: &str) -> EventRow {
        EventRow {
            seq,
            card_sha: card.into(),
            event: event.into(),
        }
    }

    #[test]
    fn blocked_then_unblocked_card_is_added_then_removed() {
        let events = vec![
            ev(1, "a", "blocked"),
            ev(2, "b", "lost"),
            ev(3, "a", "unblock"),
        ];
        let none = BTreeSet::new();
        let full = deny_list(&events, &none, 0);
        assert_eq!((full.version, full.full), (3, true));
        assert_eq!(full.added, vec!["b".to_string()]);
        let delta = deny_list(&events, &none, 1);
        assert!(!delta.full);
        assert_eq!(delta.added, vec!["b".to_string()]);
        assert_eq!(delta.removed, vec!["a".to_string()]);
        assert_eq!(deny_list(&events, &none, 3).added, Vec::<String>::new());
    }

    #[test]
    fn pin_lock_lists_until_unlock_and_expired_cards_are_always_added() {
        let events = vec![ev(1, "a", "pin_locked"), ev(2, "a", "pin_unlock")];
        let expired = BTreeSet::from(["x".to_string()]);
        let delta = deny_list(&events, &expired, 1);
        assert_eq!(delta.added, vec!["x".to_string()]);
        assert_eq!(delta.removed, vec!["a".to_string()]);
    }

    #[test]
    fn since_ahead_of_the_version_is_a_full_list() {
        let events = vec![ev(1, "a", "stolen")];
        let list = deny_list(&events, &BTreeSet::new(), 9);
        assert!(list.full);
        assert_eq!(list.added, vec!["a".to_string()]);
    }
}
