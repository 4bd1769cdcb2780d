//! Per-key rate limits (CONTRACT §1): three token buckets per key (reads, writes, long-running
//! starts) refilling over a minute, plus a daily write cap, with limits by tier. The buckets sit
//! behind the `RateLimiter` port: in this process (`LocalLimiter`, the default) or shared by
//! every node (the Redis limiter of `strata-redis`). Both run on the strata clock, so tests
//! move time instead of waiting, and both decide through `outcome`, so they answer alike.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::apikey::Tier;
use crate::clock::{DAY_MS, Timestamp};
use crate::error::CoreError;
use crate::id::ApiKeyId;

/// The endpoint class a request is counted in.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum EndpointClass {
    /// Every GET.
    ReadLight,
    /// PATCH, DELETE and synchronous POST.
    WriteLight,
    /// A POST that starts a job.
    LongRunning,
}

impl EndpointClass {
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointClass::ReadLight => "read-light",
            EndpointClass::WriteLight => "write-light",
            EndpointClass::LongRunning => "long-running",
        }
    }
}

/// One tier's limits; `None` is unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TierLimits {
    pub reads_per_minute: Option<u32>,
    pub writes_per_minute: Option<u32>,
    pub long_running_per_minute: Option<u32>,
    pub daily_writes: Option<u32>,
    pub concurrent_jobs: Option<u32>,
}

/// The limits of every tier: the contract's defaults, each overridable by configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TierTable([TierLimits; 5]);

impl Default for TierTable {
    fn default() -> Self {
        Self([Tier::Sandbox, Tier::Standard, Tier::Pilot, Tier::Partner, Tier::Internal].map(TierLimits::default_for))
    }
}

fn tier_index(t: Tier) -> usize {
    match t {
        Tier::Sandbox => 0,
        Tier::Standard => 1,
        Tier::Pilot => 2,
        Tier::Partner => 3,
        Tier::Internal => 4,
    }
}

impl TierTable {
    pub fn get(&self, t: Tier) -> &TierLimits {
        &self.0[tier_index(t)]
    }

    /// Reads `STRATA_TIER_LIMITS`: a JSON object of tier name → limits, each tier given whole
    /// (a missing limit is unlimited), e.g. `{"standard": {"readsPerMinute": 240, …}}`.
    pub fn with_overrides(mut self, json: &str) -> Result<Self, String> {
        let map: std::collections::BTreeMap<String, TierLimits> = serde_json::from_str(json).map_err(|e| e.to_string())?;
        for (name, limits) in map {
            let tier = Tier::parse(&name).ok_or_else(|| format!("unknown tier {name:?}"))?;
            self.0[tier_index(tier)] = limits;
        }
        Ok(self)
    }
}

impl TierLimits {
    /// The contract's defaults.
    pub fn default_for(tier: Tier) -> Self {
        let l = |r, w, lr, d, j| TierLimits {
            reads_per_minute: Some(r),
            writes_per_minute: Some(w),
            long_running_per_minute: Some(lr),
            daily_writes: Some(d),
            concurrent_jobs: Some(j),
        };
        match tier {
            Tier::Sandbox => l(120, 60, 20, 10_000, 5),
            Tier::Standard => l(120, 60, 20, 10_000, 10),
            Tier::Pilot => l(1_200, 600, 60, 100_000, 50),
            Tier::Partner => l(6_000, 3_000, 300, 500_000, 200),
            Tier::Internal => TierLimits {
                reads_per_minute: None,
                writes_per_minute: None,
                long_running_per_minute: None,
                daily_writes: None,
                concurrent_jobs: None,
            },
        }
    }

    pub fn per_minute(&self, class: EndpointClass) -> Option<u32> {
        match class {
            EndpointClass::ReadLight => self.reads_per_minute,
            EndpointClass::WriteLight => self.writes_per_minute,
            EndpointClass::LongRunning => self.long_running_per_minute,
        }
    }
}

/// What a permitted request is told in its `X-RateLimit-*` headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateInfo {
    pub class: EndpointClass,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the bucket is full again.
    pub reset_secs: u64,
}

impl RateInfo {
    /// The standing of a refused request: `limit` spent, free again in `reset_secs`.
    pub fn refused(class: EndpointClass, limit: u32, reset_secs: u64) -> Self {
        Self { class, limit, remaining: 0, reset_secs }
    }
}

/// Where the buckets live.
#[async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    /// Counts one request of `class` by `key` at `now` against `limits`. `Ok(None)`: not
    /// limited (the tier is unlimited for this class, or a shared limiter cannot be reached and
    /// fails open); `Ok(Some(_))`: allowed, with the standing for the `X-RateLimit-*` headers;
    /// `Err(CoreError::RateLimited)`: refused, with the seconds to wait.
    async fn check(&self, key: ApiKeyId, limits: &TierLimits, class: EndpointClass, now: Timestamp) -> Result<Option<RateInfo>, CoreError>;
}

/// What a bucket decided; `tokens` is what the bucket holds after the decision.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Decision {
    /// One token taken.
    Allowed { tokens: f64 },
    /// Less than one token: refused until it refills.
    Empty { tokens: f64 },
    /// The daily write cap is reached (no token taken).
    DailyCapReached,
}

/// The contract's answer to a decision of the bucket of `class` holding at most `cap`.
pub fn outcome(class: EndpointClass, cap: u32, daily_cap: Option<u32>, now: Timestamp, decision: Decision) -> Result<RateInfo, CoreError> {
    let cap_f = f64::from(cap);
    let per_ms = cap_f / 60_000.0;
    match decision {
        Decision::Allowed { tokens } => {
            Ok(RateInfo { class, limit: cap, remaining: tokens.max(0.0).floor() as u32, reset_secs: ceil_secs((cap_f - tokens) / per_ms) })
        }
        Decision::Empty { tokens } => {
            let retry_after_secs = ceil_secs((1.0 - tokens) / per_ms).max(1);
            Err(CoreError::RateLimited {
                message: format!("the {} budget of this key ({cap} a minute) is spent", class.as_str()),
                retry_after_secs,
                standing: RateInfo::refused(class, cap, retry_after_secs),
            })
        }
        // The headers show the daily cap, not the minute's bucket: that is what refused.
        Decision::DailyCapReached => {
            let next_day = (now.millis().div_euclid(DAY_MS) + 1) * DAY_MS;
            let daily = daily_cap.unwrap_or(0);
            let retry_after_secs = ceil_secs((next_day - now.millis()) as f64).max(1);
            Err(CoreError::RateLimited {
                message: format!("this key's daily write cap of {daily} is reached"),
                retry_after_secs,
                standing: RateInfo::refused(class, daily, retry_after_secs),
            })
        }
    }
}

/// The daily write cap that applies to `class` (reads have none).
pub fn daily_cap(limits: &TierLimits, class: EndpointClass) -> Option<u32> {
    if class == EndpointClass::ReadLight { None } else { limits.daily_writes }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Timestamp,
}

#[derive(Default)]
struct State {
    buckets: HashMap<(ApiKeyId, EndpointClass), Bucket>,
    /// Writes counted per key in the current UTC day.
    days: HashMap<ApiKeyId, (i64, u32)>,
}

/// The buckets of this process: each `strata serve` counts on its own.
#[derive(Default)]
pub struct LocalLimiter {
    state: Mutex<State>,
}

fn ceil_secs(ms: f64) -> u64 {
    (ms / 1000.0).ceil().max(0.0) as u64
}

impl LocalLimiter {
    /// `RateLimiter::check`, synchronously.
    pub fn check_now(
        &self,
        key: ApiKeyId,
        limits: &TierLimits,
        class: EndpointClass,
        now: Timestamp,
    ) -> Result<Option<RateInfo>, CoreError> {
        let Some(cap) = limits.per_minute(class) else { return Ok(None) };
        let daily = daily_cap(limits, class);
        let mut st = self.state.lock().map_err(|_| CoreError::internal("rate limiter poisoned"))?;
        let cap_f = f64::from(cap);
        let per_ms = cap_f / 60_000.0;
        let b = *st.buckets.entry((key, class)).or_insert(Bucket { tokens: cap_f, at: now });
        let elapsed = (now.millis() - b.at.millis()).max(0) as f64;
        let tokens = (b.tokens + elapsed * per_ms).min(cap_f);
        let at = if now > b.at { now } else { b.at };
        let decision = if tokens < 1.0 {
            Decision::Empty { tokens }
        } else if let Some(daily) = daily {
            let day = now.millis().div_euclid(DAY_MS);
            let entry = st.days.entry(key).or_insert((day, 0));
            if entry.0 != day {
                *entry = (day, 0);
            }
            if entry.1 >= daily {
                Decision::DailyCapReached
            } else {
                entry.1 += 1;
                Decision::Allowed { tokens: tokens - 1.0 }
            }
        } else {
            Decision::Allowed { tokens: tokens - 1.0 }
        };
        let left = match decision {
            Decision::Allowed { tokens } | Decision::Empty { tokens } => tokens,
            Decision::DailyCapReached => tokens,
        };
        st.buckets.insert((key, class), Bucket { tokens: left, at });
        outcome(class, cap, daily, now, decision).map(Some)
    }
}

#[async_trait]
impl RateLimiter for LocalLimiter {
    async fn check(&self, key: ApiKeyId, limits: &TierLimits, class: EndpointClass, now: Timestamp) -> Result<Option<RateInfo>, CoreError> {
        self.check_now(key, limits, class, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp(1_780_272_000_000);

    #[test]
    fn a_bucket_empties_and_refills_over_the_minute() {
        let l = LocalLimiter::default();
        let k = ApiKeyId::new();
        let limits = TierLimits::default_for(Tier::Standard);
        for i in 0..60 {
            let info = l.check_now(k, &limits, EndpointClass::WriteLight, T0).unwrap().unwrap();
            assert_eq!((info.limit, info.remaining), (60, 59 - i));
        }
        match l.check_now(k, &limits, EndpointClass::WriteLight, T0) {
            Err(CoreError::RateLimited { retry_after_secs, .. }) => assert_eq!(retry_after_secs, 1),
            other => panic!("{other:?}"),
        }
        // Reads are a bucket of their own.
        assert!(l.check_now(k, &limits, EndpointClass::ReadLight, T0).is_ok());
        // One write a second comes back.
        assert!(l.check_now(k, &limits, EndpointClass::WriteLight, T0.plus_ms(1000)).is_ok());
        assert!(l.check_now(k, &limits, EndpointClass::WriteLight, T0.plus_ms(1000)).is_err());
    }

    #[test]
    fn the_daily_write_cap_holds_until_the_next_utc_day() {
        let l = LocalLimiter::default();
        let k = ApiKeyId::new();
        let limits = TierLimits {
            reads_per_minute: None,
            writes_per_minute: Some(1_000_000),
            long_running_per_minute: Some(1_000_000),
            daily_writes: Some(3),
            concurrent_jobs: None,
        };
        for _ in 0..3 {
            l.check_now(k, &limits, EndpointClass::WriteLight, T0).unwrap();
        }
        match l.check_now(k, &limits, EndpointClass::LongRunning, T0.plus_ms(1000)) {
            Err(CoreError::RateLimited { retry_after_secs, .. }) => assert_eq!(retry_after_secs, 86_399),
            other => panic!("{other:?}"),
        }
        assert!(l.check_now(k, &limits, EndpointClass::WriteLight, T0.plus_ms(DAY_MS)).is_ok());
    }

    #[test]
    fn internal_keys_are_unlimited() {
        let l = LocalLimiter::default();
        let limits = TierLimits::default_for(Tier::Internal);
        assert_eq!(l.check_now(ApiKeyId::new(), &limits, EndpointClass::WriteLight, T0).unwrap(), None);
    }
}

#[cfg(test)]
mod table_tests {
    use super::*;

    #[test]
    fn overrides_replace_a_tier_and_refuse_unknown_names() {
        let t = TierTable::default().with_overrides(r#"{"standard": {"readsPerMinute": 240, "writesPerMinute": 90}}"#).unwrap();
        assert_eq!(t.get(Tier::Standard).reads_per_minute, Some(240));
        assert_eq!(t.get(Tier::Standard).daily_writes, None, "a tier is given whole");
        assert_eq!(t.get(Tier::Pilot), &TierLimits::default_for(Tier::Pilot));
        assert!(TierTable::default().with_overrides(r#"{"gold": {}}"#).is_err());
        assert!(TierTable::default().with_overrides(r#"{"standard": {"reads": 1}}"#).is_err());
    }
}
