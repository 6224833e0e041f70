//! The dashboard's HTML, rendered on the server: the sign-in, the page, and its sections (now,
//! over time, recent actions) that the event stream sends again after every pass. One renderer
//! for both, so the page reads the same with JavaScript off (reload to refresh) and on.

use super::history::{History, Machines, Sample};
use super::plot::{self, Series};
use crate::view::{InstanceView, RunnerState, View};
use mayfly_core::{InstanceState, JobStatus, Time};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

/// The parts of the page that change with each pass. Each is the inner HTML of the element
/// with the field's id.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Sections {
    /// When the pass read the world (RFC 3339), or empty before the first pass.
    pub at: String,
    pub asof: String,
    pub summary: String,
    pub pools: String,
    pub jobs: String,
    pub machines: String,
    pub plots: String,
    pub actions: String,
}

/// HTML-escaped text (also safe in attribute values in double or single quotes).
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// RFC 3339 as the API writes times (`crate::view::rfc3339`), so a page and an answer of the
/// same pass compare equal.
pub fn iso(t: Time) -> String {
    jiff::Timestamp::from_millisecond(t.millis())
        .map(|ts| ts.to_string())
        .unwrap_or_default()
}

/// `HH:MM` in UTC.
pub fn hhmm(t: Time) -> String {
    jiff::Timestamp::from_millisecond(t.millis())
        .map(|ts| ts.strftime("%H:%M").to_string())
        .unwrap_or_else(|_| "?".into())
}

fn hhmmss(t: Time) -> String {
    jiff::Timestamp::from_millisecond(t.millis())
        .map(|ts| ts.strftime("%H:%M:%S").to_string())
        .unwrap_or_else(|_| "?".into())
}

/// A duration for people: `45 s`, `12 min`, `3 h 05 min`.
pub fn age(secs: u64) -> String {
    match secs {
        0..=89 => format!("{secs} s"),
        90..=5_399 => format!("{} min", (secs + 30) / 60),
        _ => format!("{} h {:02} min", secs / 3600, secs % 3600 / 60),
    }
}

fn money(x: f64) -> String {
    if x >= 10.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.4}")
    }
}

/// Every section of the page for one pass.
pub fn sections(
    view: &View,
    history: &History,
    events: &Option<Vec<mayfly_store::Event>>,
) -> Sections {
    Sections {
        at: iso(view.at),
        asof: format!(
            "as of the pass at <time datetime=\"{}\">{} UTC</time>",
            esc(&iso(view.at)),
            hhmmss(view.at)
        ),
        summary: summary(view),
        pools: pools(view),
        jobs: jobs(view),
        machines: machines(view),
        plots: plots(history),
        actions: actions(events),
    }
}

/// Sections while no pass has read the world.
pub fn waiting_sections() -> Sections {
    let none = "<p class=\"empty\">No reconcile pass has read the world yet: this page fills \
                in after the first one.</p>"
        .to_string();
    Sections {
        asof: "waiting for the first pass".into(),
        summary: none,
        ..Sections::default()
    }
}

fn summary(view: &View) -> String {
    let queued: Vec<_> = view
        .jobs
        .iter()
        .filter(|j| j.status == JobStatus::Queued)
        .collect();
    let running = view
        .jobs
        .iter()
        .filter(|j| j.status == JobStatus::InProgress)
        .count();
    let oldest = queued.iter().map(|j| j.age_seconds).max();
    let m = super::history::machines(view);
    let mut s = String::from("<dl class=\"cards\">");
    let _ = write!(
        s,
        "<div><dt>Jobs waiting</dt><dd data-k=\"queued\">{}</dd><dd class=\"sub\">{}</dd></div>",
        queued.len(),
        oldest.map_or("none".into(), |a| format!("oldest {}", age(a)))
    );
    let _ = write!(
        s,
        "<div><dt>Jobs running</dt><dd data-k=\"running\">{running}</dd></div>"
    );
    let _ = write!(
        s,
        "<div><dt>Machines</dt><dd data-k=\"machines\">{}</dd><dd class=\"sub\">{}</dd></div>",
        view.instances.len(),
        esc(&by_state(&m))
    );
    let _ = write!(
        s,
        "<div><dt>Cost per hour</dt><dd data-k=\"per_hour\">{}</dd><dd class=\"sub\">{} so far</dd></div>",
        money(view.cost.per_hour),
        money(view.cost.so_far)
    );
    s.push_str("</dl>");
    s
}

fn by_state(m: &Machines) -> String {
    let parts = [
        (m.busy, "busy"),
        (m.idle, "idle"),
        (m.starting, "starting"),
        (m.off, "off"),
        (m.leaving, "leaving"),
    ];
    let text: Vec<String> = parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
    if text.is_empty() {
        "none".into()
    } else {
        text.join(", ")
    }
}

fn pools(view: &View) -> String {
    if view.pools.is_empty() {
        return "<p class=\"empty\">No pools.</p>".into();
    }
    let mut s = String::from(
        "<table><thead><tr><th scope=\"col\">Pool</th><th scope=\"col\">Labels</th>\
         <th scope=\"col\">Machines</th><th scope=\"col\" class=\"n\">Waiting</th>\
         <th scope=\"col\" class=\"n\">Standby</th><th scope=\"col\" class=\"n\">Max</th>\
         <th scope=\"col\">Status</th></tr></thead><tbody>",
    );
    for p in &view.pools {
        let mut m = Machines::default();
        for i in view.instances.iter().filter(|i| i.pool == p.name) {
            m.count(i);
        }
        let status = match &p.unusable {
            Some(why) => format!("<span class=\"bad\">unusable: {}</span>", esc(why)),
            None => "ok".into(),
        };
        let _ = write!(
            s,
            "<tr data-pool=\"{name}\"><th scope=\"row\">{name}</th><td>{labels}</td>\
             <td data-k=\"instances\" data-n=\"{count}\">{count}: {states}</td>\
             <td class=\"n\" data-k=\"queued\">{queued}</td><td class=\"n\">{standby}</td>\
             <td class=\"n\">{max}</td><td>{status}</td></tr>",
            name = esc(&p.name),
            labels = esc(&p.labels.join(", ")),
            count = p.instances,
            states = esc(&by_state(&m)),
            queued = p.queued,
            standby = p.standby,
            max = p.max.map_or("-".into(), |m| m.to_string()),
        );
    }
    s.push_str("</tbody></table>");
    s
}

fn jobs(view: &View) -> String {
    let queued: Vec<_> = view
        .jobs
        .iter()
        .filter(|j| j.status == JobStatus::Queued)
        .collect();
    if queued.is_empty() {
        return "<p class=\"empty\" data-k=\"no-jobs\">No job is waiting.</p>".into();
    }
    let mut s = String::from(
        "<table><thead><tr><th scope=\"col\">Job</th><th scope=\"col\">Labels</th>\
         <th scope=\"col\" class=\"n\">Waiting for</th><th scope=\"col\">Why</th></tr></thead><tbody>",
    );
    for j in queued {
        let why = match (&j.waiting, &j.instance) {
            (Some(why), _) => format!(
                "<span class=\"bad\">{}</span> <span class=\"tag\">{}</span>",
                esc(why),
                esc(j.waiting_reason.as_deref().unwrap_or(""))
            ),
            (None, Some(machine)) => format!("machine {} is on its way", esc(machine)),
            (None, None) => "being planned".into(),
        };
        let _ = write!(
            s,
            "<tr data-job=\"{key}\"><th scope=\"row\">{key}</th><td>{labels}</td>\
             <td class=\"n\" data-k=\"age\" data-n=\"{secs}\">{age}</td><td>{why}</td></tr>",
            key = esc(&j.key),
            labels = esc(&j.labels.join(", ")),
            secs = j.age_seconds,
            age = age(j.age_seconds),
        );
    }
    s.push_str("</tbody></table>");
    s
}

fn machines(view: &View) -> String {
    if view.instances.is_empty() {
        return "<p class=\"empty\" data-k=\"no-machines\">No machines.</p>".into();
    }
    let mut s = String::from(
        "<table><thead><tr><th scope=\"col\">Machine</th><th scope=\"col\">Pool</th>\
         <th scope=\"col\">State</th><th scope=\"col\">Runner</th><th scope=\"col\">Job</th>\
         <th scope=\"col\" class=\"n\">Age</th><th scope=\"col\">Type</th>\
         <th scope=\"col\" class=\"n\">Cost so far</th><th scope=\"col\">Note</th>\
         <th scope=\"col\"><span class=\"vh\">Act</span></th></tr></thead><tbody>",
    );
    for i in &view.instances {
        let state = format!("{:?}", i.state).to_lowercase();
        let note = match (i.state, i.paid_until) {
            (InstanceState::Off, Some(until)) => {
                format!("paid until {} UTC, reused if a job comes", hhmm(until))
            }
            (InstanceState::Off, None) => "powered off, reused if a job comes".into(),
            _ => String::new(),
        };
        let act = if i.runner == RunnerState::Busy {
            "<span class=\"muted\">busy: kept</span>".to_string()
        } else {
            format!(
                "<a class=\"button\" href=\"/dashboard/delete?name={q}\" \
                 aria-label=\"Delete {n}\">Delete…</a>",
                q = query_escape(&i.name),
                n = esc(&i.name)
            )
        };
        let placement = match (&i.machine_type, &i.location) {
            (Some(t), Some(l)) => format!("{} in {}", esc(t), esc(l)),
            (Some(t), None) => esc(t),
            _ => "-".into(),
        };
        let _ = write!(
            s,
            "<tr data-machine=\"{name}\"><th scope=\"row\">{name}</th><td>{pool}</td>\
             <td data-k=\"state\"><span class=\"st st-{state}\">{state}</span></td>\
             <td data-k=\"runner\">{runner}</td><td>{job}</td>\
             <td class=\"n\">{age}</td><td>{placement}</td><td class=\"n\">{cost}</td>\
             <td>{note}</td><td>{act}</td></tr>",
            name = esc(&i.name),
            pool = esc(&i.pool),
            runner = i.runner.as_str(),
            job = esc(i.job.as_deref().unwrap_or("-")),
            age = age(i.age_seconds),
            cost = i.cost_so_far.map_or("-".into(), money),
            note = esc(&note),
        );
    }
    s.push_str("</tbody></table>");
    s
}

/// Percent-encodes a query value.
pub fn query_escape(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn plots(history: &History) -> String {
    let samples: Vec<&Sample> = history.samples().iter().collect();
    if samples.is_empty() {
        return "<p class=\"empty\">No history yet.</p>".into();
    }
    let xs: Vec<i64> = samples.iter().map(|s| s.minute).collect();
    let line = |f: &dyn Fn(&Sample) -> f64| samples.iter().map(|s| f(s)).collect::<Vec<f64>>();
    let mut out = String::new();
    out.push_str(&plot::chart(
        "Queue wait (longest, seconds)",
        &xs,
        &[Series::line(
            "longest wait",
            "c1",
            line(&|s| s.wait_max as f64),
        )],
        false,
    ));
    out.push_str(&plot::chart(
        "Machines by state",
        &xs,
        &[
            Series::line("busy", "c1", line(&|s| s.machines.busy as f64)),
            Series::line("idle", "c2", line(&|s| s.machines.idle as f64)),
            Series::line("starting", "c3", line(&|s| s.machines.starting as f64)),
            Series::line("off", "c4", line(&|s| s.machines.off as f64)),
        ],
        false,
    ));
    // Jobs served per hour of the clock: what ended in each hour.
    let mut hours: BTreeMap<i64, f64> = BTreeMap::new();
    for s in &samples {
        *hours
            .entry(s.minute.div_euclid(3_600_000) * 3_600_000)
            .or_default() += s.served as f64;
    }
    let (hx, hy): (Vec<i64>, Vec<f64>) = hours.into_iter().unzip();
    out.push_str(&plot::chart(
        "Jobs served per hour",
        &hx,
        &[Series::line("jobs served", "c2", hy)],
        true,
    ));
    out.push_str(&plot::chart(
        "Cost per hour",
        &xs,
        &[Series::line(
            "cost per hour",
            "c3",
            line(&|s| s.cost_per_hour),
        )],
        false,
    ));
    out
}

fn actions(events: &Option<Vec<mayfly_store::Event>>) -> String {
    let Some(events) = events else {
        return "<p class=\"bad\">The store gave no events in time; they show again after \
                the next pass.</p>"
            .into();
    };
    if events.is_empty() {
        return "<p class=\"empty\">Nothing done yet.</p>".into();
    }
    let mut s = String::from("<ol class=\"events\">");
    for e in events.iter().rev() {
        let _ = write!(
            s,
            "<li data-event=\"{id}\"><time datetime=\"{at}\">{t}</time> \
             <span class=\"tag\">{kind}</span> <span class=\"msg\">{msg}</span></li>",
            id = e.id,
            at = esc(&iso(e.at)),
            t = hhmmss(e.at),
            kind = esc(&e.kind),
            msg = esc(&e.message),
        );
    }
    s.push_str("</ol>");
    s
}

const HEAD: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
    <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
    <link rel=\"stylesheet\" href=\"/dashboard/dashboard.css\">";

/// The sign-in page; `refused` says the last try was wrong.
pub fn signin(refused: bool) -> String {
    let note = if refused {
        "<p class=\"bad\" role=\"alert\">That is not the API token.</p>"
    } else {
        ""
    };
    format!(
        "{HEAD}<title>mayfly: sign in</title></head><body class=\"signin\"><main id=\"main\">\
         <h1>mayfly</h1>{note}\
         <form method=\"post\" action=\"/signin\">\
         <label for=\"token\">API token <span class=\"sub\">(the contents of api.token_file)</span></label>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required autofocus>\
         <button type=\"submit\">Sign in</button></form>\
         <p class=\"sub\">The token is sent once; a cookie keeps you signed in for 12 hours.</p>\
         </main></body></html>"
    )
}

/// The whole page.
pub fn page(controller: &str, s: &Sections) -> String {
    let section = |id: &str, title: &str, body: &str| {
        format!(
            "<section aria-labelledby=\"h-{id}\"><h2 id=\"h-{id}\">{title}</h2>\
             <div id=\"{id}\" class=\"scroll\">{body}</div></section>"
        )
    };
    format!(
        "{HEAD}<title>mayfly: {c}</title><script src=\"/dashboard/dashboard.js\" defer></script>\
         </head><body><a class=\"skip\" href=\"#main\">Skip to the dashboard</a>\
         <header><h1>mayfly <span class=\"sub\">{c}</span></h1>\
         <p id=\"asof\">{asof}</p>\
         <p id=\"live\" class=\"sub\" aria-live=\"polite\">Reload for news (live updates need JavaScript).</p>\
         <form method=\"post\" action=\"/signout\"><button type=\"submit\">Sign out</button></form>\
         </header><main id=\"main\" data-at=\"{at}\">\
         <div id=\"summary\">{summary}</div>{pools}{jobs}{machines}{plots}{actions}</main></body></html>",
        c = esc(controller),
        asof = s.asof,
        at = esc(&s.at),
        summary = s.summary,
        pools = section("pools", "Pools", &s.pools),
        jobs = section("jobs", "Jobs waiting", &s.jobs),
        machines = section("machines", "Machines", &s.machines),
        plots = section("plots", "Over time", &s.plots),
        actions = section("actions", "Recent actions", &s.actions),
    )
}

/// A short page with a message and a way back.
pub fn message(title: &str, body_html: &str) -> String {
    format!(
        "{HEAD}<title>mayfly: {t}</title></head><body class=\"signin\"><main id=\"main\">\
         <h1>{t}</h1>{body_html}<p><a href=\"/\">Back to the dashboard</a></p></main></body></html>",
        t = esc(title)
    )
}

/// The confirmation of a delete.
pub fn confirm_delete(instance: &InstanceView) -> String {
    let body = format!(
        "<p>Deregister the runner of <strong>{n}</strong> ({pool}, {state}, runner {runner}) and \
         delete the machine? A machine whose runner has taken a job is kept.</p>\
         <form method=\"post\" action=\"/dashboard/delete\">\
         <input type=\"hidden\" name=\"name\" value=\"{n}\">\
         <button type=\"submit\" class=\"danger\" autofocus>Delete {n}</button> \
         <a href=\"/\">Cancel</a></form>",
        n = esc(&instance.name),
        pool = esc(&instance.pool),
        state = format!("{:?}", instance.state).to_lowercase(),
        runner = instance.runner.as_str(),
    );
    message(&format!("Delete {}?", instance.name), &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_outside_cannot_make_markup() {
        assert_eq!(
            esc("<img src=x onerror='a'>&\"\u{1b}"),
            "&lt;img src=x onerror=&#39;a&#39;&gt;&amp;&quot;\u{fffd}"
        );
        assert_eq!(query_escape("mf-x64 1&a=b"), "mf-x64%201%26a%3Db");
    }

    #[test]
    fn ages_read_as_people_say_them() {
        assert_eq!(age(45), "45 s");
        assert_eq!(age(600), "10 min");
        assert_eq!(age(3 * 3600 + 5 * 60), "3 h 05 min");
        assert_eq!(hhmm(Time::from_secs(50 * 60)), "00:50");
    }
}
