//! Rebuilding the memory of recent decisions from the ledger: retries answered the same
//! way after a restart, reversals that find their originals, today's counters and PIN
//! tries. The live path and this one share `State` methods, so they cannot drift.

use super::core::key_reference;
use super::state::{Hold, KeyDigest, KeyGroup, Legs, State, TxnRecord};
use crate::domain::request::RequestKey;
use crate::domain::response::{Response, ResponseCode};
use crate::ledger::TransferRow;
use crate::policy::Policy;

/// Replays one decided message with its legs; start-up's readers call it for each
/// decision of the idempotency window, in ledger order.
pub(super) fn decision(
    state: &mut State,
    policy: &Policy,
    row: &TransferRow,
    legs: &[(i64, i64)],
    today: u32,
) {
    let Some(group) = group_of_mti(&row.mti) else {
        return; // disbursements and other movements have no request key
    };
    replay_row(state, policy, group, row, legs, today);
}

fn group_of_mti(mti: &str) -> Option<KeyGroup> {
    match mti.get(0..2)? {
        "04" => Some(KeyGroup::Reversal),
        _ => KeyGroup::of_mti(mti),
    }
}

fn replay_row(
    state: &mut State,
    policy: &Policy,
    group: KeyGroup,
    row: &TransferRow,
    legs: &[(i64, i64)],
    today: u32,
) {
    let key = state.digester.key(group, &key_of(row));
    let card = state.card_by_sha(&row.card_sha);
    let channel = card.and_then(|c| channel_index(state, policy, c, &row.channel));
    let code = ResponseCode::from_str_code(&row.rc).unwrap_or(ResponseCode::SystemMalfunction);
    let day = u32::try_from(row.business_day).unwrap_or(0);
    let counted = code.is_approved()
        && matches!(
            row.kind.as_str(),
            "purchase" | "withdrawal" | "hold" | "advice"
        );
    if let (Some(c), Some(ch), true) = (card, channel, counted && day == today) {
        state.cards[c as usize].count_use(day, ch, 1, row.amount_minor);
    }
    if let Some(c) = card {
        replay_pin(state, policy, c, channel, row, code);
    }
    if group == KeyGroup::Reversal {
        replay_reversal(state, row, !legs.is_empty(), today);
    }
    if state.journal.contains_key(&key) {
        return;
    }
    let mut content_sha = [0u8; 32];
    let _ = hex::decode_to_slice(&row.content_sha, &mut content_sha);
    let rrn =
        (!row.rrn.is_empty()).then(|| state.digester.rrn(&row.acquirer, &row.terminal, &row.rrn));
    let record = TxnRecord {
        key,
        rrn,
        content: TxnRecord::content_of(&content_sha),
        code,
        approval_code: TxnRecord::approval_of(&row.approval),
        balances: Response::parse_balances_text(&row.balances).into_boxed_slice(),
        card,
        channel,
        business_day: day,
        amount_minor: row.amount_minor,
        legs: Legs::from_slice(legs),
        reversed: false,
        counted,
        at_ms: row.at_ms,
    };
    state.journal.remember(record);
}

fn key_of(row: &TransferRow) -> RequestKey {
    RequestKey {
        acquirer: row.acquirer.clone(),
        terminal: row.terminal.clone(),
        stan: row.stan.clone(),
        transmitted: row.transmitted.clone(),
    }
}

fn channel_index(state: &State, policy: &Policy, card: u32, name: &str) -> Option<u16> {
    let wallet = &state.wallets[state.cards[card as usize].wallet as usize];
    let programme = &policy.programmes[wallet.programme as usize];
    programme
        .channels
        .iter()
        .position(|c| c.name == name)
        .map(|i| i as u16)
}

/// Consecutive wrong PINs since the last right one or the last unlock.
fn replay_pin(
    state: &mut State,
    policy: &Policy,
    card: u32,
    channel: Option<u16>,
    row: &TransferRow,
    code: ResponseCode,
) {
    let wallet = state.cards[card as usize].wallet;
    let programme = state.wallets[wallet as usize].programme as usize;
    let pin_channel = channel
        .and_then(|c| policy.programmes[programme].channels.get(c as usize))
        .is_some_and(|c| c.pin_required);
    let card = &mut state.cards[card as usize];
    if row.at_ms < card.pin_unlocked_at_ms {
        return;
    }
    match code {
        ResponseCode::WrongPin => card.pin_fails = card.pin_fails.saturating_add(1),
        ResponseCode::Approved if pin_channel && row.kind != "reversal" => card.pin_fails = 0,
        _ => {}
    }
}

/// Marks the original reversed, or remembers the reversal as an orphan.
fn replay_reversal(state: &mut State, row: &TransferRow, posted: bool, today: u32) {
    let Some(target) = parse_reference(state, &row.reference) else {
        return;
    };
    match target {
        Reference::Key(key) if state.journal.contains_key(&key) => {
            mark_reversed(state, &key, row, posted, today);
        }
        Reference::Key(key) => {
            state.orphans.insert_key(key, row.at_ms);
        }
        Reference::Rrn(rrn_key) => match state.journal.key_of_rrn(&rrn_key) {
            Some(key) => mark_reversed(state, &key, row, posted, today),
            None => {
                state.orphans.insert_rrn(rrn_key, row.at_ms);
            }
        },
    }
}

fn mark_reversed(state: &mut State, key: &KeyDigest, row: &TransferRow, posted: bool, today: u32) {
    let Some(original) = state.journal.get_mut(key) else {
        return;
    };
    if !original.code.is_approved() || original.reversed || row.rc != "00" {
        return;
    }
    original.reversed = true;
    let full = row.amount_minor == original.amount_minor;
    if let (true, true, Some(card), Some(channel)) = (
        // A hold posts nothing when reversed, yet its use is given back.
        (posted || original.legs.is_empty()) && original.counted,
        original.business_day == today,
        original.card,
        original.channel,
    ) {
        let count = if full { -1 } else { 0 };
        state.cards[card as usize].count_use(today, channel, count, -row.amount_minor);
    }
}

enum Reference {
    Key(KeyDigest),
    Rrn(KeyDigest),
}

fn parse_reference(state: &State, reference: &str) -> Option<Reference> {
    if let Some(rest) = reference.strip_prefix("K:") {
        let (mti, key) = rest.split_once(':')?;
        let mut parts = key.split('|');
        let key = RequestKey {
            acquirer: parts.next()?.to_string(),
            terminal: parts.next()?.to_string(),
            stan: parts.next()?.to_string(),
            transmitted: parts.next()?.to_string(),
        };
        let group = KeyGroup::of_mti(mti).unwrap_or(KeyGroup::Financial);
        return Some(Reference::Key(state.digester.key(group, &key)));
    }
    let rest = reference.strip_prefix("R:")?;
    let mut parts = rest.split('|');
    let (acquirer, terminal, rrn) = (parts.next()?, parts.next()?, parts.next()?);
    Some(Reference::Rrn(state.digester.rrn(acquirer, terminal, rrn)))
}

/// Open holds: every hold placed within the longest time to live, less what
/// completions, reversals and expiries took off it. Expired-but-unwritten holds stay
/// open here and are expired by the authoriser's next batch.
pub(super) fn holds(state: &mut State, policy: &Policy, rows: &[TransferRow]) {
    for row in rows {
        if row.kind == "hold" {
            if let Some(hold) = hold_of(state, policy, row) {
                let key = state.digester.key(KeyGroup::Authorisation, &key_of(row));
                state.place_hold(key, hold);
            }
            continue;
        }
        let Some(Reference::Key(key)) = parse_reference(state, &row.reference) else {
            continue;
        };
        let taken = match row.kind.as_str() {
            "reversal" => row.amount_minor,
            _ => i64::MAX, // a completion or an expiry resolves the whole hold
        };
        state.reduce_hold(&key, taken);
    }
}

fn hold_of(state: &State, policy: &Policy, row: &TransferRow) -> Option<Hold> {
    let mut parts = row.reference.strip_prefix("H:")?.split(':');
    let credit_account = parts.next()?.parse().ok()?;
    let expires_at_ms = parts.next()?.parse().ok()?;
    let card = state.card_by_sha(&row.card_sha);
    let wallet = card.map(|c| state.cards[c as usize].wallet)?;
    Some(Hold {
        wallet,
        purse: crate::domain::money::Purse::from_name(&row.purse)?,
        amount_minor: row.amount_minor,
        credit_account,
        expires_at_ms,
        card,
        channel: card.and_then(|c| channel_index(state, policy, c, &row.channel)),
        business_day: u32::try_from(row.business_day).unwrap_or(0),
        reference: key_reference("0100", &key_of(row)),
    })
}
