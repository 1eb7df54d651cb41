//! Wall-clock time for records and the API. Only stored timestamps use it; every timing
//! rule (backoff, thresholds, deadlines) runs on tokio's monotonic clock.

/// Milliseconds since the Unix epoch.
pub fn now_unix_ms() -> u64 {
    u64::try_from(jiff::Timestamp::now().as_millisecond()).unwrap_or(0)
}

/// `unix_ms` as RFC 3339 in UTC with milliseconds, e.g. `2026-11-25T09:10:02.123Z`.
pub fn rfc3339(unix_ms: u64) -> String {
    i64::try_from(unix_ms)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map(|t| format!("{t:.3}"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_rfc3339_is_utc_with_milliseconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_764_061_802_123), "2025-11-25T09:10:02.123Z");
    }
}
