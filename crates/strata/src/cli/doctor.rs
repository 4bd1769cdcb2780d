//! `strata doctor`: checks what a server needs, without starting one and without changing the
//! database: it is reachable, its schema is the one this binary ships, the server secret opens
//! it, Redis answers (when given), the data directory's disk has room, and the clock agrees with
//! the database's. One line per check; exit status 1 when any check fails.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use strata_core::cursor::ServerSecret;
use strata_core::service::{SecretFit, secret_fit};
use strata_store::{Backend, ClockReference, SqlStore};

use super::{out, redacted};
use crate::OpenOptions;

/// Free space under which the disk check fails.
const MIN_FREE_BYTES: u64 = 512 * 1024 * 1024;
/// Clock skew against PostgreSQL above which the clock check fails.
const MAX_SKEW_MS: i64 = 1_000;

#[derive(Serialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
enum Outcome {
    Ok,
    Fail,
    Skip,
}

#[derive(Serialize, Debug)]
struct Check {
    check: &'static str,
    outcome: Outcome,
    detail: String,
}

fn check(check: &'static str, outcome: Outcome, detail: impl Into<String>) -> Check {
    Check { check, outcome, detail: detail.into() }
}

/// Runs every check, prints them, and returns the exit status (0: all passed or skipped).
pub async fn run(opts: &OpenOptions, redis_url: Option<&str>, json: bool) -> i32 {
    let checks = checks(opts, redis_url).await;
    if json {
        out(serde_json::to_string_pretty(&checks).unwrap_or_default());
    } else {
        for c in &checks {
            let tag = match c.outcome {
                Outcome::Ok => "ok  ",
                Outcome::Fail => "FAIL",
                Outcome::Skip => "skip",
            };
            out(format!("{tag}  {}: {}", c.check, c.detail));
        }
    }
    i32::from(checks.iter().any(|c| c.outcome == Outcome::Fail))
}

async fn checks(opts: &OpenOptions, redis_url: Option<&str>) -> Vec<Check> {
    let mut checks = Vec::new();
    let place = match &opts.backend {
        Backend::Sqlite { dir } => format!("SQLite in {}", dir.display()),
        Backend::Postgres { url } => format!("PostgreSQL at {}", redacted(url)),
    };
    // Reachable, and a strata database.
    let applied = match strata_store::schema_applied(&opts.backend).await {
        Ok(Some(v)) => {
            checks.push(check("database", Outcome::Ok, format!("{place} answers")));
            Some(v)
        }
        Ok(None) => {
            checks.push(check("database", Outcome::Fail, format!("no strata database in {place} (`strata serve` makes one)")));
            None
        }
        Err(e) => {
            checks.push(check("database", Outcome::Fail, e.to_string()));
            None
        }
    };
    // The schema this binary ships.
    let (sqlite, postgres) = strata_store::schema_versions();
    let ships = if matches!(opts.backend, Backend::Sqlite { .. }) { sqlite } else { postgres };
    let current = match applied {
        None => {
            checks.push(check("migrations", Outcome::Skip, "no database to read"));
            false
        }
        Some(v) if v == ships => {
            checks.push(check("migrations", Outcome::Ok, format!("schema {v}, the newest this binary ships")));
            true
        }
        Some(v) if v < ships => {
            checks.push(check(
                "migrations",
                Outcome::Fail,
                format!("schema {v}, behind this binary's {ships}: `strata serve` applies the rest at start"),
            ));
            false
        }
        Some(v) => {
            checks.push(check(
                "migrations",
                Outcome::Fail,
                format!("schema {v} was written by a newer strata (this binary knows up to {ships}): run that release or newer"),
            ));
            false
        }
    };
    checks.push(secret_check(opts, current).await);
    checks.push(match redis_url {
        None => check("redis", Outcome::Skip, "no --redis-url given (rate limits are per process)"),
        Some(url) => match strata_redis::RedisLimiter::new(url) {
            Ok(limiter) if limiter.ping().await => check("redis", Outcome::Ok, "answers"),
            Ok(_) => check("redis", Outcome::Fail, format!("{} does not answer", redacted(url))),
            Err(e) => check("redis", Outcome::Fail, e.to_string()),
        },
    });
    checks.push(disk_check(&opts.backend));
    checks.push(clock_check(&opts.backend, applied.is_some()).await);
    checks
}

async fn secret_check(opts: &OpenOptions, current: bool) -> Check {
    if !current {
        return check("secret", Outcome::Skip, "needs a database at this binary's schema");
    }
    let hex = match (&opts.secret_hex, &opts.backend) {
        (Some(h), _) => h.clone(),
        (None, Backend::Sqlite { dir }) => match std::fs::read_to_string(dir.join(crate::KEY_FILE)) {
            Ok(h) => h.trim().to_owned(),
            Err(e) => return check("secret", Outcome::Fail, format!("cannot read {}: {e}", dir.join(crate::KEY_FILE).display())),
        },
        (None, Backend::Postgres { .. }) => {
            return check(
                "secret",
                Outcome::Fail,
                "on PostgreSQL the server secret comes from STRATA_SECRET_KEY or --secret-key-file; neither is set",
            );
        }
    };
    let Some(secret) = ServerSecret::from_hex(&hex) else {
        return check("secret", Outcome::Fail, "the server secret is not 64 hex characters");
    };
    let store = match SqlStore::connect(&opts.backend).await {
        Ok(s) => s.into_port(),
        Err(e) => return check("secret", Outcome::Fail, e.to_string()),
    };
    match secret_fit(&*store, Some(&secret)).await {
        Ok(SecretFit::Matches) => check("secret", Outcome::Ok, format!("fingerprint {} opens the database", secret.fingerprint())),
        Ok(SecretFit::Unsealed) => check("secret", Outcome::Ok, format!("fingerprint {}; nothing sealed yet", secret.fingerprint())),
        Ok(SecretFit::Mismatch) => check(
            "secret",
            Outcome::Fail,
            format!("fingerprint {} does not open this database's sealed data: the server would refuse to start", secret.fingerprint()),
        ),
        Err(e) => check("secret", Outcome::Fail, e.to_string()),
    }
}

fn disk_check(backend: &Backend) -> Check {
    let Backend::Sqlite { dir } = backend else {
        return check("disk", Outcome::Skip, "PostgreSQL's disk is the database server's to watch");
    };
    match rustix::fs::statvfs(dir) {
        Ok(v) => {
            let free = v.f_bavail.saturating_mul(v.f_frsize);
            let mib = free / (1024 * 1024);
            if free < MIN_FREE_BYTES {
                check("disk", Outcome::Fail, format!("{mib} MiB free under {}: writes fail when it runs out", dir.display()))
            } else {
                check("disk", Outcome::Ok, format!("{mib} MiB free under {}", dir.display()))
            }
        }
        Err(e) => check("disk", Outcome::Fail, format!("cannot read the free space of {}: {e}", dir.display())),
    }
}

async fn clock_check(backend: &Backend, has_database: bool) -> Check {
    if !has_database {
        return check("clock", Outcome::Skip, "no database to compare with");
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    match strata_store::clock_reference(backend).await {
        Ok(ClockReference::DatabaseNow(db)) => {
            let skew = now - db;
            if skew.abs() < MAX_SKEW_MS {
                check("clock", Outcome::Ok, format!("{skew:+} ms from PostgreSQL's clock"))
            } else {
                check(
                    "clock",
                    Outcome::Fail,
                    format!("{skew:+} ms from PostgreSQL's clock (more than 1 s): fix NTP on this machine or the database's"),
                )
            }
        }
        Ok(ClockReference::NewestStored(None)) => check("clock", Outcome::Ok, "nothing stored yet to compare with"),
        Ok(ClockReference::NewestStored(Some(newest))) if newest <= now => {
            check("clock", Outcome::Ok, "not earlier than the newest timestamp stored")
        }
        Ok(ClockReference::NewestStored(Some(newest))) => check(
            "clock",
            Outcome::Fail,
            format!("{} ms earlier than the newest timestamp stored: this clock went back, fix NTP before serving", newest - now),
        ),
        Err(e) => check("clock", Outcome::Fail, e.to_string()),
    }
}
