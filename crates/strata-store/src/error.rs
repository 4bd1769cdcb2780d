//! How database errors become the core's errors: a lost race on a unique index is a conflict,
//! an unreachable or overloaded database is `unavailable` (503, retry), anything else is an
//! internal error that keeps its cause. A leaf: it knows the drivers' error types, nothing of
//! the store.

use strata_core::error::CoreError;

pub(crate) fn db_err(e: sqlx::Error) -> CoreError {
    db_failed("database".to_owned(), e)
}

/// A database error while doing `what`: the cause is kept whole (see `CoreError::internal_from`).
#[track_caller]
pub(crate) fn db_failed(what: String, e: sqlx::Error) -> CoreError {
    // A unique index lost a race (two creates with one id or one customerExternalId): the
    // loser hears what a check before the insert would have told it.
    if e.as_database_error().and_then(|d| d.code()).is_some_and(|c| c == "23505" || c == "2067" || c == "1555") {
        return unique_conflict();
    }
    // Only a group's batch sets a lock timeout (see `PgLane`).
    if e.as_database_error().and_then(|d| d.code()).is_some_and(|c| c == "55P03") {
        return CoreError::lock_busy(e);
    }
    if is_unavailable(&e) {
        connection_lost();
        return CoreError::unavailable(format!("{what}: {e}"));
    }
    CoreError::internal_from(what, e)
}

/// Whether a PostgreSQL error says the database could not be reached or did not answer in time
/// (503, retry) rather than that a statement is wrong (500): no connection from the pool in
/// time, a broken connection, and the SQLSTATEs of a lost connection (class 08), a shutdown or
/// restart (57P01–57P03), too many connections (53300), a full disk (53100), a statement
/// timeout (57014) and a read-only server after a failover (25006).
fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => d.code().is_some_and(|c| {
            c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03" | "53300" | "53100" | "57014" | "25006")
        }),
        _ => false,
    }
}

/// Milliseconds since this process first asked, never 0.
pub(crate) fn process_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    u64::try_from(START.get_or_init(std::time::Instant::now).elapsed().as_millis()).unwrap_or(u64::MAX) + 1
}

/// When (`process_ms`) a statement last failed because the database could not be reached.
pub(crate) static LAST_CONNECTION_LOSS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn connection_lost() {
    LAST_CONNECTION_LOSS.store(process_ms(), std::sync::atomic::Ordering::Relaxed);
}

pub(crate) fn unique_conflict() -> CoreError {
    CoreError::conflict("a record with the same unique key already exists")
}

pub(crate) fn lite_err(e: rusqlite::Error) -> CoreError {
    lite_failed_at("database".to_owned(), e)
}

#[track_caller]
pub(crate) fn lite_failed_at(what: String, e: rusqlite::Error) -> CoreError {
    if let rusqlite::Error::SqliteFailure(f, _) = &e {
        // SQLITE_CONSTRAINT_UNIQUE and SQLITE_CONSTRAINT_PRIMARYKEY.
        if f.extended_code == 2067 || f.extended_code == 1555 {
            return unique_conflict();
        }
        // Busy or locked past the busy timeout, an I/O failure, a full disk, a file that cannot
        // be opened or written: the database is there but cannot answer now (503, retry).
        use rusqlite::ErrorCode as C;
        if matches!(
            f.code,
            C::DatabaseBusy | C::DatabaseLocked | C::SystemIoFailure | C::DiskFull | C::CannotOpen | C::ReadOnly | C::OutOfMemory
        ) {
            return CoreError::unavailable(format!("database: {e}"));
        }
    }
    CoreError::internal_from(what, e)
}

/// Says what to do when the schema cannot be brought to this binary's version: a database
/// migrated by a newer release is refused (this binary would misread it), never rolled back.
pub(crate) fn migrate_err(migrator: &sqlx::migrate::Migrator, e: sqlx::migrate::MigrateError) -> CoreError {
    use sqlx::migrate::MigrateError;
    let newest = migrator.iter().map(|m| m.version).max().unwrap_or(0);
    CoreError::internal(match e {
        MigrateError::VersionMissing(v) => format!(
            "the database was migrated by a newer strata (schema migration {v}; this binary knows migrations up to {newest}): \
             run that release or a newer one, or restore a backup taken before the upgrade"
        ),
        MigrateError::VersionMismatch(v) => {
            format!("schema migration {v} in the database differs from the one this binary ships: the database was made by another build")
        }
        other => format!("migrations: {other}"),
    })
}
