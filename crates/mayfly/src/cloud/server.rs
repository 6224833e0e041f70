//! The controller's server as Hetzner sees it: `status` (with the service's state over ssh and
//! the cost so far) and `delete`.

use super::{Cloud, bundle, hetzner};
use mayfly::ssh::Ssh;
use std::process::ExitCode;
use std::time::Duration;

/// `systemctl is-active` answers at once; a server that does not is reported as unreachable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

pub async fn status(cloud: &Cloud<'_>) -> anyhow::Result<ExitCode> {
    let api = cloud.api(None)?;
    let s = cloud.server(&api).await?;
    let age = age(&s.created);
    println!("server   {} (id {})", s.name, s.id);
    println!("state    {}", s.status);
    println!(
        "type     {} in {}, image {}",
        s.server_type.name,
        hetzner::location(&s),
        s.image
            .as_ref()
            .and_then(|i| i.name.clone().or(i.description.clone()))
            .unwrap_or_else(|| "?".into())
    );
    let mut addresses = Vec::new();
    if let Some(net) = &s.public_net {
        addresses.extend(net.ipv4.iter().chain(&net.ipv6).map(|a| a.ip.clone()));
    }
    println!("address  {}", addresses.join(", "));
    if let Some(age) = age {
        println!("age      {} (since {})", human(age), s.created);
        if let Some((hourly, monthly)) = hetzner::price(&s) {
            let (hours, cost) = cost(age, hourly, monthly);
            println!("cost     €{cost:.4} so far ({hours} started hours at €{hourly:.4} an hour)");
        }
    }
    let Some(address) = s.address() else {
        println!("service  unknown (the server has no public address)");
        return Ok(ExitCode::from(3));
    };
    let ssh = Ssh::new(&cloud.ssh_user, &address);
    let probe = ssh
        .run(
            &[
                "systemctl".into(),
                "is-active".into(),
                bundle::SERVICE.into(),
            ],
            None,
            PROBE_TIMEOUT.min(cloud.timeout),
        )
        .await;
    match probe {
        Ok(out) => {
            let state = out.stdout.trim();
            let state = if state.is_empty() { "unknown" } else { state };
            println!("service  {state}");
            if state == "active" {
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "         (first boot: cloud-init may still be installing; its log is \
                 /var/log/cloud-init-output.log on the server)"
            );
        }
        Err(e) => println!("service  unknown: {e:#}"),
    }
    Ok(ExitCode::from(3))
}

/// How long ago `created` (RFC 3339) was; zero when the clocks disagree and it looks ahead.
fn age(created: &str) -> Option<Duration> {
    let t: jiff::Timestamp = created.parse().ok()?;
    let since = jiff::Timestamp::now().duration_since(t);
    Some(Duration::try_from(since).unwrap_or(Duration::ZERO))
}

/// Started hours and what they cost: Hetzner bills each started hour, at most the monthly price.
fn cost(age: Duration, hourly: f64, monthly: f64) -> (u64, f64) {
    let hours = age.as_secs().div_ceil(3600).max(1);
    (hours, (hours as f64 * hourly).min(monthly))
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

pub async fn delete(cloud: &Cloud<'_>, yes: bool) -> anyhow::Result<ExitCode> {
    let api = cloud.api(None)?;
    let s = cloud.server(&api).await?;
    let question = format!(
        "delete server `{}` (id {}, {}) and the controller on it?",
        s.name,
        s.id,
        s.address().unwrap_or_default()
    );
    if !super::confirm(&question, yes)? {
        println!("nothing deleted");
        return Ok(ExitCode::FAILURE);
    }
    api.delete(s.id).await?;
    println!("deleted server `{}` (id {})", s.name, s.id);
    println!(
        "note: the runner machines this controller made are not deleted (they carry the label \
         mayfly-controller=<its controller id>, not {}); remove them with `mayfly delete --all` \
         and the same configuration, or in the Hetzner console",
        hetzner::DEPLOY_LABEL
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_started_hour_is_billed_up_to_the_monthly_price() {
        assert_eq!(cost(Duration::from_secs(1), 0.01, 5.0), (1, 0.01));
        assert_eq!(cost(Duration::from_secs(3601), 0.01, 5.0).0, 2);
        assert_eq!(
            cost(Duration::from_secs(3600 * 1000), 0.01, 5.0),
            (1000, 5.0)
        );
    }

    #[test]
    fn ages_read_well() {
        assert_eq!(human(Duration::from_secs(59)), "0m");
        assert_eq!(human(Duration::from_secs(3 * 3600 + 12 * 60)), "3h 12m");
        assert_eq!(human(Duration::from_secs(2 * 86_400 + 3600)), "2d 1h");
        assert!(age("2020-01-01T00:00:00+00:00").unwrap() > Duration::from_secs(86_400));
        assert_eq!(age("yesterday"), None);
        assert_eq!(age("2999-01-01T00:00:00Z"), Some(Duration::ZERO));
    }
}
