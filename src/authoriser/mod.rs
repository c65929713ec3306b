//! The authoriser: one task owns every balance, counter and recent decision, takes
//! requests in batches from a bounded queue, decides them one after another, commits the
//! batch as one database transaction, and only then releases the responses
//! (design.md; the TigerBeetle / LMAX shape). While a batch commits the next one is
//! decided and queued behind it (ledger/pipeline.rs), at most `IN_FLIGHT_MAX` of them.

pub mod core;
mod journal;
mod load;
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
use crate::ledger::pipeline::{Done, Pipeline, IN_FLIGHT_MAX};
use crate::ledger::{Batch, Db, LedgerError, LedgerWriter};
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
        pipeline: Pipeline::start(LedgerWriter::new(db.clone(), "switch")),
        in_flight: std::collections::VecDeque::with_capacity(IN_FLIGHT_MAX),
        epoch: 0,
        spare: Vec::with_capacity(IN_FLIGHT_MAX),
        db,
        rx,
        health: Arc::clone(&health),
        batch: Batch::default(),
        stale: false,
        rebuild: None,
        checkpoint: None,
        projector: None,
    };
    let join = tokio::spawn(task.run(config));
    Ok((AuthoriserHandle { tx, health }, join))
}

/// A decided batch at the writer, and the answers that wait for it.
struct InFlight {
    /// `None` when the batch had no rows (everything answered 91 while stale): its
    /// answers still go out in order, after those before them.
    done: Option<oneshot::Receiver<Done>>,
    replies: Vec<(oneshot::Sender<Response>, Response)>,
    /// Ledger rows it carries.
    rows: usize,
}

struct Authoriser {
    core: Core,
    pipeline: Pipeline,
    /// Oldest first; at most `IN_FLIGHT_MAX`.
    in_flight: std::collections::VecDeque<InFlight>,
    /// Raised when a commit fails: the writer refuses what remains of the old one.
    epoch: u64,
    /// Batch buffers back from the writer, for reuse.
    spare: Vec<Batch>,
    db: Db,
    rx: mpsc::Receiver<Job>,
    health: Arc<Health>,
    batch: Batch,
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
            tokio::select! {
                biased;
                done = Self::oldest_done(&mut self.in_flight), if !self.in_flight.is_empty() => {
                    self.complete(done);
                    if self.stale {
                        self.poll_rebuild(true).await;
                    }
                }
                received = self.rx.recv_many(&mut jobs, config.batch_size_max),
                    if self.in_flight.len() < IN_FLIGHT_MAX =>
                {
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
                    if self.in_flight.len() < IN_FLIGHT_MAX {
                        self.process(&mut jobs).await;
                    }
                }
            }
        }
        if let Some(task) = sync_read {
            task.abort();
        }
        while !self.in_flight.is_empty() {
            let done = Self::oldest_done(&mut self.in_flight).await;
            self.complete(done);
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
        // Not while a batch is in flight: the state to rebuild is the ledger once the
        // writer has refused what remains of the failed epoch.
        if start && self.stale && self.rebuild.is_none() && self.in_flight.is_empty() {
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
    /// `STEP_BATCHES_MAX` batches, more than a second of switch traffic); not while
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
        if self.stale {
            // Only takes a finished rebuild; never waits for one.
            self.poll_rebuild(false).await;
        }
        let now = TimestampMs::now();
        self.batch.clear();
        if !self.stale {
            self.core.expire_holds(now, &mut self.batch);
        }
        let mut replies = Vec::with_capacity(jobs.len());
        for job in jobs.drain(..) {
            let response = if self.stale {
                Response::declined(ResponseCode::LedgerUnavailable)
            } else {
                self.core.handle(&job.request, now, &mut self.batch)
            };
            replies.push((job.reply, response));
        }
        let rows = self.batch.transfers.len();
        if self.batch.is_empty() && replies.is_empty() {
            return;
        }
        let done = (!self.batch.is_empty()).then(|| {
            let next = self.spare.pop().unwrap_or_default();
            let batch = std::mem::replace(&mut self.batch, next);
            self.pipeline.submit(batch, now.0, self.epoch)
        });
        self.in_flight.push_back(InFlight {
            done,
            replies,
            rows,
        });
    }

    /// The oldest batch in flight, once the writer is done with it.
    async fn oldest_done(
        in_flight: &mut std::collections::VecDeque<InFlight>,
    ) -> Option<Result<Done, oneshot::error::RecvError>> {
        match in_flight.front_mut().and_then(|f| f.done.as_mut()) {
            Some(done) => Some(done.await),
            None => None,
        }
    }

    /// Answers the oldest batch in flight: as decided when it is durable; 91 when it
    /// failed or was refused, and then the state is stale until rebuilt (once nothing
    /// is in flight: the writer refuses the rest of the failed epoch meanwhile).
    fn complete(&mut self, done: Option<Result<Done, oneshot::error::RecvError>>) {
        let Some(flight) = self.in_flight.pop_front() else {
            return;
        };
        let InFlight {
            mut replies, rows, ..
        } = flight;
        let failed = match done {
            None => None,
            Some(Ok(done)) => {
                crate::admin::metrics::ledger_commit(done.elapsed, rows, done.result.is_ok());
                let mut batch = done.batch;
                batch.clear();
                if self.spare.len() < IN_FLIGHT_MAX {
                    self.spare.push(batch);
                }
                done.result.err()
            }
            Some(Err(_)) => Some(LedgerError::Invariant("the ledger writer stopped".into())),
        };
        if let Some(err) = failed {
            tracing::error!(error = %err, rows, "ledger commit failed: batch answered 91");
            self.health.ledger_writable.store(false, Ordering::Relaxed);
            if !self.stale {
                self.stale = true;
                self.epoch += 1;
            }
            for (_, response) in replies.iter_mut() {
                *response = Response::declined(ResponseCode::LedgerUnavailable);
            }
        } else if rows > 0 {
            self.health.ledger_writable.store(true, Ordering::Relaxed);
        }
        for (reply, response) in replies {
            // The peer may have gone; its rows are committed either way.
            let _ = reply.send(response);
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
        let journal = &mut self.core.state.journal;
        journal.forget_before(now.0 - self.core.policy.idempotency_window_ms);
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
