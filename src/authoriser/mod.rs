//! The authoriser: one task owns every balance, counter and recent decision, takes
//! requests in batches from a bounded queue, decides them one after another, commits the
//! batch as one database transaction, and only then releases the responses
//! (design.md; the TigerBeetle / LMAX shape). While a batch commits, the requests that
//! arrive are decided into the next one, staged for the writer, which takes it the
//! moment it is free and releases its answers once durable (ledger/pipeline.rs).

pub mod core;
mod journal;
mod load;
mod orphans;
mod replay;
mod reversal;
pub mod state;
mod sync;
pub mod synthetic;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinError, JoinHandle};

pub use self::core::Core;
pub use self::reversal::{DENY_CLEARED, DENY_NEGATIVE};
pub use self::state::State;
use crate::domain::request::Request;
use crate::domain::response::{Response, ResponseCode};
use crate::domain::time::TimestampMs;
use crate::ledger::pipeline::{Outcome, Pipeline, Release};
use crate::ledger::{Db, LedgerError};
use crate::policy::Policy;

/// One request waiting for the single writer.
pub struct Job {
    pub request: Request,
    pub reply: oneshot::Sender<Response>,
}

/// The way into the authoriser. Cheap to clone; when every handle is dropped the
/// authoriser commits what it has and stops.
#[derive(Clone)]
pub struct AuthoriserHandle {
    tx: mpsc::Sender<Job>,
    health: Arc<Health>,
}

impl AuthoriserHandle {
    /// Queues `request`, or answers 91 at once when the queue is full (overload is met
    /// with fast declines, never with unbounded memory).
    pub fn submit(&self, request: Request) -> oneshot::Receiver<Response> {
        let (reply, rx) = oneshot::channel();
        if let Err(err) = self.tx.try_send(Job { request, reply }) {
            let job = match err {
                mpsc::error::TrySendError::Full(job) | mpsc::error::TrySendError::Closed(job) => {
                    job
                }
            };
            let _ = job
                .reply
                .send(Response::declined(ResponseCode::LedgerUnavailable));
        }
        rx
    }

    pub fn health(&self) -> Arc<Health> {
        Arc::clone(&self.health)
    }
}

/// What the admin port reports: whether the last commit worked.
#[derive(Debug)]
pub struct Health {
    pub ledger_writable: AtomicBool,
}

pub struct AuthoriserConfig {
    pub queue_depth_max: usize,
    pub batch_size_max: usize,
    pub sync_interval: Duration,
    pub checkpoint_interval: Duration,
    pub projection_interval: Duration,
}

/// Loads the state and starts the authoriser task. The returned join handle finishes
/// after the last handle is dropped and the last batch is committed.
pub async fn start(
    db: Db,
    policy: Arc<Policy>,
    config: AuthoriserConfig,
) -> Result<(AuthoriserHandle, tokio::task::JoinHandle<()>), crate::ledger::LedgerError> {
    // The projections caught up first, so start-up reads the refund ceiling from them
    // and not from a long ledger tail. Not required: a reader takes the tail anyway.
    log_projection(db.project_all().await);
    let state = State::load(&db, &policy, TimestampMs::now()).await?;
    let (tx, rx) = mpsc::channel(config.queue_depth_max);
    let health = Arc::new(Health {
        ledger_writable: AtomicBool::new(true),
    });
    let task = Authoriser {
        core: Core::new(policy, state),
        pipeline: Pipeline::start(&db, "switch", release(Arc::clone(&health))),
        epoch: 0,
        db,
        rx,
        health: Arc::clone(&health),
        stale: false,
        rebuild: None,
        checkpoint: None,
        projector: None,
    };
    let join = tokio::spawn(task.run(config));
    Ok((AuthoriserHandle { tx, health }, join))
}

type Reply = (oneshot::Sender<Response>, Response);

/// What the writer does with a batch's answers (ledger/pipeline.rs): sends them as
/// decided once the batch is durable, 91 when it failed or was refused (it was decided
/// on a failed batch's effects). Runs on the writer's thread, between two commits.
fn release(health: Arc<Health>) -> Release<Reply> {
    Box::new(move |waiting: &mut Vec<Reply>, outcome: Outcome<'_>| {
        match outcome {
            Outcome::Durable { transfers, elapsed } => {
                if transfers > 0 {
                    crate::admin::metrics::ledger_commit(elapsed, transfers, true);
                    health.ledger_writable.store(true, Ordering::Relaxed);
                }
            }
            Outcome::Failed {
                err,
                transfers,
                elapsed,
            } => {
                crate::admin::metrics::ledger_commit(elapsed, transfers, false);
                tracing::error!(error = %err, rows = transfers, "ledger commit failed: batch answered 91");
                health.ledger_writable.store(false, Ordering::Relaxed);
            }
            Outcome::Refused(err) => {
                tracing::warn!(error = %err, answers = waiting.len(), "batch refused: answered 91");
            }
        }
        let durable = outcome.is_durable();
        for (reply, response) in waiting.drain(..) {
            // The peer may have gone; a durable batch's rows are committed either way.
            let _ = reply.send(if durable {
                response
            } else {
                Response::declined(ResponseCode::LedgerUnavailable)
            });
        }
    })
}

struct Authoriser {
    core: Core,
    /// The writer and the stage the open batch is decided into.
    pipeline: Pipeline<Reply>,
    /// Raised when a commit fails: the writer refuses what remains of the old one.
    epoch: u64,
    db: Db,
    rx: mpsc::Receiver<Job>,
    health: Arc<Health>,
    /// The in-memory state no longer matches the ledger (a commit failed and the
    /// rebuild has not succeeded yet): everything gets 91 until it does.
    stale: bool,
    /// The rebuild in progress while stale. It runs as a task of its own so that
    /// requests meanwhile get their 91 at once: with the database gone, one attempt
    /// waits out the pool's acquire timeout (10 s for a refused server).
    rebuild: Option<JoinHandle<Result<State, LedgerError>>>,
    /// The checkpoint task, while one runs (one at a time).
    checkpoint: Option<JoinHandle<()>>,
    /// The projector task (ledger/projection.rs), while one runs (one at a time).
    projector: Option<JoinHandle<()>>,
}

impl Authoriser {
    async fn run(mut self, config: AuthoriserConfig) {
        let mut jobs = Vec::with_capacity(config.batch_size_max);
        let mut sync_tick = tokio::time::interval(config.sync_interval);
        let mut checkpoint_tick = tokio::time::interval(config.checkpoint_interval);
        checkpoint_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        sync_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Start-up has just projected everything (`start`): the first step one period on.
        let mut projection_tick = tokio::time::interval_at(
            tokio::time::Instant::now() + config.projection_interval,
            config.projection_interval,
        );
        projection_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The sync's read, while one runs: a task of its own (sync.rs), applied here
        // as soon as it is in.
        let mut sync_read: Option<JoinHandle<Result<sync::Delta, LedgerError>>> = None;
        loop {
            // Answers waiting at the stage are bounded; when it is full the writer
            // reports once it has taken them.
            let room = self.pipeline.room(config.batch_size_max);
            tokio::select! {
                biased;
                () = self.pipeline.report() => {
                    self.take_failure();
                    if self.stale {
                        self.poll_rebuild(true).await;
                    }
                }
                received = self.rx.recv_many(&mut jobs, room), if room > 0 => {
                    if received == 0 {
                        break;
                    }
                    self.process(&mut jobs).await;
                }
                read = async { sync_read.as_mut().expect("guarded").await }, if sync_read.is_some() => {
                    sync_read = None;
                    self.apply_sync(read);
                }
                _ = checkpoint_tick.tick() => self.checkpoint().await,
                _ = projection_tick.tick() => self.project(),
                _ = sync_tick.tick() => {
                    if self.stale {
                        self.poll_rebuild(true).await;
                    } else if sync_read.is_none() {
                        let (db, from) = (self.db.clone(), self.core.state.cursor);
                        sync_read = Some(tokio::spawn(sync::read(db, from)));
                    }
                    self.forget_decisions();
                    // Holds expire even when no traffic comes.
                    self.process(&mut jobs).await;
                }
            }
        }
        if let Some(task) = sync_read {
            task.abort();
        }
        // What is staged and at the writer, answered. Bounded: a writer that cannot
        // commit answers 91 within its own bound, so this ends.
        if tokio::time::timeout(Duration::from_secs(60), self.pipeline.drained())
            .await
            .is_err()
        {
            tracing::error!("the ledger writer did not finish its batches within 60 s");
        }
        // A clean stop leaves a checkpoint, so the next start reads less: after the one
        // running, if any (it would be cancelled with the runtime). Bounded, so a stop
        // always ends.
        if !self.stale {
            let db = self.db.clone();
            let running = self.checkpoint.take();
            let last = async move {
                if let Some(task) = running {
                    let _ = task.await;
                }
                db.write_checkpoint(TimestampMs::now().0).await
            };
            match tokio::time::timeout(Duration::from_secs(60), last).await {
                Ok(result) => log_checkpoint(result),
                Err(_) => {
                    tracing::warn!("final checkpoint took too long; the next start reads more")
                }
            }
        }
        tracing::info!("authoriser stopped: queue closed and drained");
    }

    /// Installs the rebuilt state if the rebuild task has finished; with `start`, begins
    /// an attempt when none is running. No batch of ours is written while stale, so
    /// the snapshot the task reads is the ledger as it stands; batches of other writers
    /// after it are picked up by the next sync from the snapshot's cursor.
    async fn poll_rebuild(&mut self, start: bool) {
        if let Some(task) = self.rebuild.take_if(|task| task.is_finished()) {
            match task.await {
                Ok(Ok(state)) => {
                    self.core.state = state;
                    self.stale = false;
                    tracing::warn!("state rebuilt from the ledger after a failed commit");
                }
                Ok(Err(err)) => tracing::error!(error = %err, "state rebuild failed; answering 91"),
                Err(err) => {
                    tracing::error!(error = %err, "state rebuild task failed; answering 91")
                }
            }
        }
        // Nothing of the failed epoch can be written any more (the writer refuses it),
        // and nothing of the next is staged while stale: the ledger read is final.
        if start && self.stale && self.rebuild.is_none() {
            let (db, policy) = (self.db.clone(), Arc::clone(&self.core.policy));
            self.rebuild = Some(tokio::spawn(async move {
                State::load(&db, &policy, TimestampMs::now()).await
            }));
        }
    }

    /// In a task of its own: a checkpoint reads and writes only the database (it sums in
    /// a snapshot and takes the ledger lock only for its closing row, ledger/checkpoint.rs),
    /// and a slow or partitioned database must not hold up the single writer. Not while
    /// stale; one at a time.
    async fn checkpoint(&mut self) {
        let running = self.checkpoint.as_ref().is_some_and(|t| !t.is_finished());
        if self.stale || running {
            return;
        }
        let db = self.db.clone();
        self.checkpoint = Some(tokio::spawn(async move {
            log_checkpoint(db.write_checkpoint(TimestampMs::now().0).await);
        }));
    }

    /// In a task of its own, like the checkpoint: the projections are read and written
    /// off the commit path, on the pool. One step a tick (a step is at most
    /// `STEP_BATCHES_MAX` batches, more than an interval of switch traffic); not while
    /// stale, when nothing of ours is committed.
    fn project(&mut self) {
        if self.stale || self.projector.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let db = self.db.clone();
        self.projector = Some(tokio::spawn(async move {
            log_projection(db.project_step().await);
        }));
    }

    async fn process(&mut self, jobs: &mut Vec<Job>) {
        crate::admin::metrics::authoriser_queue_depth(self.rx.len());
        // A failure the writer reported and this task has not taken yet: nothing more
        // may be decided on its effects.
        self.take_failure();
        if self.stale {
            // Only takes a finished rebuild; never waits for one.
            self.poll_rebuild(false).await;
        }
        if self.stale {
            for job in jobs.drain(..) {
                let _ = job
                    .reply
                    .send(Response::declined(ResponseCode::LedgerUnavailable));
            }
            return;
        }
        let now = TimestampMs::now();
        let mut staging = self.pipeline.stage();
        self.core.expire_holds(now, staging.batch());
        for job in jobs.drain(..) {
            let response = self.core.handle(&job.request, now, staging.batch());
            staging.waiting().push((job.reply, response));
        }
        if staging.batch().is_empty() && !staging.writing() {
            // Nothing to write, and nothing being written that they could depend on.
            for (reply, response) in staging.waiting().drain(..) {
                let _ = reply.send(response);
            }
            return;
        }
        staging.mark(self.epoch, now.0);
    }

    /// When the writer has reported a failed commit of this epoch: what is staged was
    /// decided on its effects and is answered 91, the next epoch begins, and the state
    /// is stale until rebuilt from the ledger. When the writer itself is gone (a panic:
    /// a bug), the same, with a new writer.
    fn take_failure(&mut self) {
        let (staged, gone) = {
            let mut staging = self.pipeline.stage();
            let gone = staging.writer_gone();
            if staging.failed_epoch() != Some(self.epoch) && !gone {
                return;
            }
            self.epoch += 1;
            staging.batch().clear();
            (std::mem::take(staging.waiting()), gone)
        };
        if gone {
            tracing::error!("the ledger writer stopped; starting a new one");
            self.pipeline = Pipeline::start(&self.db, "switch", release(Arc::clone(&self.health)));
        }
        self.stale = true;
        self.health.ledger_writable.store(false, Ordering::Relaxed);
        tracing::error!(
            answers = staged.len(),
            "a ledger commit failed: the state is rebuilt from the ledger, answering 91 meanwhile"
        );
        for (reply, _) in staged {
            let _ = reply.send(Response::declined(ResponseCode::LedgerUnavailable));
        }
    }

    /// Takes a finished sync read (sync.rs): applied unless the state was rebuilt since
    /// it started.
    fn apply_sync(&mut self, read: Result<Result<sync::Delta, LedgerError>, JoinError>) {
        match read {
            // The rebuild in progress reads everything afresh.
            Ok(Ok(_)) if self.stale => {}
            Ok(Ok(delta)) => {
                if !sync::apply(&mut self.core, delta) {
                    tracing::debug!("sync read dropped: the state was rebuilt meanwhile");
                }
            }
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "sync with the database failed; will retry")
            }
            Err(err) => tracing::error!(error = %err, "sync task failed; will retry"),
        }
    }

    /// Forgets decisions past the idempotency window and reports the journal's size.
    fn forget_decisions(&mut self) {
        let now = TimestampMs::now();
        let cutoff_ms = now.0 - self.core.policy.idempotency_window_ms;
        self.core.state.orphans.forget_before(cutoff_ms);
        let journal = &mut self.core.state.journal;
        journal.forget_before(cutoff_ms);
        let horizon_ms = journal.oldest_at_ms().map_or(0, |at_ms| now.0 - at_ms);
        crate::admin::metrics::idempotency_journal(
            journal.len(),
            Duration::from_millis(u64::try_from(horizon_ms).unwrap_or(0)),
            journal.evicted_early(),
        );
    }
}

fn log_projection(result: Result<crate::ledger::projection::Projected, LedgerError>) {
    match result {
        Ok(projected) => crate::admin::metrics::projection_lag(projected.lag_batches()),
        Err(err) => tracing::warn!(error = %err, "projection step failed; will retry"),
    }
}

fn log_checkpoint(result: Result<Option<i64>, crate::ledger::LedgerError>) {
    match result {
        Ok(Some(batch_seq)) => tracing::info!(batch_seq, "balances checkpointed"),
        Ok(None) => {}
        Err(err) => tracing::warn!(error = %err, "checkpoint failed; will retry"),
    }
}
