//! The end-to-end suite: the real server on a random port with a fresh database, driven over
//! HTTP the way a partner drives it. Runs on SQLite, and on PostgreSQL when
//! `STRATA_TEST_DATABASE_URL` is set.

mod helpers;

mod auth;
mod auth_cache;
mod bench_seed;
mod children;
mod cli;
mod console;
mod content;
mod conventions;
mod credits;
mod docs;
mod idempotency;
mod isolation;
mod keys;
mod ledger_concurrency;
mod ledger_props;
mod list_filters;
mod logs;
mod openapi;
mod operator_guards;
mod orgs;
mod outage;
mod projects;
mod ratelimit;
mod redis_limits;
mod rejections;
mod secrets;
mod server_secret;
mod shutdown;
mod telemetry;
mod usage;
mod webhook_history;
mod webhook_sending;
mod webhooks;
