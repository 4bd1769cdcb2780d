//! Logging and metrics. Logs go to stderr (stdout is the command line's own output) as JSON
//! lines or as text (`--log-format`), filtered by `RUST_LOG` (default `info`). Nothing secret is
//! ever a field of a log line. Metrics are kept in this process and rendered in Prometheus's text
//! format on `GET /metrics` (see `metrics_router`).

use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics::Unit;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use strata_core::telemetry as names;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line: for a log collector.
    #[default]
    Json,
    /// Human-readable lines: for a terminal.
    #[value(alias = "pretty")]
    Text,
}

/// What is logged when `RUST_LOG` is not set.
pub const DEFAULT_FILTER: &str = "info,sqlx=warn";

/// Starts logging in `format` (once per process; later calls do nothing), filtered by `RUST_LOG`
/// or else by `default_filter`.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
        // Colours only on a terminal: a file or a pipe gets plain text.
        LogFormat::Text => builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).try_init(),
    };
}

/// Request latencies, seconds: 0.5 ms to 10 s.
const LATENCY_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Waits for a database connection, seconds: 10 µs (none) to the pool's 30 s timeout.
const WAIT_BUCKETS: &[f64] = &[0.00001, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0];
/// Transactions per group commit: 1 to the batch's bound of 128.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];
/// How often histograms are folded in between scrapes, so samples never pile up.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// This process's metrics, recording from the first call on (the exporter is installed then).
/// A process has one recorder; if something else installed one first, strata's metrics render
/// empty and a warning says so.
pub fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = [
            (names::HTTP_LATENCY, LATENCY_BUCKETS),
            (names::DB_ACQUIRE_WAIT, WAIT_BUCKETS),
            (names::DB_HOLD, WAIT_BUCKETS),
            (names::GROUP_COMMIT_BATCH, BATCH_BUCKETS),
        ]
        .into_iter()
        .try_fold(PrometheusBuilder::new(), |b, (name, buckets)| b.set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets))
        .expect("every bucket list is non-empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed in this process: GET /metrics shows none of strata's metrics");
        }
        describe();
        let upkeep = handle.clone();
        let _ = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                upkeep.run_upkeep();
            }
        });
        handle
    })
}

/// `GET /metrics`: every metric in Prometheus's text exposition format, without authentication.
pub fn metrics_router() -> Router {
    let handle = metrics();
    Router::new().route(
        "/metrics",
        get(move || async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], handle.render()).into_response() }),
    )
}

/// The `# HELP` line of each family.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(names::HTTP_REQUESTS, "Requests answered, by route template, method and status.");
    describe_histogram!(names::HTTP_LATENCY, Unit::Seconds, "Time to answer a request, by route template and method.");
    describe_counter!(names::AUTH_FAILURES, "Requests refused at authentication, by reason.");
    describe_counter!(names::RATE_LIMITED, "Requests refused by a rate limit, by endpoint class.");
    describe_counter!(names::RATE_LIMIT_FAIL_OPEN, "Requests let through unlimited because Redis did not answer.");
    describe_counter!(names::IDEMPOTENT_REPLAYS, "Writes answered from the reply stored under their Idempotency-Key.");
    describe_counter!(names::IDEMPOTENCY_CONFLICTS, "Idempotency-Key conflicts, by reason (mismatch, in_progress).");
    describe_counter!(names::LEDGER_TRANSFERS, "Ledger transfers committed, by kind.");
    describe_gauge!(names::OUTBOX_LAG, Unit::Seconds, "Age of the oldest event waiting to be dispatched, as last seen.");
    describe_counter!(names::WEBHOOK_ATTEMPTS, "Webhook delivery attempts, by outcome.");
    describe_counter!(names::WEBHOOK_DELIVERIES, "Webhook deliveries after a recorded attempt, by outcome.");
    describe_gauge!(names::WEBHOOK_IN_FLIGHT, "Webhook attempts posted and not yet answered.");
    describe_gauge!(names::DB_IN_USE, "Database connections held, by backend and pool.");
    describe_histogram!(names::DB_ACQUIRE_WAIT, Unit::Seconds, "Time waited for a database connection, by backend and pool.");
    describe_histogram!(names::DB_HOLD, Unit::Seconds, "Time a database connection (or the group writer) was held, by backend and pool.");
    describe_histogram!(names::GROUP_COMMIT_BATCH, "Write transactions committed together by one group commit.");
}
