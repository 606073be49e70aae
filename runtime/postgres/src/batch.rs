//! Group commit: many sessions' commits share one transaction and one round trip.
//!
//! Every commit goes into one bounded queue (a full queue makes the caller wait: backpressure, not growth). A
//! dispatcher takes the commits waiting whenever a transaction slot is free (at most the pool's size in flight) and
//! sends them as one pipelined transaction: BEGIN, then for each commit its fence and its statements, then COMMIT.
//! While every slot is busy the queue fills, so batches grow with the load and a lone caller pays one round trip.
//!
//! Each commit still lands whole or not at all, and is acknowledged only once the COMMIT that carried it returned.
//! When one commit in a batch fails (its fence refuses its epoch, an input row it names is missing), the server
//! aborts the whole transaction: that commit alone is failed with its own error, and the others are sent again
//! without it, so one session's refusal never fails another's write. A COMMIT that fails, or a batch that does not
//! answer in time, fails every commit in it: their fate is unknown, as for any unacknowledged write.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use burrow::{EpochId, SessionId, StoreError};
use burrow_env::sync::{Semaphore, mpsc, oneshot};
use burrow_env::time::{Duration, timeout};
use tokio_postgres::types::ToSql;

use crate::pool::{Lent, Pool, unavailable};
use crate::schema::Q;
use crate::{Params, describe, int};

/// Commits waiting at most; a caller beyond it waits for room.
pub(crate) const QUEUE: usize = 4_096;
/// Commits in one transaction at most.
pub(crate) const BATCH_MAX: usize = 256;

/// One session's commit on its way.
pub(crate) struct Commit {
    pub(crate) session: SessionId,
    pub(crate) epoch: EpochId,
    pub(crate) writes: Vec<(Q, Params)>,
    pub(crate) reply: oneshot::Sender<Result<(), Failure>>,
}

/// Why a commit did not land.
pub(crate) enum Failure {
    /// The server refused this commit's own statements (to be explained: fenced, unknown input).
    Refused(tokio_postgres::Error),
    /// The batch could not be sent or committed.
    Store(StoreError),
}

/// The queue's sending side; the dispatcher ends when every store value that holds it is gone.
#[derive(Clone)]
pub(crate) struct Batcher {
    queue: mpsc::Sender<Commit>,
    counts: Arc<Counts>,
}

/// Commits landed and the transactions that carried them (what [`crate::PostgresStore::commit_counts`] reports).
#[derive(Default)]
pub(crate) struct Counts {
    pub(crate) commits: AtomicU64,
    pub(crate) transactions: AtomicU64,
}

impl Batcher {
    /// Starts the dispatcher over `pool`, with at most `slots` transactions in flight, each bounded by `limit`.
    pub(crate) fn start(pool: Arc<Pool>, slots: usize, limit: Duration) -> Batcher {
        let (queue, mut waiting) = mpsc::channel::<Commit>(QUEUE);
        let counts = Arc::new(Counts::default());
        let counting = counts.clone();
        drop(burrow_env::task::spawn(async move {
            let slots = Arc::new(Semaphore::new(slots.max(1)));
            while let Some(first) = waiting.recv().await {
                // Wait for a slot first: the commits that arrive meanwhile join this batch.
                let Ok(slot) = slots.clone().acquire_owned().await else { return };
                let mut batch = vec![first];
                while batch.len() < BATCH_MAX {
                    match waiting.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let (pool, counts) = (pool.clone(), counting.clone());
                drop(burrow_env::task::spawn(async move {
                    run(&pool, batch, limit, &counts).await;
                    drop(slot);
                }));
            }
        }));
        Batcher { queue, counts }
    }

    /// Commits landed so far, and the transactions (round trips) that carried them.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (self.counts.commits.load(Ordering::Relaxed), self.counts.transactions.load(Ordering::Relaxed))
    }

    /// Sends `commit`'s writes and waits for the answer.
    pub(crate) async fn commit(
        &self,
        session: SessionId,
        epoch: EpochId,
        writes: Vec<(Q, Params)>,
    ) -> Result<(), Failure> {
        let (reply, answer) = oneshot::channel();
        let commit = Commit { session, epoch, writes, reply };
        if self.queue.send(commit).await.is_err() {
            return Err(Failure::Store(unavailable("the store's writer has stopped")));
        }
        answer.await.unwrap_or_else(|_| Err(Failure::Store(unavailable("the store's writer has stopped"))))
    }
}

/// Commits `batch`, sending it again without each commit the server refused, until it lands or fails as a whole.
async fn run(pool: &Pool, mut batch: Vec<Commit>, limit: Duration, counts: &Counts) {
    while !batch.is_empty() {
        let conn = match pool.get().await {
            Ok(conn) => conn,
            Err(error) => return fail_all(batch, &error),
        };
        match timeout(limit, send(&conn, &batch)).await {
            Err(_) => {
                let error = unavailable(format!("PostgreSQL did not answer within {} ms", limit.as_millis()));
                return fail_all(batch, &error);
            }
            Ok(Sent::Landed) => {
                counts.transactions.fetch_add(1, Ordering::Relaxed);
                counts.commits.fetch_add(batch.len() as u64, Ordering::Relaxed);
                for commit in batch {
                    let _ = commit.reply.send(Ok(()));
                }
                return;
            }
            Ok(Sent::Refused(k, error)) => {
                let refused = batch.remove(k);
                let _ = refused.reply.send(Err(Failure::Refused(error)));
            }
            Ok(Sent::Failed(error)) => return fail_all(batch, &unavailable(describe(&error))),
        }
    }
}

fn fail_all(batch: Vec<Commit>, error: &StoreError) {
    for commit in batch {
        let _ = commit.reply.send(Err(Failure::Store(error.clone())));
    }
}

/// How one transaction went.
enum Sent {
    /// COMMIT returned: every commit in it landed.
    Landed,
    /// The `k`-th commit's own statement failed first; nothing landed.
    Refused(usize, tokio_postgres::Error),
    /// BEGIN or COMMIT failed: nothing is known to have landed.
    Failed(tokio_postgres::Error),
}

/// BEGIN, every commit's fence and statements, COMMIT: sent together, answered together.
async fn send(conn: &Lent<'_>, batch: &[Commit]) -> Sent {
    let keys: Vec<[i64; 2]> = batch.iter().map(|c| [int(c.session.0), int(c.epoch.0)]).collect();
    let begin = conn.client.execute(conn.st(Q::Begin), &[]);
    let mut statements = Vec::new();
    for (k, commit) in batch.iter().enumerate() {
        let fence: Vec<&(dyn ToSql + Sync)> = keys[k].iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        statements.push((k, conn.client.execute_raw(conn.st(Q::Admit), fence)));
        for (q, params) in &commit.writes {
            let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
            statements.push((k, conn.client.execute_raw(conn.st(*q), params)));
        }
    }
    let (owners, statements): (Vec<usize>, Vec<_>) = statements.into_iter().unzip();
    let commit = conn.client.execute(conn.st(Q::Commit), &[]);
    let (begin, answers, committed) =
        futures_util::future::join3(begin, futures_util::future::join_all(statements), commit).await;
    if let Err(error) = begin {
        return Sent::Failed(error);
    }
    // The first failure is the cause: every statement after it only says the transaction was aborted.
    if let Some((k, error)) = owners.into_iter().zip(answers).find_map(|(k, a)| a.err().map(|e| (k, e))) {
        return Sent::Refused(k, error);
    }
    match committed {
        Ok(_) => Sent::Landed,
        Err(error) => Sent::Failed(error),
    }
}
