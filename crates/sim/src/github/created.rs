//! The `created` filter of run lists in GitHub's search syntax for dates: `2026-01-31` (that
//! day), `>=2026-01-31`, `<2026-02-01T08:00:00Z`, `2026-01-31..2026-02-01`, `2026-01-31..*`.

use jiff::Timestamp;
use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;

/// Inclusive bounds in milliseconds since the epoch; `None` is open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Created {
    pub from: Option<i64>,
    pub to: Option<i64>,
}

impl Created {
    pub fn contains(&self, ms: i64) -> bool {
        self.from.is_none_or(|f| ms >= f) && self.to.is_none_or(|t| ms <= t)
    }
}

/// One side of a qualifier: a whole day (a date) or one instant (a time, whole seconds).
#[derive(Clone, Copy, Debug)]
struct Span {
    first: i64,
    last: i64,
}

pub fn parse(q: &str) -> Result<Created, String> {
    let q = q.trim();
    let open = |s: &str| -> Result<Option<Span>, String> {
        if s == "*" {
            Ok(None)
        } else {
            span(s).map(Some)
        }
    };
    if let Some((a, b)) = q.split_once("..") {
        return Ok(Created {
            from: open(a)?.map(|s| s.first),
            to: open(b)?.map(|s| s.last),
        });
    }
    let (op, rest) = [">=", "<=", ">", "<"]
        .iter()
        .find_map(|op| q.strip_prefix(op).map(|r| (*op, r)))
        .unwrap_or(("", q));
    let s = span(rest)?;
    Ok(match op {
        ">=" => Created {
            from: Some(s.first),
            to: None,
        },
        ">" => Created {
            from: Some(s.last + 1),
            to: None,
        },
        "<=" => Created {
            from: None,
            to: Some(s.last),
        },
        "<" => Created {
            from: None,
            to: Some(s.first - 1),
        },
        _ => Created {
            from: Some(s.first),
            to: Some(s.last),
        },
    })
}

fn span(s: &str) -> Result<Span, String> {
    let bad =
        || format!("created: {s:?} is not a date (YYYY-MM-DD) or a time (YYYY-MM-DDTHH:MM:SSZ)");
    let s = s.trim();
    if let Ok(t) = s.parse::<Timestamp>() {
        let ms = t.as_millisecond();
        return Ok(Span {
            first: ms,
            last: ms + 999,
        });
    }
    // A time without an offset is UTC.
    if s.contains('T') {
        let dt = s.parse::<DateTime>().map_err(|_| bad())?;
        let ms = dt
            .to_zoned(TimeZone::UTC)
            .map_err(|_| bad())?
            .timestamp()
            .as_millisecond();
        return Ok(Span {
            first: ms,
            last: ms + 999,
        });
    }
    let d = s.parse::<Date>().map_err(|_| bad())?;
    let start = d
        .to_zoned(TimeZone::UTC)
        .map_err(|_| bad())?
        .timestamp()
        .as_millisecond();
    Ok(Span {
        first: start,
        last: start + 86_400_000 - 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;
    /// 2026-01-31T00:00:00Z.
    const JAN31: i64 = 1_769_817_600_000;

    #[test]
    fn dates_cover_whole_days_and_times_one_second() {
        let c = parse("2026-01-31").unwrap();
        assert_eq!((c.from, c.to), (Some(JAN31), Some(JAN31 + DAY - 1)));
        let c = parse(">=2026-01-31").unwrap();
        assert_eq!((c.from, c.to), (Some(JAN31), None));
        let c = parse("<2026-01-31").unwrap();
        assert_eq!((c.from, c.to), (None, Some(JAN31 - 1)));
        let c = parse(">2026-01-31").unwrap();
        assert_eq!(c.from, Some(JAN31 + DAY));
        let c = parse("2026-01-31T08:00:00Z..2026-01-31T09:00:00Z").unwrap();
        assert_eq!(
            (c.from, c.to),
            (
                Some(JAN31 + 8 * 3_600_000),
                Some(JAN31 + 9 * 3_600_000 + 999)
            )
        );
        let c = parse("2026-01-31T02:00:00+02:00..*").unwrap();
        assert_eq!((c.from, c.to), (Some(JAN31), None));
        assert!(
            parse("2026-01-31T00:00:00..2026-01-31")
                .unwrap()
                .contains(JAN31 + DAY - 1)
        );
    }

    #[test]
    fn nonsense_is_refused_by_name() {
        let e = parse("yesterday").unwrap_err();
        assert!(e.contains("\"yesterday\""), "{e}");
        assert!(parse(">=2026-13-01").is_err());
    }
}
