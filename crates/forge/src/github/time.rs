//! GitHub's timestamps (RFC 3339, `2021-06-15T19:22:27Z`) as mayfly's `Time`, in one place for
//! the webhook parser and the poller.

use mayfly_core::Time;

/// `None` when the text is not an RFC 3339 timestamp. Sub-millisecond digits are dropped.
pub fn parse(s: &str) -> Option<Time> {
    parse_millis(s).map(Time)
}

pub fn parse_millis(s: &str) -> Option<i64> {
    s.parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond())
}
