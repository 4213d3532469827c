//! The clock, and timestamps as stored: unix milliseconds, since the `Any` driver has no date
//! type.

use std::time::Duration;

use time::OffsetDateTime;

use crate::error::decode_error;

/// What time it is, for quotas and usage that follow the UTC calendar. Tests substitute their
/// own.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> OffsetDateTime;
}

/// The system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// Now, in unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    to_ms(OffsetDateTime::now_utc())
}

/// `t` in unix milliseconds, truncated.
pub(crate) fn to_ms(t: OffsetDateTime) -> i64 {
    // `OffsetDateTime` spans ±9999 years, well within i64 milliseconds.
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// `d` in milliseconds, saturating.
pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A stored millisecond timestamp as a date-time.
pub(crate) fn from_ms(ms: i64) -> Result<OffsetDateTime, sqlx::Error> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).map_err(decode_error)
}

/// A stored nullable millisecond timestamp as an optional date-time.
pub(crate) fn from_ms_opt(ms: Option<i64>) -> Result<Option<OffsetDateTime>, sqlx::Error> {
    ms.map(from_ms).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_round_trip() {
        let t = time::macros::datetime!(2026-03-01 12:34:56.789 UTC);
        assert_eq!(from_ms(to_ms(t)).unwrap(), t);
        assert_eq!(to_ms(OffsetDateTime::UNIX_EPOCH), 0);
        assert_eq!(duration_ms(Duration::from_secs(2)), 2_000);
        assert_eq!(duration_ms(Duration::MAX), i64::MAX);
        assert!(from_ms(i64::MAX).is_err());
    }
}
