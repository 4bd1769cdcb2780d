//! Read coalescing (PostgreSQL): concurrent point reads of one kind share one statement.
//!
//! The hottest reads (whoami's wallet, a child's summary) are one indexed row each, and on
//! PostgreSQL a request then spends most of its database time on the round trip and the
//! backend's per-statement work, not on the row. Here a read joins a queue; one batch at a time
//! takes everything queued (up to `MAX_BATCH` keys) and fetches it with one
//! `… WHERE id = ANY(…)` statement, and each reader gets its own row. Reads that arrive while a
//! batch is running wait for the next one, so every read's statement starts after the read was
//! asked for: a reader sees every write committed before it asked, exactly as with a statement of
//! its own (READ COMMITTED takes its snapshot when the statement starts). No timer: an idle
//! coalescer runs a lone read at once.
//!
//! The batch runs in a task of its own, so a request dropped while it leads (a client that hung
//! up) never strands the readers queued behind it.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use strata_core::credits::Wallet;
use strata_core::error::{CoreError, Result};
use strata_core::id::OrgId;
use strata_core::org::Org;
use tokio::sync::oneshot;

use crate::conn::{Conn, Link};
use crate::pool_use::Pool;
use crate::query::Q;
use crate::rows::{self, ORG_COLUMNS_O, WALLET_COLUMNS, WALLET_COLUMNS_W};

/// Keys one statement fetches at most.
pub(crate) const MAX_BATCH: usize = 256;

type Fetch<K, V> = dyn Fn(Vec<K>) -> Pin<Box<dyn Future<Output = Result<HashMap<K, V>>> + Send>> + Send + Sync;

struct Queue<K, V> {
    waiting: Vec<(K, oneshot::Sender<Result<Option<V>>>)>,
    /// Whether a batch task is running (it takes what is queued until the queue is empty).
    running: bool,
}

/// A coalescer of reads by key `K` of values `V` (see the module).
pub(crate) struct Coalescer<K, V> {
    queue: Arc<Mutex<Queue<K, V>>>,
    fetch: Arc<Fetch<K, V>>,
}

impl<K, V> Coalescer<K, V>
where
    K: Clone + Eq + Hash + Send + 'static,
    V: Clone + Send + 'static,
{
    /// `fetch` reads the values of a batch of distinct keys; a key it does not return is absent.
    pub(crate) fn new<F, Fut>(fetch: F) -> Self
    where
        F: Fn(Vec<K>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<HashMap<K, V>>> + Send + 'static,
    {
        let fetch: Arc<Fetch<K, V>> = Arc::new(move |keys| Box::pin(fetch(keys)));
        Self { queue: Arc::new(Mutex::new(Queue { waiting: Vec::new(), running: false })), fetch }
    }

    /// The value of `key` as of a statement that started after this call.
    pub(crate) async fn get(&self, key: K) -> Result<Option<V>> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut q = self.queue.lock().map_err(|_| CoreError::internal("the read coalescer's queue is poisoned"))?;
            q.waiting.push((key, tx));
            !std::mem::replace(&mut q.running, true)
        };
        if start {
            tokio::spawn(run(self.queue.clone(), self.fetch.clone()));
        }
        rx.await.map_err(|_| CoreError::internal("a coalesced read was dropped before it ran"))?
    }
}

/// Ends a batch task however it ends: one that panicked or was cancelled mid-batch must not
/// leave `running` set (no task would ever take the queue again) nor readers waiting for good.
struct Running<K, V> {
    queue: Arc<Mutex<Queue<K, V>>>,
    finished: bool,
}

impl<K, V> Drop for Running<K, V> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let waiting = match self.queue.lock() {
            Ok(mut q) => {
                q.running = false;
                std::mem::take(&mut q.waiting)
            }
            Err(_) => return,
        };
        for (_, reply) in waiting {
            let _ = reply.send(Err(CoreError::internal("the coalesced read's batch task ended before it ran")));
        }
    }
}

/// Runs batches until the queue is empty.
async fn run<K, V>(queue: Arc<Mutex<Queue<K, V>>>, fetch: Arc<Fetch<K, V>>)
where
    K: Clone + Eq + Hash + Send + 'static,
    V: Clone + Send + 'static,
{
    let mut guard = Running { queue: queue.clone(), finished: false };
    loop {
        let batch: Vec<(K, oneshot::Sender<Result<Option<V>>>)> = {
            let Ok(mut q) = queue.lock() else { return };
            if q.waiting.is_empty() {
                q.running = false;
                guard.finished = true;
                return;
            }
            let n = q.waiting.len().min(MAX_BATCH);
            q.waiting.drain(..n).collect()
        };
        let mut keys: Vec<K> = Vec::with_capacity(batch.len());
        for (k, _) in &batch {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
        match fetch(keys).await {
            Ok(found) => {
                for (k, reply) in batch {
                    let _ = reply.send(Ok(found.get(&k).cloned()));
                }
            }
            Err(e) => {
                let unavailable = matches!(e, CoreError::Unavailable { .. });
                let cause = strata_core::error::chain(&e);
                for (_, reply) in batch {
                    let e = if unavailable { CoreError::unavailable(cause.clone()) } else { CoreError::internal(cause.clone()) };
                    let _ = reply.send(Err(e));
                }
            }
        }
    }
}

/// A child's summary row: the org, its wallet, its project count.
pub(crate) type Summary = (Org, Wallet, i64);

/// The PostgreSQL reads that are coalesced: an org's wallet (whoami), a child's summary
/// (`GET /v1/organizations/:id`).
pub(crate) struct PgReads {
    pub(crate) wallets: Coalescer<OrgId, Wallet>,
    pub(crate) summaries: Coalescer<OrgId, Summary>,
}

impl PgReads {
    pub(crate) fn new(pool: &Pool) -> Self {
        let p = pool.clone();
        let wallets = Coalescer::new(move |ids: Vec<OrgId>| {
            let sql = format!("SELECT {WALLET_COLUMNS} FROM wallets WHERE org_id = ANY(string_to_array($1, ','))");
            fetch(p.clone(), sql, ids, |r| {
                let w = rows::wallet(r)?;
                Ok((w.org_id, w))
            })
        });
        let p = pool.clone();
        let summaries = Coalescer::new(move |ids: Vec<OrgId>| {
            let sql = format!(
                "SELECT {ORG_COLUMNS_O}, {WALLET_COLUMNS_W}, (SELECT COUNT(*) FROM projects p WHERE p.org_id = o.id) AS project_count \
                 FROM organizations o JOIN wallets w ON w.org_id = o.id WHERE o.id = ANY(string_to_array($1, ','))"
            );
            fetch(p.clone(), sql, ids, |r| {
                let org = rows::org(r, "o_")?;
                Ok((org.id, (org, rows::wallet_prefixed(r, "w_")?, r.int("project_count")?)))
            })
        });
        Self { wallets, summaries }
    }
}

/// Runs `sql` (its one parameter: the ids, comma-separated) and maps each row to its entry.
async fn fetch<V>(
    pool: Pool,
    sql: String,
    ids: Vec<OrgId>,
    entry: fn(&crate::query::Row) -> Result<(OrgId, V)>,
) -> Result<HashMap<OrgId, V>> {
    let ids: Vec<String> = ids.iter().map(OrgId::uuid_string).collect();
    let found = Q::new(&sql).str(&ids.join(",")).fetch_all(&mut Conn::from(Link::PgPool(pool))).await?;
    found.iter().map(entry).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_reads_share_statements_and_each_gets_its_own_value() {
        let statements = Arc::new(AtomicUsize::new(0));
        let (gate_tx, gate_rx) = tokio::sync::watch::channel(false);
        let counted = statements.clone();
        let c = Arc::new(Coalescer::new(move |keys: Vec<u32>| {
            let counted = counted.clone();
            let mut gate = gate_rx.clone();
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                // The first batch waits until every reader has queued.
                let _ = gate.wait_for(|open| *open).await;
                Ok(keys.into_iter().filter(|k| k % 7 != 0).map(|k| (k, k * 10)).collect())
            }
        }));
        let first = tokio::spawn({
            let c = c.clone();
            async move { c.get(1).await }
        });
        while statements.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // 100 reads queued behind the running batch: they share the next statement.
        let rest: Vec<_> = (0..100u32)
            .map(|k| {
                let c = c.clone();
                tokio::spawn(async move { (k, c.get(k).await) })
            })
            .collect();
        while c.queue.lock().unwrap().waiting.len() < 100 {
            tokio::task::yield_now().await;
        }
        gate_tx.send_replace(true);
        assert_eq!(first.await.unwrap().unwrap(), Some(10));
        for r in rest {
            let (k, v) = r.await.unwrap();
            assert_eq!(v.unwrap(), (k % 7 != 0).then_some(k * 10), "key {k}");
        }
        assert_eq!(statements.load(Ordering::SeqCst), 2, "one statement for the first read, one for the 100 queued");
        assert!(!c.queue.lock().unwrap().running, "the batch task ends when the queue is empty");
    }

    #[tokio::test]
    async fn a_batch_task_that_dies_fails_its_reads_and_the_next_read_starts_a_new_one() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let c = Coalescer::new(move |keys: Vec<u32>| {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                assert!(n > 0, "the first batch task dies");
                Ok(keys.into_iter().map(|k| (k, k)).collect())
            }
        });
        assert!(c.get(1).await.is_err(), "the read of the dead batch fails instead of hanging");
        assert!(!c.queue.lock().unwrap().running);
        assert_eq!(c.get(2).await.unwrap(), Some(2));
    }

    #[tokio::test]
    async fn a_failed_statement_fails_every_read_of_its_batch_and_the_next_one_runs() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let c = Coalescer::new(move |keys: Vec<u32>| {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 { Err(CoreError::unavailable("the database went away")) } else { Ok(keys.into_iter().map(|k| (k, k)).collect()) }
            }
        });
        let e = c.get(3).await.unwrap_err();
        assert!(matches!(e, CoreError::Unavailable { .. }), "{e:?}");
        assert_eq!(c.get(3).await.unwrap(), Some(3));
    }
}
