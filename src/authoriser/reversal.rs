//! Reversals and advices: undoing what an original did, once, and posting what a bus
//! validator already approved offline.

// A decline travels as a whole `Outcome` through `?`: moving ~140 bytes once per
// request costs less than boxing it on the hot path.
#![allow(clippy::result_large_err)]

use super::core::{key_reference, Core, Outcome};
use super::state::{KeyDigest, KeyGroup, Legs};
use crate::domain::money::wire_to_minor;
use crate::domain::money::Purse;
use crate::domain::request::{AccountChoice, MessageClass, Request, RequestKey, TxnType};
use crate::domain::response::{AmountType, Balance, ResponseCode};
use crate::domain::time::TimestampMs;
use crate::ledger::{Batch, TransferRow};

/// Card events of the deny list for a purse below zero and back again (admin/cards.rs).
pub const DENY_NEGATIVE: &str = "purse_negative";
pub const DENY_CLEARED: &str = "purse_cleared";

impl Core {
    /// 0400/0420: find the original by F90, or by (F32, F41, F37) without it.
    pub(super) fn reverse(&mut self, request: &Request, now: TimestampMs) -> Outcome {
        let (original_key, reference) = self.original_of(request);
        if let Some(key) = original_key.filter(|k| self.state.holds.contains_key(k)) {
            return self.reverse_hold(request, &key, reference, now);
        }
        let found = original_key.filter(|k| self.state.journal.contains_key(k));
        let Some(key) = found else {
            return self.remember_orphan(request, original_key, reference, now);
        };
        let mut outcome = self.undo(request, &key, now);
        outcome.reference = reference;
        outcome
    }

    /// The journal key of the original, and the reference text written on the reversal.
    fn original_of(&self, request: &Request) -> (Option<KeyDigest>, String) {
        if let Some(original) = request.original.as_ref() {
            let group = KeyGroup::of_mti(&original.mti).unwrap_or(KeyGroup::Financial);
            let key = RequestKey {
                acquirer: request.key.acquirer.clone(),
                terminal: request.key.terminal.clone(),
                stan: original.stan.clone(),
                transmitted: original.transmitted.clone(),
            };
            let reference = key_reference(&original.mti, &key);
            return (Some(self.state.digester.key(group, &key)), reference);
        }
        let rrn = request.rrn.as_deref().unwrap_or_default();
        let (acquirer, terminal) = (&request.key.acquirer, &request.key.terminal);
        let rrn_key = self.state.digester.rrn(acquirer, terminal, rrn);
        let reference = format!("R:{acquirer}|{terminal}|{rrn}");
        (self.state.journal.key_of_rrn(&rrn_key), reference)
    }

    /// A reversal whose original the switch has not seen: remembered, so the original is
    /// declined 05 if it arrives later; 0400 answers 25, 0420 is acknowledged.
    fn remember_orphan(
        &mut self,
        request: &Request,
        key: Option<KeyDigest>,
        reference: String,
        now: TimestampMs,
    ) -> Outcome {
        match (key, request.original.as_ref()) {
            (Some(k), Some(_)) => {
                self.state.orphans.insert_key(k, now.0);
            }
            _ => {
                let rrn = request.rrn.as_deref().unwrap_or_default();
                let (acquirer, terminal) = (&request.key.acquirer, &request.key.terminal);
                let rrn_key = self.state.digester.rrn(acquirer, terminal, rrn);
                self.state.orphans.insert_rrn(rrn_key, now.0);
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
    fn undo(&mut self, request: &Request, key: &KeyDigest, now: TimestampMs) -> Outcome {
        let ack = Outcome {
            code: Some(ResponseCode::Approved),
            kind: "reversal",
            ..Outcome::default()
        };
        let Some(original) = self.state.journal.get(key) else {
            return ack;
        };
        if !original.code.is_approved() || original.reversed || original.legs.is_empty() {
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
        let legs = original.legs.reversed(reverse_minor);
        if self.would_overdraw(legs.as_slice()) {
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
        self.state.apply_legs(legs.as_slice());
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
            legs: if reverse_minor > 0 { legs } else { Legs::NONE },
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

    /// 0220/0221: with F90, the completion of a hold; without it, an advice from a
    /// terminal that approved offline (a bus validator), which must post.
    pub(super) fn advice(&mut self, request: &Request, now: TimestampMs) -> Outcome {
        match request.original.as_ref() {
            Some(_) => self.complete_hold(request),
            None => match self.forced_advice(request, now) {
                Ok(outcome) | Err(outcome) => outcome,
            },
        }
    }

    /// Posts up to the hold and releases the rest; the hold resolves once.
    fn complete_hold(&mut self, request: &Request) -> Outcome {
        let (key, reference) = self.original_of(request);
        let hold = key.as_ref().and_then(|k| self.state.holds.get(k)).cloned();
        let (Some(key), Some(hold)) = (key, hold) else {
            return Outcome {
                code: Some(ResponseCode::OriginalNotFound),
                kind: "completion",
                reference,
                ..Outcome::default()
            };
        };
        let exponent = self.exponent_of(&request.key.acquirer);
        let asked_minor = wire_to_minor(request.amount_wire, exponent).unwrap_or(i64::MAX);
        let posted_minor = asked_minor.clamp(0, hold.amount_minor);
        self.state.reduce_hold(&key, hold.amount_minor);
        let wallet = &self.state.wallets[hold.wallet as usize];
        let legs = Legs::two(
            (wallet.accounts[hold.purse.index()], -posted_minor),
            (hold.credit_account, posted_minor),
        );
        self.state.apply_legs(legs.as_slice());
        let available =
            self.state.wallets[hold.wallet as usize].available_minor()[hold.purse.index()];
        Outcome {
            code: Some(ResponseCode::Approved),
            kind: "completion",
            balances: vec![Balance {
                purse: hold.purse,
                amount_type: AmountType::Available,
                amount_minor: available,
            }],
            legs: if posted_minor > 0 { legs } else { Legs::NONE },
            card: hold.card,
            channel: hold.channel,
            purse: Some(hold.purse),
            amount_minor: posted_minor,
            reference,
            ..Outcome::default()
        }
    }

    /// A ride the validator approved offline: posted even when the purse is short (it
    /// may go below zero; the family's cards then go on the deny list).
    fn forced_advice(&mut self, request: &Request, now: TimestampMs) -> Result<Outcome, Outcome> {
        let AdviceTarget {
            card_idx,
            wallet_idx,
            channel_no,
            purse,
            credit_account,
            amount_minor,
        } = self.advice_target(request)?;
        let wallet = &self.state.wallets[wallet_idx as usize];
        let legs = Legs::two(
            (wallet.accounts[purse.index()], -amount_minor),
            (credit_account, amount_minor),
        );
        let was_minor = wallet.balance_minor[purse.index()];
        self.state.apply_legs(legs.as_slice());
        let card_events = self.deny_if_below_zero(wallet_idx, purse, was_minor);
        let day = self.policy.calendar.business_day(now);
        self.state.cards[card_idx as usize].count_use(day, channel_no, 1, amount_minor);
        let available = self.state.wallets[wallet_idx as usize].available_minor()[purse.index()];
        Ok(Outcome {
            code: Some(ResponseCode::Approved),
            kind: "advice",
            balances: vec![Balance {
                purse,
                amount_type: AmountType::Available,
                amount_minor: available,
            }],
            legs,
            card: Some(card_idx),
            channel: Some(channel_no),
            purse: Some(purse),
            amount_minor,
            reference: request
                .private
                .tap
                .as_ref()
                .map(|t| format!("TAP:{t}"))
                .unwrap_or_default(),
            counted: true,
            card_events,
            ..Outcome::default()
        })
    }

    /// Where an offline advice posts: the checks a validator's advice must still pass
    /// (acquirer, card, channel, purse), but no balance or limit check.
    fn advice_target(&self, request: &Request) -> Result<AdviceTarget, Outcome> {
        let declined = |code| Outcome::decline("advice", code);
        let acquirer = self
            .policy
            .acquirers
            .get(&request.key.acquirer)
            .ok_or(declined(ResponseCode::AcquirerNotAllowed))?;
        if request.txn_type != Some(TxnType::Purchase) {
            return Err(declined(ResponseCode::InvalidTransaction));
        }
        let amount_minor = wire_to_minor(request.amount_wire, acquirer.amount_exponent)
            .filter(|a| *a > 0)
            .ok_or(declined(ResponseCode::InvalidAmount))?;
        let card_idx = request
            .card_sha
            .and_then(|hash| self.state.card_by_key(&hash.0))
            .ok_or(declined(ResponseCode::UnknownCard))?;
        let wallet_idx = self.state.cards[card_idx as usize].wallet;
        let wallet = &self.state.wallets[wallet_idx as usize];
        let programme = &self.policy.programmes[wallet.programme as usize];
        let (channel_idx, channel) = request
            .mcc
            .and_then(|mcc| programme.channel_for_mcc(mcc))
            .ok_or(declined(ResponseCode::NotPermittedToTerminal))?;
        if !acquirer.channels.contains(&channel.name) {
            return Err(declined(ResponseCode::AcquirerNotAllowed));
        }
        if !channel.offline_advices {
            return Err(declined(ResponseCode::InvalidTransaction));
        }
        let order = crate::policy::purse_order(channel, TxnType::Purchase);
        let purse = match request.from_account {
            AccountChoice::Purse(p) if order.contains(&p) => p,
            AccountChoice::ChannelDefault => *order
                .first()
                .ok_or(declined(ResponseCode::NotPermittedToCard))?,
            _ => return Err(declined(ResponseCode::NotPermittedToCard)),
        };
        let credit_account = self
            .state
            .acquirer_accounts
            .get(&(wallet.programme, request.key.acquirer.clone()))
            .copied()
            .ok_or(declined(ResponseCode::AcquirerNotAllowed))?;
        Ok(AdviceTarget {
            card_idx,
            wallet_idx,
            channel_no: channel_idx as u16,
            purse,
            credit_account,
            amount_minor,
        })
    }

    /// Voids a hold, or with F95 keeps only the completed part of it open.
    fn reverse_hold(
        &mut self,
        request: &Request,
        key: &KeyDigest,
        reference: String,
        now: TimestampMs,
    ) -> Outcome {
        let exponent = self.exponent_of(&request.key.acquirer);
        let hold = self.state.holds.get(key).cloned();
        let Some(hold) = hold else {
            return Outcome {
                code: Some(ResponseCode::Approved),
                kind: "reversal",
                reference,
                ..Outcome::default()
            };
        };
        let completed_minor = request
            .replacement_amount_wire
            .and_then(|w| wire_to_minor(w, exponent))
            .unwrap_or(0)
            .clamp(0, hold.amount_minor);
        let released_minor = hold.amount_minor - completed_minor;
        self.state.reduce_hold(key, released_minor);
        if let (Some(card), Some(channel)) = (hold.card, hold.channel) {
            if hold.business_day == self.policy.calendar.business_day(now) {
                let count = if completed_minor == 0 { -1 } else { 0 };
                self.state.cards[card as usize].count_use(
                    hold.business_day,
                    channel,
                    count,
                    -released_minor,
                );
            }
        }
        if let Some(original) = self.state.journal.get_mut(key) {
            original.reversed = true;
        }
        Outcome {
            code: Some(ResponseCode::Approved),
            kind: "reversal",
            card: hold.card,
            channel: hold.channel,
            purse: Some(hold.purse),
            amount_minor: released_minor,
            reference,
            ..Outcome::default()
        }
    }

    /// Holds past their time to live resolve by themselves, each written as a ledger
    /// event so that a replay gives the same balances.
    pub fn expire_holds(&mut self, now: TimestampMs, batch: &mut Batch) {
        while let Some((expires_at_ms, key)) = self.state.hold_expiries.first().cloned() {
            if expires_at_ms > now.0 {
                break;
            }
            let Some(hold) = self.state.reduce_hold(&key, i64::MAX) else {
                self.state.hold_expiries.remove(&(expires_at_ms, key));
                continue;
            };
            let wallet = &self.state.wallets[hold.wallet as usize];
            let programme = &self.policy.programmes[wallet.programme as usize];
            let row = TransferRow {
                kind: "hold_expiry".into(),
                rc: ResponseCode::Approved.as_str().into(),
                family_id: wallet.family_id.to_string(),
                programme_id: programme.id.clone(),
                purse: hold.purse.name().into(),
                amount_minor: hold.amount_minor,
                reference: hold.reference.clone(),
                business_day: i64::from(self.policy.calendar.business_day(now)),
                at_ms: now.0,
                ..TransferRow::default()
            };
            batch.push(row, &[]);
        }
    }

    /// A purse below zero for the first time puts the family's cards on the validators'
    /// deny list, until a disbursement brings it back (import/disbursements.rs).
    fn deny_if_below_zero(
        &self,
        wallet_idx: u32,
        purse: Purse,
        was_minor: i64,
    ) -> Vec<(String, String)> {
        let wallet = &self.state.wallets[wallet_idx as usize];
        if was_minor < 0 || wallet.balance_minor[purse.index()] >= 0 {
            return Vec::new();
        }
        wallet
            .cards
            .iter()
            .map(|c| {
                (
                    self.state.cards[*c as usize].card_sha_hex(),
                    DENY_NEGATIVE.to_string(),
                )
            })
            .collect()
    }

    fn exponent_of(&self, acquirer: &str) -> u32 {
        self.policy
            .acquirers
            .get(acquirer)
            .map_or(0, |a| a.amount_exponent)
    }
}

/// What an offline advice posts to.
struct AdviceTarget {
    card_idx: u32,
    wallet_idx: u32,
    channel_no: u16,
    purse: Purse,
    credit_account: i64,
    amount_minor: i64,
}
