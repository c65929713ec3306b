//! Rebuilding the state from the ledger: at start-up, and after a failed commit.
//! Everything is read in one snapshot, so a batch another process commits meanwhile is
//! either wholly in the state or wholly after its cursor.

use std::sync::{mpsc, Arc};

use sqlx::AnyConnection;

use super::state::{card_key, Card, PinOffset, State, Wallet, WalletIdx};
use crate::domain::money::Purse;
use crate::domain::time::TimestampMs;
use crate::ledger::bulk::{self, AccountRef, BulkSink, CardRef, Sizes};
use crate::ledger::read::{AccountRow, CardEventRow, CardRow, FamilyRow, ProviderRow};
use crate::ledger::registry::kind;
use crate::ledger::{Db, LedgerError, TransferRow};
use crate::policy::{CardStatus, Policy};

impl State {
    pub async fn load(
        db: &Db,
        policy: &Arc<Policy>,
        now: TimestampMs,
    ) -> Result<State, LedgerError> {
        let started = std::time::Instant::now();
        let mut attempt = 1;
        let state = loop {
            let mut conn = db.pool.acquire().await?;
            db.begin_snapshot(&mut conn).await?;
            let result = load_in_snapshot(db, &mut conn, policy, now).await;
            let _ = crate::ledger::db::exec(&mut conn, "ROLLBACK").await;
            match result? {
                Some(state) => break state,
                None if attempt < SNAPSHOT_ATTEMPTS_MAX => attempt += 1,
                None => {
                    return Err(LedgerError::Invariant(format!(
                        "the ledger moved during each of {SNAPSHOT_ATTEMPTS_MAX} start-up reads"
                    )))
                }
            }
        };
        tracing::info!(
            families = state.wallets.len(),
            cards = state.cards.len(),
            decisions = state.journal.len(),
            holds = state.holds.len(),
            attempts = attempt,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "state loaded from the ledger"
        );
        Ok(state)
    }
}

/// On SQLite the bulk is read on a second connection (`bulk_state`): when a batch is
/// committed between its snapshot and this one, the load starts again, at most this
/// many times. Other processes commit rarely (a disbursement file is one batch).
const SNAPSHOT_ATTEMPTS_MAX: u32 = 3;

/// `None` when the SQLite bulk read saw another ledger head than this snapshot.
async fn load_in_snapshot(
    db: &Db,
    conn: &mut AnyConnection,
    policy: &Arc<Policy>,
    now: TimestampMs,
) -> Result<Option<State>, LedgerError> {
    // The first read: on SQLite it fixes this connection's snapshot, which is older than
    // the bulk read's, so every card or account the rows below name is in the bulk.
    let head = db.last_batch_seq(conn).await?;
    let (bulk_head, mut state, rest, decisions) = match db.sqlite_path() {
        Some(path) => {
            // The bulk on a thread of its own while this connection reads the rest: the
            // two take about as long, and there are two cores. The decisions are read
            // on a third, ahead of their replay by at most a channel's worth.
            let builder = Builder::new(Arc::clone(policy));
            let bulk_path = path.clone();
            let bulk = tokio::task::spawn_blocking(move || builder.read_sqlite(&bulk_path));
            let decisions = DecisionStream::start(path, window_start_ms(policy, now));
            let rest = read_rest(db, conn, policy, now, head).await;
            let (bulk_head, state) = bulk
                .await
                .map_err(|e| LedgerError::Invariant(format!("start-up read thread: {e}")))??;
            (bulk_head, state, rest?, Some(decisions))
        }
        None => {
            let mut builder = Builder::new(Arc::clone(policy));
            let bulk_head = bulk::read_any(conn, &mut builder).await?;
            let rest = read_rest(db, conn, policy, now, head).await?;
            (bulk_head, builder.state, rest, None)
        }
    };
    if bulk_head != head {
        return Ok(None);
    }
    state.cursor.batch_seq = head;
    add_providers(&mut state, &rest.providers);
    // Before the decisions: a PIN unlock resets the tries counted before it.
    apply_card_events(&mut state, &rest.card_events);
    for (purse_account, acquirer_account, to_acquirer) in rest.refundable {
        state
            .refundable
            .insert((purse_account, acquirer_account), to_acquirer);
    }
    match decisions {
        Some(decisions) => {
            let today = policy.calendar.business_day(now);
            let replay_policy = Arc::clone(policy);
            let replayed = tokio::task::spawn_blocking(move || {
                let head = decisions.replay(|row, legs| {
                    super::replay::decision(&mut state, &replay_policy, row, legs, today)
                });
                head.map(|head| (head, state))
            });
            let (decisions_head, replayed_state) = replayed
                .await
                .map_err(|e| LedgerError::Invariant(format!("start-up read thread: {e}")))??;
            if decisions_head != head {
                return Ok(None);
            }
            state = replayed_state;
        }
        None => {
            // PostgreSQL: streamed on this connection, in the same snapshot.
            let today = policy.calendar.business_day(now);
            bulk::read_any_decisions(conn, window_start_ms(policy, now), |row, legs| {
                super::replay::decision(&mut state, policy, row, legs, today)
            })
            .await?;
        }
    }
    super::replay::holds(&mut state, policy, &rest.hold_rows);
    Ok(Some(state))
}

/// The idempotency window's decisions on SQLite, read on a thread of their own while the
/// bulk is, and replayed once the state they apply to is built. They go over in chunks,
/// at most `CHUNKS_AHEAD_MAX` ahead (the window can hold millions of decisions), and the
/// chunks come back to the reader, which writes the next decisions into their rows: no
/// allocation a decision once the chunks go round.
struct DecisionStream {
    chunks: mpsc::Receiver<Vec<Decision>>,
    spent: mpsc::SyncSender<Vec<Decision>>,
    reader: tokio::task::JoinHandle<Result<i64, LedgerError>>,
}

/// A decided message and its legs (account, amount).
type Decision = (TransferRow, Vec<(i64, i64)>);

/// Decisions a chunk holds.
const CHUNK_DECISIONS: usize = 512;
/// Chunks read ahead of the replay, at most.
const CHUNKS_AHEAD_MAX: usize = 16;

impl DecisionStream {
    fn start(path: std::path::PathBuf, since_ms: i64) -> DecisionStream {
        let (full, chunks) = mpsc::sync_channel::<Vec<Decision>>(CHUNKS_AHEAD_MAX);
        let (spent, returned) = mpsc::sync_channel::<Vec<Decision>>(CHUNKS_AHEAD_MAX + 2);
        let reader = tokio::task::spawn_blocking(move || {
            let mut chunk: Vec<Decision> = Vec::with_capacity(CHUNK_DECISIONS);
            let mut spare: Vec<Decision> = Vec::new();
            let head = bulk::read_sqlite_decisions(&path, since_ms, |row, legs| {
                let mut slot = spare.pop().unwrap_or_default();
                std::mem::swap(&mut slot.0, row);
                std::mem::swap(&mut slot.1, legs);
                chunk.push(slot);
                if chunk.len() < CHUNK_DECISIONS {
                    return true;
                }
                // A send fails only when the replay is gone: stop reading.
                let sent = full.send(std::mem::take(&mut chunk)).is_ok();
                if let Ok(mut back) = returned.try_recv() {
                    spare.append(&mut back);
                    chunk = back;
                }
                sent
            })?;
            if !chunk.is_empty() {
                let _ = full.send(chunk);
            }
            Ok(head)
        });
        DecisionStream {
            chunks,
            spent,
            reader,
        }
    }

    /// Blocking: hands every decision to `replay`, in ledger order; returns the ledger
    /// head the reader's snapshot saw.
    fn replay(
        self,
        mut replay: impl FnMut(&TransferRow, &[(i64, i64)]),
    ) -> Result<i64, LedgerError> {
        for chunk in &self.chunks {
            for (row, legs) in &chunk {
                replay(row, legs);
            }
            // Back to the reader if it has room; dropped otherwise.
            let _ = self.spent.try_send(chunk);
        }
        drop(self.chunks);
        futures::executor::block_on(self.reader)
            .map_err(|e| LedgerError::Invariant(format!("start-up read thread: {e}")))?
    }
}

/// The idempotency window's first millisecond.
fn window_start_ms(policy: &Policy, now: TimestampMs) -> i64 {
    now.0 - policy.idempotency_window_ms
}

/// What start-up reads besides the bulk and the idempotency window's decisions (those
/// are streamed, both backends): few rows.
struct Rest {
    providers: Vec<ProviderRow>,
    card_events: Vec<CardEventRow>,
    refundable: Vec<(i64, i64, i64)>,
    hold_rows: Vec<TransferRow>,
}

async fn read_rest(
    db: &Db,
    conn: &mut AnyConnection,
    policy: &Policy,
    now: TimestampMs,
    head: i64,
) -> Result<Rest, LedgerError> {
    let hold_ttl_max_ms = policy
        .programmes
        .iter()
        .map(|p| p.hold_ttl_ms)
        .max()
        .unwrap_or(0);
    Ok(Rest {
        providers: db.providers_since(conn, 0).await?,
        card_events: db.card_events_since(conn, 0).await?,
        refundable: db.refundable(conn, head).await?,
        hold_rows: db
            .hold_rows_since(conn, now.0.saturating_sub(hold_ttl_max_ms))
            .await?,
    })
}

/// Builds the state from the bulk rows, one at a time; the sync loop adds what others
/// write later through the same functions.
struct Builder {
    state: State,
    policy: Arc<Policy>,
    last_wallet: Option<WalletIdx>,
}

impl Builder {
    fn new(policy: Arc<Policy>) -> Builder {
        let state = State {
            funding_accounts: vec![0; policy.programmes.len()],
            journal: super::state::Journal::new(policy.idempotency_decisions_max),
            ..State::default()
        };
        Builder {
            state,
            policy,
            last_wallet: None,
        }
    }

    /// The ledger head the bulk read saw, and the state built from it.
    fn read_sqlite(mut self, path: &std::path::Path) -> Result<(i64, State), LedgerError> {
        let head = bulk::read_sqlite(path, &mut self)?;
        Ok((head, self.state))
    }
}

impl BulkSink for Builder {
    fn sizes(&mut self, sizes: Sizes) {
        self.state
            .reserve(sizes.families, sizes.cards, sizes.account_id_max);
    }

    fn family(&mut self, seq: i64, family_id: &str, programme_id: &str) {
        add_family(&mut self.state, &self.policy, seq, family_id, programme_id);
    }

    fn account(&mut self, account: AccountRef<'_>) {
        add_account(
            &mut self.state,
            &self.policy,
            account,
            &mut self.last_wallet,
        );
    }

    fn balance(&mut self, account_id: i64, amount_minor: i64) {
        if let Some((wallet, purse)) = self.state.purse_accounts.get(&account_id).copied() {
            self.state.wallets[wallet as usize].balance_minor[purse.index()] += amount_minor;
        }
    }

    fn card(&mut self, card: CardRef<'_>) {
        add_card(&mut self.state, card, &mut self.last_wallet);
    }
}

pub(super) fn add_families(state: &mut State, policy: &Policy, families: &[FamilyRow]) {
    for f in families {
        add_family(state, policy, f.seq, &f.family_id, &f.programme_id);
    }
}

fn add_family(state: &mut State, policy: &Policy, seq: i64, family_id: &str, programme_id: &str) {
    state.cursor.family_seq = state.cursor.family_seq.max(seq);
    // A family of a programme no longer configured cannot transact; skip it.
    let Some(programme) = policy.programme_index(programme_id) else {
        return;
    };
    if state.wallet_by_family(family_id).is_some() {
        return;
    }
    state.push_wallet(Wallet {
        family_id: Arc::from(family_id),
        programme: programme as u16,
        accounts: [0; Purse::COUNT],
        balance_minor: [0; Purse::COUNT],
        held_minor: [0; Purse::COUNT],
        cards: Vec::new(),
    });
}

pub(super) fn add_accounts(state: &mut State, policy: &Policy, accounts: &[AccountRow]) {
    let mut last_wallet = None;
    for a in accounts {
        add_account(
            state,
            policy,
            AccountRef {
                account_id: a.account_id,
                kind: &a.kind,
                programme_id: &a.programme_id,
                owner: &a.owner,
                purse: &a.purse,
            },
            &mut last_wallet,
        );
    }
}

/// Funding, acquirer and provider accounts by owner; purse accounts on their wallet.
fn add_account(
    state: &mut State,
    policy: &Policy,
    a: AccountRef<'_>,
    last_wallet: &mut Option<WalletIdx>,
) {
    let Some(programme) = policy.programme_index(a.programme_id) else {
        return;
    };
    let p = programme as u16;
    match a.kind {
        kind::FUNDING => {
            if let Some(funding) = state.funding_accounts.get_mut(programme) {
                *funding = a.account_id;
            }
        }
        kind::ACQUIRER => {
            state
                .acquirer_accounts
                .insert((p, a.owner.to_string()), a.account_id);
        }
        kind::PROVIDER => {
            for id in f42_forms(a.owner) {
                state.provider_accounts.insert((p, id), a.account_id);
            }
        }
        kind::PURSE => {
            let (Some(wallet), Some(purse)) = (
                wallet_of(state, a.owner, last_wallet),
                Purse::from_name(a.purse),
            ) else {
                return;
            };
            state.wallets[wallet as usize].accounts[purse.index()] = a.account_id;
            state.purse_accounts.insert(a.account_id, (wallet, purse));
        }
        _ => {}
    }
}

pub(super) fn add_cards(state: &mut State, cards: &[CardRow]) {
    let mut last_wallet = None;
    for c in cards {
        add_card(
            state,
            CardRef {
                seq: c.seq,
                card_sha: &c.card_sha,
                family_id: &c.family_id,
                expiry: &c.expiry,
                pin_offset: &c.pin_offset,
            },
            &mut last_wallet,
        );
    }
}

fn add_card(state: &mut State, c: CardRef<'_>, last_wallet: &mut Option<WalletIdx>) {
    state.cursor.card_seq = state.cursor.card_seq.max(c.seq);
    let Some(wallet) = wallet_of(state, c.family_id, last_wallet) else {
        return;
    };
    // A row that is not a SHA-256 cannot match any PAN: skip it.
    let Some(card_sha) = card_key(c.card_sha) else {
        return;
    };
    if state.card_by_key(&card_sha).is_some() {
        return;
    }
    let idx = state.push_card(Card {
        wallet,
        card_sha,
        expiry: c.expiry.parse().unwrap_or(0),
        status: CardStatus::Active,
        pin_offset: PinOffset::parse(c.pin_offset).unwrap_or_else(|| {
            // Every PIN then fails (55, then 75): say which card (its row, no card data).
            tracing::warn!(
                card_seq = c.seq,
                "card with a malformed PIN offset: its PINs will not verify"
            );
            PinOffset::default()
        }),
        pin_fails: 0,
        pin_locked: false,
        pin_unlocked_at_ms: 0,
        daily: Vec::new(),
    });
    state.wallets[wallet as usize].cards.push(idx);
}

/// The wallet of `family_id`, trying the one found last first: a family's five purse
/// accounts and its cards come one after another (a hash lookup is a cache miss or two,
/// at five million accounts a second of start-up).
fn wallet_of(
    state: &State,
    family_id: &str,
    last_wallet: &mut Option<WalletIdx>,
) -> Option<WalletIdx> {
    let last = last_wallet.filter(|&w| {
        state
            .wallets
            .get(w as usize)
            .is_some_and(|w| &*w.family_id == family_id)
    });
    if last.is_some() {
        return last;
    }
    *last_wallet = state.wallet_by_family(family_id);
    *last_wallet
}

/// Providers and the channel each is registered for (their accounts come with the
/// other accounts).
pub(super) fn add_providers(state: &mut State, providers: &[ProviderRow]) {
    for p in providers {
        state.cursor.provider_seq = state.cursor.provider_seq.max(p.seq);
        for id in f42_forms(&p.provider_id) {
            state.providers.insert(id, p.channel.clone());
        }
    }
}

/// Status changes and PIN locks, in order: a card's status is its last event.
pub(super) fn apply_card_events(state: &mut State, events: &[CardEventRow]) {
    for e in events {
        state.cursor.card_event_seq = state.cursor.card_event_seq.max(e.seq);
        let Some(idx) = state.card_by_sha(&e.card_sha) else {
            continue;
        };
        let card = &mut state.cards[idx as usize];
        match e.event.as_str() {
            "pin_locked" => card.pin_locked = true,
            "pin_unlock" => {
                card.pin_locked = false;
                card.pin_fails = 0;
                card.pin_unlocked_at_ms = e.at_ms;
            }
            "unblock" => card.status = CardStatus::Active,
            other => {
                if let Some(status) = CardStatus::from_name(other) {
                    card.status = status;
                }
            }
        }
    }
}

/// F42 is ans15: a provider id longer than that is sent as its first 15 characters.
fn f42_forms(provider_id: &str) -> Vec<String> {
    let mut forms = vec![provider_id.to_string()];
    if let Some(short) = provider_id.get(..15).filter(|_| provider_id.len() > 15) {
        forms.push(short.to_string());
    }
    forms
}
