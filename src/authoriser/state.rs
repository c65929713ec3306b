//! Everything the single writer holds in memory: wallets, cards, settlement accounts,
//! recent decisions (idempotency and reversals) and the day's counters. Rebuilt from
//! the ledger at start-up and after a failed commit; never shared, so never locked.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

pub use super::journal::{Digester, Journal, KeyDigest, Legs, TxnRecord};
use crate::domain::money::Purse;
use crate::domain::request::MessageClass;
use crate::policy::{CardStatus, CardView, DailyUse};

/// Dense index of a family's wallet.
pub type WalletIdx = u32;
/// Dense index of a card.
pub type CardIdx = u32;

#[derive(Debug, Clone)]
pub struct Wallet {
    pub family_id: Arc<str>,
    pub programme: u16,
    pub accounts: [i64; Purse::COUNT],
    /// Ledger balance per purse, minor units.
    pub balance_minor: [i64; Purse::COUNT],
    /// Amount reserved by open holds per purse.
    pub held_minor: [i64; Purse::COUNT],
    /// The family's cards, for deny-list events.
    pub cards: Vec<CardIdx>,
}

impl Wallet {
    pub fn available_minor(&self) -> [i64; Purse::COUNT] {
        let mut out = [0; Purse::COUNT];
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = self.balance_minor[i] - self.held_minor[i];
        }
        out
    }
}

#[derive(Clone)]
pub struct Card {
    pub wallet: WalletIdx,
    /// SHA-256 of the PAN, 32 bytes (not its 64-character hex: 2 M cards at scale).
    pub card_sha: CardKey,
    pub expiry: u16,
    pub status: CardStatus,
    pub pin_offset: PinOffset,
    pub pin_fails: u8,
    pub pin_locked: bool,
    /// When an operator last unlocked the PIN: wrong tries before it no longer count.
    pub pin_unlocked_at_ms: i64,
    /// (business day YYYYMMDD, channel index) -> use; only today's entries are kept.
    pub daily: Vec<(u32, u16, DailyUse)>,
}

impl std::fmt::Debug for Card {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Card")
            .field("wallet", &self.wallet)
            .field("status", &self.status)
            .field("pin_locked", &self.pin_locked)
            .finish_non_exhaustive()
    }
}

/// A card's key: the SHA-256 of its PAN.
pub type CardKey = [u8; 32];

/// The binary key of a hex SHA-256; `None` for anything else.
pub fn card_key(hex_sha: &str) -> Option<CardKey> {
    let mut key = [0u8; 32];
    hex::decode_to_slice(hex_sha, &mut key).ok()?;
    Some(key)
}

/// An IBM 3624 PIN offset (4 to 12 digits) kept inline: no heap allocation per card.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct PinOffset {
    digits: [u8; 12],
    len: u8,
}

impl PinOffset {
    /// `None` unless 1 to 12 decimal digits.
    pub fn parse(text: &str) -> Option<PinOffset> {
        let ok = (1..=12).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit());
        if !ok {
            return None;
        }
        let mut digits = [0u8; 12];
        digits[..text.len()].copy_from_slice(text.as_bytes());
        Some(PinOffset {
            digits,
            len: text.len() as u8,
        })
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.digits[..usize::from(self.len)]).unwrap_or("")
    }
}

impl Card {
    /// The key as the ledger writes it: lower-case hex.
    pub fn card_sha_hex(&self) -> String {
        hex::encode(self.card_sha)
    }

    pub fn view(&self) -> CardView {
        CardView {
            status: self.status,
            expiry: self.expiry,
            pin_locked: self.pin_locked,
        }
    }

    pub fn daily_use(&self, day: u32, channel: u16) -> DailyUse {
        self.daily
            .iter()
            .find(|(d, c, _)| *d == day && *c == channel)
            .map(|(_, _, u)| *u)
            .unwrap_or_default()
    }

    /// Adds (or, for a reversal, removes) use of a channel on a business day.
    pub fn count_use(&mut self, day: u32, channel: u16, count_delta: i64, amount_delta_minor: i64) {
        self.daily.retain(|(d, _, _)| *d >= day);
        let slot = match self
            .daily
            .iter_mut()
            .find(|(d, c, _)| *d == day && *c == channel)
        {
            Some((_, _, used)) => used,
            None => {
                self.daily.push((day, channel, DailyUse::default()));
                match self.daily.last_mut() {
                    Some((_, _, used)) => used,
                    None => return,
                }
            }
        };
        slot.count = u32::try_from((i64::from(slot.count) + count_delta).max(0)).unwrap_or(0);
        slot.amount_minor = (slot.amount_minor + amount_delta_minor).max(0);
    }
}

/// Which family of messages a key belongs to: a 0200 and its 0420 may share F11 and F7
/// on some networks, and must not collide as "same key, different content".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyGroup {
    Authorisation,
    Financial,
    Advice,
    Reversal,
}

impl KeyGroup {
    pub fn of(class: MessageClass) -> KeyGroup {
        match class {
            MessageClass::Authorisation => KeyGroup::Authorisation,
            MessageClass::Financial | MessageClass::NetworkManagement => KeyGroup::Financial,
            MessageClass::Advice => KeyGroup::Advice,
            MessageClass::ReversalRequest | MessageClass::ReversalAdvice => KeyGroup::Reversal,
        }
    }

    /// The group of an original named by the MTI in F90.
    pub fn of_mti(mti: &str) -> Option<KeyGroup> {
        match mti.get(0..2)? {
            "01" => Some(KeyGroup::Authorisation),
            "02" if mti.get(2..3) == Some("0") => Some(KeyGroup::Financial),
            "02" => Some(KeyGroup::Advice),
            _ => None,
        }
    }
}

/// An open hold (0100): reserves `amount_minor` of a purse until it is completed,
/// reversed or expires; each hold resolves exactly once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub wallet: WalletIdx,
    pub purse: Purse,
    pub amount_minor: i64,
    /// Where the completion's money goes (acquirer or provider account).
    pub credit_account: i64,
    pub expires_at_ms: i64,
    pub card: Option<CardIdx>,
    pub channel: Option<u16>,
    pub business_day: u32,
    /// The hold's original as its resolving rows name it (`core::key_reference`).
    pub reference: String,
}

/// The rest of the state: settlement accounts, providers, memory of recent decisions.
#[derive(Debug, Default)]
pub struct State {
    pub wallets: Vec<Wallet>,
    pub wallet_index: HashMap<Arc<str>, WalletIdx>,
    pub cards: Vec<Card>,
    pub card_index: HashMap<CardKey, CardIdx>,
    /// Per programme: the funding account.
    pub funding_accounts: Vec<i64>,
    /// (programme, acquirer id) -> settlement account.
    pub acquirer_accounts: HashMap<(u16, String), i64>,
    /// (programme, provider id) -> account.
    pub provider_accounts: HashMap<(u16, String), i64>,
    /// Provider id -> the channel it is registered for.
    pub providers: HashMap<String, String>,
    /// (purse account, acquirer account) -> net paid, the ceiling for refunds.
    pub refundable: HashMap<(i64, i64), i64>,
    /// Purse account -> (wallet, purse), to apply entries written by others.
    pub purse_accounts: HashMap<i64, (WalletIdx, Purse)>,
    /// Recent decisions, by key digest and by RRN digest.
    pub journal: Journal,
    /// Makes the digests the journal, holds and orphans are keyed by.
    pub digester: Digester,
    /// Originals whose reversal came first: they are declined 05 when they arrive.
    pub orphan_keys: HashSet<KeyDigest>,
    pub orphan_rrns: HashSet<KeyDigest>,
    pub holds: HashMap<KeyDigest, Hold>,
    /// Open holds by expiry, the earliest first.
    pub hold_expiries: BTreeSet<(i64, KeyDigest)>,
    pub cursor: SyncCursor,
}

/// How far the state has read each table that others write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncCursor {
    pub family_seq: i64,
    pub card_seq: i64,
    pub card_event_seq: i64,
    pub provider_seq: i64,
    pub batch_seq: i64,
}

impl State {
    /// Posts legs to the in-memory balances, and keeps the refund ceiling: money that
    /// moved from a purse to an acquirer may come back by refund, and no more.
    pub fn apply_legs(&mut self, legs: &[(i64, i64)]) {
        for (account, amount) in legs {
            if let Some((wallet, purse)) = self.purse_accounts.get(account).copied() {
                if let Some(w) = self.wallets.get_mut(wallet as usize) {
                    w.balance_minor[purse.index()] += amount;
                }
            }
        }
        if let [(a, amount_a), (b, _)] = legs {
            let pair = if self.purse_accounts.contains_key(a) {
                (*a, *b)
            } else {
                (*b, *a)
            };
            if self.purse_accounts.contains_key(&pair.0) && self.is_acquirer_account(pair.1) {
                let to_acquirer = if pair.0 == *a { -amount_a } else { *amount_a };
                *self.refundable.entry(pair).or_insert(0) += to_acquirer;
            }
        }
    }

    fn is_acquirer_account(&self, account: i64) -> bool {
        self.acquirer_accounts.values().any(|a| *a == account)
    }

    /// Reserves the hold's amount: the available balance drops, the ledger one does not.
    pub fn place_hold(&mut self, key: KeyDigest, hold: Hold) {
        if let Some(w) = self.wallets.get_mut(hold.wallet as usize) {
            w.held_minor[hold.purse.index()] += hold.amount_minor;
        }
        self.hold_expiries.insert((hold.expires_at_ms, key));
        self.holds.insert(key, hold);
    }

    /// Takes `amount_minor` off an open hold (all of it when it is the whole hold);
    /// returns the hold as it was. A hold reduced to zero is gone.
    pub fn reduce_hold(&mut self, key: &KeyDigest, amount_minor: i64) -> Option<Hold> {
        let hold = self.holds.get(key)?.clone();
        let taken = amount_minor.clamp(0, hold.amount_minor);
        if let Some(w) = self.wallets.get_mut(hold.wallet as usize) {
            w.held_minor[hold.purse.index()] -= taken;
        }
        if taken == hold.amount_minor {
            self.holds.remove(key);
            self.hold_expiries.remove(&(hold.expires_at_ms, *key));
        } else if let Some(open) = self.holds.get_mut(key) {
            open.amount_minor -= taken;
        }
        Some(hold)
    }

    /// The card whose PAN hashes to `card_sha` (lower-case hex, as stored).
    pub fn card_by_sha(&self, card_sha: &str) -> Option<CardIdx> {
        self.card_index.get(&card_key(card_sha)?).copied()
    }
}
