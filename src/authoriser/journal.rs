//! The memory of recent decisions: what a retry is answered with and what a reversal
//! undoes. Bounded twice, by the idempotency window and by a count, so memory is set by
//! configuration and never by traffic.
//!
//! Shape (TigerBeetle's habit of fixed-size records in arrival order): records live in
//! chunks appended at the back and dropped at the front, so forgetting costs what it
//! forgets and growing never copies a record. Two small indexes map 64 bits of a key's
//! digest to the record's sequence number; the record holds the whole 128-bit digest,
//! which is checked on every lookup. An index entry is 16 bytes, so when an index
//! doubles it copies 16 bytes a decision, not the record (a map of whole records
//! stalled the single writer for up to 12 s).

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

use super::state::{CardIdx, KeyGroup};
use crate::domain::request::RequestKey;
use crate::domain::response::{Balance, Response, ResponseCode};

/// Records a chunk holds: 16,384 x ~150 bytes, about 2.5 MB allocated at a time.
const CHUNK_LEN: usize = 16_384;

/// 128 bits of a keyed hash of a request key (or of an RRN key). Keyed with secrets
/// drawn at start-up, so a peer cannot make two keys collide; kept as two `u64` so a
/// record needs no 16-byte alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct KeyDigest([u64; 2]);

impl KeyDigest {
    fn index_key(self) -> u64 {
        self.0[0]
    }
}

/// Makes digests. One per state: the keys are random, so digests are only compared
/// within one process (the journal is rebuilt from the ledger at every start).
#[derive(Clone, Default)]
pub struct Digester {
    low: RandomState,
    high: RandomState,
}

impl std::fmt::Debug for Digester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Digester")
    }
}

/// Tags keep the digest of a request key apart from that of an RRN key.
const RRN_TAG: u8 = 0xEE;

impl Digester {
    /// The digest of a message's key within its group (wire.md: F32, F41, F11, F7).
    pub fn key(&self, group: KeyGroup, key: &RequestKey) -> KeyDigest {
        self.parts(
            group as u8,
            [&key.acquirer, &key.terminal, &key.stan, &key.transmitted],
        )
    }

    /// The digest of (F32, F41, F37): how a reversal without F90 finds its original.
    pub fn rrn(&self, acquirer: &str, terminal: &str, rrn: &str) -> KeyDigest {
        self.parts(RRN_TAG, [acquirer, terminal, rrn, ""])
    }

    fn parts(&self, tag: u8, parts: [&str; 4]) -> KeyDigest {
        // `str`'s Hash writes its bytes and a terminator, so the parts cannot run into
        // one another: ("12", "3") and ("1", "23") differ.
        let low = self.low.hash_one((tag, parts));
        let high = self.high.hash_one((tag, parts));
        KeyDigest([low, high])
    }
}

/// The legs a decision posted: none, or one debit and one credit of the same amount.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Legs(Option<[(i64, i64); 2]>);

impl Legs {
    pub const NONE: Legs = Legs(None);

    pub fn two(first: (i64, i64), second: (i64, i64)) -> Legs {
        debug_assert_eq!(first.1 + second.1, 0, "the two legs must balance");
        Legs(Some([first, second]))
    }

    /// Legs read back from the ledger: a decided message posts none or two.
    pub fn from_slice(legs: &[(i64, i64)]) -> Legs {
        match legs {
            [first, second] => Legs::two(*first, *second),
            _ => Legs::NONE,
        }
    }

    pub fn as_slice(&self) -> &[(i64, i64)] {
        match &self.0 {
            Some(legs) => legs,
            None => &[],
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The legs that undo `amount_minor` of these: each account moved the other way.
    pub fn reversed(&self, amount_minor: i64) -> Legs {
        match self.0 {
            Some([(a, amount_a), (b, amount_b)]) => Legs::two(
                (a, -amount_a.signum() * amount_minor),
                (b, -amount_b.signum() * amount_minor),
            ),
            None => Legs::NONE,
        }
    }
}

/// A decision the switch made and remembers: to answer retries the same way and to
/// find what a reversal undoes. About 150 bytes, most of it inline.
#[derive(Debug, Clone)]
pub struct TxnRecord {
    pub key: KeyDigest,
    /// The RRN key this record answers for, when it was the first with that RRN.
    pub rrn: Option<KeyDigest>,
    /// First 16 bytes of the content's SHA-256: "same content" of wire.md.
    pub content: [u8; 16],
    pub code: ResponseCode,
    pub approval_code: Option<[u8; 6]>,
    /// F54 as answered (empty for most declines: no allocation).
    pub balances: Box<[Balance]>,
    pub card: Option<CardIdx>,
    pub channel: Option<u16>,
    pub business_day: u32,
    pub amount_minor: i64,
    pub legs: Legs,
    /// A reversal has been applied (a second one posts nothing).
    pub reversed: bool,
    /// Counts toward a daily count limit (withdrawals, rides).
    pub counted: bool,
    pub at_ms: i64,
}

impl TxnRecord {
    /// The first 16 bytes of a content SHA-256.
    pub fn content_of(content_sha: &[u8; 32]) -> [u8; 16] {
        let mut content = [0u8; 16];
        content.copy_from_slice(&content_sha[..16]);
        content
    }

    /// An approval code as kept: six ASCII characters, else none (an empty column).
    pub fn approval_of(text: &str) -> Option<[u8; 6]> {
        <[u8; 6]>::try_from(text.as_bytes()).ok()
    }

    /// The response as first sent: F38, F39 and F54 byte for byte.
    pub fn response(&self) -> Response {
        Response {
            code: self.code,
            approval_code: self
                .approval_code
                .map(|a| String::from_utf8_lossy(&a).into_owned()),
            balances: self.balances.to_vec(),
        }
    }
}

/// A hasher for keys that are already uniform random bits: uses them as they are.
#[derive(Default)]
pub struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by the indexes; fold anything else in anyway.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Index = HashMap<u64, u64, BuildHasherDefault<DigestHasher>>;

/// Recent decisions in the order decided, indexed by key and by RRN.
#[derive(Debug)]
pub struct Journal {
    /// Full chunks and the one being filled, oldest first.
    chunks: VecDeque<Vec<TxnRecord>>,
    /// Sequence number of the first record of `chunks[0]`.
    base_seq: u64,
    /// Sequence number of the oldest record still remembered.
    head_seq: u64,
    /// Sequence number the next record gets.
    next_seq: u64,
    by_key: Index,
    by_rrn: Index,
    len_max: usize,
    /// Decisions forgotten because of the count bound while still inside the window.
    evicted_early: u64,
}

impl Default for Journal {
    fn default() -> Journal {
        Journal::new(Journal::LEN_MAX_DEFAULT)
    }
}

impl Journal {
    pub const LEN_MAX_DEFAULT: usize = 1 << 20;

    pub fn new(len_max: usize) -> Journal {
        assert!(len_max > 0, "a journal must remember at least one decision");
        Journal {
            chunks: VecDeque::new(),
            base_seq: 0,
            head_seq: 0,
            next_seq: 0,
            // Sized for the bound once: an index that doubles as it fills stalls the
            // authoriser for as long as it rehashes (31 ms at a million decisions,
            // `cargo bench --bench journal`). 16 bytes an entry, ~34 MiB an index at the
            // default bound; pages are touched as entries land.
            by_key: Index::with_capacity_and_hasher(len_max, Default::default()),
            by_rrn: Index::with_capacity_and_hasher(len_max, Default::default()),
            len_max,
            evicted_early: 0,
        }
    }

    /// Decisions remembered.
    pub fn len(&self) -> usize {
        (self.next_seq - self.head_seq) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Decisions forgotten before their window ended, because of the count bound.
    pub fn evicted_early(&self) -> u64 {
        self.evicted_early
    }

    /// When the oldest remembered decision was made.
    pub fn oldest_at_ms(&self) -> Option<i64> {
        self.at(self.head_seq).map(|r| r.at_ms)
    }

    pub fn get(&self, key: &KeyDigest) -> Option<&TxnRecord> {
        let seq = *self.by_key.get(&key.index_key())?;
        self.at(seq).filter(|r| r.key == *key)
    }

    pub fn get_mut(&mut self, key: &KeyDigest) -> Option<&mut TxnRecord> {
        let seq = *self.by_key.get(&key.index_key())?;
        self.at_mut(seq).filter(|r| r.key == *key)
    }

    pub fn contains_key(&self, key: &KeyDigest) -> bool {
        self.get(key).is_some()
    }

    /// The key of the first remembered decision with this RRN key.
    pub fn key_of_rrn(&self, rrn: &KeyDigest) -> Option<KeyDigest> {
        let seq = *self.by_rrn.get(&rrn.index_key())?;
        self.at(seq).filter(|r| r.rrn == Some(*rrn)).map(|r| r.key)
    }

    /// Remembers a decision. Its RRN key is registered only when no remembered decision
    /// has it (the first one wins); past the count bound the oldest is forgotten.
    pub fn remember(&mut self, mut record: TxnRecord) {
        if let Some(rrn) = record.rrn {
            if self.key_of_rrn(&rrn).is_some() {
                record.rrn = None;
            } else {
                self.by_rrn.insert(rrn.index_key(), self.next_seq);
            }
        }
        // A 64-bit index collision (about one in 2^64 a pair) leaves the older record
        // unreachable by key: it is answered as new, never as the other's duplicate.
        self.by_key.insert(record.key.index_key(), self.next_seq);
        let fill = self.chunks.back().map_or(CHUNK_LEN, Vec::len);
        if fill == CHUNK_LEN {
            self.chunks.push_back(Vec::with_capacity(CHUNK_LEN));
        }
        if let Some(chunk) = self.chunks.back_mut() {
            chunk.push(record);
        }
        self.next_seq += 1;
        while self.len() > self.len_max {
            self.evicted_early += 1;
            self.forget_oldest();
        }
        debug_assert!(self.by_key.len() <= self.len());
    }

    /// Forgets decisions made before `cutoff_ms`, oldest first: costs what it forgets.
    pub fn forget_before(&mut self, cutoff_ms: i64) {
        while self.oldest_at_ms().is_some_and(|at_ms| at_ms < cutoff_ms) {
            self.forget_oldest();
        }
    }

    fn forget_oldest(&mut self) {
        let seq = self.head_seq;
        let Some(record) = self.at(seq) else {
            return;
        };
        let (key, rrn) = (record.key.index_key(), record.rrn.map(KeyDigest::index_key));
        if self.by_key.get(&key) == Some(&seq) {
            self.by_key.remove(&key);
        }
        if let Some(rrn) = rrn {
            if self.by_rrn.get(&rrn) == Some(&seq) {
                self.by_rrn.remove(&rrn);
            }
        }
        self.head_seq += 1;
        if self.head_seq - self.base_seq == CHUNK_LEN as u64 {
            self.chunks.pop_front();
            self.base_seq += CHUNK_LEN as u64;
        }
    }

    fn position(&self, seq: u64) -> Option<(usize, usize)> {
        if seq < self.head_seq || seq >= self.next_seq {
            return None;
        }
        let offset = (seq - self.base_seq) as usize;
        Some((offset / CHUNK_LEN, offset % CHUNK_LEN))
    }

    fn at(&self, seq: u64) -> Option<&TxnRecord> {
        let (chunk, i) = self.position(seq)?;
        self.chunks.get(chunk)?.get(i)
    }

    fn at_mut(&mut self, seq: u64) -> Option<&mut TxnRecord> {
        let (chunk, i) = self.position(seq)?;
        self.chunks.get_mut(chunk)?.get_mut(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(digester: &Digester, stan: u32) -> KeyDigest {
        let key = RequestKey {
            acquirer: "ACQ".into(),
            terminal: "T1".into(),
            stan: format!("{stan:06}"),
            transmitted: "1124000000".into(),
        };
        digester.key(KeyGroup::Financial, &key)
    }

    fn record(key: KeyDigest, rrn: Option<KeyDigest>, at_ms: i64) -> TxnRecord {
        TxnRecord {
            key,
            rrn,
            content: [0; 16],
            code: ResponseCode::Approved,
            approval_code: None,
            balances: Box::new([]),
            card: None,
            channel: None,
            business_day: 0,
            amount_minor: at_ms,
            legs: Legs::NONE,
            reversed: false,
            counted: false,
            at_ms,
        }
    }

    #[test]
    fn digests_separate_groups_parts_and_rrns() {
        let d = Digester::default();
        let k = |acq: &str, term: &str| RequestKey {
            acquirer: acq.into(),
            terminal: term.into(),
            stan: "1".into(),
            transmitted: "2".into(),
        };
        assert_ne!(
            d.key(KeyGroup::Financial, &k("12", "3")),
            d.key(KeyGroup::Financial, &k("1", "23"))
        );
        assert_ne!(
            d.key(KeyGroup::Financial, &k("1", "2")),
            d.key(KeyGroup::Reversal, &k("1", "2"))
        );
        assert_eq!(
            d.key(KeyGroup::Advice, &k("1", "2")),
            d.key(KeyGroup::Advice, &k("1", "2"))
        );
        assert_ne!(
            d.rrn("1", "2", "1"),
            d.key(KeyGroup::Financial, &k("1", "2"))
        );
    }

    #[test]
    fn remembers_finds_and_forgets_by_time_across_chunks() {
        let d = Digester::default();
        let mut journal = Journal::new(1 << 22);
        let n = 3 * CHUNK_LEN as u32 + 7;
        for stan in 0..n {
            journal.remember(record(key(&d, stan), None, i64::from(stan)));
        }
        assert_eq!(journal.len(), n as usize);
        assert_eq!(journal.get(&key(&d, 5)).map(|r| r.at_ms), Some(5));
        journal.forget_before(i64::from(CHUNK_LEN as u32 + 3));
        assert_eq!(journal.len(), (n - CHUNK_LEN as u32 - 3) as usize);
        assert!(journal.get(&key(&d, 5)).is_none(), "forgotten");
        assert!(journal.get(&key(&d, CHUNK_LEN as u32 + 2)).is_none());
        assert!(journal.get(&key(&d, CHUNK_LEN as u32 + 3)).is_some());
        assert_eq!(journal.chunks.len(), 3, "the first chunk is freed");
        assert_eq!(journal.by_key.len(), journal.len());
        journal.forget_before(i64::MAX);
        assert!(journal.is_empty());
        assert!(journal.by_key.is_empty());
        assert_eq!(journal.evicted_early(), 0);
    }

    #[test]
    fn the_count_bound_forgets_the_oldest_and_counts_it() {
        let d = Digester::default();
        let mut journal = Journal::new(100);
        for stan in 0..250 {
            let rrn = d.rrn("ACQ", "T1", &stan.to_string());
            journal.remember(record(key(&d, stan), Some(rrn), i64::from(stan)));
        }
        assert_eq!(journal.len(), 100);
        assert_eq!(journal.evicted_early(), 150);
        assert_eq!(journal.oldest_at_ms(), Some(150));
        assert!(journal.get(&key(&d, 149)).is_none());
        assert!(journal.key_of_rrn(&d.rrn("ACQ", "T1", "149")).is_none());
        assert_eq!(
            journal.key_of_rrn(&d.rrn("ACQ", "T1", "150")),
            Some(key(&d, 150))
        );
        assert_eq!(journal.by_rrn.len(), 100);
    }

    #[test]
    fn the_first_decision_with_an_rrn_keeps_it() {
        let d = Digester::default();
        let mut journal = Journal::new(10);
        let rrn = d.rrn("ACQ", "T1", "000000000001");
        journal.remember(record(key(&d, 1), Some(rrn), 1));
        journal.remember(record(key(&d, 2), Some(rrn), 2));
        assert_eq!(journal.key_of_rrn(&rrn), Some(key(&d, 1)));
        assert_eq!(journal.get(&key(&d, 2)).and_then(|r| r.rrn), None);
        if let Some(record) = journal.get_mut(&key(&d, 1)) {
            record.reversed = true;
        }
        assert!(journal.get(&key(&d, 1)).is_some_and(|r| r.reversed));
    }
}
