//! GitLab's timestamps as mayfly's `Time`: the REST API's RFC 3339 (`2015-12-24T15:51:21.880Z`)
//! and the older webhook form (`2021-02-23 02:41:37 UTC`, `2021-04-28 21:50:00 +0200`).

use mayfly_core::Time;

/// `None` when the text is none of GitLab's forms.
pub fn parse(s: &str) -> Option<Time> {
    let s = s.trim();
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Some(Time::from_millis(t.as_millisecond()));
    }
    if let Some(utc) = s.strip_suffix(" UTC") {
        return format!("{}Z", utc.replacen(' ', "T", 1))
            .parse::<jiff::Timestamp>()
            .ok()
            .map(|t| Time::from_millis(t.as_millisecond()));
    }
    jiff::fmt::strtime::parse("%Y-%m-%d %H:%M:%S %z", s)
        .and_then(|tm| tm.to_timestamp())
        .ok()
        .map(|t| Time::from_millis(t.as_millisecond()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_gitlab_writes() {
        let ms = |s: &str| parse(s).map(|t| t.0);
        assert_eq!(ms("2015-12-24T15:51:21.880Z"), Some(1_450_972_281_880));
        assert_eq!(ms("2021-02-23 02:41:37 UTC"), ms("2021-02-23T02:41:37Z"));
        assert_eq!(ms("2021-04-28 21:50:00 +0200"), ms("2021-04-28T19:50:00Z"));
        for bad in [
            "",
            "yesterday",
            "2021-02-30T00:00:00Z",
            "2021-02-23 02:41:37 CET",
        ] {
            assert_eq!(ms(bad), None, "{bad}");
        }
    }
}
