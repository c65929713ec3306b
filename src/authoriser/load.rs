//! Rebuilding the state from the ledger: at start-up, and after a failed commit.
//! Everything is read in one snapshot, so a batch another process commits meanwhile is
//! either wholly in the state or wholly after its cursor.

use std::sync::Arc;

use sqlx::AnyConnection;

use super::state::{card_key, Card, PinOffset, State, Wallet};
use crate::domain::money::Purse;
use crate::domain::time::TimestampMs;
use crate::ledger::read::{AccountRow, CardEventRow, CardRow, FamilyRow, ProviderRow};
use crate::ledger::registry::kind;
use crate::ledger::{Backend, Db, LedgerError};
use crate::policy::{CardStatus, Policy};

impl State {
    pub async fn load(db: &Db, policy: &Policy, now: TimestampMs) -> Result<State, LedgerError> {
        let mut conn = db.pool.acquire().await?;
        match db.backend {
            Backend::Sqlite => crate::ledger::db::exec(&mut conn, "BEGIN").await?,
            Backend::Postgres => {
                crate::ledger::db::exec(
                    &mut conn,
                    "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
                )
                .await?
            }
        };
        let started = std::time::Instant::now();
        let result = load_in_snapshot(db, &mut conn, policy, now).await;
        if let Ok(state) = &result {
            tracing::info!(
                families = state.wallets.len(),
                cards = state.cards.len(),
                decisions = state.journal.len(),
                holds = state.holds.len(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "state loaded from the ledger"
            );
        }
        let _ = crate::ledger::db::exec(&mut conn, "ROLLBACK").await;
        result
    }
}

async fn load_in_snapshot(
    db: &Db,
    conn: &mut AnyConnection,
    policy: &Policy,
    now: TimestampMs,
) -> Result<State, LedgerError> {
    let mut state = State {
        journal: super::state::Journal::new(policy.idempotency_decisions_max),
        ..State::default()
    };
    state.cursor.batch_seq = db.last_batch_seq(conn).await?;
    let accounts = db.accounts(conn).await?;
    add_reference_accounts(&mut state, policy, &accounts);
    add_families(&mut state, policy, &db.families_since(conn, 0).await?);
    add_purse_accounts(&mut state, policy, &accounts);
    for (account, balance) in db.balances_from_checkpoint(conn).await? {
        if let Some((wallet, purse)) = state.purse_accounts.get(&account).copied() {
            state.wallets[wallet as usize].balance_minor[purse.index()] = balance;
        }
    }
    add_cards(&mut state, &db.cards_since(conn, 0).await?);
    add_providers(
        &mut state,
        policy,
        &accounts,
        &db.providers_since(conn, 0).await?,
    );
    apply_card_events(&mut state, &db.card_events_since(conn, 0).await?);
    for (purse_account, acquirer_account, to_acquirer) in db.refundable(conn).await? {
        state
            .refundable
            .insert((purse_account, acquirer_account), to_acquirer);
    }
    let since_ms = now.0 - policy.idempotency_window_ms;
    let transfers = db.transfers_since(conn, since_ms).await?;
    let entries = db.entries_since(conn, since_ms).await?;
    super::replay::recent(&mut state, policy, &transfers, &entries, now);
    let hold_ttl_max_ms = policy
        .programmes
        .iter()
        .map(|p| p.hold_ttl_ms)
        .max()
        .unwrap_or(0);
    let hold_rows = db
        .hold_rows_since(conn, now.0.saturating_sub(hold_ttl_max_ms))
        .await?;
    super::replay::holds(&mut state, policy, &hold_rows);
    Ok(state)
}

fn add_reference_accounts(state: &mut State, policy: &Policy, accounts: &[AccountRow]) {
    state.funding_accounts = vec![0; policy.programmes.len()];
    for a in accounts {
        let Some(programme) = policy.programme_index(&a.programme_id) else {
            continue;
        };
        let p = programme as u16;
        match a.kind.as_str() {
            kind::FUNDING => state.funding_accounts[programme] = a.account_id,
            kind::ACQUIRER => {
                state
                    .acquirer_accounts
                    .insert((p, a.owner.clone()), a.account_id);
            }
            kind::PROVIDER => {
                state
                    .provider_accounts
                    .insert((p, a.owner.clone()), a.account_id);
            }
            _ => {}
        }
    }
}

pub(super) fn add_families(state: &mut State, policy: &Policy, families: &[FamilyRow]) {
    for f in families {
        state.cursor.family_seq = state.cursor.family_seq.max(f.seq);
        // A family of a programme no longer configured cannot transact; skip it.
        let Some(programme) = policy.programme_index(&f.programme_id) else {
            continue;
        };
        let family_id: Arc<str> = Arc::from(f.family_id.as_str());
        if state.wallet_index.contains_key(&family_id) {
            continue;
        }
        let idx = state.wallets.len() as u32;
        state.wallets.push(Wallet {
            family_id: family_id.clone(),
            programme: programme as u16,
            accounts: [0; Purse::COUNT],
            balance_minor: [0; Purse::COUNT],
            held_minor: [0; Purse::COUNT],
            cards: Vec::new(),
        });
        state.wallet_index.insert(family_id, idx);
    }
}

pub(super) fn add_purse_accounts(state: &mut State, policy: &Policy, accounts: &[AccountRow]) {
    for a in accounts.iter().filter(|a| a.kind == kind::PURSE) {
        let (Some(&wallet), Some(purse)) = (
            state.wallet_index.get(a.owner.as_str()),
            Purse::from_name(&a.purse),
        ) else {
            continue;
        };
        if policy.programme_index(&a.programme_id).is_none() {
            continue;
        }
        state.wallets[wallet as usize].accounts[purse.index()] = a.account_id;
        state.purse_accounts.insert(a.account_id, (wallet, purse));
    }
}

pub(super) fn add_cards(state: &mut State, cards: &[CardRow]) {
    for c in cards {
        state.cursor.card_seq = state.cursor.card_seq.max(c.seq);
        let Some(&wallet) = state.wallet_index.get(c.family_id.as_str()) else {
            continue;
        };
        // A row that is not a SHA-256 cannot match any PAN: skip it.
        let Some(card_sha) = card_key(&c.card_sha) else {
            continue;
        };
        if state.card_index.contains_key(&card_sha) {
            continue;
        }
        let idx = state.cards.len() as u32;
        state.wallets[wallet as usize].cards.push(idx);
        state.cards.push(Card {
            wallet,
            card_sha,
            expiry: c.expiry.parse().unwrap_or(0),
            status: CardStatus::Active,
            pin_offset: PinOffset::parse(&c.pin_offset).unwrap_or_default(),
            pin_fails: 0,
            pin_locked: false,
            pin_unlocked_at_ms: 0,
            daily: Vec::new(),
        });
        state.card_index.insert(card_sha, idx);
    }
}

pub(super) fn add_providers(
    state: &mut State,
    policy: &Policy,
    accounts: &[AccountRow],
    providers: &[ProviderRow],
) {
    for p in providers {
        state.cursor.provider_seq = state.cursor.provider_seq.max(p.seq);
        for id in f42_forms(&p.provider_id) {
            state.providers.insert(id, p.channel.clone());
        }
    }
    for a in accounts.iter().filter(|a| a.kind == kind::PROVIDER) {
        if let Some(programme) = policy.programme_index(&a.programme_id) {
            for id in f42_forms(&a.owner) {
                state
                    .provider_accounts
                    .insert((programme as u16, id), a.account_id);
            }
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
