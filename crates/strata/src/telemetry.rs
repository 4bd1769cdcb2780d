//! Logging: JSON lines on stderr (stdout is the command line's own output), filtered by
//! `RUST_LOG` (default `info`). Nothing secret is ever a field of a log line.

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let _ = tracing_subscriber::fmt().json().with_env_filter(filter).with_writer(std::io::stderr).with_current_span(false).try_init();
}
