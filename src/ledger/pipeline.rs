//! The ledger writer as a queue, so deciding and committing overlap: while batch N
//! commits, the authoriser decides the requests that arrive into batch N+1 and hands
//! it over the moment N is done (authoriser/mod.rs keeps one batch here and one open;
//! two queued here made each batch smaller and the commits more, docs/performance.md).
//!
//! A batch decided while another commits holds that one's effects, so if the first
//! fails the second must not be written. The authoriser answers its open batch 91 when
//! the one before fails; for batches already queued here, every batch carries the
//! authoriser's epoch and, after a failure, the writer refuses unwritten every later
//! batch of the failed one's epoch. The authoriser moves to the next epoch and rebuilds
//! its state from the ledger once nothing is in flight.

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::rows::Batch;
use super::sqlite_writer::SqliteWriter;
use super::writer::{Committed, LedgerWriter};
use super::LedgerError;

/// Batches queued at the writer at most: the one committing and the next.
pub const IN_FLIGHT_MAX: usize = 2;

/// A batch back from the writer, written or not.
pub struct Done {
    /// For reuse: its rows as they were handed over.
    pub batch: Batch,
    pub result: Result<Committed, LedgerError>,
    /// The writer's own time on it (not the time it waited in the queue).
    pub elapsed: Duration,
}

impl Done {
    /// A batch handed back unwritten.
    pub(crate) fn unwritten(batch: Batch, err: LedgerError) -> Done {
        Done {
            batch,
            result: Err(err),
            elapsed: Duration::ZERO,
        }
    }
}

/// The newest epoch in which a batch failed: later batches of it are refused.
#[derive(Debug, Default)]
pub(crate) struct FailedEpoch(Option<u64>);

impl FailedEpoch {
    /// The error for a batch of an epoch that failed; `None` for a lone commit.
    pub(crate) fn refuses(&self, epoch: Option<u64>) -> Option<LedgerError> {
        match (epoch, self.0) {
            (Some(epoch), Some(failed)) if epoch <= failed => Some(LedgerError::Invariant(
                format!("an earlier batch of epoch {epoch} failed: not written"),
            )),
            _ => None,
        }
    }

    pub(crate) fn record(&mut self, epoch: Option<u64>) {
        if let Some(epoch) = epoch {
            self.0 = Some(self.0.map_or(epoch, |failed| failed.max(epoch)));
        }
    }
}

struct Work {
    batch: Batch,
    now_ms: i64,
    epoch: u64,
    reply: oneshot::Sender<Done>,
}

pub struct Pipeline(Queue);

enum Queue {
    /// SQLite's writer thread is a queue already: batches go to it directly.
    Sqlite(SqliteWriter, &'static str),
    /// PostgreSQL: a task owns the writer and its connection.
    Task(mpsc::Sender<Work>),
}

impl Pipeline {
    pub fn start(mut writer: LedgerWriter) -> Pipeline {
        if let Some(sqlite) = writer.take_sqlite() {
            return Pipeline(Queue::Sqlite(sqlite, writer.source()));
        }
        let (tx, rx) = mpsc::channel(IN_FLIGHT_MAX);
        tokio::spawn(run(writer, rx));
        Pipeline(Queue::Task(tx))
    }

    /// Queues `batch` behind those in flight (at most `IN_FLIGHT_MAX` of them); the
    /// answer comes once it is durable, or refused, or failed.
    pub fn submit(&self, batch: Batch, now_ms: i64, epoch: u64) -> oneshot::Receiver<Done> {
        match &self.0 {
            Queue::Sqlite(sqlite, source) => sqlite.submit(batch, source, now_ms, Some(epoch)),
            Queue::Task(tx) => {
                let (reply, answer) = oneshot::channel();
                let work = Work {
                    batch,
                    now_ms,
                    epoch,
                    reply,
                };
                if let Err(err) = tx.try_send(work) {
                    let work = match err {
                        mpsc::error::TrySendError::Full(w)
                        | mpsc::error::TrySendError::Closed(w) => w,
                    };
                    let _ = work.reply.send(Done::unwritten(
                        work.batch,
                        LedgerError::Invariant(
                            "ledger writer queue full or gone: not written".into(),
                        ),
                    ));
                }
                answer
            }
        }
    }
}

async fn run(mut writer: LedgerWriter, mut rx: mpsc::Receiver<Work>) {
    let mut failed = FailedEpoch::default();
    while let Some(mut work) = rx.recv().await {
        if let Some(refused) = failed.refuses(Some(work.epoch)) {
            let _ = work.reply.send(Done::unwritten(work.batch, refused));
            continue;
        }
        let started = Instant::now();
        let result = writer.commit(&mut work.batch, work.now_ms).await;
        if result.is_err() {
            failed.record(Some(work.epoch));
        }
        let _ = work.reply.send(Done {
            batch: work.batch,
            result,
            elapsed: started.elapsed(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_a_failure_the_rest_of_its_epoch_is_refused_and_later_epochs_are_not() {
        let mut failed = FailedEpoch::default();
        assert!(failed.refuses(Some(0)).is_none());
        failed.record(Some(3));
        assert!(failed.refuses(Some(2)).is_some());
        assert!(failed.refuses(Some(3)).is_some());
        assert!(failed.refuses(Some(4)).is_none());
        // A lone commit (the command line's) is never refused.
        assert!(failed.refuses(None).is_none());
        failed.record(Some(1));
        assert!(
            failed.refuses(Some(3)).is_some(),
            "an older failure lowers nothing"
        );
        failed.record(None);
        assert!(failed.refuses(Some(4)).is_none());
    }
}
