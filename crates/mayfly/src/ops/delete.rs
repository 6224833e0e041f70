//! `mayfly delete NAME... | --all`: asks first (on a terminal only), deletes one machine at a
//! time with a progress bar, says what became of each, and exits 1 if any was not deleted.

use super::source::Source;
use super::{DeleteArgs, Output};
use crate::config::Config;
use anyhow::{Context, bail};
use mayfly::reconcile::Removed;
use serde::Serialize;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

/// What became of one instance, as `--output json` prints it.
#[derive(Debug, Serialize)]
struct Outcome {
    name: String,
    result: Option<Removed>,
    error: Option<String>,
}

pub async fn delete(config: &Config, args: DeleteArgs) -> anyhow::Result<ExitCode> {
    let (mut source, view) = Source::open(config).await?;
    if let Err(e) = source.hold(config).await {
        source.close().await;
        return Err(e);
    }
    let targets: Vec<String> = if args.all {
        view.instances.iter().map(|i| i.name.clone()).collect()
    } else {
        let mut names = Vec::new();
        for n in args.names {
            if !names.contains(&n) {
                names.push(n);
            }
        }
        names
    };
    let result = delete_each(&mut source, &targets, args.yes, args.output).await;
    source.close().await;
    result
}

async fn delete_each(
    source: &mut Source,
    targets: &[String],
    yes: bool,
    output: Output,
) -> anyhow::Result<ExitCode> {
    if targets.is_empty() {
        eprintln!("no instances to delete");
        if output == Output::Json {
            println!("[]");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !yes {
        confirm(targets)?;
    }
    let bar = mayfly::progress::bar(targets.len() as u64, "deleting");
    let mut outcomes = Vec::with_capacity(targets.len());
    for name in targets {
        let outcome = match source.delete(name).await {
            Ok(Ok(removed)) => Outcome {
                name: name.clone(),
                result: Some(removed),
                error: None,
            },
            Ok(Err(why)) => Outcome {
                name: name.clone(),
                result: None,
                error: Some(why),
            },
            Err(e) => Outcome {
                name: name.clone(),
                result: None,
                error: Some(format!("{e:#}")),
            },
        };
        if output == Output::Table {
            // Done on stdout, not done (with why) on stderr.
            match (&outcome.result, &outcome.error) {
                (Some(Removed::Deleted), _) => bar.suspend(|| println!("deleted {name}")),
                (Some(Removed::IntentDropped), _) => bar.suspend(|| {
                    println!("dropped {name}: a recorded create with no machine behind it")
                }),
                (None, why) => bar
                    .suspend(|| eprintln!("not deleted: {}", why.as_deref().unwrap_or("unknown"))),
            }
        }
        outcomes.push(outcome);
        bar.inc(1);
    }
    bar.finish_and_clear();
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&outcomes)?);
    }
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.error.is_some()).collect();
    if failed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    // Why each one failed is above (table) or in the JSON.
    let which: Vec<&str> = failed.iter().map(|o| o.name.as_str()).collect();
    eprintln!(
        "mayfly: {} of {} not deleted: {}",
        failed.len(),
        outcomes.len(),
        which.join(", ")
    );
    Ok(ExitCode::FAILURE)
}

/// Asks on the terminal; without one, refuses (a script must say `--yes`).
fn confirm(targets: &[String]) -> anyhow::Result<()> {
    let what = describe(targets);
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!(
            "not deleting {what}: stdin is not a terminal to confirm on; pass --yes to delete \
             without asking"
        );
    }
    eprint!("Delete {what}? [y/N] ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .context("cannot read the answer")?;
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => bail!("nothing deleted: not confirmed"),
    }
}

/// `3 machines (a, b, c)`, with at most five names.
fn describe(targets: &[String]) -> String {
    const SHOWN: usize = 5;
    let n = targets.len();
    let mut names = targets
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if n > SHOWN {
        names.push_str(&format!(", … and {} more", n - SHOWN));
    }
    format!("{n} machine{} ({names})", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_question_names_what_goes() {
        let names = |n: usize| (1..=n).map(|i| format!("mf-{i}")).collect::<Vec<_>>();
        assert_eq!(describe(&names(1)), "1 machine (mf-1)");
        assert_eq!(describe(&names(3)), "3 machines (mf-1, mf-2, mf-3)");
        assert_eq!(
            describe(&names(7)),
            "7 machines (mf-1, mf-2, mf-3, mf-4, mf-5, … and 2 more)"
        );
    }
}
