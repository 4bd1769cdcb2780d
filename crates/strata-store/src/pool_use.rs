//! Connection use, measured: every connection a transaction or a statement takes is counted in
//! `strata_db_connections_in_use` while held, and the wait for it is recorded in
//! `strata_db_acquire_wait_seconds` and the time it was held in `strata_db_hold_seconds`, all
//! labelled by backend and pool (never by tenant).

use std::ops::{Deref, DerefMut};
use std::time::Instant;

use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres, Transaction};
use strata_core::error::Result;
use strata_core::telemetry::{DB_ACQUIRE_WAIT, DB_HOLD, DB_IN_USE};
use tokio::sync::OwnedMutexGuard;

use crate::error::db_err;

/// One connection counted as in use until dropped, when its hold time is recorded.
pub(crate) struct InUse {
    gauge: metrics::Gauge,
    hold: metrics::Histogram,
    since: Instant,
}

impl InUse {
    /// Records how long the wait since `asked` took and counts the connection in.
    fn taken(backend: &'static str, pool: &'static str, asked: Instant) -> Self {
        metrics::histogram!(DB_ACQUIRE_WAIT, "backend" => backend, "pool" => pool).record(asked.elapsed().as_secs_f64());
        let gauge = metrics::gauge!(DB_IN_USE, "backend" => backend, "pool" => pool);
        gauge.increment(1.0);
        Self { gauge, hold: metrics::histogram!(DB_HOLD, "backend" => backend, "pool" => pool), since: Instant::now() }
    }
}

impl Drop for InUse {
    fn drop(&mut self) {
        self.gauge.decrement(1.0);
        self.hold.record(self.since.elapsed().as_secs_f64());
    }
}

/// A SQLite connection (or a group writer's state) held through its mutex, counted while held.
pub(crate) struct Held<T> {
    guard: OwnedMutexGuard<T>,
    _in_use: InUse,
}

impl<T> Held<T> {
    /// `guard`, taken for `pool` of `backend` after a wait that began at `asked`.
    pub fn new(backend: &'static str, guard: OwnedMutexGuard<T>, pool: &'static str, asked: Instant) -> Self {
        Self { guard, _in_use: InUse::taken(backend, pool, asked) }
    }
}

impl<T> Deref for Held<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for Held<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

/// A PostgreSQL pool and the name its connections are counted under.
#[derive(Clone, Debug)]
pub(crate) struct Pool {
    pub pool: PgPool,
    pub name: &'static str,
}

impl Pool {
    pub fn new(pool: PgPool, name: &'static str) -> Self {
        Self { pool, name }
    }

    /// A connection of the pool, for one statement.
    pub async fn acquire(&self) -> Result<(PoolConnection<Postgres>, InUse)> {
        let asked = Instant::now();
        let conn = self.pool.acquire().await.map_err(db_err)?;
        Ok((conn, InUse::taken("postgres", self.name, asked)))
    }

    /// A transaction on a connection of the pool (what `PgPool::begin` does, with the wait for
    /// the connection measured apart from the `BEGIN`).
    pub async fn begin(&self) -> Result<(Transaction<'static, Postgres>, InUse)> {
        let (conn, in_use) = self.acquire().await?;
        let tx = Transaction::begin(conn, None).await.map_err(db_err)?;
        Ok((tx, in_use))
    }
}
