//! The command line (CONTRACT §9): `serve` and the operator commands, which work on the same
//! database as the server without going through HTTP.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use serde_json::json;
use strata_core::Strata;
use strata_core::clock::SystemClock;
use strata_core::error::CoreError;
use strata_core::service::CoreConfig;
use strata_store::Backend;
use strata_workers::Cadence;

use crate::OpenOptions;

mod doctor;
mod operator;

pub use operator::{AuditArgs, CreditsCmd, KeysCmd, OrgsCmd, PartnersCmd};

#[derive(Parser, Debug)]
#[command(name = "strata", version, about = "The Layers Partner API control plane")]
pub struct Cli {
    /// Directory of the embedded SQLite database (the default backend) [default: ./strata-data].
    ///
    /// Only `serve` makes a new database in the default directory; other commands need one
    /// there, or an explicit --data-dir or --database-url.
    #[arg(long, global = true, env = "STRATA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// How log lines (on standard error) are written: `json`, one JSON object per line, or
    /// `text`, for a terminal (`pretty` is the same).
    #[arg(long, global = true, env = "STRATA_LOG_FORMAT", value_enum, default_value = "json")]
    pub log_format: crate::telemetry::LogFormat,
    /// A postgres:// URL; when set, strata runs on PostgreSQL instead of SQLite.
    #[arg(long, global = true, env = "STRATA_DATABASE_URL")]
    pub database_url: Option<String>,
    /// The server secret (64 hex characters) that seals cursors and secrets stored at rest.
    /// Required on PostgreSQL (here or in --secret-key-file); `strata secret generate` makes one.
    #[arg(long, global = true, env = "STRATA_SECRET_KEY", hide_env_values = true, conflicts_with = "secret_key_file")]
    pub secret_key: Option<String>,
    /// A file holding the server secret (64 hex characters), instead of STRATA_SECRET_KEY.
    #[arg(long, global = true, env = "STRATA_SECRET_KEY_FILE")]
    pub secret_key_file: Option<PathBuf>,
    /// During a rotation, the previous server secret: it still opens what it sealed, and
    /// `strata secret rotate` re-seals that under the current one.
    #[arg(long, global = true, env = "STRATA_PREVIOUS_SECRET_KEY", hide_env_values = true, conflicts_with = "previous_secret_key_file")]
    pub previous_secret_key: Option<String>,
    /// A file holding the previous server secret, instead of STRATA_PREVIOUS_SECRET_KEY.
    #[arg(long, global = true, env = "STRATA_PREVIOUS_SECRET_KEY_FILE")]
    pub previous_secret_key_file: Option<PathBuf>,
    /// The webhook retry ladder, e.g. `0s,30s,1m,5m,15m,1h,6h,24h` (the default).
    #[arg(long, global = true, env = "STRATA_WEBHOOK_RETRY_SCHEDULE")]
    pub webhook_retry_schedule: Option<String>,
    /// Allow webhook URLs on private networks (10/8, 192.168/16, …).
    #[arg(long, global = true, env = "STRATA_WEBHOOK_ALLOW_PRIVATE")]
    pub webhook_allow_private: bool,
    /// Seconds a webhook delivery attempt may take before it counts as timed out.
    #[arg(long, global = true, env = "STRATA_WEBHOOK_TIMEOUT_SECONDS", default_value_t = 10.0)]
    pub webhook_timeout_seconds: f64,
    /// Webhook delivery attempts in flight at once, over all endpoints.
    #[arg(long, global = true, env = "STRATA_WEBHOOK_CONCURRENCY", default_value_t = 512)]
    pub webhook_concurrency: usize,
    /// Webhook delivery attempts in flight at once to one endpoint.
    #[arg(long, global = true, env = "STRATA_WEBHOOK_ENDPOINT_CONCURRENCY", default_value_t = 128)]
    pub webhook_endpoint_concurrency: usize,
    /// Days terminal webhook deliveries (with their attempts) and dispatched events are kept.
    #[arg(long, global = true, env = "STRATA_WEBHOOK_RETENTION_DAYS", default_value_t = 30.0)]
    pub webhook_retention_days: f64,
    /// Rate limits by tier, as JSON overriding the contract's defaults, e.g.
    /// `{"standard": {"readsPerMinute": 240, "writesPerMinute": 120, "longRunningPerMinute": 20,
    /// "dailyWrites": 20000, "concurrentJobs": 10}}` (a tier is given whole; absent = unlimited).
    #[arg(long, global = true, env = "STRATA_TIER_LIMITS")]
    pub tier_limits: Option<String>,
    /// How long the built-in content engine takes per job, in seconds.
    #[arg(long, global = true, env = "STRATA_ENGINE_JOB_SECONDS", default_value_t = 5.0)]
    pub engine_job_seconds: f64,
    /// Seconds a request's Idempotency-Key stays claimed when its process dies before answering:
    /// until then a retry with that key is 409 IDEMPOTENCY_CONFLICT (in progress), after it the
    /// retry runs the request (a claim taken over can no longer complete the first attempt).
    #[arg(long, global = true, env = "STRATA_IDEMPOTENCY_LEASE_SECONDS", default_value_t = 60.0)]
    pub idempotency_lease_seconds: f64,
    /// How many rejected requests (bad keys, scope denials, rate-limit hits) may wait to be
    /// written to the audit log, which happens every 500 ms; past it their entries are dropped
    /// and only counted (an `audit.rejections_dropped` entry per org, and a metric). It bounds
    /// what a flood of bad keys writes: at most twice this many entries a second.
    #[arg(long, global = true, env = "STRATA_AUDIT_QUEUE_CAPACITY", default_value_t = strata_core::service::DEFAULT_REJECTION_QUEUE)]
    pub audit_queue_capacity: usize,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the API (and run the background workers).
    Serve(ServeArgs),
    /// Partner (root) organizations.
    #[command(subcommand)]
    Partners(PartnersCmd),
    /// Credits: grant, balance, history and signed adjustments.
    #[command(subcommand)]
    Credits(CreditsCmd),
    /// API keys.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Organizations: list, show, revoke or restore API access.
    #[command(subcommand)]
    Orgs(OrgsCmd),
    /// An org's audit log, newest first, with the API's filters.
    Audit(AuditArgs),
    /// Check what a server needs (database, schema, secret, Redis, disk, clock) without starting
    /// one or changing anything; exits 1 when a check fails.
    Doctor {
        /// Also check this Redis (the one `serve --redis-url` would use).
        #[arg(long, env = "STRATA_REDIS_URL", hide_env_values = true)]
        redis_url: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print strata's version and the newest database schema it knows.
    Version {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check the credit ledger's invariants over the whole database.
    #[command(subcommand)]
    Ledger(LedgerCmd),
    /// Load harness: start a server on a scratch database (never the configured one) and drive
    /// it over HTTP.
    Bench(crate::bench::BenchArgs),
    /// Drills: start several nodes on a scratch database, drive them, check what must hold.
    #[command(subcommand)]
    Drill(crate::drill::DrillCmd),
    /// The server secret: make one, move one out of a PostgreSQL database, rotate it.
    #[command(subcommand)]
    Secret(SecretCmd),
    /// Back up the SQLite database and its server.key, beside a running server.
    ///
    /// One consistent snapshot through SQLite's online backup API, written into a new
    /// directory. On PostgreSQL it writes nothing and says how to use pg_dump instead.
    Backup {
        /// The directory to write the backup into (created owner-only; must not hold a backup).
        #[arg(long)]
        to: PathBuf,
    },
    /// Restore a `strata backup` into a new or empty --data-dir (SQLite).
    ///
    /// A directory holding a database or a server.key is refused: a live database is never
    /// overwritten. The result is opened as the server would (migrations, the server secret).
    Restore {
        /// The directory a `strata backup --to` wrote.
        #[arg(long)]
        from: PathBuf,
    },
    /// Print the OpenAPI 3.1 document the server serves at `GET /openapi.json`; touches no
    /// database. `strata openapi > openapi.json` regenerates the committed copy.
    Openapi,
    /// Print a page of docs/ made from the code (the API guide and event catalog from the OpenAPI
    /// document, this reference from the flags); touches no database.
    /// `strata docs api > docs/api.md` regenerates the committed copy.
    Docs {
        /// Which page.
        #[arg(value_enum)]
        page: crate::docs::Page,
    },
}

/// The data directory when neither --data-dir nor STRATA_DATA_DIR is given.
pub const DEFAULT_DATA_DIR: &str = "./strata-data";

#[derive(Subcommand, Debug)]
pub enum SecretCmd {
    /// Print a new random server secret (64 hex characters); touches no database.
    Generate,
    /// Print, once, the secret that a PostgreSQL database made by older strata holds inside it,
    /// and remove it from the database (`strata secret export > server.key`).
    Export,
    /// Re-seal every value sealed at rest under the current secret (STRATA_SECRET_KEY or
    /// --secret-key-file), opening each with the previous one (STRATA_PREVIOUS_SECRET_KEY or
    /// --previous-secret-key-file).
    Rotate,
}

#[derive(Subcommand, Debug)]
pub enum LedgerCmd {
    /// Verify every wallet against its transfers and conservation of credits.
    Check {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The address to serve the API on.
    #[arg(long, env = "STRATA_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Development mode: allows http://localhost webhook URLs.
    #[arg(long)]
    pub dev: bool,
    /// `redis://host:port[/db]`: keep the rate-limit buckets in this Redis, shared by every
    /// node (without it, each process counts on its own).
    #[arg(long, env = "STRATA_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Seconds requests in flight may run after SIGTERM or Ctrl-C before they are cut (new
    /// connections are refused from the signal on).
    #[arg(long, env = "STRATA_DRAIN_TIMEOUT_SECONDS", default_value_t = crate::DEFAULT_DRAIN.as_secs_f64())]
    pub drain_timeout_seconds: f64,
    /// API requests in flight at once; beyond it a request is answered 503 SERVICE_UNAVAILABLE
    /// with Retry-After at once (load shedding) rather than queued.
    #[arg(long, env = "STRATA_MAX_IN_FLIGHT", default_value_t = strata_http::DEFAULT_MAX_IN_FLIGHT)]
    pub max_in_flight: usize,
    /// Seconds to wait for a database connection (PostgreSQL) before a request answers 503, and
    /// for the first connection at start.
    #[arg(long, env = "STRATA_DATABASE_TIMEOUT_SECONDS", default_value_t = 2.0)]
    pub database_timeout_seconds: f64,
    /// Seconds one statement may run (PostgreSQL's statement_timeout), or a write may wait for
    /// SQLite's writer, before the request answers 503; 0 leaves them unbounded.
    #[arg(long, env = "STRATA_STATEMENT_TIMEOUT_SECONDS", default_value_t = 10.0)]
    pub statement_timeout_seconds: f64,
    /// On an empty database, write the first partner's admin key to this file (created 0600,
    /// replaced atomically) instead of printing it: a non-interactive bootstrap.
    #[arg(long, env = "STRATA_BOOTSTRAP_KEY_FILE")]
    pub bootstrap_key_file: Option<PathBuf>,
    /// Answer `GET /metrics` (Prometheus text format, no authentication) only on this address,
    /// e.g. 127.0.0.1:9090, and not on --listen. Without it, /metrics is served on --listen.
    #[arg(long, env = "STRATA_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
}

/// A duration flag given in seconds (fractions allowed, 0 or more).
fn seconds(value: f64, flag: &str) -> Result<std::time::Duration, CoreError> {
    std::time::Duration::try_from_secs_f64(value).map_err(|_| CoreError::validation(flag, "must be a number of seconds, 0 or more"))
}

/// Reads a secret from `--secret-key` or the file `--secret-key-file` names (at most one is set).
fn secret_source(hex: &Option<String>, file: &Option<PathBuf>, flag: &str) -> Result<Option<String>, CoreError> {
    match (hex, file) {
        (Some(h), _) => Ok(Some(h.clone())),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map(|s| Some(s.trim().to_owned()))
            .map_err(|e| CoreError::validation(flag, format!("cannot read {}: {e}", path.display()))),
        (None, None) => Ok(None),
    }
}

impl Cli {
    /// What `open` needs, from the flags; an unreadable secret file is a validation error.
    pub fn open_options(&self) -> Result<OpenOptions, CoreError> {
        let backend = match &self.database_url {
            Some(url) => Backend::Postgres { url: url.clone() },
            None => Backend::Sqlite { dir: self.data_dir.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)) },
        };
        let mut core = CoreConfig {
            job_duration_ms: (self.engine_job_seconds.max(0.0) * 1000.0) as i64,
            allow_private_webhooks: self.webhook_allow_private,
            dev_mode: matches!(&self.command, Command::Serve(a) if a.dev),
            webhook_timeout_ms: (self.webhook_timeout_seconds.max(0.001) * 1000.0) as i64,
            webhook_concurrency: self.webhook_concurrency.max(1),
            webhook_endpoint_concurrency: self.webhook_endpoint_concurrency.max(1),
            webhook_retention_ms: (self.webhook_retention_days.max(0.0) * strata_core::clock::DAY_MS as f64) as i64,
            idempotency_lease_ms: (self.idempotency_lease_seconds.max(0.001) * 1000.0) as i64,
            rejection_queue_capacity: self.audit_queue_capacity.max(1),
            ..CoreConfig::default()
        };
        if let Some(ladder) = self.webhook_retry_schedule.as_deref().and_then(strata_core::webhook::parse_ladder) {
            core.retry_ladder_ms = ladder;
        }
        Ok(OpenOptions {
            backend,
            secret_hex: secret_source(&self.secret_key, &self.secret_key_file, "--secret-key-file")?,
            previous_secret_hex: secret_source(&self.previous_secret_key, &self.previous_secret_key_file, "--previous-secret-key-file")?,
            core,
            db: match &self.command {
                Command::Serve(a) => strata_store::DbTimeouts {
                    acquire: seconds(a.database_timeout_seconds, "--database-timeout-seconds")?,
                    statement: Some(seconds(a.statement_timeout_seconds, "--statement-timeout-seconds")?).filter(|t| !t.is_zero()),
                },
                _ => strata_store::DbTimeouts::default(),
            },
        })
    }
}

/// Writes one line of command output to stdout.
pub(crate) fn out(line: impl std::fmt::Display) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
}

/// Runs the command; returns the process exit code.
pub async fn run(cli: Cli) -> i32 {
    if cli.webhook_retry_schedule.as_deref().is_some_and(|s| strata_core::webhook::parse_ladder(s).is_none()) {
        eprintln_error(&CoreError::validation("STRATA_WEBHOOK_RETRY_SCHEDULE", "must be a comma-separated list like 0s,30s,1m,5m"));
        return 2;
    }
    let mut opts = match cli.open_options() {
        Ok(o) => o,
        Err(e) => {
            eprintln_error(&e);
            return 2;
        }
    };
    if let Some(json) = &cli.tier_limits {
        match opts.core.tier_limits.clone().with_overrides(json) {
            Ok(t) => opts.core.tier_limits = t,
            Err(e) => {
                eprintln_error(&CoreError::validation("STRATA_TIER_LIMITS", e));
                return 2;
            }
        }
    }
    if let Command::Bench(args) = cli.command {
        // The harness never touches the configured database: it makes a scratch one.
        return match crate::bench::run(&opts, args).await {
            Ok(line) => {
                out(line);
                0
            }
            Err(e) => {
                eprintln_error(&e);
                1
            }
        };
    }
    if let Command::Drill(cmd) = cli.command {
        // The drill makes its own database, Redis and nodes; it opens nothing here.
        return crate::drill::run(cmd).await;
    }
    match &cli.command {
        Command::Version { json } => {
            version(*json);
            return 0;
        }
        Command::Doctor { redis_url, json } => return doctor::run(&opts, redis_url.as_deref(), *json).await,
        Command::Secret(SecretCmd::Generate) => {
            out(strata_core::cursor::ServerSecret::generate().to_hex());
            return 0;
        }
        Command::Openapi => {
            // The document ends in a newline already.
            out(strata_http::openapi::json().trim_end());
            return 0;
        }
        Command::Docs { page } => {
            // The page ends in a newline already.
            out(page.render().trim_end());
            return 0;
        }
        Command::Secret(SecretCmd::Export) => {
            return finish(export_secret(&cli, &opts).await);
        }
        Command::Restore { from } => return finish(restore(&cli, &opts, from.clone()).await),
        _ => {}
    }
    // Only `serve` makes a database where none is configured; `partners create` may make one
    // where the operator pointed explicitly. Everything else needs the database to exist.
    let explicit = cli.data_dir.is_some() || cli.database_url.is_some();
    let may_create = match &cli.command {
        Command::Serve(_) => true,
        Command::Partners(PartnersCmd::Create { .. }) => explicit,
        _ => false,
    };
    if !may_create && let Err(e) = require_database(&cli, &opts).await {
        eprintln_error(&e);
        return 1;
    }
    // One `serve` per SQLite data directory, for as long as it runs.
    let _serve_lock = match (&cli.command, &opts.backend) {
        (Command::Serve(_), Backend::Sqlite { dir }) => match lock_data_dir(dir) {
            Ok(lock) => Some(lock),
            Err(e) => {
                eprintln_error(&e);
                return 1;
            }
        },
        _ => None,
    };
    let strata = match crate::open(&opts, Arc::new(SystemClock)).await {
        Ok(s) => s,
        Err(e) => {
            // A refusal to start (no secret, …) is one clear line; a failure is also logged.
            if e.as_internal().is_some() {
                tracing::error!(error = %e, "cannot open the database");
            }
            eprintln_error(&e);
            return 1;
        }
    };
    let result = match cli.command {
        Command::Serve(args) => serve(strata, args, &opts).await,
        Command::Partners(cmd) => operator::partners(strata, cmd).await,
        Command::Credits(cmd) => operator::credits(strata, cmd).await,
        Command::Keys(cmd) => operator::keys(strata, cmd).await,
        Command::Orgs(cmd) => operator::orgs(strata, cmd).await,
        Command::Audit(args) => operator::audit(strata, args).await,
        Command::Ledger(LedgerCmd::Check { json }) => ledger_check(strata, json).await,
        Command::Secret(_) => rotate_secret(strata).await,
        Command::Backup { to } => backup(strata, &opts, &to).await,
        Command::Bench(_)
        | Command::Restore { .. }
        | Command::Drill(_)
        | Command::Version { .. }
        | Command::Doctor { .. }
        | Command::Openapi
        | Command::Docs { .. } => Ok(()),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln_error(&e);
            1
        }
    }
}

/// `strata version`: the build and the newest schema migration it carries (a database migrated
/// past it is refused at start).
fn version(json: bool) {
    let (sqlite, postgres) = strata_store::schema_versions();
    if json {
        out(json!({ "version": env!("CARGO_PKG_VERSION"), "schema": { "sqlite": sqlite, "postgres": postgres } }));
    } else {
        out(format!("strata {} (schema: sqlite {sqlite}, postgres {postgres})", env!("CARGO_PKG_VERSION")));
    }
}

/// Exit code of a command that prints nothing on success beyond its own output.
fn finish(r: Result<(), CoreError>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln_error(&e);
            1
        }
    }
}

/// A database URL as it may be printed: without its password.
pub fn redacted(url: &str) -> String {
    strata_store::redact_url(url)
}

/// Refuses, saying where it looked and how to point elsewhere, when there is no database.
async fn require_database(cli: &Cli, opts: &OpenOptions) -> Result<(), CoreError> {
    if strata_store::database_exists(&opts.backend).await? {
        return Ok(());
    }
    let make = "`strata serve` or `strata partners create` makes a new one";
    Err(crate::refusal(match (&opts.backend, cli.data_dir.is_some()) {
        (Backend::Postgres { url }, _) => {
            format!("no strata database at {} (it has no strata schema): check --database-url (STRATA_DATABASE_URL); {make}", redacted(url))
        }
        (Backend::Sqlite { dir }, true) => format!(
            "no strata database in {} (no {} there): check --data-dir (STRATA_DATA_DIR), or give --database-url for PostgreSQL; {make}",
            dir.display(),
            strata_store::SQLITE_FILE
        ),
        (Backend::Sqlite { dir }, false) => {
            let cwd = std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_else(|_| "the current directory".into());
            format!(
                "no strata database in {} (the default data directory, looked for under {cwd}): \
                 point to the server's database with --data-dir DIR (STRATA_DATA_DIR) or --database-url URL (STRATA_DATABASE_URL)",
                dir.display()
            )
        }
    }))
}

/// The lock file a running `serve` holds in its SQLite data directory.
pub const LOCK_FILE: &str = "serve.lock";

/// Takes the data directory's exclusive `serve` lock (an advisory lock the operating system
/// releases when the process ends, however it ends); held for as long as the file is open.
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, CoreError> {
    strata_store::create_sqlite_files(dir)?;
    let path = dir.join(LOCK_FILE);
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let file = opts.open(&path).map_err(|e| CoreError::internal(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(crate::refusal(format!(
            "another strata serve is already running on {} (it holds {}): stop it first, or give this one another --data-dir; \
             operator commands and `strata backup` run beside it",
            dir.display(),
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(CoreError::internal(format!("cannot lock {}: {e}", path.display()))),
    }
}

/// `strata backup --to DIR`: on SQLite, an online snapshot of the database and its server.key;
/// on PostgreSQL, what to run instead.
async fn backup(strata: Strata, opts: &OpenOptions, to: &std::path::Path) -> Result<(), CoreError> {
    let fingerprint = strata.secret.fingerprint();
    let dir = match &opts.backend {
        Backend::Postgres { url } => {
            return Err(crate::refusal(format!(
                "strata backup copies a SQLite data directory; on PostgreSQL back up with pg_dump (pg_dump -Fc -d '{}' -f strata.dump) \
                 and keep the server secret (fingerprint {fingerprint}) apart from the dump; nothing was written",
                redacted(url)
            )));
        }
        Backend::Sqlite { dir } => dir.clone(),
    };
    drop(strata);
    let target = to.join(strata_store::SQLITE_FILE);
    if target.exists() {
        return Err(crate::refusal(format!("{} already holds a backup: give --to a new or empty directory", to.display())));
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(to).map_err(|e| crate::refusal(format!("cannot create {}: {e}", to.display())))?;
    let partial = to.join(format!("{}.partial", strata_store::SQLITE_FILE));
    let _ = std::fs::remove_file(&partial);
    let (src, tmp) = (dir.join(strata_store::SQLITE_FILE), partial.clone());
    tokio::task::spawn_blocking(move || strata_store::sqlite_backup(&src, &tmp))
        .await
        .map_err(|e| CoreError::internal(e.to_string()))??;
    // The key: the data directory's server.key, unless the secret comes from the configuration.
    let key_note = if opts.secret_hex.is_none() {
        copy_key(&dir.join(crate::KEY_FILE), &to.join(crate::KEY_FILE))?;
        format!("and its {}", crate::KEY_FILE)
    } else {
        "(the server secret comes from the configuration and is not in the backup: keep it apart)".to_owned()
    };
    std::fs::rename(&partial, &target).map_err(|e| CoreError::internal(format!("cannot rename {}: {e}", partial.display())))?;
    out(format!(
        "backed up {} {key_note} to {} (server secret fingerprint {fingerprint})",
        dir.join(strata_store::SQLITE_FILE).display(),
        to.display()
    ));
    Ok(())
}

/// Copies a key file into a new owner-only file.
fn copy_key(from: &std::path::Path, to: &std::path::Path) -> Result<(), CoreError> {
    let key = std::fs::read(from).map_err(|e| CoreError::internal(format!("cannot read {}: {e}", from.display())))?;
    let mut f = strata_store::owner_only_file(to).map_err(|e| CoreError::internal(format!("cannot create {}: {e}", to.display())))?;
    f.write_all(&key).and_then(|()| f.sync_all()).map_err(|e| CoreError::internal(format!("cannot write {}: {e}", to.display())))
}

/// `strata restore --from DIR`: a backup into a new or empty SQLite data directory, checked by
/// opening it (migrations, the server secret) before it is declared restored.
async fn restore(cli: &Cli, opts: &OpenOptions, from: PathBuf) -> Result<(), CoreError> {
    let dir = match (&opts.backend, cli.data_dir.is_some()) {
        (Backend::Postgres { .. }, _) => {
            return Err(crate::refusal(
                "strata restore restores a SQLite data directory; on PostgreSQL restore a pg_dump with pg_restore into an empty database, \
                 then start strata on it with the server secret it was made with",
            ));
        }
        (Backend::Sqlite { .. }, false) => {
            return Err(crate::refusal(
                "strata restore needs the directory to restore into: give --data-dir DIR (a new or empty directory)",
            ));
        }
        (Backend::Sqlite { dir }, true) => dir.clone(),
    };
    let source = from.join(strata_store::SQLITE_FILE);
    if !source.is_file() {
        return Err(crate::refusal(format!("no backup in {} (no {} there)", from.display(), strata_store::SQLITE_FILE)));
    }
    let (db, key) = (dir.join(strata_store::SQLITE_FILE), dir.join(crate::KEY_FILE));
    // A leftover write-ahead log or journal would be replayed onto the restored database.
    let leftovers = ["-wal", "-shm", "-journal"].map(|s| dir.join(format!("{}{s}", strata_store::SQLITE_FILE)));
    for taken in [&db, &key].into_iter().chain(leftovers.iter()) {
        if taken.exists() {
            return Err(crate::refusal(format!(
                "{} already holds {}: restore into a new or empty directory, then point the server at it with --data-dir",
                dir.display(),
                taken.file_name().and_then(|n| n.to_str()).unwrap_or_default()
            )));
        }
    }
    // Hold the serve lock meanwhile, so no server starts on a half-restored directory.
    let lock = lock_data_dir(&dir)?;
    // lock_data_dir made an empty strata.db; the restored one replaces it.
    let _ = std::fs::remove_file(&db);
    let staged = dir.join(format!("{}.restoring", strata_store::SQLITE_FILE));
    let _ = std::fs::remove_file(&staged);
    let (src, tmp) = (source.clone(), staged.clone());
    let copied = tokio::task::spawn_blocking(move || strata_store::sqlite_backup(&src, &tmp))
        .await
        .map_err(|e| CoreError::internal(e.to_string()))
        .and_then(|r| r);
    let undo = || {
        for f in [&staged, &db, &key] {
            let _ = std::fs::remove_file(f);
        }
    };
    let restored = async {
        copied?;
        let backup_key = from.join(crate::KEY_FILE);
        if opts.secret_hex.is_none() && backup_key.exists() {
            copy_key(&backup_key, &key)?;
        }
        std::fs::rename(&staged, &db).map_err(|e| CoreError::internal(format!("cannot rename {}: {e}", staged.display())))?;
        crate::open(opts, Arc::new(SystemClock)).await
    }
    .await;
    drop(lock);
    match restored {
        Ok(strata) => {
            out(format!(
                "restored {} into {} (server secret fingerprint {}); start the server with --data-dir {}",
                from.display(),
                dir.display(),
                strata.secret.fingerprint(),
                dir.display()
            ));
            Ok(())
        }
        Err(e) => {
            undo();
            Err(crate::refusal(format!("the backup in {} was not restored: {e}", from.display())))
        }
    }
}

/// `strata secret export`: prints the secret a PostgreSQL database holds inside it, then removes
/// it from the database, only once the line is written (so it is never lost).
async fn export_secret(cli: &Cli, opts: &OpenOptions) -> Result<(), CoreError> {
    if let Backend::Sqlite { dir } = &opts.backend {
        return Err(CoreError::validation(
            "secret",
            format!(
                "SQLite keeps its server secret in {}, outside the database: there is nothing to export",
                dir.join("server.key").display()
            ),
        ));
    }
    require_database(cli, opts).await?;
    let store = strata_store::SqlStore::connect(&opts.backend).await?.into_port();
    let mut tx = store.write().await?;
    let Some(hex) = tx.setting(crate::LEGACY_SECRET_SETTING).await? else {
        return Err(CoreError::validation("secret", "this database holds no server secret: there is nothing to export"));
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", hex.trim())
        .and_then(|()| stdout.flush())
        .map_err(|e| CoreError::internal(format!("cannot write the secret, so it stays in the database: {e}")))?;
    drop(stdout);
    tx.setting_remove(crate::LEGACY_SECRET_SETTING, &hex).await?;
    tx.commit().await?;
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(
        stderr,
        "the server secret is no longer in the database; give it to every node with --secret-key-file or STRATA_SECRET_KEY"
    );
    Ok(())
}

/// `strata secret rotate`: re-seals every sealed value under the current secret.
async fn rotate_secret(strata: Strata) -> Result<(), CoreError> {
    let r = strata.reseal_all().await?;
    if r.unreadable == 0 {
        // Everything opens with the new secret: from now on it alone opens the database.
        strata.reseal_secret_check().await?;
    }
    out(format!(
        "re-sealed {} values under the new secret ({} already were, {} changed meanwhile, {} opened with neither secret)",
        r.resealed, r.already_current, r.changed_meanwhile, r.unreadable
    ));
    if r.unreadable > 0 {
        return Err(CoreError::internal(format!("{} sealed values open with neither secret; they were left as they are", r.unreadable)));
    }
    Ok(())
}

fn eprintln_error(e: &CoreError) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "error: {e}");
}

async fn serve(strata: Strata, args: ServeArgs, opts: &OpenOptions) -> Result<(), CoreError> {
    if args.dev {
        out("dev mode: http://localhost and loopback webhook URLs are allowed");
    }
    let strata = match &args.redis_url {
        Some(url) => {
            let limiter = strata_redis::RedisLimiter::new(url)?;
            if !limiter.ping().await {
                tracing::warn!("Redis does not answer yet: requests proceed without rate limits until it does");
            }
            out("rate limits: shared through Redis");
            strata.with_limiter(Arc::new(limiter))
        }
        None => strata,
    };
    if let Some(created) = strata.bootstrap("My Partner Org").await? {
        out(format!("provisioned partner org: {}", created.org.id));
        match &args.bootstrap_key_file {
            Some(path) => {
                write_key_file(path, created.secret.expose())?;
                out(format!("admin key: written to {} (owner-only)", path.display()));
            }
            None => {
                out(format!("admin key: {}", created.secret.expose()));
                out("(shown once; store it now)");
            }
        }
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| CoreError::internal(format!("cannot listen on {}: {e}", args.listen)))?;
    let addr = listener.local_addr().map_err(|e| CoreError::internal(e.to_string()))?;
    let metrics_listener = match args.metrics_listen {
        Some(at) => Some(
            tokio::net::TcpListener::bind(at)
                .await
                .map_err(|e| CoreError::validation("--metrics-listen", format!("cannot listen on {at}: {e}")))?,
        ),
        None => None,
    };
    let metrics_addr = match &metrics_listener {
        Some(l) => l.local_addr().map_err(|e| CoreError::internal_from("the metrics listener's address", e))?,
        None => addr,
    };
    out(format!("strata listening on http://{addr} ({})", strata.store.backend()));
    out(format!("metrics: http://{metrics_addr}/metrics"));
    // The start line names what support asks first: which build, which database (never its
    // password), where, and what is on.
    let database = match &opts.backend {
        Backend::Sqlite { dir } => dir.join(strata_store::SQLITE_FILE).display().to_string(),
        Backend::Postgres { url } => redacted(url),
    };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        %addr,
        %metrics_addr,
        backend = strata.store.backend(),
        database,
        shared_rate_limits = args.redis_url.is_some(),
        dev = args.dev,
        max_in_flight = args.max_in_flight,
        drain_timeout_seconds = args.drain_timeout_seconds,
        database_timeout_seconds = args.database_timeout_seconds,
        statement_timeout_seconds = args.statement_timeout_seconds,
        "listening"
    );
    let opts = crate::ServeOptions {
        cadence: Cadence::default(),
        drain: seconds(args.drain_timeout_seconds, "--drain-timeout-seconds")?,
        max_in_flight: args.max_in_flight.max(1),
        metrics_listener,
    };
    crate::serve(strata, listener, opts, shutdown_signal()).await.map_err(|e| CoreError::internal_from("serving", e))
}

async fn shutdown_signal() {
    terminated().await;
    tracing::info!("shutting down");
}

/// Writes a secret into `path`, owner-only: into a new temporary file beside it, synced, then
/// renamed over `path`, so the file is never seen half-written or with wider permissions.
fn write_key_file(path: &std::path::Path, secret: &str) -> Result<(), CoreError> {
    let fail = |e: std::io::Error| {
        crate::refusal(format!(
            "cannot write the admin key to {}: {e} (the partner was made; mint it another admin key with `strata keys create`)",
            path.display()
        ))
    };
    let tmp = path.with_extension("partial");
    let _ = std::fs::remove_file(&tmp);
    let mut f = strata_store::owner_only_file(&tmp).map_err(fail)?;
    f.write_all(format!("{secret}\n").as_bytes()).and_then(|()| f.sync_all()).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn terminated() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

async fn ledger_check(strata: Strata, json: bool) -> Result<(), CoreError> {
    let r = strata.check_ledger().await?;
    if json {
        out(json!({ "ok": r.violations.is_empty(), "wallets": r.wallets, "transfers": r.transfers, "created": r.created,
                    "destroyed": r.destroyed, "held": r.held, "violations": r.violations }));
    } else {
        out(format!("{} wallets, {} transfers; created {}, destroyed {}, held {}", r.wallets, r.transfers, r.created, r.destroyed, r.held));
        for v in &r.violations {
            out(format!("VIOLATION: {v}"));
        }
    }
    if r.violations.is_empty() { Ok(()) } else { Err(CoreError::internal("ledger invariants are broken")) }
}
