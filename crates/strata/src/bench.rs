//! `strata bench`: a load harness that starts a strata server on a port of its own, provisions a
//! funded partner with children, and drives one scenario over HTTP with many concurrent
//! clients, printing throughput and latency percentiles. Every scenario first runs `baseline`
//! briefly in the same run (the same HTTP stack answering a constant) and prints its ratio to
//! it, so figures from a busy machine still compare. A harness, not a test: it asserts nothing
//! about speed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use serde_json::json;
use strata_core::clock::SystemClock;
use strata_core::credits::GrantKind;
use strata_core::error::{CoreError, Result};
use strata_core::service::NewPartner;
use strata_store::Backend;

use crate::OpenOptions;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// `GET /healthz`: the same router and middleware answering a constant, no database: the
    /// ceiling every other scenario is compared with.
    Baseline,
    /// `POST /v1/organizations/:orgId/credits/allocate`, each with a fresh Idempotency-Key.
    Allocations,
    /// `GET /v1/whoami`: the authentication hot path alone.
    Whoami,
    /// `GET /v1/organizations/:orgId` of a child (spread over the children): auth plus one
    /// scoped read with the child's summary.
    GetOrg,
    /// `GET /v1/organizations?limit=20`: the first page of the bench partner's children list
    /// (give it `--children` ≥ 20).
    ChildrenList,
    /// Webhook delivery: allocations (at `--rate` per second, or as fast as `--clients` go)
    /// whose `credits.allocated` events `--endpoints` firehose endpoints deliver to one local
    /// receiver; measures commit→delivery latency, deliveries per second and the drain time.
    Webhooks,
    /// `GET /v1/whoami` of `--clients` valid clients, beside 64 clients sending valid reads and
    /// then beside 64 sending invalid keys: the second throughput against the first (target
    /// at least 0.9×), what a flood of bad keys costs everyone else.
    Flood,
}

/// How long the baseline runs before another scenario (after its own one-second warm-up).
const BASELINE_SECS: u64 = 3;

/// What one timed run measured.
pub(crate) struct Measured {
    pub ok: Vec<Duration>,
    pub errors: u64,
    seconds: u64,
}

impl Measured {
    pub fn per_sec(&self) -> f64 {
        self.ok.len() as f64 / self.seconds.max(1) as f64
    }

    pub fn pct(&self, p: f64) -> Duration {
        quantile(&self.ok, p)
    }
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// What to drive; every scenario but `baseline` is printed beside a baseline run.
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
    /// The bench key's tier. `internal` (the default) is never counted by a rate limiter; any
    /// other tier measures the limiter too (raise its limits with --tier-limits).
    #[arg(long, default_value = "internal")]
    pub tier: String,
    /// Keep the rate-limit buckets in this Redis (as `serve --redis-url` does).
    #[arg(long)]
    pub redis_url: Option<String>,
    /// webhooks: events committed per second (0: as fast as the clients go).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// webhooks: endpoints subscribed to every event (all posting to the one receiver).
    #[arg(long, default_value_t = 1)]
    pub endpoints: usize,
    /// webhooks: hold every delivery (endpoints paused) until the load stops, then release them
    /// at once and measure how fast the backlog drains.
    #[arg(long)]
    pub backlog: bool,
    /// Before the run, bulk seed about this many other orgs (√N partners with their children,
    /// two keys each) into the scratch database: tables of a realistic size.
    #[arg(long)]
    pub orgs: Option<usize>,
    /// With --orgs: transfers (and their ledger entries) spread over the seeded partners.
    #[arg(long, default_value_t = 0)]
    pub transfers: u64,
    /// More scenarios to run after the first on the same server and data (comma-separated;
    /// not webhooks or flood, which run alone), each with its own baseline and line: one seeding serves them all.
    #[arg(long, value_delimiter = ',')]
    pub then: Vec<Scenario>,
}

pub(crate) fn err(e: impl std::fmt::Display) -> CoreError {
    CoreError::internal(e.to_string())
}

/// A strata server on a fresh database, with a funded partner and its children.
pub(crate) struct Harness {
    pub strata: strata_core::Strata,
    pub base: String,
    pub key: String,
    pub children: Vec<String>,
    pub client: reqwest::Client,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Harness {
    /// Starts the server on `opts`'s (scratch) database, with `args.children` children of a
    /// partner on `args.tier`.
    pub async fn start(opts: &OpenOptions, args: &BenchArgs) -> Result<Self> {
        let (children, clients) = (args.children, args.clients);
        let tier = strata_core::apikey::Tier::parse(&args.tier)
            .ok_or_else(|| CoreError::validation("tier", "must be sandbox, standard, pilot, partner or internal"))?;
        let strata = crate::open(opts, Arc::new(SystemClock)).await?;
        let strata = match &args.redis_url {
            Some(url) => strata.with_limiter(Arc::new(strata_redis::RedisLimiter::new(url)?)),
            None => strata,
        };
        let partner = strata.create_partner(NewPartner { name: "bench".into(), tier }).await?;
        strata.grant_credits(partner.org.id, 1_000_000_000, GrantKind::Purchase).await?;
        if let Some(orgs) = args.orgs {
            let now = strata_core::clock::Clock::now(&SystemClock);
            crate::bench_seed::seed(&opts.backend, crate::bench_seed::Shape::new(orgs, args.transfers), now).await?;
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(err)?;
        let base = format!("http://{}", listener.local_addr().map_err(err)?);
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(crate::serve(strata.clone(), listener, crate::ServeOptions::default(), async move {
            let _ = stop_rx.await;
        }));
        let client = reqwest::Client::builder().pool_max_idle_per_host(clients).build().map_err(err)?;
        let key = partner.secret.expose().to_owned();
        let mut ids = Vec::new();
        for i in 0..children.max(1) {
            let r = client
                .post(format!("{base}/v1/organizations"))
                .bearer_auth(&key)
                .json(&json!({ "name": format!("bench-{i}") }))
                .send()
                .await;
            let body: serde_json::Value = r.map_err(err)?.json().await.map_err(err)?;
            ids.push(body["id"].as_str().unwrap_or_default().to_owned());
        }
        Ok(Self { strata, base, key, children: ids, client, stop, server })
    }

    /// One allocation of 1 credit into the `n`th child (round robin), with a fresh key.
    pub async fn allocate(&self, n: usize, idem: &str) -> reqwest::Result<reqwest::Response> {
        let child = &self.children[n % self.children.len()];
        self.client
            .post(format!("{}/v1/organizations/{child}/credits/allocate", self.base))
            .bearer_auth(&self.key)
            .header("Idempotency-Key", idem)
            .json(&json!({ "credits": 1 }))
            .send()
            .await
    }

    /// What the scenarios' clients send to this server.
    pub fn target(&self) -> Target {
        Target { client: self.client.clone(), base: self.base.clone(), key: self.key.clone(), children: Arc::new(self.children.clone()) }
    }

    /// Stops the server and checks the ledger's invariants.
    pub async fn finish(self) -> Result<strata_core::Strata> {
        let _ = self.stop.send(());
        let _ = self.server.await;
        let report = self.strata.check_ledger().await?;
        if !report.violations.is_empty() {
            return Err(CoreError::internal(format!("ledger invariants broken after the run: {}", report.violations.join("; "))));
        }
        Ok(self.strata)
    }
}

/// The `q` quantile of sorted durations.
pub(crate) fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted.get(((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1))).copied().unwrap_or_default()
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs a scenario against a fresh server on a scratch database of `opts`'s backend (a
/// temporary SQLite directory, or a new PostgreSQL database next to the configured one, dropped
/// at the end): never on the configured database itself.
pub async fn run(opts: &OpenOptions, args: BenchArgs) -> Result<String> {
    let temp = tempfile::tempdir().map_err(err)?;
    let mut opts = opts.clone();
    let configured_pg = match &opts.backend {
        Backend::Postgres { url } => Some(url.clone()),
        Backend::Sqlite { .. } => None,
    };
    opts.backend = match &configured_pg {
        Some(url) => Backend::Postgres { url: strata_store::create_scratch_postgres(url, "strata_bench").await? },
        None => Backend::Sqlite { dir: temp.path().to_owned() },
    };
    // A bench database is scratch: without a configured secret, one for this run will do.
    if opts.secret_hex.is_none() {
        opts.secret_hex = Some(strata_core::cursor::ServerSecret::generate().to_hex());
    }
    let result = match args.scenario {
        Scenario::Webhooks => crate::bench_webhooks::run(&opts, &args).await,
        Scenario::Flood => crate::bench_flood::run(&opts, &args).await,
        _ => run_on(&opts, &args).await,
    };
    if let (Some(url), Backend::Postgres { url: scratch }) = (&configured_pg, &opts.backend) {
        strata_store::drop_scratch_postgres(url, scratch).await?;
    }
    result
}

async fn run_on(opts: &OpenOptions, args: &BenchArgs) -> Result<String> {
    let h = Harness::start(opts, args).await?;
    let target = h.target();
    let mut runs = Vec::new();
    for scenario in
        std::iter::once(args.scenario).chain(args.then.iter().copied().filter(|s| !matches!(s, Scenario::Webhooks | Scenario::Flood)))
    {
        let baseline = if scenario == Scenario::Baseline {
            None
        } else {
            Some(drive(&target, Scenario::Baseline, args.clients, BASELINE_SECS.min(args.seconds.max(1))).await?)
        };
        runs.push((scenario, baseline, drive(&target, scenario, args.clients, args.seconds).await?));
    }
    let strata = h.finish().await?;
    let lines: Vec<String> = runs
        .iter()
        .map(|(scenario, baseline, measured)| {
            let ratio = match baseline {
                None => "ratio to baseline 1.00".to_owned(),
                Some(b) => format!("baseline {:.0}/s, ratio to baseline {:.2}", b.per_sec(), measured.per_sec() / b.per_sec().max(1.0)),
            };
            format!(
                "scenario {} on {} with {} clients for {}s: {} ok ({:.0}/s), {} errors; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {ratio}; ledger invariants hold",
                scenario.to_possible_value().map(|v| v.get_name().to_owned()).unwrap_or_default(),
                strata.store.backend(),
                args.clients,
                args.seconds,
                measured.ok.len(),
                measured.per_sec(),
                measured.errors,
                ms(measured.pct(0.50)),
                ms(measured.pct(0.99)),
                ms(measured.ok.last().copied().unwrap_or_default()),
            )
        })
        .collect();
    Ok(lines.join("\n"))
}

/// The running server and what the clients send to it.
pub(crate) struct Target {
    client: reqwest::Client,
    pub base: String,
    pub key: String,
    children: Arc<Vec<String>>,
}

/// Drives `scenario` with `clients` concurrent clients: a one-second warm-up, then `seconds`
/// measured. Latencies are of 2xx responses only; anything else counts as an error.
pub(crate) async fn drive(t: &Target, scenario: Scenario, clients: usize, seconds: u64) -> Result<Measured> {
    let started = Instant::now();
    let measure_from = started + Duration::from_secs(1);
    let deadline = measure_from + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (client, base, key, children) = (t.client.clone(), t.base.clone(), t.key.clone(), t.children.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let mut n = 0usize;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let child = &children[(c + n) % children.len()];
                let resp = match scenario {
                    Scenario::Baseline => client.get(format!("{base}/healthz")).send().await,
                    Scenario::Allocations => {
                        client
                            .post(format!("{base}/v1/organizations/{child}/credits/allocate"))
                            .bearer_auth(&key)
                            .header("Idempotency-Key", format!("bench-{c}-{n}"))
                            .json(&json!({ "credits": 1 }))
                            .send()
                            .await
                    }
                    Scenario::Whoami => client.get(format!("{base}/v1/whoami")).bearer_auth(&key).send().await,
                    Scenario::ChildrenList => client.get(format!("{base}/v1/organizations?limit=20")).bearer_auth(&key).send().await,
                    Scenario::GetOrg | Scenario::Webhooks | Scenario::Flood => {
                        client.get(format!("{base}/v1/organizations/{child}")).bearer_auth(&key).send().await
                    }
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
    let mut ok = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (l, e) = task.await.map_err(err)?;
        ok.extend(l);
        errors += e;
    }
    ok.sort();
    Ok(Measured { ok, errors, seconds })
}
