//! Time: a millisecond `Timestamp` with the contract's RFC 3339 form, and the `Clock` every rule
//! reads. Tests swap in a `ManualClock` and move it forward instead of sleeping.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use serde::{Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::CoreError;

/// Milliseconds since the Unix epoch, UTC.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Timestamp(pub i64);

pub const SECOND_MS: i64 = 1_000;
pub const MINUTE_MS: i64 = 60 * SECOND_MS;
pub const HOUR_MS: i64 = 60 * MINUTE_MS;
pub const DAY_MS: i64 = 24 * HOUR_MS;

impl Timestamp {
    pub fn millis(self) -> i64 {
        self.0
    }

    pub fn plus_ms(self, ms: i64) -> Self {
        Self(self.0.saturating_add(ms))
    }

    pub fn unix_seconds(self) -> i64 {
        self.0.div_euclid(1000)
    }

    fn datetime(self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    /// `2026-06-03T18:14:02.187Z`: UTC, always three fractional digits.
    pub fn to_rfc3339(self) -> String {
        let d = self.datetime();
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            d.year(),
            u8::from(d.month()),
            d.day(),
            d.hour(),
            d.minute(),
            d.second(),
            d.millisecond()
        )
    }

    /// Parses a query parameter such as `since`: RFC 3339 ending in `Z` (an offset is refused so
    /// that a `+` lost to URL decoding can never silently shift a window).
    pub fn parse_query(value: &str, field: &str) -> Result<Self, CoreError> {
        if !value.ends_with('Z') {
            return Err(CoreError::validation(field, "must be an RFC 3339 UTC timestamp ending in Z"));
        }
        let d = OffsetDateTime::parse(value, &Rfc3339)
            .map_err(|_| CoreError::validation(field, "must be an RFC 3339 UTC timestamp ending in Z"))?;
        let ms = d.unix_timestamp_nanos() / 1_000_000;
        i64::try_from(ms).map(Self).map_err(|_| CoreError::validation(field, "is out of range"))
    }

    /// The first instant of this timestamp's UTC calendar month and of the next one.
    pub fn month_bounds(self) -> (Timestamp, Timestamp) {
        let d = self.datetime();
        let start = time::Date::from_calendar_date(d.year(), d.month(), 1).unwrap_or(d.date());
        let (ny, nm) = if d.month() == time::Month::December { (d.year() + 1, time::Month::January) } else { (d.year(), d.month().next()) };
        let next = time::Date::from_calendar_date(ny, nm, 1).unwrap_or(start);
        let to_ts = |date: time::Date| Timestamp(date.midnight().assume_utc().unix_timestamp() * 1000);
        (to_ts(start), to_ts(next))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The source of "now" for every rule in strata.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
        Timestamp(i64::try_from(nanos / 1_000_000).unwrap_or(i64::MAX))
    }
}

/// A clock that only moves when told to. Clones share one time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn starting_at(t: Timestamp) -> Self {
        Self(Arc::new(AtomicI64::new(t.0)))
    }

    pub fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    pub fn set(&self, t: Timestamp) {
        self.0.store(t.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_milliseconds_and_z() {
        assert_eq!(Timestamp(1_780_510_442_187).to_rfc3339(), "2026-06-03T18:14:02.187Z");
        assert_eq!(Timestamp(0).to_rfc3339(), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn query_timestamps_must_end_in_z() {
        assert_eq!(Timestamp::parse_query("2026-06-03T18:14:02.187Z", "since").unwrap(), Timestamp(1_780_510_442_187));
        assert_eq!(Timestamp::parse_query("2026-06-03T18:14:02Z", "since").unwrap(), Timestamp(1_780_510_442_000));
        assert!(Timestamp::parse_query("2026-06-03T18:14:02+00:00", "since").is_err());
        assert!(Timestamp::parse_query("yesterday", "since").is_err());
    }

    #[test]
    fn month_bounds_cover_december_rollover() {
        let t = Timestamp::parse_query("2026-12-31T23:59:59.999Z", "t").unwrap();
        let (start, end) = t.month_bounds();
        assert_eq!(start.to_rfc3339(), "2026-12-01T00:00:00.000Z");
        assert_eq!(end.to_rfc3339(), "2027-01-01T00:00:00.000Z");
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::starting_at(Timestamp(1000));
        let shared = c.clone();
        assert_eq!(c.now(), Timestamp(1000));
        shared.advance_ms(DAY_MS);
        assert_eq!(c.now(), Timestamp(1000 + DAY_MS));
    }
}
