//! Rate limits shared through Redis (`--redis-url`): two servers on one database and one Redis
//! enforce one limit per key; an operator's tier change holds on every node at once; when Redis
//! goes away requests proceed (fail open), and limits hold again once it is back.
//!
//! Each test runs its own `redis-server` on a free port of its own and kills only that one; the
//! machine's shared Redis is never touched. Skipped (with a message) without `redis-server`.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_core::apikey::Tier;
use strata_redis::RedisLimiter;

use crate::helpers::{Setup, TestApp, skip};

/// Each Redis call's wait in these tests: generous, so that a loaded machine's slow answer is not
/// taken for an outage (the outage itself is a refused connection, answered at once).
const TEST_TIMEOUT: Duration = Duration::from_secs(2);

/// A `redis-server` of this test: no persistence, in a directory of its own.
struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts one on a free port, or `None` (after saying so) when `redis-server` is missing.
    fn start() -> Option<Self> {
        if Command::new("redis-server").arg("--version").stdout(Stdio::null()).status().is_err() {
            skip("redis-server is not on PATH (CI installs it; see .ci/run)");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut server = RedisServer { child: None, port, dir: tempfile::tempdir().unwrap() };
        server.restart();
        Some(server)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on its port and waits, bounded, until it accepts connections.
    fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start on port {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills this test's server (only it: by its own process handle).
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits, bounded, until the limiter reaches Redis again (a real process restarting).
async fn until_reachable(limiter: &RedisLimiter) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !limiter.ping().await {
        assert!(Instant::now() < deadline, "the limiter did not reach Redis again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn shared(limiter: &Arc<RedisLimiter>) -> Setup {
    Setup { limiter: Some(limiter.clone()), ..Setup::default() }
}

#[tokio::test]
async fn two_servers_sharing_redis_let_a_key_make_only_its_tiers_reads_in_total() {
    let Some(redis) = RedisServer::start() else { return };
    let (a, b) = (
        Arc::new(RedisLimiter::with_timeout(&redis.url(), TEST_TIMEOUT).unwrap()),
        Arc::new(RedisLimiter::with_timeout(&redis.url(), TEST_TIMEOUT).unwrap()),
    );
    let app = TestApp::spawn_with(shared(&a)).await;
    let peer = app.peer(None, shared(&b)).await;
    let (_, key) = app.other_partner("Standard").await;

    let mut allowed = 0;
    let mut key_id = String::new();
    for i in 0..240 {
        let node = if i % 2 == 0 { &app } else { &peer };
        let r = node.get("/v1/whoami").key(&key).send().await;
        match r.status {
            200 => {
                allowed += 1;
                key_id = r.body["apiKeyId"].as_str().unwrap().to_owned();
                assert_eq!(r.header("x-ratelimit-remaining"), Some((120 - allowed).to_string().as_str()), "one bucket for both nodes");
            }
            429 => assert_eq!(r.header("retry-after"), Some("1")),
            other => panic!("unexpected {other}: {}", r.body),
        }
    }
    assert_eq!(allowed, 120, "a standard key makes 120 reads a minute in total, not 120 per node");
    // The bucket refills on the strata clock: two reads a second, wherever they land.
    app.clock.advance_ms(1_000);
    peer.get("/v1/whoami").key(&key).send().await.assert_status(200);
    app.get("/v1/whoami").key(&key).send().await.assert_status(200);
    peer.get("/v1/whoami").key(&key).send().await.assert_error(429, "RATE_LIMITED");

    // The operator raises the tier: the node that made the change sees it at the next request,
    // every other node within a second (its cached authorization is invalidated by NOTIFY).
    app.strata.set_key_tier(&key_id, Tier::Pilot).await.unwrap();
    // The spent bucket now refills at the pilot rate (1,200 a minute, 20 a second).
    let r = app.get("/v1/whoami").key(&key).send().await;
    assert_eq!((r.status, r.header("x-ratelimit-limit")), (429, Some("1200")));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        let r = peer.get("/v1/whoami").key(&key).send().await;
        if (r.status, r.header("x-ratelimit-limit")) == (429, Some("1200")) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the other node still answers {} with its old tier after 1 s", r.status);
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    app.clock.advance_ms(1_000);
    for i in 0..20 {
        let node = if i % 2 == 0 { &app } else { &peer };
        node.get("/v1/whoami").key(&key).send().await.assert_status(200);
    }
    app.get("/v1/whoami").key(&key).send().await.assert_error(429, "RATE_LIMITED");
    assert_eq!((a.failures(), b.failures()), (0, 0));
}

#[tokio::test]
async fn when_redis_goes_away_requests_proceed_and_limits_hold_again_once_it_is_back() {
    let Some(mut redis) = RedisServer::start() else { return };
    let limiter = Arc::new(RedisLimiter::with_timeout(&redis.url(), TEST_TIMEOUT).unwrap());
    let app = TestApp::spawn_with(shared(&limiter)).await;
    let (_, key) = app.other_partner("Standard").await;
    for _ in 0..120 {
        app.get("/v1/whoami").key(&key).send().await.assert_status(200);
    }
    app.get("/v1/whoami").key(&key).send().await.assert_error(429, "RATE_LIMITED");

    redis.kill();
    let started = Instant::now();
    for _ in 0..20 {
        let r = app.get("/v1/whoami").key(&key).send().await;
        r.assert_status(200);
        assert_eq!(r.header("x-ratelimit-limit"), None, "nothing was counted, so nothing is claimed");
    }
    assert!(started.elapsed() < Duration::from_secs(5), "a dead Redis adds no seconds: {:?}", started.elapsed());
    assert_eq!(limiter.failures(), 20, "every request that went unlimited is counted");

    // Back, empty (no persistence): the key has a full minute's budget again, and no more.
    redis.restart();
    until_reachable(&limiter).await;
    for _ in 0..120 {
        app.get("/v1/whoami").key(&key).send().await.assert_status(200);
    }
    app.get("/v1/whoami").key(&key).send().await.assert_error(429, "RATE_LIMITED");
    assert_eq!(limiter.failures(), 20);
}

#[tokio::test]
async fn the_redis_buckets_answer_exactly_as_the_in_process_ones() {
    use strata_core::clock::DAY_MS;
    use strata_core::id::ApiKeyId;
    use strata_core::ratelimit::{EndpointClass, LocalLimiter, RateLimiter, TierLimits};
    let Some(redis) = RedisServer::start() else { return };
    let (shared, local) = (RedisLimiter::with_timeout(&redis.url(), TEST_TIMEOUT).unwrap(), LocalLimiter::default());
    let limits = TierLimits {
        reads_per_minute: Some(7),
        writes_per_minute: Some(5),
        long_running_per_minute: Some(3),
        daily_writes: Some(9),
        concurrent_jobs: None,
    };
    let key = ApiKeyId::new();
    let classes = [EndpointClass::ReadLight, EndpointClass::WriteLight, EndpointClass::LongRunning];
    let mut now = crate::helpers::START;
    // Bursts, partial refills, the daily cap and the next UTC day, in one fixed pattern.
    for step in 0..400i64 {
        now = now.plus_ms(match step % 13 {
            0 => 4_321,
            5 => 17_000,
            9 => 250,
            _ => 0,
        });
        if step == 300 {
            now = now.plus_ms(DAY_MS);
        }
        let class = classes[(step % 5 % 3) as usize];
        let a = shared.check(key, &limits, class, now).await;
        let b = local.check(key, &limits, class, now).await;
        assert_eq!(format!("{a:?}"), format!("{b:?}"), "step {step}, {class:?}");
    }
    assert_eq!(shared.failures(), 0);
}

#[tokio::test]
async fn serve_with_a_redis_that_does_not_answer_starts_and_serves_unlimited() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on: bound, then released.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--redis-url", &format!("redis://127.0.0.1:{closed}")])
        .env_remove("STRATA_DATABASE_URL")
        .env_remove("STRATA_SECRET_KEY")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start strata serve");
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (mut admin_key, mut base) = (None, None);
    while base.is_none() {
        let line = rx.recv_timeout(Duration::from_secs(20)).expect("strata serve printed where it listens");
        if let Some(k) = line.strip_prefix("admin key: ") {
            admin_key = Some(k.to_owned());
        }
        if let Some(rest) = line.strip_prefix("strata listening on ") {
            base = rest.split(' ').next().map(str::to_owned);
        }
    }
    let r = reqwest::Client::new().get(format!("{}/v1/whoami", base.unwrap())).bearer_auth(admin_key.unwrap()).send().await.unwrap();
    let status = r.status().as_u16();
    let limited = r.headers().contains_key("x-ratelimit-limit");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!((status, limited), (200, false), "the request proceeds, uncounted");
}
