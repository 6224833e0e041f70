//! One free request that tells a host's doctor about its GitHub: that it answers, the budget
//! left, the server's clock (the `Date` header, against which a runner's token exchange fails
//! past five minutes of skew) and, for tokens GitHub gives an end, when the credential expires.

use super::client::{Call, Client, SystemClock};
use super::error::Result;
use super::ratelimit::Priority;
use mayfly_core::Clock as _;
use mayfly_core::Time;
use reqwest::Method;
use reqwest::header::HeaderMap;

/// What `GET /rate_limit` (which costs no budget) said, and when it was asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    /// The local clock when the request went out and when the answer came back.
    pub sent_at: Time,
    pub received_at: Time,
    /// The server's `Date` header (whole seconds), if it sent a readable one.
    pub server_date: Option<Time>,
    pub limit: Option<u32>,
    pub remaining: Option<u32>,
    /// `github-authentication-token-expiration`: set for fine-grained and expiring tokens.
    pub token_expires: Option<Time>,
}

impl Probe {
    /// Server time minus local time, in milliseconds, against the middle of the round trip.
    /// Positive: the local clock is behind.
    pub fn skew_ms(&self) -> Option<i64> {
        let mid = self.sent_at.millis() + (self.received_at.millis() - self.sent_at.millis()) / 2;
        self.server_date.map(|d| d.millis() - mid)
    }
}

fn header_number(h: &HeaderMap, name: &str) -> Option<u32> {
    h.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// An HTTP date (`Mon, 07 Dec 2026 06:00:00 GMT`).
pub fn parse_http_date(s: &str) -> Option<Time> {
    let t = jiff::fmt::rfc2822::parse(s.trim()).ok()?;
    Some(Time::from_millis(t.timestamp().as_millisecond()))
}

/// GitHub's token expiry header: `2026-06-03 12:00:00 UTC` or with a numeric offset.
pub fn parse_expiry(s: &str) -> Option<Time> {
    let s = s.trim();
    let civil = |text: &str, offset_secs: i32| {
        let dt: jiff::civil::DateTime = text.trim().parse().ok()?;
        let offset = jiff::tz::Offset::from_seconds(offset_secs).ok()?;
        let ts = offset.to_timestamp(dt).ok()?;
        Some(Time::from_millis(ts.as_millisecond()))
    };
    if let Some(text) = s.strip_suffix("UTC") {
        return civil(text, 0);
    }
    let (text, zone) = s.rsplit_once(' ')?;
    let sign = match zone.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits = zone[1..].replace(':', "");
    if digits.len() != 4 {
        return None;
    }
    let hours: i32 = digits[..2].parse().ok()?;
    let minutes: i32 = digits[2..].parse().ok()?;
    civil(text, sign * (hours * 3600 + minutes * 60))
}

impl Client {
    /// Asks `GET /rate_limit` with the client's credential. A refused credential is
    /// `Unauthorized`, no answer `Transport`.
    pub async fn probe(&self) -> Result<Probe> {
        let sent_at = SystemClock.now();
        let reply = self
            .send(&Call::new(
                Method::GET,
                self.url("/rate_limit"),
                Priority::Essential,
            ))
            .await?;
        let received_at = SystemClock.now();
        let h = &reply.headers;
        let text = |name: &str| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        Ok(Probe {
            sent_at,
            received_at,
            server_date: text("date").as_deref().and_then(parse_http_date),
            limit: header_number(h, "x-ratelimit-limit"),
            remaining: header_number(h, "x-ratelimit-remaining"),
            token_expires: text("github-authentication-token-expiration")
                .as_deref()
                .and_then(parse_expiry),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_expiries_are_read() {
        let d = parse_http_date("Mon, 07 Dec 2026 06:00:00 GMT").unwrap();
        assert_eq!(d.millis() % 1000, 0);
        let utc = parse_expiry("2026-12-07 06:00:00 UTC").unwrap();
        assert_eq!(utc, d);
        let offset = parse_expiry("2026-12-07 08:00:00 +0200").unwrap();
        assert_eq!(offset, d);
        assert!(parse_expiry("soon").is_none());
        let p = Probe {
            sent_at: Time::from_millis(1_000),
            received_at: Time::from_millis(1_200),
            server_date: Some(Time::from_millis(61_100)),
            limit: None,
            remaining: None,
            token_expires: None,
        };
        assert_eq!(p.skew_ms(), Some(60_000));
    }
}
