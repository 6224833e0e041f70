//! `mayfly events`: the event trail (what mayfly did and why), newest last, filtered by time,
//! subject and kind. From the daemon's API when one answers, else from the store itself.

use super::Output;
use super::client::{Client, Failure};
use super::table::{Col, Table};
use crate::config::{Config, HumanDuration};
use anyhow::{Context, bail};
use mayfly::http::api::{EventView, EventsQuery};
use mayfly_store::Store;

#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// Only events since this long ago (`30m`, `2h`, `7d`) or since this time (RFC 3339)
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only events before this long ago or this time (RFC 3339)
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// Only events about this instance (its name) or job (`github:owner/repo#id`)
    #[arg(long, value_name = "NAME")]
    pub subject: Option<String>,
    /// Only events of this kind: create, delete, reuse, …
    #[arg(long, value_name = "KIND")]
    pub kind: Option<String>,
    /// Show at most this many, the newest (1 to 1000)
    #[arg(short = 'n', long, default_value_t = 50, value_name = "N")]
    pub limit: u32,
    /// How to print the answer
    #[arg(short, long, value_enum, default_value_t, value_name = "FORMAT")]
    pub output: Output,
}

/// `--since 2h` or `--since 2026-08-01T12:00:00Z`, as an RFC 3339 time.
fn when(flag: &str, value: &str, now: jiff::Timestamp) -> anyhow::Result<String> {
    if let Ok(t) = value.parse::<jiff::Timestamp>() {
        return Ok(t.to_string());
    }
    match value.parse::<HumanDuration>() {
        Ok(ago) => {
            let span = jiff::SignedDuration::try_from(ago.0).context("too long ago")?;
            Ok(now
                .checked_sub(span)
                .with_context(|| format!("--{flag} {value}: too long ago"))?
                .to_string())
        }
        Err(_) => bail!(
            "--{flag} {value}: expected a duration like 30m or 2h, or an RFC 3339 time like \
             2026-08-01T12:00:00Z"
        ),
    }
}

pub async fn events(config: &Config, args: EventsArgs) -> anyhow::Result<()> {
    let now = jiff::Timestamp::now();
    let query = EventsQuery {
        since: args
            .since
            .as_deref()
            .map(|v| when("since", v, now))
            .transpose()?,
        until: args
            .until
            .as_deref()
            .map(|v| when("until", v, now))
            .transpose()?,
        subject: args.subject.clone(),
        kind: args.kind.clone(),
        after: None,
        limit: Some(args.limit),
        newest: Some(true),
    };
    let store_query = query.to_store().map_err(|e| anyhow::anyhow!("--{e}"))?;
    let token_file = config
        .api
        .token_file
        .as_ref()
        .context("no api.token_file")?;
    let client = Client::new(config.api_addr(), token_file)?;
    let events = match client.events(&query).await {
        Ok(page) => page.events,
        Err(Failure::NoDaemon) => {
            // Reading the store needs no daemon: SQLite lets readers in beside a writer.
            let state = config.state.as_ref().context("no state URL configured")?;
            let store = Store::open(state.expose())
                .await
                .context("cannot open the state store")?;
            let read = store.query_events(&store_query).await;
            store.close().await;
            read.context("cannot read the events")?
                .into_iter()
                .map(EventView::from)
                .collect()
        }
        Err(Failure::Other(e)) => return Err(e),
    };
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&events)?),
        Output::Table if events.is_empty() => eprintln!("no events"),
        Output::Table => print!("{}", table(&events).render(super::table::width())),
    }
    Ok(())
}

fn table(events: &[EventView]) -> Table {
    let mut t = Table::new(&[
        ("AT", Col::Fixed),
        ("KIND", Col::Fixed),
        ("SUBJECT", Col::Key),
        ("MESSAGE", Col::Wide),
    ]);
    for e in events {
        // Seconds are enough to read; the JSON has the milliseconds.
        let at =
            e.at.parse::<jiff::Timestamp>()
                .map(|t| t.strftime("%Y-%m-%d %H:%M:%SZ").to_string())
                .unwrap_or_else(|_| e.at.clone());
        t.row(vec![
            at,
            e.kind.clone(),
            e.subject.clone(),
            e.message.clone(),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_reads_a_duration_ago_or_a_time() {
        let now: jiff::Timestamp = "2026-08-01T12:00:00Z".parse().unwrap();
        assert_eq!(when("since", "2h", now).unwrap(), "2026-08-01T10:00:00Z");
        assert_eq!(
            when("since", "2026-07-31T00:00:00+02:00", now).unwrap(),
            "2026-07-30T22:00:00Z"
        );
        let err = when("since", "yesterday", now).unwrap_err().to_string();
        assert!(
            err.contains("--since yesterday: expected a duration"),
            "{err}"
        );
        assert!(when("until", "100000000000h", now).is_err());
    }

    #[test]
    fn the_table_shows_time_kind_subject_and_message() {
        let e = EventView {
            id: 1,
            at: "2026-08-01T12:00:00.123Z".into(),
            kind: "create".into(),
            subject: "mayfly-linux-1".into(),
            message: "created for github:acme/app#7".into(),
            details: None,
        };
        let text = table(&[e]).render(120);
        assert!(text.contains("2026-08-01 12:00:00Z"), "{text}");
        assert!(text.contains("mayfly-linux-1"), "{text}");
    }
}
