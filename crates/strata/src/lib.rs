//! The strata application: opening the database, serving the API with its workers, and the
//! operator command line. `main.rs` only parses flags and calls into here, so tests start the
//! real server through `serve` on a port of their own.
#![forbid(unsafe_code)]

pub mod bench;
mod bench_webhooks;
pub mod cli;
pub mod telemetry;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use strata_core::Strata;
use strata_core::clock::Clock;
use strata_core::cursor::ServerSecret;
use strata_core::error::{CoreError, Result};
use strata_core::service::CoreConfig;
use strata_http::AppState;
use strata_store::{Backend, SqlStore};
use strata_workers::Cadence;
use tokio::net::TcpListener;

pub use strata_store::Backend as StoreBackend;

/// How to open strata's state.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    pub backend: Backend,
    /// `STRATA_SECRET_KEY`: 64 hex characters. Without it the secret lives in
    /// `<data-dir>/server.key` (SQLite) or in the database's settings (PostgreSQL).
    pub secret_hex: Option<String>,
    pub core: CoreConfig,
}

impl OpenOptions {
    pub fn sqlite(dir: impl Into<PathBuf>) -> Self {
        Self { backend: Backend::Sqlite { dir: dir.into() }, secret_hex: None, core: CoreConfig::default() }
    }
}

/// Connects, migrates and loads the server secret.
pub async fn open(opts: &OpenOptions, clock: Arc<dyn Clock>) -> Result<Strata> {
    let store = SqlStore::connect(&opts.backend).await?.into_port();
    let secret = match &opts.secret_hex {
        Some(hex) => ServerSecret::from_hex(hex).ok_or_else(|| CoreError::internal("STRATA_SECRET_KEY must be 64 hex characters"))?,
        None => match &opts.backend {
            Backend::Sqlite { dir } => secret_from_file(&dir.join("server.key"))?,
            Backend::Postgres { .. } => {
                tracing::warn!(
                    "STRATA_SECRET_KEY is not set: the server secret is kept in the database beside the data it seals; set it in production"
                );
                let mut tx = store.write().await?;
                let hex = tx.setting_init("server_secret", &ServerSecret::generate().to_hex()).await?;
                tx.commit().await?;
                ServerSecret::from_hex(&hex).ok_or_else(|| CoreError::internal("stored server secret is corrupt"))?
            }
        },
    };
    Ok(Strata::new(store, clock, secret, opts.core.clone()))
}

/// Reads the server secret from `path`, creating it (owner-only) on first start.
fn secret_from_file(path: &std::path::Path) -> Result<ServerSecret> {
    let io = |e: std::io::Error| CoreError::internal(format!("{}: {e}", path.display()));
    match std::fs::read_to_string(path) {
        Ok(s) => ServerSecret::from_hex(&s).ok_or_else(|| CoreError::internal(format!("{} is not 64 hex characters", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = ServerSecret::generate();
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            match opts.open(path) {
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

/// Serves the API and runs the workers until `shutdown` resolves, then drains in-flight
/// requests and lets each worker take one last step.
pub async fn serve(
    strata: Strata,
    listener: TcpListener,
    cadence: Cadence,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let workers = strata_workers::spawn_all(&strata, &cadence, stop_rx);
    let app = strata_http::router(AppState { strata });
    let result = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
    let _ = stop_tx.send(true);
    for w in workers {
        let _ = w.await;
    }
    result
}
