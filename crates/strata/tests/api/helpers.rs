//! `TestApp`: one strata server per test, with its own database and a controllable clock.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use reqwest::Method;
use serde_json::Value;
use strata::{OpenOptions, StoreBackend};
use strata_core::Strata;
use strata_core::clock::{ManualClock, Timestamp};
use strata_core::cursor::ServerSecret;
use strata_core::ratelimit::RateLimiter;
use strata_workers::Cadence;
use tokio::sync::oneshot;

/// 2026-06-01T00:00:00Z: every test starts here and moves the clock by hand.
pub const START: Timestamp = Timestamp(1_780_272_000_000);

/// Everything the server logged in this test process, for the "no secret in a log line" check.
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&log_buffer().lock().unwrap()).into_owned()
}

fn log_buffer() -> &'static Arc<Mutex<Vec<u8>>> {
    static BUF: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUF.get_or_init(|| Arc::new(Mutex::new(Vec::new())))
}

#[derive(Clone)]
struct BufWriter;

impl Write for BufWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        log_buffer().lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn init_logs() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .json()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug,hyper=info,h2=info,reqwest=info"))
            .with_writer(|| BufWriter)
            .try_init();
    });
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub clock: ManualClock,
    pub strata: Strata,
    /// The bootstrap partner's `org:admin` + `*` key.
    pub admin_key: String,
    pub partner_org: String,
    pub backend: StoreBackend,
    /// The server secret given in the configuration (always on PostgreSQL; on SQLite `None`: the
    /// secret is the data directory's `server.key`).
    pub secret_hex: Option<String>,
    stop: Option<oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: Option<tempfile::TempDir>,
}

/// A response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub raw: Vec<u8>,
    pub body: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    /// Asserts an error status and code, with the body in the failure message.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!((self.status, self.code()), (status, code), "body: {}", self.body);
    }

    #[track_caller]
    pub fn assert_status(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "body: {}", self.body);
        &self.body
    }
}

/// A request under construction.
pub struct Call<'a> {
    app: &'a TestApp,
    req: reqwest::RequestBuilder,
}

impl Call<'_> {
    pub fn key(mut self, key: &str) -> Self {
        self.req = self.req.bearer_auth(key);
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.req = self.req.header(name, value);
        self
    }

    pub fn idem(self, key: &str) -> Self {
        self.header("Idempotency-Key", key)
    }

    pub fn acting(self, org: &str) -> Self {
        self.header("X-Layers-Organization", org)
    }

    pub fn json(mut self, body: &Value) -> Self {
        self.req = self.req.header("content-type", "application/json").body(body.to_string());
        self
    }

    pub fn raw_body(mut self, body: impl Into<reqwest::Body>) -> Self {
        self.req = self.req.header("content-type", "application/json").body(body);
        self
    }

    pub async fn send(self) -> Resp {
        let _ = self.app;
        let resp = self.req.send().await.expect("request failed");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let raw = resp.bytes().await.expect("body").to_vec();
        let body = if raw.is_empty() { Value::Null } else { serde_json::from_slice(&raw).unwrap_or(Value::Null) };
        Resp { status, headers, raw, body }
    }
}

/// How a test's server differs from the default one.
#[derive(Default)]
pub struct Setup {
    /// Keeps the rate-limit buckets somewhere else than in the process (e.g. Redis).
    pub limiter: Option<Arc<dyn RateLimiter>>,
    /// How many rejections may wait for the audit flusher (the default when `None`).
    pub audit_queue: Option<usize>,
    /// The tiers' limits (the contract's table when `None`).
    pub tier_limits: Option<strata_core::ratelimit::TierTable>,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(Setup::default()).await
    }

    pub async fn spawn_with(setup: Setup) -> Self {
        init_logs();
        let clock = ManualClock::starting_at(START);
        let (backend, dir) = match std::env::var("STRATA_TEST_DATABASE_URL") {
            Ok(url) if !url.is_empty() => (StoreBackend::Postgres { url: fresh_pg_database(&url).await }, None),
            _ => {
                let dir = tempfile::tempdir().expect("tempdir");
                (StoreBackend::Sqlite { dir: dir.path().to_owned() }, Some(dir))
            }
        };
        // PostgreSQL needs a server secret from outside the database; SQLite makes its file.
        let secret_hex = matches!(backend, StoreBackend::Postgres { .. }).then(|| ServerSecret::generate().to_hex());
        let strata = open_test(&backend, secret_hex.clone(), None, &clock, setup).await;
        let created = strata.bootstrap("Quinn's Coffee CRM").await.expect("bootstrap").expect("empty database");
        let (base, stop, served) = serve_test(strata.clone()).await;
        Self {
            base,
            client: reqwest::Client::new(),
            clock,
            strata,
            admin_key: created.secret.expose().to_owned(),
            partner_org: created.org.id.to_string(),
            backend,
            secret_hex,
            stop: Some(stop),
            served: Some(served),
            _dir: dir,
        }
    }

    /// Another server on this test's database and clock (a second node), with its own process
    /// state. `secret_hex: None` uses this app's secret. Drop it before this app.
    pub async fn peer(&self, secret_hex: Option<String>, setup: Setup) -> TestApp {
        let secret_hex = secret_hex.or_else(|| self.secret_hex.clone());
        let strata = open_test(&self.backend, secret_hex.clone(), None, &self.clock, setup).await;
        let (base, stop, served) = serve_test(strata.clone()).await;
        TestApp {
            base,
            client: reqwest::Client::new(),
            clock: self.clock.clone(),
            strata,
            admin_key: self.admin_key.clone(),
            partner_org: self.partner_org.clone(),
            backend: self.backend.clone(),
            secret_hex,
            stop: Some(stop),
            served: Some(served),
            _dir: None,
        }
    }

    /// The server secret in force, as 64 hex characters (on SQLite, read from `server.key`).
    pub fn secret(&self) -> String {
        match (&self.secret_hex, &self.backend) {
            (Some(h), _) => h.clone(),
            (None, StoreBackend::Sqlite { dir }) => std::fs::read_to_string(dir.join("server.key")).unwrap().trim().to_owned(),
            (None, StoreBackend::Postgres { .. }) => unreachable!("PostgreSQL tests always pass a secret"),
        }
    }

    /// Stops the server (as a crash would, nothing is handed over) and starts a new process's
    /// worth of it on the same database and clock, at a new address (with the default limiter).
    pub async fn restart(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(served) = self.served.take() {
            let _ = served.await;
        }
        self.strata = open_test(&self.backend, self.secret_hex.clone(), None, &self.clock, Setup::default()).await;
        let (base, stop, served) = serve_test(self.strata.clone()).await;
        (self.base, self.stop, self.served) = (base, Some(stop), Some(served));
    }

    pub fn call(&self, method: Method, path: &str) -> Call<'_> {
        Call { app: self, req: self.client.request(method, format!("{}{path}", self.base)) }
    }

    pub fn get(&self, path: &str) -> Call<'_> {
        self.call(Method::GET, path)
    }

    pub fn post(&self, path: &str) -> Call<'_> {
        self.call(Method::POST, path)
    }

    pub fn patch(&self, path: &str) -> Call<'_> {
        self.call(Method::PATCH, path)
    }

    pub fn delete(&self, path: &str) -> Call<'_> {
        self.call(Method::DELETE, path)
    }

    /// Creates a child of the bootstrap partner; returns its id.
    pub async fn create_child(&self, name: &str) -> String {
        let r = self.post("/v1/organizations").key(&self.admin_key).json(&serde_json::json!({ "name": name })).send().await;
        r.assert_status(201)["id"].as_str().unwrap().to_owned()
    }

    /// Mints a key in a child; returns (key id, secret).
    pub async fn child_key(&self, org: &str, scopes: &[&str]) -> (String, String) {
        let r = self
            .post(&format!("/v1/organizations/{org}/api-keys"))
            .key(&self.admin_key)
            .json(&serde_json::json!({ "name": "integration", "scopes": scopes }))
            .send()
            .await;
        let b = r.assert_status(201);
        (b["apiKey"]["id"].as_str().unwrap().to_owned(), b["secret"].as_str().unwrap().to_owned())
    }

    /// Creates another partner through the operator path; returns (org id, admin key).
    pub async fn other_partner(&self, name: &str) -> (String, String) {
        let p = self
            .strata
            .create_partner(strata_core::service::NewPartner { name: name.into(), tier: strata_core::apikey::Tier::Standard })
            .await
            .unwrap();
        (p.org.id.to_string(), p.secret.expose().to_owned())
    }

    /// Grants prepaid credits to an org through the operator path.
    pub async fn grant(&self, org: &str, credits: i64) {
        self.strata.grant_credits(org.parse().unwrap(), credits, strata_core::credits::GrantKind::Grant).await.unwrap();
    }

    /// Allocates from the partner to a child; returns the response.
    pub async fn allocate(&self, child: &str, credits: i64) -> Resp {
        self.post(&format!("/v1/organizations/{child}/credits/allocate"))
            .key(&self.admin_key)
            .idem(&ulid::Ulid::new().to_string())
            .json(&serde_json::json!({ "credits": credits }))
            .send()
            .await
    }

    /// The partner's admin key as a service-level caller.
    pub async fn admin_caller(&self) -> strata_core::service::Caller {
        let header = format!("Bearer {}", self.admin_key);
        let creds = strata_core::service::Credentials { authorization: Some(&header), acting_org: None, whoami: false };
        self.strata.authenticate(creds, strata_core::id::RequestId::at(0)).await.unwrap()
    }

    /// Asserts every ledger invariant over the whole database.
    pub async fn assert_ledger(&self) -> strata_core::service::LedgerReport {
        let report = self.strata.check_ledger().await.unwrap();
        assert!(report.violations.is_empty(), "ledger invariants broken:\n{}", report.violations.join("\n"));
        report
    }

    /// Every stored byte of the database, for scanning.
    pub async fn database_dump(&self) -> String {
        match &self.backend {
            StoreBackend::Sqlite { dir } => {
                let mut out = Vec::new();
                for name in ["strata.db", "strata.db-wal"] {
                    if let Ok(b) = std::fs::read(dir.join(name)) {
                        out.extend_from_slice(&b);
                    }
                }
                String::from_utf8_lossy(&out).into_owned()
            }
            StoreBackend::Postgres { url } => {
                use sqlx::{Connection, Row};
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                let tables: Vec<String> = sqlx::query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                    .fetch_all(&mut conn)
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| r.get::<String, _>(0))
                    .collect();
                let mut out = String::new();
                for t in tables {
                    for r in sqlx::query(&format!("SELECT t::text FROM \"{t}\" t")).fetch_all(&mut conn).await.unwrap() {
                        out.push_str(&r.get::<String, _>(0));
                        out.push('\n');
                    }
                }
                out
            }
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Says why a test did not run (it passes without checking anything).
#[expect(clippy::print_stderr, reason = "a skipped test says so in the test output")]
pub fn skip(why: &str) {
    eprintln!("skipped: {why}");
}

/// Opens strata on a test's database: dev mode (webhook receivers listen on loopback) and a
/// short retry ladder.
async fn open_test(
    backend: &StoreBackend,
    secret_hex: Option<String>,
    previous_secret_hex: Option<String>,
    clock: &ManualClock,
    setup: Setup,
) -> Strata {
    let mut core = strata_core::service::CoreConfig { dev_mode: true, retry_ladder_ms: vec![0, 1_000, 2_000], ..Default::default() };
    if let Some(n) = setup.audit_queue {
        core.rejection_queue_capacity = n;
    }
    if let Some(t) = setup.tier_limits {
        core.tier_limits = t;
    }
    let opts = OpenOptions { backend: backend.clone(), secret_hex, previous_secret_hex, core, db: Default::default() };
    let strata = strata::open(&opts, Arc::new(clock.clone())).await.expect("open");
    match setup.limiter {
        Some(l) => strata.with_limiter(l),
        None => strata,
    }
}

/// Workers that tick rarely: tests step them by hand.
pub fn manual_cadence() -> Cadence {
    let hour = std::time::Duration::from_secs(3600);
    Cadence {
        key_usage_flush: hour,
        rejections_flush: hour,
        idempotency_prune: hour,
        ledger: hour,
        scheduler: hour,
        webhooks: hour,
        retention: hour,
        wake_on_commit: false,
    }
}

/// A test server: its base URL, the trigger that stops it (sent or dropped) and the running server.
pub type Served = (String, oneshot::Sender<()>, tokio::task::JoinHandle<std::io::Result<()>>);

/// Serves `strata` on a port of its own with hand-stepped workers.
pub async fn serve_test(strata: Strata) -> Served {
    serve_test_with(strata, strata::ServeOptions { cadence: manual_cadence(), ..Default::default() }).await
}

/// Serves `strata` on a port of its own with these options.
pub async fn serve_test_with(strata: Strata, opts: strata::ServeOptions) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(strata::serve(strata, listener, opts, async move {
        let _ = stopped.await;
    }));
    (base, stop, served)
}

/// Creates an empty database next to the one `base` names and returns its URL.
pub async fn fresh_pg_database(base: &str) -> String {
    use sqlx::{Connection, Executor};
    let name = format!("strata_t_{}", ulid::Ulid::new().to_string().to_lowercase());
    let mut conn = sqlx::PgConnection::connect(base).await.expect("connect to STRATA_TEST_DATABASE_URL");
    conn.execute(format!("CREATE DATABASE {name}").as_str()).await.expect("create test database");
    let (head, _) = base.rsplit_once('/').expect("a URL with a database name");
    let (_, query) = base.split_once('?').map_or(("", ""), |(a, q)| (a, q));
    if query.is_empty() { format!("{head}/{name}") } else { format!("{head}/{name}?{query}") }
}

/// Waits until `n` sessions of the test's PostgreSQL database wait for a lock (a test that
/// stages a lock-order race needs each party queued before the next moves).
pub async fn until_lock_waiters(url: &str, n: i64) {
    until_lock_waiters_for(url, n, std::time::Duration::ZERO).await;
}

/// Waits until `n` sessions of the test's PostgreSQL database have waited for a lock for longer
/// than `at_least` (a wait past a lock timeout tells who is waiting).
pub async fn until_lock_waiters_for(url: &str, n: i64, at_least: std::time::Duration) {
    use sqlx::Connection;
    let sql = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' \
               AND clock_timestamp() - query_start >= make_interval(secs => $1)";
    let mut probe = sqlx::PgConnection::connect(url).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if sqlx::query_scalar::<_, i64>(sql).bind(at_least.as_secs_f64()).fetch_one(&mut probe).await.unwrap() >= n {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("never saw {n} sessions waiting for a lock longer than {at_least:?} within 10 s");
}
