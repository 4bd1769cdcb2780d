//! `strata bench`: a load harness that starts a strata server on a port of its own, provisions a
//! funded partner with children, and drives one scenario over HTTP with many concurrent
//! clients, printing throughput and latency percentiles. A harness, not a test: it asserts
//! nothing about speed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use serde_json::json;
use strata_core::clock::SystemClock;
use strata_core::credits::GrantKind;
use strata_core::error::{CoreError, Result};
use strata_core::service::NewPartner;
use strata_store::Backend;
use strata_workers::Cadence;

use crate::OpenOptions;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Scenario {
    /// `POST /v1/organizations/:orgId/credits/allocate`, each with a fresh Idempotency-Key.
    Allocations,
    /// `GET /v1/whoami`: the authentication hot path alone.
    Whoami,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[arg(value_enum, default_value = "allocations")]
    pub scenario: Scenario,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// How long to run, in seconds (after a one-second warm-up).
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Child orgs the allocations spread over.
    #[arg(long, default_value_t = 8)]
    pub children: usize,
}

/// Runs a scenario against a fresh server on `opts`'s backend (a temporary SQLite directory
/// unless a PostgreSQL URL is given).
pub async fn run(opts: &OpenOptions, use_temp_sqlite: bool, args: BenchArgs) -> Result<String> {
    let temp = tempfile::tempdir().map_err(|e| CoreError::internal(e.to_string()))?;
    let opts = if use_temp_sqlite {
        OpenOptions { backend: Backend::Sqlite { dir: temp.path().to_owned() }, ..opts.clone() }
    } else {
        opts.clone()
    };
    let strata = crate::open(&opts, Arc::new(SystemClock)).await?;
    let partner = strata.create_partner(NewPartner { name: "bench".into(), tier: strata_core::apikey::Tier::Internal }).await?;
    strata.grant_credits(partner.org.id, 1_000_000_000, GrantKind::Purchase).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| CoreError::internal(e.to_string()))?;
    let base = format!("http://{}", listener.local_addr().map_err(|e| CoreError::internal(e.to_string()))?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::serve(strata.clone(), listener, Cadence::default(), async move {
        let _ = stop_rx.await;
    }));
    let client = reqwest::Client::builder().pool_max_idle_per_host(args.clients).build().map_err(|e| CoreError::internal(e.to_string()))?;
    let key = partner.secret.expose().to_owned();
    let mut children = Vec::new();
    for i in 0..args.children.max(1) {
        let r =
            client.post(format!("{base}/v1/organizations")).bearer_auth(&key).json(&json!({ "name": format!("bench-{i}") })).send().await;
        let body: serde_json::Value =
            r.map_err(|e| CoreError::internal(e.to_string()))?.json().await.map_err(|e| CoreError::internal(e.to_string()))?;
        children.push(body["id"].as_str().unwrap_or_default().to_owned());
    }

    let warmup = Duration::from_secs(1);
    let started = Instant::now();
    let measure_from = started + warmup;
    let deadline = measure_from + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let (client, base, key, children) = (client.clone(), base.clone(), key.clone(), children.clone());
        let scenario = args.scenario;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let mut n = 0usize;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let resp = match scenario {
                    Scenario::Allocations => {
                        let child = &children[(c + n) % children.len()];
                        client
                            .post(format!("{base}/v1/organizations/{child}/credits/allocate"))
                            .bearer_auth(&key)
                            .header("Idempotency-Key", format!("bench-{c}-{n}"))
                            .json(&json!({ "credits": 1 }))
                            .send()
                            .await
                    }
                    Scenario::Whoami => client.get(format!("{base}/v1/whoami")).bearer_auth(&key).send().await,
                };
                let ok = matches!(&resp, Ok(r) if r.status().is_success());
                if let Ok(r) = resp {
                    let _ = r.bytes().await;
                }
                n += 1;
                if t0 >= measure_from {
                    if ok {
                        latencies.push(t0.elapsed());
                    } else {
                        errors += 1;
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.map_err(|e| CoreError::internal(e.to_string()))?;
        all.extend(l);
        errors += e;
    }
    let _ = stop_tx.send(());
    let _ = server.await;
    let report = strata.check_ledger().await?;
    if !report.violations.is_empty() {
        return Err(CoreError::internal(format!("ledger invariants broken after the run: {}", report.violations.join("; "))));
    }
    all.sort();
    let pct = |p: f64| all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1))).copied().unwrap_or_default();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Ok(format!(
        "scenario {:?} on {} with {} clients for {}s: {} ok ({:.0}/s), {} errors; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; ledger invariants hold",
        args.scenario,
        strata.store.backend(),
        args.clients,
        args.seconds,
        all.len(),
        all.len() as f64 / args.seconds as f64,
        errors,
        ms(pct(0.50)),
        ms(pct(0.99)),
        ms(all.last().copied().unwrap_or_default()),
    ))
}
