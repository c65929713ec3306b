//! Policy: pure functions of (request, card, configuration, counters) that say which
//! channel, which purse, which limit and which response code. No I/O, no clock: the
//! authoriser passes everything in, so every rule is testable by table.

pub mod rules;

pub use rules::{AcquirerRules, Policy, ProgrammeRules};

use crate::config::ChannelRules;
use crate::domain::money::Purse;
use crate::domain::request::{AccountChoice, TxnType};
use crate::domain::response::ResponseCode;
use crate::security::pin::{decrypt_pin_block, ibm3624_verify};

/// A card's status (programme.md, "Families, members, cards").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardStatus {
    Active,
    Blocked,
    Lost,
    Stolen,
}

impl CardStatus {
    pub fn from_name(name: &str) -> Option<CardStatus> {
        match name {
            "active" => Some(CardStatus::Active),
            "blocked" => Some(CardStatus::Blocked),
            "lost" => Some(CardStatus::Lost),
            "stolen" => Some(CardStatus::Stolen),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CardStatus::Active => "active",
            CardStatus::Blocked => "blocked",
            CardStatus::Lost => "lost",
            CardStatus::Stolen => "stolen",
        }
    }
}

/// The card facts the checks need.
#[derive(Debug, Clone, Copy)]
pub struct CardView {
    pub status: CardStatus,
    /// YYMM.
    pub expiry: u16,
    pub pin_locked: bool,
}

/// Status, then expiry against the local YYMM and the expiry the terminal read.
pub fn check_card(
    card: CardView,
    sent_expiry: Option<u16>,
    now_yymm: u16,
) -> Result<(), ResponseCode> {
    match card.status {
        CardStatus::Active => {}
        CardStatus::Blocked => return Err(ResponseCode::CardBlocked),
        CardStatus::Lost => return Err(ResponseCode::LostCard),
        CardStatus::Stolen => return Err(ResponseCode::StolenCard),
    }
    if yymm_key(card.expiry) < yymm_key(now_yymm) {
        return Err(ResponseCode::ExpiredCard);
    }
    if sent_expiry.is_some_and(|sent| sent != card.expiry) {
        // The terminal read another expiry than was issued: not this card's data.
        return Err(ResponseCode::ExpiredCard);
    }
    Ok(())
}

/// YYMM compares as a number within one century; cards live a few years.
fn yymm_key(yymm: u16) -> u16 {
    yymm
}

/// The purses a channel lets this transaction type use, in order.
pub fn purse_order(channel: &ChannelRules, txn_type: TxnType) -> &[Purse] {
    channel
        .purses
        .iter()
        .find(|(t, _)| *t == txn_type)
        .map_or(&Purse::ALL[..], |(_, order)| order.as_slice())
}

/// Per-transaction limits: the multiple first (an ATM cannot dispense it at all), then
/// the maximum.
pub fn check_amount(channel: &ChannelRules, amount_minor: i64) -> Result<(), ResponseCode> {
    if amount_minor <= 0 {
        return Err(ResponseCode::InvalidAmount);
    }
    if let Some(multiple) = channel.amount_multiple_minor {
        if multiple > 0 && amount_minor % multiple != 0 {
            return Err(ResponseCode::InvalidAmount);
        }
    }
    if channel
        .amount_max_minor
        .is_some_and(|max| amount_minor > max)
    {
        return Err(ResponseCode::AmountLimit);
    }
    Ok(())
}

/// Today's use of a channel by one card.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DailyUse {
    pub count: u32,
    pub amount_minor: i64,
}

/// Daily count (withdrawals, rides) then daily amount, per card per business day.
pub fn check_daily(
    channel: &ChannelRules,
    used: DailyUse,
    amount_minor: i64,
) -> Result<(), ResponseCode> {
    if channel.daily_count_max.is_some_and(|max| used.count >= max) {
        return Err(ResponseCode::FrequencyLimit);
    }
    if channel
        .daily_amount_max_minor
        .is_some_and(|max| used.amount_minor.saturating_add(amount_minor) > max)
    {
        return Err(ResponseCode::AmountLimit);
    }
    Ok(())
}

/// The purse that pays: an explicit F3 purse the channel allows, or the first purse in
/// the channel's order whose available balance covers the whole amount.
pub fn choose_purse(
    order: &[Purse],
    choice: AccountChoice,
    available_minor: &[i64; Purse::COUNT],
    amount_minor: i64,
) -> Result<Purse, ResponseCode> {
    let candidates: &[Purse] = match choice {
        AccountChoice::Unknown => return Err(ResponseCode::NotPermittedToCard),
        AccountChoice::Purse(p) if !order.contains(&p) => {
            return Err(ResponseCode::NotPermittedToCard)
        }
        AccountChoice::Purse(ref p) => std::slice::from_ref(p),
        AccountChoice::ChannelDefault => order,
    };
    candidates
        .iter()
        .copied()
        .find(|p| available_minor[p.index()] >= amount_minor)
        .ok_or(ResponseCode::InsufficientFunds)
}

/// The purse a refund returns to: an explicit purse (to-account, then from-account) the
/// channel allows, or the first in order that paid this acquirer at least the amount.
pub fn choose_refund_purse(
    order: &[Purse],
    to: AccountChoice,
    from: AccountChoice,
    refundable_minor: &[i64; Purse::COUNT],
    amount_minor: i64,
) -> Result<Purse, ResponseCode> {
    let explicit = match (to, from) {
        (AccountChoice::Purse(p), _) | (AccountChoice::ChannelDefault, AccountChoice::Purse(p)) => {
            Some(p)
        }
        (AccountChoice::Unknown, _) | (_, AccountChoice::Unknown) => {
            return Err(ResponseCode::NotPermittedToCard)
        }
        _ => None,
    };
    let candidates: &[Purse] = match explicit {
        Some(ref p) if order.contains(p) => std::slice::from_ref(p),
        Some(_) => return Err(ResponseCode::NotPermittedToCard),
        None => order,
    };
    candidates
        .iter()
        .copied()
        .find(|p| refundable_minor[p.index()] >= amount_minor)
        .ok_or(ResponseCode::InvalidAmount)
}

/// The PIN step: decrypt F52 under the link's zone PIN key, then verify it against the
/// card's IBM 3624 offset under the issuer's key. Any failure (no key, bad block, wrong
/// key, wrong PIN) is a wrong PIN to the cardholder: the response never says which.
pub fn pin_is_right(
    policy: &Policy,
    acquirer: &AcquirerRules,
    pan: &str,
    block: &[u8; 8],
    offset: &str,
) -> bool {
    let Some(zpk) = acquirer.zone_pin_key.as_ref() else {
        return false;
    };
    let Ok(pin) = decrypt_pin_block(block, pan, zpk) else {
        return false;
    };
    ibm3624_verify(
        pan,
        &pin,
        offset,
        &policy.pin_verification_key,
        &policy.decimalisation,
    )
    .unwrap_or(false)
}

#[cfg(test)]
mod tests;
