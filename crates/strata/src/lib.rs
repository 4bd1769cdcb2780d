//! The strata application: opening the database, serving the API with its workers, and the
//! operator command line. `main.rs` only parses flags and calls into here, so tests start the
//! real server through `serve` on a port of their own.
#![forbid(unsafe_code)]

pub mod bench;
mod bench_flood;
pub mod bench_seed;
mod bench_webhooks;
pub mod cli;
pub mod docs;
pub mod drill;
pub mod telemetry;

use std::future::{Future, IntoFuture};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use strata_core::Strata;
use strata_core::clock::Clock;
use strata_core::cursor::ServerSecret;
use strata_core::error::{CoreError, Result};
use strata_core::service::{CoreConfig, SecretFit, init_secret_check, secret_fit};
use strata_http::AppState;
use strata_store::{Backend, DbTimeouts, SqlStore};
use strata_workers::Cadence;
use tokio::net::TcpListener;

pub use strata_store::Backend as StoreBackend;

/// How to open strata's state.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    pub backend: Backend,
    /// The server secret, 64 hex characters (`STRATA_SECRET_KEY`, or read from
    /// `--secret-key-file`). Required on PostgreSQL; on SQLite, without it the secret lives in
    /// `<data-dir>/server.key`.
    pub secret_hex: Option<String>,
    /// During a rotation, the previous server secret (64 hex characters): it still opens what it
    /// sealed, and `strata secret rotate` re-seals that under `secret_hex`.
    pub previous_secret_hex: Option<String>,
    pub core: CoreConfig,
    /// How long to wait on the database before answering 503.
    pub db: DbTimeouts,
}

impl OpenOptions {
    pub fn sqlite(dir: impl Into<PathBuf>) -> Self {
        Self {
            backend: Backend::Sqlite { dir: dir.into() },
            secret_hex: None,
            previous_secret_hex: None,
            core: CoreConfig::default(),
            db: DbTimeouts::default(),
        }
    }
}

/// The name under which strata before 0.2 kept a PostgreSQL database's server secret inside it.
pub const LEGACY_SECRET_SETTING: &str = "server_secret";

/// Connects, migrates and loads the server secret. On PostgreSQL the secret must come from the
/// configuration (a validation error naming `STRATA_SECRET_KEY` otherwise), and a database
/// that still holds a secret of its own is refused until `strata secret export` moves it out.
/// A secret that does not open the database's check value (or, in a database made before check
/// values, its sealed values) is refused, and so is a SQLite database whose `server.key` is
/// missing while it holds sealed data; on first use the check value is written.
pub async fn open(opts: &OpenOptions, clock: Arc<dyn Clock>) -> Result<Strata> {
    let configured = opts.secret_hex.as_deref().map(|h| parse_secret(h, "STRATA_SECRET_KEY")).transpose()?;
    let store = SqlStore::connect_with(&opts.backend, opts.db).await?.into_port();
    let secret = match (&opts.backend, configured) {
        (Backend::Sqlite { .. }, Some(secret)) => secret,
        (Backend::Sqlite { dir }, None) => {
            let path = dir.join(KEY_FILE);
            // A database restored without its key: refuse rather than make a new key that opens
            // nothing the database holds sealed.
            if !path.exists() && secret_fit(&*store, None).await? != SecretFit::Unsealed {
                return Err(refusal(format!(
                    "{} is missing, but the database beside it holds data sealed under the server secret that file held: \
                     put back the server.key from the same backup as strata.db, or give that secret with --secret-key-file",
                    path.display()
                )));
            }
            secret_from_file(&path)?
        }
        (Backend::Postgres { .. }, configured) => {
            let mut tx = store.read().await?;
            let held = tx.setting(LEGACY_SECRET_SETTING).await?;
            tx.commit().await?;
            if held.is_some() {
                return Err(CoreError::validation(
                    "STRATA_SECRET_KEY",
                    "this database holds its own server secret; move it out with `strata secret export > server.key`, then pass that file with --secret-key-file",
                ));
            }
            configured.ok_or_else(|| {
                CoreError::validation(
                    "STRATA_SECRET_KEY",
                    "on PostgreSQL the server secret is kept outside the database: set STRATA_SECRET_KEY or --secret-key-file (make one with `strata secret generate`)",
                )
            })?
        }
    };
    let secret = match opts.previous_secret_hex.as_deref() {
        Some(h) => secret.with_previous(&parse_secret(h, "STRATA_PREVIOUS_SECRET_KEY")?),
        None => secret,
    };
    match secret_fit(&*store, Some(&secret)).await? {
        SecretFit::Mismatch => {
            return Err(refusal(format!(
                "the server secret given (fingerprint {}) does not open this database's sealed data, which was sealed under another secret: \
                 start with the secret the database was made with (on SQLite the server.key from the same backup as strata.db, \
                 otherwise --secret-key-file), or, during a rotation, give the old one with --previous-secret-key-file",
                secret.fingerprint()
            )));
        }
        // First use (or a database made before check values): remember which secret it is.
        SecretFit::Matches | SecretFit::Unsealed => init_secret_check(&*store, &secret).await?,
    }
    Ok(Strata::new(store, clock, secret, opts.core.clone()))
}

/// The file holding a SQLite data directory's server secret.
pub const KEY_FILE: &str = "server.key";

/// An operator's mistake or a refusal to start: one line saying what to do (never "internal").
pub fn refusal(message: impl Into<String>) -> CoreError {
    CoreError::Validation { field: None, message: message.into(), code: None, bounds: None }
}

fn parse_secret(hex: &str, field: &str) -> Result<ServerSecret> {
    ServerSecret::from_hex(hex)
        .ok_or_else(|| CoreError::validation(field, "must be 64 hex characters (make one with `strata secret generate`)"))
}

/// Reads the server secret from `path`, creating it (owner-only) on first start.
fn secret_from_file(path: &std::path::Path) -> Result<ServerSecret> {
    let io = |e: std::io::Error| CoreError::internal_from(path.display().to_string(), e);
    match std::fs::read_to_string(path) {
        Ok(s) => ServerSecret::from_hex(&s).ok_or_else(|| CoreError::internal(format!("{} is not 64 hex characters", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = ServerSecret::generate();
            match strata_store::owner_only_file(path) {
                Ok(mut f) => {
                    std::io::Write::write_all(&mut f, secret.to_hex().as_bytes()).map_err(io)?;
                    f.sync_all().map_err(io)?;
                    Ok(secret)
                }
                // Another process created it first: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => secret_from_file(path),
                Err(e) => Err(io(e)),
            }
        }
        Err(e) => Err(io(e)),
    }
}

/// How long in-flight requests may run after a shutdown signal before they are cut (`serve
/// --drain-timeout-seconds`).
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(10);

/// How `serve` runs: the workers' cadence, the drain timeout, the bound on requests in flight
/// (beyond it, 503 SERVICE_UNAVAILABLE at once: `serve --max-in-flight`) and where `GET /metrics`
/// answers (`--metrics-listen`: only on that listener, so scrapes stay off the public one; by
/// default beside the API).
#[derive(Debug)]
pub struct ServeOptions {
    pub cadence: Cadence,
    pub drain: Duration,
    pub max_in_flight: usize,
    pub metrics_listener: Option<TcpListener>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            cadence: Cadence::default(),
            drain: DEFAULT_DRAIN,
            max_in_flight: strata_http::DEFAULT_MAX_IN_FLIGHT,
            metrics_listener: None,
        }
    }
}

/// Serves the API (with `GET /metrics`) and runs the workers until `shutdown` resolves. Then it
/// stops accepting, lets requests in flight finish for up to `opts.drain` (a request still
/// running after that is cut: its transaction rolls back, and it was never acknowledged), and
/// lets each worker take one last step; the webhook sender gives its attempts in flight 2 s and
/// releases the claims of those it cuts, so the next process retries them at once. Metric
/// scrapes are neither logged nor counted as requests.
pub async fn serve(
    strata: Strata,
    listener: TcpListener,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let ServeOptions { cadence, drain, max_in_flight, metrics_listener } = opts;
    telemetry::metrics();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let workers = strata_workers::spawn_all(&strata, &cadence, stop_rx.clone());
    let mut app = strata_http::router(AppState::new(strata, max_in_flight));
    let mut metrics_server = None;
    match metrics_listener {
        None => app = app.merge(telemetry::metrics_router()),
        Some(l) => {
            let mut stop = stop_rx;
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            metrics_server = Some(tokio::spawn(axum::serve(l, telemetry::metrics_router()).with_graceful_shutdown(stopped).into_future()));
        }
    }
    let signalled = Arc::new(tokio::sync::Notify::new());
    let server = axum::serve(listener, app).with_graceful_shutdown({
        let signalled = signalled.clone();
        async move {
            shutdown.await;
            signalled.notify_one();
        }
    });
    let deadline = async {
        signalled.notified().await;
        tokio::time::sleep(drain).await;
    };
    let result = tokio::select! {
        r = server.into_future() => r,
        () = deadline => {
            tracing::warn!(drain_ms = drain.as_millis() as u64, "requests still in flight after the drain timeout were cut");
            Ok(())
        }
    };
    let _ = stop_tx.send(true);
    for w in workers {
        let _ = w.await;
    }
    if let Some(m) = metrics_server {
        let _ = m.await;
    }
    result
}
