//! Retry policy, written once for every destination: which failures are
//! worth retrying (the destination reports, this table decides for HTTP),
//! how long to wait (exponential backoff with jitter, `Retry-After`
//! honoured), and the per-destination rate limit: a token bucket
//! (`governor`), shared by every send of the destination in flight.

use std::time::Duration;

use rand::Rng;

/// Whether a failed delivery may succeed later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Network errors, timeouts, 5xx, 408, 429: try again.
    Yes,
    /// Other 4xx, bad templates, rejected payloads: dead-letter at once.
    No,
}

/// Why a delivery failed, small enough to be a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Could not connect or the connection broke.
    Network,
    /// No answer within the timeout.
    Timeout,
    /// 429 or a provider's rate-limit answer.
    RateLimited,
    /// 5xx.
    ServerError,
    /// 401/403.
    AuthError,
    /// Other 4xx, or the provider refused the content.
    ClientError,
    /// A template failed to render.
    Template,
    /// Still failing when older than `max_age`: given up, whatever the last
    /// error was.
    Expired,
}

impl Reason {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Network => "network",
            Reason::Timeout => "timeout",
            Reason::RateLimited => "rate_limited",
            Reason::ServerError => "server_error",
            Reason::AuthError => "auth_error",
            Reason::ClientError => "client_error",
            Reason::Template => "template",
            Reason::Expired => "expired",
        }
    }
}

/// A failed delivery.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct DeliveryError {
    /// Retry or not.
    pub retry: Retry,
    /// Class, for metrics.
    pub reason: Reason,
    /// What happened (the provider's answer included); never a secret.
    pub message: String,
    /// The provider's `Retry-After`, when it gave one.
    pub retry_after: Option<Duration>,
}

impl DeliveryError {
    /// A failure that will not get better.
    pub fn permanent(reason: Reason, message: impl Into<String>) -> Self {
        DeliveryError {
            retry: Retry::No,
            reason,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A failure worth retrying.
    pub fn transient(reason: Reason, message: impl Into<String>) -> Self {
        DeliveryError {
            retry: Retry::Yes,
            reason,
            message: message.into(),
            retry_after: None,
        }
    }
}

/// The status table: 2xx ok; 408, 429 and 5xx retry; other codes permanent.
/// `body` is kept (trimmed) in the error, as the provider's explanation.
pub fn check_status(status: u16, body: &str, retry_after: Option<&str>) -> Result<(), DeliveryError> {
    let body = body.trim();
    let shown: String = body.chars().take(300).collect();
    let msg = |what: &str| {
        if shown.is_empty() {
            format!("HTTP {status} ({what})")
        } else {
            format!("HTTP {status} ({what}): {shown}")
        }
    };
    match status {
        200..=299 => Ok(()),
        429 => Err(DeliveryError {
            retry: Retry::Yes,
            reason: Reason::RateLimited,
            message: msg("rate limited"),
            retry_after: retry_after.and_then(parse_retry_after),
        }),
        408 => Err(DeliveryError::transient(Reason::Timeout, msg("request timeout"))),
        500..=599 => Err(DeliveryError {
            retry: Retry::Yes,
            reason: Reason::ServerError,
            message: msg("server error"),
            retry_after: retry_after.and_then(parse_retry_after),
        }),
        401 | 403 => Err(DeliveryError::permanent(Reason::AuthError, msg("not authorised"))),
        _ => Err(DeliveryError::permanent(Reason::ClientError, msg("rejected"))),
    }
}

/// Sends a request and judges the answer by the status table, keeping the
/// body and `Retry-After` — the one way every HTTP destination delivers.
pub async fn send(req: reqwest::RequestBuilder) -> Result<(), DeliveryError> {
    let resp = req.send().await.map_err(|e| from_reqwest(&e))?;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = resp.text().await.unwrap_or_default();
    check_status(status, &body, retry_after.as_deref())
}

/// A transport error: timeouts and connection failures are worth retrying.
pub fn from_reqwest(e: &reqwest::Error) -> DeliveryError {
    let reason = if e.is_timeout() { Reason::Timeout } else { Reason::Network };
    DeliveryError::transient(reason, crate::http::describe(e))
}

/// A destination's rate limit: `rate_limit`'s spacing, with `burst` sends
/// allowed at once after a quiet spell. `None` when unlimited: below the
/// timer's 1 ms resolution a wait would only slow delivery down.
pub fn limiter(min_interval: Duration, burst: u32) -> Option<governor::DefaultDirectRateLimiter> {
    if min_interval < Duration::from_millis(1) {
        return None;
    }
    let quota = governor::Quota::with_period(min_interval)?.allow_burst(std::num::NonZeroU32::new(burst.max(1))?);
    Some(governor::RateLimiter::direct(quota))
}

/// `Retry-After`: delay-seconds or an HTTP date.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(3600.0)));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let d = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(d.to_std().unwrap_or_default().min(Duration::from_secs(3600)))
}

/// The wait before attempt `attempt + 1`: `initial × 2^attempt`, capped,
/// with ±25 % jitter so that many failing deliveries do not retry in step;
/// never shorter than the provider's `Retry-After`.
pub fn backoff(attempt: i64, initial: Duration, max: Duration, retry_after: Option<Duration>) -> Duration {
    let exp = initial.as_secs_f64() * 2f64.powi(attempt.clamp(0, 30) as i32);
    let base = exp.min(max.as_secs_f64());
    let jitter = rand::rng().random_range(0.75..1.25);
    let d = Duration::from_secs_f64((base * jitter).min(max.as_secs_f64()));
    match retry_after {
        Some(r) if r > d => r,
        _ => d,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table() {
        for (code, want) in [
            (200, None),
            (202, None),
            (204, None),
            (400, Some(Retry::No)),
            (401, Some(Retry::No)),
            (403, Some(Retry::No)),
            (404, Some(Retry::No)),
            (408, Some(Retry::Yes)),
            (410, Some(Retry::No)),
            (413, Some(Retry::No)),
            (429, Some(Retry::Yes)),
            (500, Some(Retry::Yes)),
            (502, Some(Retry::Yes)),
            (503, Some(Retry::Yes)),
            (504, Some(Retry::Yes)),
        ] {
            assert_eq!(check_status(code, "x", None).err().map(|e| e.retry), want, "{code}");
        }
        let e = check_status(429, "{\"ok\":false,\"error\":\"rate_limited\"}", Some("7")).unwrap_err();
        assert_eq!(e.retry_after, Some(Duration::from_secs(7)));
        assert_eq!(e.reason, Reason::RateLimited);
        assert!(e.message.contains("rate_limited"), "the body is kept");
    }

    #[test]
    fn backoff_grows_caps_and_honours_retry_after() {
        let (i, m) = (Duration::from_secs(1), Duration::from_secs(60));
        let b0 = backoff(0, i, m, None);
        assert!(b0 >= Duration::from_millis(750) && b0 <= Duration::from_millis(1250));
        let b3 = backoff(3, i, m, None);
        assert!(b3 >= Duration::from_secs(6) && b3 <= Duration::from_secs(10));
        assert!(backoff(20, i, m, None) <= m);
        assert_eq!(backoff(0, i, m, Some(Duration::from_secs(30))), Duration::from_secs(30));
        assert!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT").is_some());
    }

    #[test]
    fn the_bucket_lets_a_burst_through_then_spaces_the_rest() {
        assert!(limiter(Duration::ZERO, 5).is_none(), "unlimited");
        let l = limiter(Duration::from_secs(60), 3).unwrap();
        assert!((0..3).all(|_| l.check().is_ok()), "the burst at once");
        assert!(l.check().is_err(), "then one a minute");
    }
}
