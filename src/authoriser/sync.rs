//! Picking up what the command line wrote while the switch runs: new families and
//! cards, providers, card status changes and PIN unlocks, and ledger batches (such as
//! disbursements) committed by other writers. Runs inside the authoriser between
//! batches, so the state is never touched by two tasks.

use std::time::Duration;

use super::core::Core;
use super::load::{add_cards, add_families, add_providers, add_purse_accounts, apply_card_events};
use crate::ledger::{Db, LedgerError};

/// A sync that cannot have a connection within this skips its turn: the database is
/// away, and the requests queued behind the sync must not wait out the pool's own
/// acquire timeout (10 s for a refused server) before their commit fails with 91.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);

pub(super) async fn pick_up(db: &Db, core: &mut Core) -> Result<(), LedgerError> {
    // Nothing is touched before the connection is there, so giving up is safe.
    let mut conn = tokio::time::timeout(ACQUIRE_TIMEOUT, db.pool.acquire())
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)??;
    let cursor = core.state.cursor;
    let state = &mut core.state;
    let policy = &core.policy;
    let families = db.families_since(&mut conn, cursor.family_seq).await?;
    let providers = db.providers_since(&mut conn, cursor.provider_seq).await?;
    if !families.is_empty() || !providers.is_empty() {
        let accounts = db.accounts(&mut conn).await?;
        add_families(state, policy, &families);
        add_purse_accounts(state, policy, &accounts);
        add_providers(state, policy, &accounts, &providers);
    }
    let cards = db.cards_since(&mut conn, cursor.card_seq).await?;
    add_cards(state, &cards);
    let events = db
        .card_events_since(&mut conn, cursor.card_event_seq)
        .await?;
    apply_card_events(state, &events);
    for batch in db.batches_since(&mut conn, cursor.batch_seq).await? {
        if batch.source != "switch" {
            let entries = db.batch_entries(&mut conn, batch.batch_seq).await?;
            for entry in entries {
                state.apply_legs(&[(entry.account_id, entry.amount_minor)]);
            }
            tracing::info!(batch_seq = batch.batch_seq, source = %batch.source, "applied a batch written by another process");
        }
        state.cursor.batch_seq = batch.batch_seq;
    }
    Ok(())
}
