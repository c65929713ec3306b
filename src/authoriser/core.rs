//! The deterministic core: one request at a time against the in-memory state, the time
//! passed in. It decides, updates the state, and appends the ledger rows to the batch;
//! the task around it commits the batch before any response leaves.
//!
//! The steps of a request, in order (as jPOS participants): idempotency, routing by
//! message class, then acquirer, card, channel, card status, PIN, limits, funds, post.

// A decline travels as a whole `Outcome` through `?`: moving ~140 bytes once per
// request costs less than boxing it on the hot path.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::state::{Hold, KeyDigest, KeyGroup, Legs, State, TxnRecord};
use crate::domain::money::{wire_to_minor, Purse};
use crate::domain::request::{MessageClass, Request, RequestKey, TxnType};
use crate::domain::response::{AmountType, Balance, Response, ResponseCode};
use crate::domain::time::TimestampMs;
use crate::ledger::rows::set_text as set;
use crate::ledger::{Batch, TransferRow};
use crate::policy::{self, AcquirerRules, Policy};

/// What deciding one request produced, before it is written down.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    pub code: Option<ResponseCode>,
    pub kind: &'static str,
    pub balances: Vec<Balance>,
    pub legs: Legs,
    pub card: Option<u32>,
    pub channel: Option<u16>,
    pub purse: Option<Purse>,
    pub amount_minor: i64,
    pub reference: String,
    pub counted: bool,
    /// A PIN lock decided by this request, written with the batch.
    pub pin_locked: bool,
    /// Deny-list events decided by this request: (card SHA-256, event).
    pub card_events: Vec<(String, String)>,
}

impl Outcome {
    pub(super) fn decline(kind: &'static str, code: ResponseCode) -> Outcome {
        Outcome {
            code: Some(code),
            kind,
            ..Outcome::default()
        }
    }
}

pub struct Core {
    pub policy: Arc<Policy>,
    pub state: State,
}

impl Core {
    pub fn new(policy: Arc<Policy>, state: State) -> Core {
        Core { policy, state }
    }

    /// Decides `request` at `now`, appends its rows to `batch`, returns the answer that
    /// may leave once the batch is committed.
    pub fn handle(&mut self, request: &Request, now: TimestampMs, batch: &mut Batch) -> Response {
        let key = self
            .state
            .digester
            .key(KeyGroup::of(request.class), &request.key);
        if let Some(first) = self.state.journal.get(&key) {
            return replay_response(first, request);
        }
        let outcome = match request.class {
            MessageClass::Financial | MessageClass::Authorisation => self.authorise(request, now),
            MessageClass::ReversalRequest | MessageClass::ReversalAdvice => {
                self.reverse(request, now)
            }
            MessageClass::Advice => self.advice(request, now),
            MessageClass::NetworkManagement => {
                Outcome::decline("unsupported", ResponseCode::InvalidTransaction)
            }
        };
        self.record(key, request, outcome, now, batch)
    }

    fn authorise(&mut self, request: &Request, now: TimestampMs) -> Outcome {
        if self.is_orphaned(request) {
            // Its reversal came first: the original must not post (wire.md, Reversals).
            return Outcome::decline("declined", ResponseCode::DoNotHonour);
        }
        match self.debit_checks(request, now) {
            Ok(outcome) | Err(outcome) => outcome,
        }
    }

    /// The checks of a 0200 in order; `Err` carries a decline.
    fn debit_checks(&mut self, request: &Request, now: TimestampMs) -> Result<Outcome, Outcome> {
        let policy = Arc::clone(&self.policy);
        let acquirer = policy
            .acquirers
            .get(&request.key.acquirer)
            .ok_or(Outcome::decline(
                "declined",
                ResponseCode::AcquirerNotAllowed,
            ))?;
        let txn_type = request.txn_type.ok_or(Outcome::decline(
            "declined",
            ResponseCode::InvalidTransaction,
        ))?;
        let amount_minor = amount_of(request, acquirer, txn_type)?;
        let card_idx = request
            .card_sha
            .and_then(|hash| self.state.card_by_key(&hash.0))
            .ok_or(Outcome::decline("declined", ResponseCode::UnknownCard))?;
        let card = &self.state.cards[card_idx as usize];
        let wallet = &self.state.wallets[card.wallet as usize];
        let programme = &policy.programmes[wallet.programme as usize];
        let declined = |code| Outcome {
            card: Some(card_idx),
            ..Outcome::decline("declined", code)
        };
        let (channel_idx, channel) = request
            .mcc
            .and_then(|mcc| programme.channel_for_mcc(mcc))
            .ok_or_else(|| declined(ResponseCode::NotPermittedToTerminal))?;
        let channel_no = channel_idx as u16;
        let mut declined = |code| Outcome {
            card: Some(card_idx),
            channel: Some(channel_no),
            ..Outcome::decline("declined", code)
        };
        if !acquirer.channels.contains(&channel.name) {
            return Err(declined(ResponseCode::AcquirerNotAllowed));
        }
        if !channel.types.contains(&txn_type) {
            return Err(declined(ResponseCode::InvalidTransaction));
        }
        let now_yymm = policy.calendar.year_month(now);
        policy::check_card(card.view(), request.expiry, now_yymm).map_err(&mut declined)?;
        if channel.pin_required {
            self.check_pin(request, acquirer, card_idx)
                .map_err(|(code, locked)| Outcome {
                    pin_locked: locked,
                    ..declined(code)
                })?;
        }
        let ctx = DebitContext {
            card_idx,
            channel_idx: channel_no,
            txn_type,
            amount_minor,
            now,
        };
        match txn_type {
            TxnType::BalanceInquiry => Ok(self.balance_inquiry(&ctx)),
            TxnType::Refund if request.class == MessageClass::Authorisation => Err(
                Outcome::decline("declined", ResponseCode::InvalidTransaction),
            ),
            TxnType::Refund => self.refund(request, &ctx),
            TxnType::Purchase | TxnType::Withdrawal => self.debit(request, &ctx),
        }
    }

    /// `Err((code, locked_now))`.
    fn check_pin(
        &mut self,
        request: &Request,
        acquirer: &AcquirerRules,
        card_idx: u32,
    ) -> Result<(), (ResponseCode, bool)> {
        let tries_max = self.policy.pin_tries_max;
        let card = &self.state.cards[card_idx as usize];
        if card.pin_locked {
            return Err((ResponseCode::PinTriesExceeded, false));
        }
        let (Some(block), Some(pan)) = (request.pin_block.as_ref(), request.pan.as_ref()) else {
            return Err((ResponseCode::WrongPin, false));
        };
        let right = policy::pin_is_right(
            &self.policy,
            acquirer,
            pan.digits(),
            &block.0,
            card.pin_offset.as_str(),
        );
        let card = &mut self.state.cards[card_idx as usize];
        if right {
            card.pin_fails = 0;
            return Ok(());
        }
        card.pin_fails = card.pin_fails.saturating_add(1);
        if card.pin_fails >= tries_max {
            card.pin_locked = true;
            return Err((ResponseCode::PinTriesExceeded, true));
        }
        Err((ResponseCode::WrongPin, false))
    }

    fn balance_inquiry(&self, ctx: &DebitContext) -> Outcome {
        let wallet = &self.state.wallets[self.state.cards[ctx.card_idx as usize].wallet as usize];
        let available = wallet.available_minor();
        let balances = Purse::ALL
            .iter()
            .map(|p| Balance {
                purse: *p,
                amount_type: AmountType::Available,
                amount_minor: available[p.index()],
            })
            .collect();
        Outcome {
            code: Some(ResponseCode::Approved),
            kind: "inquiry",
            balances,
            card: Some(ctx.card_idx),
            channel: Some(ctx.channel_idx),
            ..Outcome::default()
        }
    }

    /// A purchase or withdrawal (0200), or the hold of one (0100).
    fn debit(&mut self, request: &Request, ctx: &DebitContext) -> Result<Outcome, Outcome> {
        let (purse, credit_account, day) = self.debit_rules(request, ctx)?;
        let wallet_idx = self.state.cards[ctx.card_idx as usize].wallet;
        let (kind, legs, reference) = if request.class == MessageClass::Authorisation {
            let reference = self.place_hold(request, ctx, purse, credit_account, day);
            ("hold", Legs::NONE, reference)
        } else {
            let purse_account = self.state.wallets[wallet_idx as usize].accounts[purse.index()];
            let legs = Legs::two(
                (purse_account, -ctx.amount_minor),
                (credit_account, ctx.amount_minor),
            );
            self.state.apply_legs(legs.as_slice());
            let kind = match ctx.txn_type {
                TxnType::Withdrawal => "withdrawal",
                _ => "purchase",
            };
            (kind, legs, String::new())
        };
        let card = &mut self.state.cards[ctx.card_idx as usize];
        card.count_use(day, ctx.channel_idx, 1, ctx.amount_minor);
        let available = self.state.wallets[wallet_idx as usize].available_minor()[purse.index()];
        Ok(Outcome {
            code: Some(ResponseCode::Approved),
            kind,
            balances: vec![Balance {
                purse,
                amount_type: AmountType::Available,
                amount_minor: available,
            }],
            legs,
            reference,
            card: Some(ctx.card_idx),
            channel: Some(ctx.channel_idx),
            purse: Some(purse),
            amount_minor: ctx.amount_minor,
            counted: true,
            ..Outcome::default()
        })
    }

    /// The channel's rules for a debit, in order: service code, where the money goes,
    /// amount, daily use, then the purse that pays. `Ok((purse, credit account, day))`.
    fn debit_rules(
        &self,
        request: &Request,
        ctx: &DebitContext,
    ) -> Result<(Purse, i64, u32), Outcome> {
        let card = &self.state.cards[ctx.card_idx as usize];
        let wallet = &self.state.wallets[card.wallet as usize];
        let channel =
            &self.policy.programmes[wallet.programme as usize].channels[ctx.channel_idx as usize];
        let declined = |code| Outcome {
            card: Some(ctx.card_idx),
            channel: Some(ctx.channel_idx),
            amount_minor: ctx.amount_minor,
            ..Outcome::decline("declined", code)
        };
        if channel.service_required && request.private.service.is_none() {
            return Err(declined(ResponseCode::InvalidTransaction));
        }
        let credit_account = self
            .credit_account(request, wallet.programme, channel)
            .map_err(declined)?;
        policy::check_amount(channel, ctx.amount_minor).map_err(declined)?;
        let day = self.policy.calendar.business_day(ctx.now);
        let used = card.daily_use(day, ctx.channel_idx);
        policy::check_daily(channel, used, ctx.amount_minor).map_err(declined)?;
        let order = policy::purse_order(channel, ctx.txn_type);
        let available = wallet.available_minor();
        let purse = policy::choose_purse(order, request.from_account, &available, ctx.amount_minor)
            .map_err(declined)?;
        Ok((purse, credit_account, day))
    }

    /// 0100: reserves the amount, posts nothing; a completion, reversal or expiry
    /// resolves it. Returns the reference written on the hold's row.
    fn place_hold(
        &mut self,
        request: &Request,
        ctx: &DebitContext,
        purse: Purse,
        credit_account: i64,
        day: u32,
    ) -> String {
        let wallet = self.state.cards[ctx.card_idx as usize].wallet;
        let programme = self.state.wallets[wallet as usize].programme;
        let ttl_ms = self.policy.programmes[programme as usize].hold_ttl_ms;
        let hold = Hold {
            wallet,
            purse,
            amount_minor: ctx.amount_minor,
            credit_account,
            expires_at_ms: ctx.now.0.saturating_add(ttl_ms),
            card: Some(ctx.card_idx),
            channel: Some(ctx.channel_idx),
            business_day: day,
            reference: key_reference("0100", &request.key),
        };
        let reference = hold_reference(&hold);
        let key = self
            .state
            .digester
            .key(KeyGroup::Authorisation, &request.key);
        self.state.place_hold(key, hold);
        reference
    }

    /// Where a debit's money goes: the acquirer's settlement account, or the provider
    /// named in F42, which must be registered for this channel (else 58).
    fn credit_account(
        &self,
        request: &Request,
        programme: u16,
        channel: &crate::config::ChannelRules,
    ) -> Result<i64, ResponseCode> {
        match channel.credit {
            crate::config::CreditTarget::Acquirer => self
                .state
                .acquirer_accounts
                .get(&(programme, request.key.acquirer.clone()))
                .copied()
                .ok_or(ResponseCode::AcquirerNotAllowed),
            crate::config::CreditTarget::Provider => {
                let provider = request.acceptor_id.as_deref().unwrap_or("");
                let registered = self
                    .state
                    .providers
                    .get(provider)
                    .is_some_and(|c| *c == channel.name);
                let account = self
                    .state
                    .provider_accounts
                    .get(&(programme, provider.to_string()));
                match (registered, account) {
                    (true, Some(account)) => Ok(*account),
                    _ => Err(ResponseCode::NotPermittedToTerminal),
                }
            }
        }
    }

    fn refund(&mut self, request: &Request, ctx: &DebitContext) -> Result<Outcome, Outcome> {
        let policy = Arc::clone(&self.policy);
        let wallet_idx = self.state.cards[ctx.card_idx as usize].wallet;
        let wallet = &self.state.wallets[wallet_idx as usize];
        let channel =
            &policy.programmes[wallet.programme as usize].channels[ctx.channel_idx as usize];
        let declined = |code| Outcome {
            card: Some(ctx.card_idx),
            channel: Some(ctx.channel_idx),
            amount_minor: ctx.amount_minor,
            ..Outcome::decline("declined", code)
        };
        let acquirer_account = self
            .state
            .acquirer_accounts
            .get(&(wallet.programme, request.key.acquirer.clone()))
            .copied()
            .ok_or(declined(ResponseCode::AcquirerNotAllowed))?;
        let mut refundable = [0i64; Purse::COUNT];
        for purse in Purse::ALL {
            let pair = (wallet.accounts[purse.index()], acquirer_account);
            refundable[purse.index()] = self.state.refundable.get(&pair).copied().unwrap_or(0);
        }
        let order = policy::purse_order(channel, TxnType::Refund);
        let purse = policy::choose_refund_purse(
            order,
            request.to_account,
            request.from_account,
            &refundable,
            ctx.amount_minor,
        )
        .map_err(declined)?;
        let legs = Legs::two(
            (acquirer_account, -ctx.amount_minor),
            (wallet.accounts[purse.index()], ctx.amount_minor),
        );
        self.state.apply_legs(legs.as_slice());
        let available = self.state.wallets[wallet_idx as usize].available_minor()[purse.index()];
        Ok(Outcome {
            code: Some(ResponseCode::Approved),
            kind: "refund",
            balances: vec![Balance {
                purse,
                amount_type: AmountType::Available,
                amount_minor: available,
            }],
            legs,
            card: Some(ctx.card_idx),
            channel: Some(ctx.channel_idx),
            purse: Some(purse),
            amount_minor: ctx.amount_minor,
            ..Outcome::default()
        })
    }

    fn is_orphaned(&self, request: &Request) -> bool {
        if self.state.orphans.is_empty() {
            return false; // the common case: no digest to compute
        }
        let key = self
            .state
            .digester
            .key(KeyGroup::of(request.class), &request.key);
        self.state.orphans.contains_key(&key)
            || request.rrn.as_ref().is_some_and(|rrn| {
                let rrn_key =
                    self.state
                        .digester
                        .rrn(&request.key.acquirer, &request.key.terminal, rrn);
                self.state.orphans.contains_rrn(&rrn_key)
            })
    }

    /// Writes the decision down: the transfer row, its legs, and the memory used for
    /// retries and reversals. Returns the response to send after the commit.
    fn record(
        &mut self,
        key: KeyDigest,
        request: &Request,
        mut outcome: Outcome,
        now: TimestampMs,
        batch: &mut Batch,
    ) -> Response {
        let code = outcome.code.unwrap_or(ResponseCode::SystemMalfunction);
        let approval = code.is_approved().then(|| approval_code(&request.key, now));
        let response = Response {
            code,
            approval_code: approval.map(|a| String::from_utf8_lossy(&a).into_owned()),
            balances: std::mem::take(&mut outcome.balances),
        };
        let business_day = self.policy.calendar.business_day(now);
        batch.push_reusing(outcome.legs.as_slice(), |row| {
            self.fill_transfer_row(row, request, &outcome, &response, business_day, now)
        });
        if outcome.pin_locked {
            // The card's hash as the row just written holds it.
            let card_sha = batch.transfers.last().map(|row| row.card_sha.clone());
            batch
                .card_events
                .push((card_sha.unwrap_or_default(), "pin_locked".to_string()));
        }
        batch.card_events.extend(outcome.card_events);
        let rrn = request.rrn.as_ref().map(|rrn| {
            self.state
                .digester
                .rrn(&request.key.acquirer, &request.key.terminal, rrn)
        });
        let record = TxnRecord {
            key,
            rrn,
            content: TxnRecord::content_of(&request.content_sha),
            code,
            approval_code: approval,
            balances: response.balances.clone().into_boxed_slice(),
            card: outcome.card,
            channel: outcome.channel,
            business_day,
            amount_minor: outcome.amount_minor,
            legs: outcome.legs,
            reversed: false,
            counted: outcome.counted,
            at_ms: now.0,
        };
        self.state.journal.remember(record);
        response
    }

    /// The ledger row of a decision, written into `row` (a spare row of the batch: its
    /// strings' buffers are reused): the request's key, what was decided and for whom.
    fn fill_transfer_row(
        &self,
        row: &mut TransferRow,
        request: &Request,
        outcome: &Outcome,
        response: &Response,
        business_day: u32,
        now: TimestampMs,
    ) {
        let card = outcome.card.map(|c| &self.state.cards[c as usize]);
        let wallet = card.map(|c| &self.state.wallets[c.wallet as usize]);
        let programme = wallet.map(|w| &self.policy.programmes[w.programme as usize]);
        let channel_name = programme
            .zip(outcome.channel)
            .map(|(p, c)| p.channels[c as usize].name.as_str());
        // Every field named, none left with an earlier row's value: a field added to
        // the row does not compile here until it is set.
        let TransferRow {
            batch_seq,
            idx,
            kind,
            mti,
            rc,
            approval,
            acquirer,
            terminal,
            stan,
            transmitted,
            rrn,
            content_sha,
            card_sha,
            family_id,
            programme_id,
            channel,
            purse,
            amount_minor,
            acceptor,
            reference,
            business_day: day,
            at_ms,
            balances,
        } = row;
        *batch_seq = 0;
        *idx = 0;
        set(kind, outcome.kind);
        set(mti, &request.mti);
        set(rc, response.code.as_str());
        set(approval, response.approval_code.as_deref().unwrap_or(""));
        set(acquirer, &request.key.acquirer);
        set(terminal, &request.key.terminal);
        set(stan, &request.key.stan);
        set(transmitted, &request.key.transmitted);
        set(rrn, request.rrn.as_deref().unwrap_or(""));
        set_hex(content_sha, Some(&request.content_sha));
        set_hex(card_sha, card.map(|c| &c.card_sha));
        set(family_id, wallet.map_or("", |w| &*w.family_id));
        set(programme_id, programme.map_or("", |p| p.id.as_str()));
        set(channel, channel_name.unwrap_or(""));
        set(purse, outcome.purse.map_or("", |p| p.name()));
        *amount_minor = outcome.amount_minor;
        set(acceptor, request.acceptor_id.as_deref().unwrap_or(""));
        set(reference, &outcome.reference);
        *day = i64::from(business_day);
        *at_ms = now.0;
        response.write_balances_text(balances);
    }
}

/// `field` = the lowercase hex of `bytes` (as `hex::encode`), or empty, in the buffer it
/// has.
fn set_hex(field: &mut String, bytes: Option<&[u8; 32]>) {
    field.clear();
    if let Some(bytes) = bytes {
        let mut text = [0u8; 64];
        if hex::encode_to_slice(bytes, &mut text).is_ok() {
            field.push_str(std::str::from_utf8(&text).unwrap_or_default());
        }
    }
}

/// What the steps after the checks need.
pub(super) struct DebitContext {
    pub card_idx: u32,
    pub channel_idx: u16,
    pub txn_type: TxnType,
    pub amount_minor: i64,
    pub now: TimestampMs,
}

/// F4 in minor units; currency must be IDR; a debit or refund must move money.
fn amount_of(
    request: &Request,
    acquirer: &AcquirerRules,
    txn_type: TxnType,
) -> Result<i64, Outcome> {
    let bad = || Outcome::decline("declined", ResponseCode::InvalidAmount);
    if request.currency.as_deref().is_some_and(|c| c != "360") {
        return Err(bad());
    }
    let minor = wire_to_minor(request.amount_wire, acquirer.amount_exponent).ok_or_else(bad)?;
    if txn_type != TxnType::BalanceInquiry && minor <= 0 {
        return Err(bad());
    }
    Ok(minor)
}

/// A retry: the same content gets the first answer again; other content gets 94.
fn replay_response(first: &TxnRecord, request: &Request) -> Response {
    if first.content != TxnRecord::content_of(&request.content_sha) {
        return Response::declined(ResponseCode::Duplicate);
    }
    let mut response = first.response();
    if request.class == MessageClass::ReversalAdvice
        && response.code == ResponseCode::OriginalNotFound
    {
        // An 0420 is always acknowledged, even when it repeats an 0400 answered 25.
        response.code = ResponseCode::Approved;
    }
    response
}

/// Six digits derived from the request key and the time: stable for the ledger,
/// distinct enough for a cashier to read back.
fn approval_code(key: &RequestKey, now: TimestampMs) -> [u8; 6] {
    let mut h = Sha256::new();
    for part in [&key.acquirer, &key.terminal, &key.stan, &key.transmitted] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    h.update(now.0.to_le_bytes());
    let digest = h.finalize();
    let mut n = u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]]) % 1_000_000;
    let mut code = [b'0'; 6];
    for digit in code.iter_mut().rev() {
        *digit = b'0' + (n % 10) as u8;
        n /= 10;
    }
    code
}

/// Written on a hold's row so start-up can rebuild it: `H:<credit account>:<expiry ms>`.
pub(super) fn hold_reference(hold: &Hold) -> String {
    format!("H:{}:{}", hold.credit_account, hold.expires_at_ms)
}

/// The reference a resolving row (completion, reversal, expiry) carries: the original's
/// MTI and key.
pub(super) fn key_reference(mti: &str, key: &RequestKey) -> String {
    format!(
        "K:{mti}:{}|{}|{}|{}",
        key.acquirer, key.terminal, key.stan, key.transmitted
    )
}
