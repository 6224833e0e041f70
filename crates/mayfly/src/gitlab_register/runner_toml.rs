//! gitlab-runner's config.toml, edited in place with toml_edit: `[[runners]]` entries are found
//! by their token and made to say what mayfly needs; everything else — other entries, global
//! settings, comments, order — stays as the operator wrote it.

use toml_edit::{Array, ArrayOfTables, DocumentMut, Item, Table, value};

/// What every entry mayfly registers runs: the four executables of the custom executor.
#[derive(Clone, Debug)]
pub struct Custom {
    /// The mayfly binary gitlab-runner runs.
    pub program: String,
    /// The executor's own file (`mayfly gitlab-executor --file`).
    pub executor_file: String,
    pub builds_dir: String,
    pub cache_dir: String,
}

/// One runner to have in the file.
pub struct Entry<'a> {
    pub name: String,
    pub url: &'a str,
    pub id: u64,
    pub token: &'a str,
    pub token_expires_at: Option<&'a str>,
}

pub fn parse(path: &str, text: &str) -> Result<DocumentMut, String> {
    let doc: DocumentMut = text.parse().map_err(|e| format!("{path}: {e}"))?;
    if let Some(item) = doc.get("runners")
        && !item.is_array_of_tables()
    {
        return Err(format!(
            "{path}: `runners` is not an array of tables ([[runners]])"
        ));
    }
    Ok(doc)
}

/// Adds or updates the entry for `e.token`; returns whether the document changed.
pub fn upsert(doc: &mut DocumentMut, e: &Entry, custom: &Custom) -> bool {
    let before = doc.to_string();
    if doc.get("concurrent").is_none() {
        // gitlab-runner's default is 1: one job at a time on the whole manager. A machine per
        // job costs nothing while idle, so allow more; the operator's own value is kept.
        doc["concurrent"] = value(10i64);
    }
    let runners = doc
        .entry("runners")
        .or_insert(Item::ArrayOfTables(ArrayOfTables::new()))
        .as_array_of_tables_mut()
        .expect("checked by parse");
    let found = runners
        .iter_mut()
        .find(|t| t.get("token").and_then(Item::as_str) == Some(e.token));
    let table = match found {
        Some(t) => t,
        None => {
            let mut t = Table::new();
            t["name"] = value(e.name.clone());
            runners.push(t);
            runners.iter_mut().last().expect("just pushed")
        }
    };
    set(table, "url", e.url);
    set_int(table, "id", e.id as i64);
    set(table, "token", e.token);
    // gitlab-runner reads it as a TOML datetime, and renews the token before it.
    if let Some(at) = e
        .token_expires_at
        .and_then(|a| a.parse::<toml_edit::Datetime>().ok())
        && table.get("token_expires_at").and_then(Item::as_datetime) != Some(&at)
    {
        table["token_expires_at"] = value(at);
    }
    set(table, "executor", "custom");
    set(table, "builds_dir", &custom.builds_dir);
    set(table, "cache_dir", &custom.cache_dir);
    if !table.get("custom").is_some_and(Item::is_table) {
        table["custom"] = Item::Table(Table::new());
    }
    let section = table["custom"].as_table_mut().expect("a table, just made");
    for stage in ["config", "prepare", "run", "cleanup"] {
        set(section, &format!("{stage}_exec"), &custom.program);
        let args = ["gitlab-executor", "--file", &custom.executor_file, stage];
        let same = section
            .get(&format!("{stage}_args"))
            .and_then(Item::as_array)
            .is_some_and(|a| {
                a.iter()
                    .map(|v| v.as_str())
                    .eq(args.iter().map(|s| Some(*s)))
            });
        if !same {
            section[&format!("{stage}_args")] = value(args.iter().copied().collect::<Array>());
        }
    }
    doc.to_string() != before
}

/// Sets a string unless it already holds that value (so its formatting and comments stay).
fn set(t: &mut Table, key: &str, v: &str) {
    if t.get(key).and_then(Item::as_str) != Some(v) {
        t[key] = value(v);
    }
}

fn set_int(t: &mut Table, key: &str, v: i64) {
    if t.get(key).and_then(Item::as_integer) != Some(v) {
        t[key] = value(v);
    }
}

/// The tokens of the file's entries.
pub fn tokens(doc: &DocumentMut) -> Vec<String> {
    doc.get("runners")
        .and_then(Item::as_array_of_tables)
        .map(|a| {
            a.iter()
                .filter_map(|t| t.get("token").and_then(Item::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HAND: &str = "# the operator's own\nconcurrent = 4 # keep\n\n[[runners]]\n  # docker one\n  name = \"docker\"\n  token = \"glrt-docker\"\n  executor = \"docker\"\n";

    fn custom() -> Custom {
        Custom {
            program: "/usr/local/bin/mayfly".into(),
            executor_file: "/etc/gitlab-runner/mayfly-executor.toml".into(),
            builds_dir: "/builds".into(),
            cache_dir: "/cache".into(),
        }
    }

    #[test]
    fn entries_are_added_once_and_the_rest_is_kept() {
        let mut doc = parse("c", HAND).unwrap();
        let e = Entry {
            name: "mayfly-7".into(),
            url: "https://gitlab.example.com",
            id: 7,
            token: "glrt-new",
            token_expires_at: None,
        };
        assert!(upsert(&mut doc, &e, &custom()));
        let text = doc.to_string();
        assert!(text.starts_with(HAND), "{text}");
        assert!(text.contains("prepare_args = [\"gitlab-executor\", \"--file\", \"/etc/gitlab-runner/mayfly-executor.toml\", \"prepare\"]"), "{text}");
        let mut again = parse("c", &text).unwrap();
        assert!(!upsert(&mut again, &e, &custom()));
        assert_eq!(again.to_string(), text);
        assert_eq!(tokens(&again), ["glrt-docker", "glrt-new"]);
        let back: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(
            back["runners"][1]["custom"]["run_exec"].as_str(),
            Some("/usr/local/bin/mayfly")
        );
    }

    #[test]
    fn a_broken_file_is_named() {
        let e = parse("/etc/gitlab-runner/config.toml", "[[runners]\n").unwrap_err();
        assert!(
            e.starts_with("/etc/gitlab-runner/config.toml:") && e.contains("line 1"),
            "{e}"
        );
        let e = parse("c", "runners = 3\n").unwrap_err();
        assert!(e.contains("[[runners]]"), "{e}");
    }
}
