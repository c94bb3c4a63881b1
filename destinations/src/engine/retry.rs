//! When to retry: which answers are retried, the full-jitter backoff, and `Retry-After`.

use std::time::{Duration, SystemTime};

/// Whether an HTTP status is retried (5xx and 429) rather than handed to the function.
pub fn is_retryable_status(status: u16) -> bool {
    status == 429 || (500..=599).contains(&status)
}

/// The backoff window after `attempts` failed attempts (`attempts ≥ 1`):
/// `min(max, base * 2^(attempts-1))`.
pub fn backoff_window(attempts: u32, base: Duration, max: Duration) -> Duration {
    let shift = attempts.saturating_sub(1).min(63);
    let factor = 1u64 << shift;
    let nanos = base.as_nanos().saturating_mul(u128::from(factor));
    if nanos >= max.as_nanos() {
        max
    } else {
        // nanos < max.as_nanos() ≤ u64::MAX * 1e9, so it fits a Duration.
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// Full jitter: `unit` (uniform in `[0, 1]`) times the backoff window.
pub fn backoff_delay(attempts: u32, base: Duration, max: Duration, unit: f64) -> Duration {
    let unit = if unit.is_finite() { unit.clamp(0.0, 1.0) } else { 1.0 };
    backoff_window(attempts, base, max).mul_f64(unit)
}

/// The wait a `Retry-After` header value asks for: delay-seconds, or an HTTP date (a date in the
/// past means no wait). `None` when the value is neither.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits to fit is still "a very long time".
        return Some(Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_doubles_up_to_the_cap() {
        let base = Duration::from_millis(100);
        let max = Duration::from_millis(700);
        let windows: Vec<_> = (1..=5).map(|a| backoff_window(a, base, max).as_millis()).collect();
        assert_eq!(windows, [100, 200, 400, 700, 700]);
        assert_eq!(backoff_window(500, base, max), max);
        assert_eq!(backoff_window(0, base, max), base);
    }

    #[test]
    fn jitter_stays_inside_the_window() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        assert_eq!(backoff_delay(3, base, max, 0.0), Duration::ZERO);
        assert_eq!(backoff_delay(3, base, max, 1.0), Duration::from_millis(400));
        assert_eq!(backoff_delay(3, base, max, 0.5), Duration::from_millis(200));
        assert_eq!(backoff_delay(3, base, max, f64::NAN), Duration::from_millis(400));
        for _ in 0..1000 {
            let d = backoff_delay(2, base, max, fastrand::f64());
            assert!(d <= Duration::from_millis(200), "{d:?}");
        }
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after(" 120 ", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(parse_retry_after(&later, now), Some(Duration::from_secs(30)));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("", now), None);
        assert_eq!(parse_retry_after("99999999999999999999999", now), Some(Duration::from_secs(u64::MAX)));
    }

    #[test]
    fn retried_statuses() {
        assert!(is_retryable_status(429));
        assert!(is_retryable_status(500));
        assert!(is_retryable_status(503));
        assert!(!is_retryable_status(404));
        assert!(!is_retryable_status(400));
        assert!(!is_retryable_status(200));
        assert!(!is_retryable_status(302));
    }
}
