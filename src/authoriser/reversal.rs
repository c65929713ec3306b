//! Reversals and advices: undoing what an original did, once, and posting what a bus
//! validator already approved offline.

use super::core::{Core, Outcome};
use super::state::{JournalKey, KeyGroup};
use crate::domain::money::wire_to_minor;
use crate::domain::request::{MessageClass, Request, RequestKey};
use crate::domain::response::ResponseCode;
use crate::domain::time::TimestampMs;

impl Core {
    /// 0400/0420: find the original by F90, or by (F32, F41, F37) without it.
    pub(super) fn reverse(&mut self, request: &Request, now: TimestampMs) -> Outcome {
        let (original_key, reference) = self.original_of(request);
        let found = original_key
            .as_ref()
            .filter(|k| self.state.journal.contains_key(*k))
            .cloned();
        let Some(key) = found else {
            return self.remember_orphan(request, original_key, reference);
        };
        let mut outcome = self.undo(request, &key, now);
        outcome.reference = reference;
        outcome
    }

    /// The journal key of the original, and the reference text written on the reversal.
    fn original_of(&self, request: &Request) -> (Option<JournalKey>, String) {
        if let Some(original) = request.original.as_ref() {
            let group = KeyGroup::of_mti(&original.mti).unwrap_or(KeyGroup::Financial);
            let key = RequestKey {
                acquirer: request.key.acquirer.clone(),
                terminal: request.key.terminal.clone(),
                stan: original.stan.clone(),
                transmitted: original.transmitted.clone(),
            };
            let reference = format!(
                "K:{}:{}|{}|{}|{}",
                original.mti, key.acquirer, key.terminal, key.stan, key.transmitted
            );
            return (Some((group, key)), reference);
        }
        let rrn = request.rrn.clone().unwrap_or_default();
        let rrn_key = (
            request.key.acquirer.clone(),
            request.key.terminal.clone(),
            rrn,
        );
        let reference = format!("R:{}|{}|{}", rrn_key.0, rrn_key.1, rrn_key.2);
        (self.state.by_rrn.get(&rrn_key).cloned(), reference)
    }

    /// A reversal whose original the switch has not seen: remembered, so the original is
    /// declined 05 if it arrives later; 0400 answers 25, 0420 is acknowledged.
    fn remember_orphan(
        &mut self,
        request: &Request,
        key: Option<JournalKey>,
        reference: String,
    ) -> Outcome {
        match (&key, request.original.as_ref()) {
            (Some(k), Some(_)) => {
                self.state.orphan_keys.insert(k.clone());
            }
            _ => {
                let rrn = request.rrn.clone().unwrap_or_default();
                self.state.orphan_rrns.insert((
                    request.key.acquirer.clone(),
                    request.key.terminal.clone(),
                    rrn,
                ));
            }
        }
        let code = match request.class {
            MessageClass::ReversalAdvice => ResponseCode::Approved,
            _ => ResponseCode::OriginalNotFound,
        };
        Outcome {
            code: Some(code),
            kind: "reversal",
            reference,
            ..Outcome::default()
        }
    }

    /// Posts the opposite legs of the original (or of the part F95 says was not
    /// completed). A declined, already-reversed or fully-completed original posts nothing.
    fn undo(&mut self, request: &Request, key: &JournalKey, now: TimestampMs) -> Outcome {
        let ack = Outcome {
            code: Some(ResponseCode::Approved),
            kind: "reversal",
            ..Outcome::default()
        };
        let Some(original) = self.state.journal.get(key) else {
            return ack;
        };
        if !original.response.code.is_approved() || original.reversed || original.legs.is_empty() {
            return ack;
        }
        let exponent = self
            .policy
            .acquirers
            .get(&request.key.acquirer)
            .map_or(0, |a| a.amount_exponent);
        let completed_minor = request
            .replacement_amount_wire
            .and_then(|w| wire_to_minor(w, exponent))
            .unwrap_or(0)
            .clamp(0, original.amount_minor);
        let reverse_minor = original.amount_minor - completed_minor;
        let legs: Vec<(i64, i64)> = original
            .legs
            .iter()
            .map(|(a, amt)| (*a, -amt.signum() * reverse_minor))
            .collect();
        if self.would_overdraw(&legs) {
            // Reversing a refund the family has already spent: refuse the 0400; an 0420
            // is acknowledged and posts nothing, and the acquirer settles it by hand.
            let code = match request.class {
                MessageClass::ReversalAdvice => ResponseCode::Approved,
                _ => ResponseCode::InsufficientFunds,
            };
            return Outcome {
                code: Some(code),
                kind: "reversal",
                ..Outcome::default()
            };
        }
        let (card, channel, day, counted) = (
            original.card,
            original.channel,
            original.business_day,
            original.counted,
        );
        if let Some(original) = self.state.journal.get_mut(key) {
            original.reversed = true;
        }
        self.state.apply_legs(&legs);
        if let (Some(card), Some(channel), true) = (card, channel, counted && reverse_minor > 0) {
            let today = self.policy.calendar.business_day(now);
            if day == today {
                let count = if completed_minor == 0 { -1 } else { 0 };
                self.state.cards[card as usize].count_use(day, channel, count, -reverse_minor);
            }
        }
        Outcome {
            code: Some(ResponseCode::Approved),
            kind: "reversal",
            legs: if reverse_minor > 0 { legs } else { Vec::new() },
            card,
            channel,
            amount_minor: reverse_minor,
            ..Outcome::default()
        }
    }

    fn would_overdraw(&self, legs: &[(i64, i64)]) -> bool {
        legs.iter().any(|(account, amount)| {
            *amount < 0
                && self
                    .state
                    .purse_accounts
                    .get(account)
                    .is_some_and(|(w, p)| {
                        self.state.wallets[*w as usize].available_minor()[p.index()] + amount < 0
                    })
        })
    }

    /// 0220/0221. Completions of holds (with F90) arrive with the ledger engine; until
    /// then they are answered 25. Forced advices (no F90) are the bus validators' and
    /// come with holds too.
    pub(super) fn advice(&mut self, request: &Request, _now: TimestampMs) -> Outcome {
        let code = if request.original.is_some() {
            ResponseCode::OriginalNotFound
        } else {
            ResponseCode::InvalidTransaction
        };
        Outcome {
            code: Some(code),
            kind: "advice",
            ..Outcome::default()
        }
    }
}
