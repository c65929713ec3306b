//! Everything the single writer holds in memory: wallets, cards, settlement accounts,
//! recent decisions (idempotency and reversals) and the day's counters. Rebuilt from
//! the ledger at start-up and after a failed commit; never shared, so never locked.

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use hashbrown::HashTable;

pub use super::journal::{Digester, Journal, KeyDigest, Legs, TxnRecord};
pub use super::orphans::Orphans;
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

/// An IBM 3624 PIN offset (1 to 12 digits; the importer accepts 4 to 12) kept inline: no heap allocation per card.
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
    /// Family id -> wallet. Holds indices only, hashed by the wallet's own family id, so
    /// the key is not stored twice (`push_wallet`, `wallet_by_family`).
    pub(super) wallet_index: HashTable<WalletIdx>,
    pub(super) family_hasher: RandomState,
    pub cards: Vec<Card>,
    /// Card key -> card. Indices only (5 bytes a bucket instead of 37 with the key),
    /// hashed by the card's own key (`push_card`, `card_by_key`).
    pub(super) card_index: HashTable<CardIdx>,
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
    pub purse_accounts: PurseAccounts,
    /// Recent decisions, by key digest and by RRN digest.
    pub journal: Journal,
    /// Makes the digests the journal, holds and orphans are keyed by.
    pub digester: Digester,
    /// Originals whose reversal came first: they are declined 05 when they arrive.
    pub orphans: Orphans,
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
        self.card_by_key(&card_key(card_sha)?)
    }

    pub fn card_by_key(&self, key: &CardKey) -> Option<CardIdx> {
        let cards = &self.cards;
        self.card_index
            .find(card_hash(key), |&c| cards[c as usize].card_sha == *key)
            .copied()
    }

    /// Adds a card and indexes it by its key; returns its index. The caller has checked
    /// that the key is new, and adds the card to its wallet's list.
    pub fn push_card(&mut self, card: Card) -> CardIdx {
        let idx = self.cards.len() as CardIdx;
        let hash = card_hash(&card.card_sha);
        self.cards.push(card);
        let cards = &self.cards;
        self.card_index
            .insert_unique(hash, idx, |&c| card_hash(&cards[c as usize].card_sha));
        idx
    }

    pub fn wallet_by_family(&self, family_id: &str) -> Option<WalletIdx> {
        let wallets = &self.wallets;
        self.wallet_index
            .find(self.family_hasher.hash_one(family_id), |&w| {
                &*wallets[w as usize].family_id == family_id
            })
            .copied()
    }

    /// Adds a wallet and indexes it by its family id; returns its index. The caller has
    /// checked that the family is new.
    pub fn push_wallet(&mut self, wallet: Wallet) -> WalletIdx {
        let idx = self.wallets.len() as WalletIdx;
        let hash = self.family_hasher.hash_one(&*wallet.family_id);
        self.wallets.push(wallet);
        let (wallets, hasher) = (&self.wallets, &self.family_hasher);
        self.wallet_index.insert_unique(hash, idx, |&w| {
            hasher.hash_one(&*wallets[w as usize].family_id)
        });
        idx
    }

    /// Room for this many more families and cards and purse accounts up to this id, so
    /// that loading a million families never doubles a table (and never holds the old
    /// and the new one at once). With an eighth more beside: else the first family the
    /// sync adds after start-up would copy the whole table inside the single writer.
    pub fn reserve(&mut self, families: usize, cards: usize, account_id_max: i64) {
        let (families, cards) = (with_headroom(families), with_headroom(cards));
        self.wallets.reserve_exact(families);
        let (wallets, hasher) = (&self.wallets, &self.family_hasher);
        self.wallet_index.reserve(families, |&w| {
            hasher.hash_one(&*wallets[w as usize].family_id)
        });
        self.cards.reserve_exact(cards);
        let all_cards = &self.cards;
        self.card_index
            .reserve(cards, |&c| card_hash(&all_cards[c as usize].card_sha));
        self.purse_accounts
            .reserve_ids(account_id_max, families * Purse::COUNT);
    }
}

/// An eighth more, and at least a thousand: the families and cards added while the switch
/// runs, between two starts.
fn with_headroom(n: usize) -> usize {
    n.saturating_add(n / 8).saturating_add(1_024)
}

/// A card key is a SHA-256: its first eight bytes are already a uniform hash.
fn card_hash(key: &CardKey) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&key[..8]);
    u64::from_le_bytes(first)
}

/// Purse account -> (wallet, purse). Account ids are handed out in sequence from 1, so a
/// table indexed by the id (8 bytes a slot) replaces a hash map of five million entries
/// (17 bytes a bucket, up to twice as many buckets as entries). An id far beyond the
/// table (a database whose sequence jumped) goes to a map instead, so the table stays
/// within about two slots per purse account.
#[derive(Debug, Default)]
pub struct PurseAccounts {
    slots: Vec<Option<(WalletIdx, Purse)>>,
    far: HashMap<i64, (WalletIdx, Purse)>,
    in_slots: usize,
}

const _: () = assert!(std::mem::size_of::<Option<(WalletIdx, Purse)>>() == 8);

impl PurseAccounts {
    /// Ids the table may cover beyond two per purse account.
    const SLOTS_SLACK: usize = 1 << 20;

    fn may_cover(&self, id: usize, purse_accounts: usize) -> bool {
        id <= 2 * purse_accounts.max(self.in_slots) + Self::SLOTS_SLACK
    }

    /// Sizes the table for ids up to `account_id_max` at once, if that many slots are
    /// within bounds for `purse_accounts` purse accounts.
    pub fn reserve_ids(&mut self, account_id_max: i64, purse_accounts: usize) {
        let Ok(id) = usize::try_from(account_id_max) else {
            return;
        };
        if id >= self.slots.len() && self.may_cover(id, purse_accounts) {
            self.slots.reserve_exact(id + 1 - self.slots.len());
        }
    }

    pub fn insert(&mut self, account: i64, value: (WalletIdx, Purse)) {
        match usize::try_from(account) {
            Ok(id) if id < self.slots.len() || self.may_cover(id, 0) => {
                if id >= self.slots.len() {
                    self.slots.resize(id + 1, None);
                }
                if self.slots[id].replace(value).is_none() {
                    self.in_slots += 1;
                }
            }
            _ => {
                self.far.insert(account, value);
            }
        }
    }

    pub fn get(&self, account: &i64) -> Option<&(WalletIdx, Purse)> {
        let slot = usize::try_from(*account)
            .ok()
            .and_then(|id| self.slots.get(id))
            .and_then(Option::as_ref);
        match slot {
            Some(value) => Some(value),
            None if self.far.is_empty() => None,
            None => self.far.get(account),
        }
    }

    pub fn contains_key(&self, account: &i64) -> bool {
        self.get(account).is_some()
    }
}

#[cfg(test)]
mod purse_account_tests {
    use super::*;

    #[test]
    fn purse_accounts_find_dense_far_and_negative_ids() {
        let mut accounts = PurseAccounts::default();
        accounts.reserve_ids(10, 10);
        accounts.insert(1, (0, Purse::Cash));
        accounts.insert(7, (1, Purse::Food));
        // Far beyond two slots a purse account: kept in the map, not a huge table.
        accounts.insert(1 << 40, (2, Purse::Health));
        accounts.insert(-3, (3, Purse::Education));
        assert_eq!(accounts.get(&1), Some(&(0, Purse::Cash)));
        assert_eq!(accounts.get(&7), Some(&(1, Purse::Food)));
        assert_eq!(accounts.get(&(1 << 40)), Some(&(2, Purse::Health)));
        assert_eq!(accounts.get(&-3), Some(&(3, Purse::Education)));
        assert!(accounts.slots.len() < 1 << 21);
        assert!(!accounts.contains_key(&2));
        assert!(!accounts.contains_key(&(1 << 30)));
    }

    #[test]
    fn indexes_find_every_wallet_and_card_past_their_reserved_size() {
        let mut state = State::default();
        state.reserve(2, 2, 10);
        for f in 0..100u32 {
            let wallet = state.push_wallet(Wallet {
                family_id: Arc::from(format!("3601{f:012}").as_str()),
                programme: 0,
                accounts: [0; Purse::COUNT],
                balance_minor: [0; Purse::COUNT],
                held_minor: [0; Purse::COUNT],
                cards: Vec::new(),
            });
            let mut card_sha = [0u8; 32];
            card_sha[..4].copy_from_slice(&f.to_be_bytes());
            state.push_card(Card {
                wallet,
                card_sha,
                expiry: 2912,
                status: CardStatus::Active,
                pin_offset: PinOffset::default(),
                pin_fails: 0,
                pin_locked: false,
                pin_unlocked_at_ms: 0,
                daily: Vec::new(),
            });
        }
        for f in 0..100u32 {
            assert_eq!(state.wallet_by_family(&format!("3601{f:012}")), Some(f));
            let mut card_sha = [0u8; 32];
            card_sha[..4].copy_from_slice(&f.to_be_bytes());
            assert_eq!(state.card_by_key(&card_sha), Some(f));
        }
        assert_eq!(state.wallet_by_family("3601999999999999"), None);
        assert_eq!(state.card_by_key(&[0xff; 32]), None);
    }

    #[test]
    fn a_start_up_reserve_leaves_room_for_the_families_added_after_it() {
        let mut state = State::default();
        state.reserve(100_000, 200_000, 500_000);
        let (wallets, cards) = (state.wallets.capacity(), state.cards.capacity());
        assert!(wallets >= 100_000 + 12_500, "{wallets}");
        assert!(cards >= 200_000 + 25_000, "{cards}");
        assert!(wallets <= 2 * 100_000, "no more than needed: {wallets}");
    }
}
