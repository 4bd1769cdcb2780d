//! The rate-limit buckets kept in Redis (`--redis-url`), so N `strata serve` processes together
//! enforce one limit per key. One Lua script per request takes a token and counts the daily
//! write, atomically; the time comes from the strata clock (`now` is an argument, never Redis
//! `TIME`), so it is the same token bucket as `LocalLimiter`, decided by the same `outcome`.
//!
//! Redis is an aid, not a dependency the API cannot work without: when it does not answer within
//! a short timeout the request proceeds unlimited (fail open), the failure is counted and logged
//! at most once per `LOG_EVERY`, and limiting resumes as soon as it answers again.
#![forbid(unsafe_code)]

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use strata_core::clock::{DAY_MS, Timestamp};
use strata_core::error::CoreError;
use strata_core::id::ApiKeyId;
use strata_core::ratelimit::{Decision, EndpointClass, RateInfo, RateLimiter, TierLimits, daily_cap, outcome};

/// How long one request waits for Redis before it proceeds unlimited.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(100);
/// After a failure, requests skip Redis (and proceed unlimited) for this long before one tries
/// again, so a Redis that hangs costs at most one timeout per interval, not one per request.
const RETRY_AFTER_FAILURE: Duration = Duration::from_millis(500);
/// Failures are logged at most this often (with the count since the last line).
const LOG_EVERY: Duration = Duration::from_secs(10);

/// KEYS[1]: the bucket (hash `tokens`, `at`); KEYS[2]: the day's write count.
/// ARGV: cap per minute, now (ms), daily cap (-1: none).
/// Returns {verdict, tokens after}: verdict 1 allowed, 0 bucket empty, 2 daily cap reached.
/// Tokens are kept and returned as `%.17g` strings (Redis turns Lua numbers into integers, and
/// `tostring` keeps 14 digits), with the same floating-point steps as `LocalLimiter`, so both
/// answer to the bit.
const SCRIPT: &str = r"
local cap = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
local daily = tonumber(ARGV[3])
local tokens = cap
local at = now
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
if b[1] then
  tokens = tonumber(b[1])
  at = tonumber(b[2])
end
local rate = cap / 60000
tokens = math.min(cap, tokens + math.max(0, now - at) * rate)
at = math.max(at, now)
local verdict = 1
if tokens < 1 then
  verdict = 0
elseif daily >= 0 then
  local used = tonumber(redis.call('GET', KEYS[2]) or '0')
  if used >= daily then
    verdict = 2
  else
    redis.call('INCR', KEYS[2])
    redis.call('PEXPIRE', KEYS[2], 172800000)
  end
end
if verdict == 1 then
  tokens = tokens - 1
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'at', string.format('%d', at))
redis.call('PEXPIRE', KEYS[1], 120000)
return {verdict, string.format('%.17g', tokens)}
";

/// Rate-limit buckets in Redis. Cheap to share (`Arc`); one multiplexed connection per process.
pub struct RedisLimiter {
    conn: ConnectionManager,
    script: redis::Script,
    /// Requests that proceeded unlimited because Redis did not answer.
    failures: AtomicU64,
    /// Failures not yet reported in a log line.
    unlogged: AtomicU64,
    down: AtomicBool,
    skip_until: Mutex<Option<Instant>>,
    last_log: Mutex<Option<Instant>>,
    /// How long one call waits before the request proceeds unlimited.
    timeout: Duration,
}

impl RedisLimiter {
    /// A limiter on the Redis at `url` (`redis://host:port[/db]`). Connects lazily: an
    /// unreachable Redis is no error here (requests fail open until it answers); a malformed
    /// URL is a validation error naming `STRATA_REDIS_URL`. Needs a Tokio runtime.
    pub fn new(url: &str) -> Result<Self, CoreError> {
        Self::with_timeout(url, CALL_TIMEOUT)
    }

    /// `new`, waiting up to `timeout` for each call instead of `CALL_TIMEOUT` (tests on a loaded
    /// machine use a longer one, so a slow answer is not mistaken for an outage).
    pub fn with_timeout(url: &str, timeout: Duration) -> Result<Self, CoreError> {
        let client = redis::Client::open(url).map_err(|e| CoreError::validation("STRATA_REDIS_URL", e.to_string()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| CoreError::validation("STRATA_REDIS_URL", e.to_string()))?;
        Ok(Self {
            conn,
            timeout,
            script: redis::Script::new(SCRIPT),
            failures: AtomicU64::new(0),
            unlogged: AtomicU64::new(0),
            down: AtomicBool::new(false),
            skip_until: Mutex::new(None),
            last_log: Mutex::new(None),
        })
    }

    /// How many requests proceeded unlimited because Redis did not answer, since start.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Whether Redis answers a PING within the call timeout. A success also ends the pause
    /// after a failure, so the next request is limited again at once.
    pub async fn ping(&self) -> bool {
        let mut conn = self.conn.clone();
        let ok = matches!(tokio::time::timeout(self.timeout, redis::cmd("PING").query_async::<String>(&mut conn)).await, Ok(Ok(_)));
        if ok {
            self.recovered();
        }
        ok
    }

    fn skipping(&self) -> bool {
        self.skip_until.lock().ok().and_then(|s| *s).is_some_and(|until| Instant::now() < until)
    }

    fn recovered(&self) {
        if let Ok(mut s) = self.skip_until.lock() {
            *s = None;
        }
        if self.down.swap(false, Ordering::Relaxed) {
            tracing::info!(failures = self.failures(), "Redis answers again: rate limits are shared again");
        }
    }

    /// Counts a request that proceeds unlimited and logs it, at most once per `LOG_EVERY`.
    fn failed(&self, error: &str, pause: bool) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(strata_core::telemetry::RATE_LIMIT_FAIL_OPEN).increment(1);
        self.unlogged.fetch_add(1, Ordering::Relaxed);
        self.down.store(true, Ordering::Relaxed);
        if pause && let Ok(mut s) = self.skip_until.lock() {
            *s = Some(Instant::now() + RETRY_AFTER_FAILURE);
        }
        let due = match self.last_log.lock() {
            Ok(mut last) if last.is_none_or(|t| t.elapsed() >= LOG_EVERY) => {
                *last = Some(Instant::now());
                true
            }
            _ => false,
        };
        if due {
            let since_last = self.unlogged.swap(0, Ordering::Relaxed);
            tracing::warn!(
                error,
                failures = self.failures(),
                since_last,
                "Redis does not answer: requests proceed without rate limits until it does"
            );
        }
    }

    async fn decide(&self, key: ApiKeyId, class: EndpointClass, cap: u32, daily: Option<u32>, now: Timestamp) -> Result<Decision, String> {
        // One hash slot per key (`{…}`), so both keys of a call live together on a cluster.
        let bucket = format!("strata:rl:{{{key}}}:{}", class.as_str());
        let day = format!("strata:rl:{{{key}}}:day:{}", now.millis().div_euclid(DAY_MS));
        let mut conn = self.conn.clone();
        let mut call = self.script.prepare_invoke();
        call.key(bucket).key(day).arg(cap).arg(now.millis()).arg(daily.map_or(-1, i64::from));
        let (verdict, tokens): (i64, String) = match tokio::time::timeout(self.timeout, call.invoke_async(&mut conn)).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err(format!("no answer within {} ms", self.timeout.as_millis())),
        };
        let tokens: f64 = tokens.parse().map_err(|_| format!("the script returned {tokens:?} tokens"))?;
        Ok(match verdict {
            1 => Decision::Allowed { tokens },
            0 => Decision::Empty { tokens },
            _ => Decision::DailyCapReached,
        })
    }
}

#[async_trait]
impl RateLimiter for RedisLimiter {
    async fn check(&self, key: ApiKeyId, limits: &TierLimits, class: EndpointClass, now: Timestamp) -> Result<Option<RateInfo>, CoreError> {
        let Some(cap) = limits.per_minute(class) else { return Ok(None) };
        if self.skipping() {
            self.failed("skipped: Redis failed moments ago", false);
            return Ok(None);
        }
        let daily = daily_cap(limits, class);
        match self.decide(key, class, cap, daily, now).await {
            Ok(decision) => {
                if self.down.load(Ordering::Relaxed) {
                    self.recovered();
                }
                outcome(class, cap, daily, now, decision).map(Some)
            }
            Err(e) => {
                self.failed(&e, true);
                Ok(None)
            }
        }
    }
}
