//! PostgreSQL outside a transaction: the pools' settings, the first connection (which names
//! why a server cannot be reached), the command line's one-off reads, and scratch databases.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use strata_core::error::{CoreError, Result};

use crate::DbTimeouts;
use crate::error::{LAST_CONNECTION_LOSS, db_err, migrate_err, process_ms};
use crate::pool_use::Pool;

/// PostgreSQL pool settings. sqlx pings a connection (a round trip) on every acquire by default,
/// which would double the round trips of a one-statement request; here a connection is pinged
/// before use only when it sat idle for a while, or since before the database was last found
/// unreachable (so after an outage each pooled connection is tested once, a broken one is
/// replaced, and requests succeed again as soon as the database is back).
pub(crate) fn pg_pool_options(max: u32, timeouts: DbTimeouts) -> PgPoolOptions {
    const PING_IF_IDLE_FOR: Duration = Duration::from_secs(30);
    PgPoolOptions::new().max_connections(max).acquire_timeout(timeouts.acquire).test_before_acquire(false).before_acquire(|conn, meta| {
        Box::pin(async move {
            let idle_ms = u64::try_from(meta.idle_for.as_millis()).unwrap_or(u64::MAX);
            let last_used = process_ms().saturating_sub(idle_ms);
            let outage_since = LAST_CONNECTION_LOSS.load(std::sync::atomic::Ordering::Relaxed) >= last_used;
            if meta.idle_for >= PING_IF_IDLE_FOR || outage_since {
                sqlx::Connection::ping(conn).await?;
            }
            Ok(true)
        })
    })
}

/// How long the command line's one-off reads (does a database exist, its schema, its clock)
/// wait for PostgreSQL to answer before saying it did not.
const COMMAND_CONNECT_WAIT: Duration = Duration::from_secs(5);

/// Opens one PostgreSQL connection before any pool is made, so that a server that cannot be
/// reached is a refusal naming the cause at once (connection refused, authentication failed, no
/// such database, no answer within `wait`, at least 1 s) rather than a pool's timeout. Returns
/// the parsed options (for the pools) and the connection.
pub(crate) async fn first_connection(url: &str, wait: Duration) -> Result<(sqlx::postgres::PgConnectOptions, sqlx::PgConnection)> {
    use sqlx::Connection;
    let where_ = redact_url(url);
    let options: sqlx::postgres::PgConnectOptions =
        url.parse().map_err(|e| refusal(format!("--database-url {where_} is not a PostgreSQL URL: {e}")))?;
    let wait = wait.max(Duration::from_secs(1));
    let conn = match tokio::time::timeout(wait, sqlx::PgConnection::connect_with(&options)).await {
        Err(_) => return Err(refusal(format!("PostgreSQL at {where_} did not answer within {} s", wait.as_secs()))),
        Ok(Err(e)) => {
            let why = match &e {
                sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                    "connection refused (is PostgreSQL running and listening there?)".to_owned()
                }
                sqlx::Error::Io(io) => format!("cannot connect: {io}"),
                sqlx::Error::Database(d) if d.code().as_deref() == Some("28P01") || d.code().as_deref() == Some("28000") => {
                    format!("authentication failed: {}", d.message())
                }
                sqlx::Error::Database(d) if d.code().as_deref() == Some("3D000") => {
                    format!("{} (create it, or point --database-url at another)", d.message())
                }
                other => other.to_string(),
            };
            return Err(refusal(format!("cannot open PostgreSQL at {where_}: {why}")));
        }
        Ok(Ok(conn)) => conn,
    };
    Ok((options, conn))
}

/// A database URL as it may be printed: without its password.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "the --database-url given".to_owned(),
    }
}

/// An operator's mistake or a refusal to start: one line saying what to do (never "internal").
fn refusal(message: String) -> CoreError {
    CoreError::Validation { field: None, message, code: None, bounds: None }
}

/// PostgreSQL connections of the background workers (beside the 32 that serve requests).
const WORKER_CONNECTIONS: u32 = 6;

/// A node's PostgreSQL pools: `requests` (32) serve requests; `relaxed` (8) take idempotency
/// claims with `synchronous_commit = off`; `workers` (6, opened as needed) are the background
/// workers' own, so requests waiting on a row lock, which hold their connections, never starve
/// the outbox of one.
pub(crate) struct Pools {
    pub requests: Pool,
    pub relaxed: Pool,
    pub workers: Pool,
}

/// Opens the pools after one first connection (see `first_connection`), with every session's
/// `statement_timeout` set from `timeouts`, and applies the migrations.
pub(crate) async fn pools(url: &str, timeouts: DbTimeouts) -> Result<Pools> {
    let (mut options, first) = first_connection(url, timeouts.acquire).await?;
    let _ = sqlx::Connection::close(first).await;
    if let Some(t) = timeouts.statement {
        options = options.options([("statement_timeout", format!("{}ms", t.as_millis()))]);
    }
    let requests = Pool::new(pg_pool_options(32, timeouts).connect_with(options.clone()).await.map_err(db_err)?, "requests");
    // sqlx holds a PostgreSQL advisory lock while it migrates, so N nodes starting together
    // migrate once; the others wait, then find nothing to apply.
    let migrator = sqlx::migrate!("migrations/postgres");
    migrator.run(&requests.pool).await.map_err(|e| migrate_err(&migrator, e))?;
    let relaxed = pg_pool_options(8, timeouts)
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                sqlx::Executor::execute(conn, "SET synchronous_commit = off").await?;
                Ok(())
            })
        })
        .connect_with(options.clone())
        .await
        .map_err(db_err)?;
    let relaxed = Pool::new(relaxed, "relaxed");
    let workers = Pool::new(pg_pool_options(WORKER_CONNECTIONS, timeouts).connect_lazy_with(options), "workers");
    Ok(Pools { requests, relaxed, workers })
}

/// Whether the database `url` names holds strata's schema. Creates nothing.
pub(crate) async fn schema_present(url: &str) -> Result<bool> {
    let present =
        read_int(url, "SELECT CAST(CASE WHEN to_regclass('public._sqlx_migrations') IS NULL THEN 0 ELSE 1 END AS BIGINT) AS v").await?;
    Ok(present == Some(1))
}

/// One integer (column `v`, possibly NULL) that `sql` reads on a connection of its own.
pub(crate) async fn read_int(url: &str, sql: &str) -> Result<Option<i64>> {
    let (_, mut conn) = first_connection(url, COMMAND_CONNECT_WAIT).await?;
    let row = sqlx::query(sql).fetch_one(&mut conn).await.map_err(db_err)?;
    let _ = sqlx::Connection::close(conn).await;
    sqlx::Row::try_get::<Option<i64>, _>(&row, "v").map_err(db_err)
}

/// Creates an empty PostgreSQL database next to the one `url` names (same server and
/// credentials), for a scratch run; returns its URL.
pub async fn create_scratch_postgres(url: &str, prefix: &str) -> Result<String> {
    use sqlx::{Connection, Executor};
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let name = format!("{prefix}_{}_{nanos}", std::process::id());
    let mut conn = sqlx::PgConnection::connect(url).await.map_err(db_err)?;
    conn.execute(format!("CREATE DATABASE \"{name}\"").as_str())
        .await
        .map_err(|e| CoreError::internal_from("cannot create a scratch database next to the configured one", e))?;
    let _ = conn.close().await;
    Ok(with_database(url, &name))
}

/// Drops a database `create_scratch_postgres` made (`scratch` is its URL), connecting through
/// `url`.
pub async fn drop_scratch_postgres(url: &str, scratch: &str) -> Result<()> {
    use sqlx::{Connection, Executor};
    let name = database_name(scratch);
    let mut conn = sqlx::PgConnection::connect(url).await.map_err(db_err)?;
    // The run's pools close as they are dropped; give their sessions a moment to end (dropping a
    // database with sessions still closing makes PostgreSQL wait for each), then force the rest.
    for _ in 0..50 {
        let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = $1")
            .bind(&name)
            .fetch_one(&mut conn)
            .await
            .map_err(db_err)?;
        if sessions == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    conn.execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str()).await.map_err(db_err)?;
    let _ = conn.close().await;
    Ok(())
}

fn split_url(url: &str) -> (&str, &str, &str) {
    let (body, query) = url.split_once('?').unwrap_or((url, ""));
    let (head, name) = body.rsplit_once('/').unwrap_or((body, ""));
    (head, name, query)
}

fn database_name(url: &str) -> String {
    split_url(url).1.to_owned()
}

fn with_database(url: &str, name: &str) -> String {
    let (head, _, query) = split_url(url);
    if query.is_empty() { format!("{head}/{name}") } else { format!("{head}/{name}?{query}") }
}
