//! The switch's ledger writer, fed from a stage so that deciding and committing overlap
//! and the writer never waits for the deciding task (the LMAX hand-over): the authoriser
//! decides requests straight into the staged batch, with the answers that wait for it;
//! the writer, the moment a commit is done, releases that batch's answers itself and
//! takes whatever is staged as its next batch. Before this the finished batch went back
//! to the authoriser task, which had to be scheduled before the next batch could start:
//! the writer sat idle a quarter of the time (docs/performance.md, session 5).
//!
//! A batch decided while another commits holds that one's effects, so if the first
//! fails the second must not be written. Every staged batch carries the authoriser's
//! epoch; after a failure the writer refuses, unwritten, every later batch of the failed
//! one's epoch and reports the failure on the stage. The authoriser answers what is
//! staged 91, moves to the next epoch and rebuilds its state from the ledger: nothing of
//! the failed epoch can be written any more, so the ledger it reads is final.
//!
//! Bounds: the stage holds at most what the authoriser lets in (its `room` check
//! against `batch_size_max`); one batch is at the writer.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::db::Db;
use super::rows::Batch;
use super::sqlite_writer::SqliteLedger;
use super::writer::LedgerWriter;
use super::LedgerError;

/// What became of a batch the writer took, told to the release function with the
/// answers that waited for it.
pub enum Outcome<'a> {
    /// Durable (or it had no rows: answers that waited only for the batch before).
    Durable { transfers: usize, elapsed: Duration },
    /// The write failed: nothing of it is in the ledger (or, on PostgreSQL, its outcome
    /// could not be known, which the writer logs as an error).
    Failed {
        err: &'a LedgerError,
        transfers: usize,
        elapsed: Duration,
    },
    /// Not written: an earlier batch of its epoch failed.
    Refused(&'a LedgerError),
}

impl Outcome<'_> {
    pub fn is_durable(&self) -> bool {
        matches!(self, Outcome::Durable { .. })
    }
}

/// Called by the writer with each batch's waiting answers and its outcome; it sends
/// them on. It runs on the writer's thread (SQLite) or task (PostgreSQL), between two
/// commits, so it must not block.
pub type Release<T> = Box<dyn FnMut(&mut Vec<T>, Outcome<'_>) + Send>;

/// The switch's writer and the stage it takes its batches from. Dropping it lets the
/// writer finish what is staged and stop.
pub struct Pipeline<T> {
    stage: Arc<Stage<T>>,
}

struct Stage<T> {
    staged: Mutex<Staged<T>>,
    /// Wakes the writer: something was staged, or the pipeline closed.
    to_writer: Notify,
    /// Wakes the authoriser: a failure, or (when it asked) room or idleness.
    to_authoriser: Notify,
}

struct Staged<T> {
    batch: Batch,
    waiting: Vec<T>,
    /// The epoch and time of what is staged.
    epoch: u64,
    now_ms: i64,
    /// The writer holds a batch (committing it, or refusing it).
    writing: bool,
    /// The newest epoch in which a commit failed: reported to the authoriser.
    failed_epoch: Option<u64>,
    /// The authoriser waits for room or idleness: tell it when either comes.
    authoriser_waits: bool,
    closed: bool,
    /// The writer has stopped (closed, or it panicked): nothing staged will be taken.
    writer_gone: bool,
}

impl<T> Staged<T> {
    fn is_empty(&self) -> bool {
        self.batch.is_empty() && self.waiting.is_empty()
    }
}

impl<T: Send + 'static> Pipeline<T> {
    /// Starts the writer: on SQLite a thread of its own (the writer's connection and
    /// its fsyncs stay off the runtime), on PostgreSQL a task owning its connection.
    /// Must be called within the tokio runtime.
    pub fn start(db: &Db, source: &'static str, release: Release<T>) -> Pipeline<T> {
        let stage = Arc::new(Stage {
            staged: Mutex::new(Staged {
                batch: Batch::default(),
                waiting: Vec::new(),
                epoch: 0,
                now_ms: 0,
                writing: false,
                failed_epoch: None,
                authoriser_waits: false,
                closed: false,
                writer_gone: false,
            }),
            to_writer: Notify::new(),
            to_authoriser: Notify::new(),
        });
        let writer_stage = Arc::clone(&stage);
        match db.sqlite_path() {
            Some(path) => {
                let started = std::thread::Builder::new()
                    .name("ledger-sqlite".into())
                    .spawn(move || {
                        let writer = Writer::Sqlite(SqliteLedger::start(path), source);
                        futures::executor::block_on(run(writer_stage, writer, release));
                    });
                if let Err(e) = started {
                    tracing::error!(error = %e, "cannot start the SQLite writer thread");
                    // Nothing will take what is staged: the authoriser answers it and
                    // tries another writer.
                    lock(&stage.staged).writer_gone = true;
                }
            }
            None => {
                let writer = Writer::Sql(LedgerWriter::new(db.clone(), source));
                tokio::spawn(run(writer_stage, writer, release));
            }
        }
        Pipeline { stage }
    }

    /// The stage, locked: decide into its batch, add the answers that wait for it,
    /// `mark` it. Dropping the guard hands it to the writer. Hold it only while
    /// deciding: the writer waits for it between two commits.
    pub fn stage(&self) -> Staging<'_, T> {
        Staging {
            staged: lock(&self.stage.staged),
            stage: &self.stage,
        }
    }

    /// How many more answers may wait at the stage; when none, `report` wakes the
    /// caller once the writer has taken them.
    pub fn room(&self, waiting_max: usize) -> usize {
        let mut staged = lock(&self.stage.staged);
        let room = waiting_max.saturating_sub(staged.waiting.len());
        if room == 0 {
            staged.authoriser_waits = true;
        }
        room
    }

    /// Waits until the writer reports: a failure (see `Staging::failed_epoch`), or the
    /// room or idleness the caller asked for.
    pub async fn report(&self) {
        self.stage.to_authoriser.notified().await;
    }

    /// Waits until nothing is staged and nothing is at the writer (or the writer is
    /// gone).
    pub async fn drained(&self) {
        loop {
            {
                let mut staged = lock(&self.stage.staged);
                if (staged.is_empty() && !staged.writing) || staged.writer_gone {
                    return;
                }
                staged.authoriser_waits = true;
            }
            self.report().await;
        }
    }
}

impl<T> Drop for Pipeline<T> {
    fn drop(&mut self) {
        lock(&self.stage.staged).closed = true;
        self.stage.to_writer.notify_one();
    }
}

/// The locked stage (`Pipeline::stage`).
pub struct Staging<'a, T> {
    staged: MutexGuard<'a, Staged<T>>,
    stage: &'a Stage<T>,
}

impl<T> Staging<'_, T> {
    pub fn batch(&mut self) -> &mut Batch {
        &mut self.staged.batch
    }

    pub fn waiting(&mut self) -> &mut Vec<T> {
        &mut self.staged.waiting
    }

    /// The epoch and time of what is staged now.
    pub fn mark(&mut self, epoch: u64, now_ms: i64) {
        self.staged.epoch = epoch;
        self.staged.now_ms = now_ms;
    }

    /// The writer holds a batch: answers staged now wait for it even with no rows.
    pub fn writing(&self) -> bool {
        self.staged.writing
    }

    /// The newest epoch in which a commit failed, if any.
    pub fn failed_epoch(&self) -> Option<u64> {
        self.staged.failed_epoch
    }

    /// The writer has stopped: what is staged will never be written or answered by it.
    pub fn writer_gone(&self) -> bool {
        self.staged.writer_gone
    }
}

impl<T> Drop for Staging<'_, T> {
    fn drop(&mut self) {
        if !self.staged.is_empty() {
            // Stores a permit when the writer is busy: it looks again after its commit.
            self.stage.to_writer.notify_one();
        }
    }
}

/// A poisoned lock means a thread panicked while holding it; the stage holds plain
/// data with no invariant half-updated across a panic point, so go on.
fn lock<T>(staged: &Mutex<Staged<T>>) -> MutexGuard<'_, Staged<T>> {
    staged
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

enum Writer {
    Sqlite(SqliteLedger, &'static str),
    Sql(LedgerWriter),
}

impl Writer {
    async fn commit(&mut self, batch: &mut Batch, now_ms: i64) -> Result<(), LedgerError> {
        match self {
            Writer::Sqlite(ledger, source) => ledger.commit(batch, source, now_ms).map(drop),
            Writer::Sql(writer) => writer.commit(batch, now_ms).await.map(drop),
        }
    }
}

/// Tells the authoriser when the writer's loop ends, however it ends: a panic in a
/// commit or a release unwinds through here, and the answers staged behind it would
/// otherwise wait for ever.
struct WriterGone<'a, T>(&'a Stage<T>);

impl<T> Drop for WriterGone<'_, T> {
    fn drop(&mut self) {
        lock(&self.0.staged).writer_gone = true;
        self.0.to_authoriser.notify_one();
    }
}

/// The writer's loop: take what is staged, write it, release its answers; wait only
/// when nothing is staged.
async fn run<T>(stage: Arc<Stage<T>>, writer: Writer, release: Release<T>) {
    let _gone = WriterGone(&stage);
    // Declared after the guard, so dropped before it: the writer's connection (and any
    // transaction a panic left open) is gone by the time the authoriser hears of it.
    let (mut writer, mut release) = (writer, release);
    let mut failed = FailedEpoch::default();
    // The buffers of the batch in hand, swapped with the stage's (reused, not freed).
    let mut batch = Batch::default();
    let mut waiting: Vec<T> = Vec::new();
    loop {
        let taken = {
            let mut staged = lock(&stage.staged);
            if std::mem::take(&mut staged.authoriser_waits) {
                stage.to_authoriser.notify_one();
            }
            staged.writing = !staged.is_empty();
            if staged.writing {
                std::mem::swap(&mut staged.batch, &mut batch);
                std::mem::swap(&mut staged.waiting, &mut waiting);
                Some((staged.epoch, staged.now_ms))
            } else if staged.closed {
                return;
            } else {
                None
            }
        };
        let Some((epoch, now_ms)) = taken else {
            stage.to_writer.notified().await;
            continue;
        };
        let transfers = batch.transfers.len();
        if let Some(refused) = failed.refuses(epoch) {
            release(&mut waiting, Outcome::Refused(&refused));
        } else if batch.is_empty() {
            release(
                &mut waiting,
                Outcome::Durable {
                    transfers,
                    elapsed: Duration::ZERO,
                },
            );
        } else {
            let started = Instant::now();
            let result = writer.commit(&mut batch, now_ms).await;
            let elapsed = started.elapsed();
            match result {
                Ok(()) => release(&mut waiting, Outcome::Durable { transfers, elapsed }),
                Err(err) => {
                    failed.record(epoch);
                    // Reported before the answers go: the authoriser stops staging on
                    // the failed state as soon as it can.
                    lock(&stage.staged).failed_epoch = Some(epoch);
                    stage.to_authoriser.notify_one();
                    release(
                        &mut waiting,
                        Outcome::Failed {
                            err: &err,
                            transfers,
                            elapsed,
                        },
                    );
                }
            }
        }
        debug_assert!(waiting.is_empty(), "release answers every waiting request");
        waiting.clear();
        batch.clear();
    }
}

/// The newest epoch in which a batch failed: later batches of it are refused.
#[derive(Debug, Default)]
struct FailedEpoch(Option<u64>);

impl FailedEpoch {
    /// The error for a batch of an epoch that failed.
    fn refuses(&self, epoch: u64) -> Option<LedgerError> {
        match self.0 {
            Some(failed) if epoch <= failed => Some(LedgerError::Invariant(format!(
                "an earlier batch of epoch {epoch} failed: not written"
            ))),
            _ => None,
        }
    }

    fn record(&mut self, epoch: u64) {
        self.0 = Some(self.0.map_or(epoch, |failed| failed.max(epoch)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_a_failure_the_rest_of_its_epoch_is_refused_and_later_epochs_are_not() {
        let mut failed = FailedEpoch::default();
        assert!(failed.refuses(0).is_none());
        failed.record(3);
        assert!(failed.refuses(2).is_some());
        assert!(failed.refuses(3).is_some());
        assert!(failed.refuses(4).is_none());
        failed.record(1);
        assert!(
            failed.refuses(3).is_some(),
            "an older failure lowers nothing"
        );
    }
}
