//! The service on the controller's server, over ssh: logs, start and stop, the files pushed
//! again or removed, and upgrades. Scripts go through stdin; the command line is `sh -s`.

use super::bundle::{self, Bundle};
use super::{Cloud, scripts};
use anyhow::Context;
use mayfly::ssh::{Output, Ssh};
use std::process::ExitCode;

/// The server's ssh client, found by the deployment's label.
async fn connect(cloud: &Cloud<'_>) -> anyhow::Result<Ssh> {
    let api = cloud.api(None)?;
    let server = cloud.server(&api).await?;
    let address = server
        .address()
        .with_context(|| format!("server {} has no public address to ssh to", server.name))?;
    Ok(Ssh::new(&cloud.ssh_user, &address))
}

/// Prints what the remote command wrote, and fails on its non-zero exit.
fn finish(ssh: &Ssh, what: &str, out: Output) -> anyhow::Result<ExitCode> {
    print!("{}", out.stdout);
    eprint!("{}", out.stderr);
    if !out.status.success() {
        anyhow::bail!("{what} on {} failed ({})", ssh.destination(), out.status);
    }
    Ok(ExitCode::SUCCESS)
}

fn words(words: &[&str]) -> Vec<String> {
    words.iter().map(|s| s.to_string()).collect()
}

pub async fn logs(cloud: &Cloud<'_>, follow: bool, lines: u32) -> anyhow::Result<ExitCode> {
    let ssh = connect(cloud).await?;
    let n = lines.to_string();
    let mut remote = words(&["journalctl", "-u", bundle::SERVICE, "--no-pager", "-n", &n]);
    if follow {
        // Until the operator stops it: the one wait without a bound.
        remote.push("-f".into());
        let status = ssh.interactive(&remote).await?;
        return Ok(if status.success() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let out = ssh.run(&remote, None, cloud.timeout).await?;
    finish(&ssh, "journalctl", out)
}

pub async fn systemctl(cloud: &Cloud<'_>, verb: &str) -> anyhow::Result<ExitCode> {
    let ssh = connect(cloud).await?;
    let out = ssh
        .run(
            &words(&["systemctl", verb, bundle::SERVICE]),
            None,
            cloud.timeout,
        )
        .await?;
    finish(&ssh, &format!("systemctl {verb}"), out)?;
    println!("{verb}: {} on {}", bundle::SERVICE, ssh.destination());
    Ok(ExitCode::SUCCESS)
}

pub async fn install(cloud: &Cloud<'_>) -> anyhow::Result<ExitCode> {
    let config = cloud.load_config()?;
    let bundle = Bundle::new(&config)?;
    let script = scripts::push(&bundle);
    let ssh = connect(cloud).await?;
    let out = ssh
        .run(
            &words(&["sh", "-s"]),
            Some(script.expose().as_bytes()),
            cloud.timeout,
        )
        .await?;
    // The script prints no file content; this is a last guard.
    let out = Output {
        stdout: bundle.redact(&out.stdout),
        stderr: bundle.redact(&out.stderr),
        status: out.status,
    };
    finish(&ssh, "installing the configuration", out)
}

pub async fn uninstall(cloud: &Cloud<'_>) -> anyhow::Result<ExitCode> {
    let ssh = connect(cloud).await?;
    let script = scripts::uninstall();
    let out = ssh
        .run(
            &words(&["sh", "-s"]),
            Some(script.as_bytes()),
            cloud.timeout,
        )
        .await?;
    finish(&ssh, "removing the service", out)
}

pub async fn upgrade(cloud: &Cloud<'_>, args: &super::UpgradeArgs) -> anyhow::Result<ExitCode> {
    scripts::check_url(&args.binary_url).map_err(anyhow::Error::msg)?;
    let sha256 = scripts::check_sha256(&args.binary_sha256).map_err(anyhow::Error::msg)?;
    let settle = args.settle.0.as_secs().max(1);
    let ssh = connect(cloud).await?;
    let script = scripts::upgrade(&args.binary_url, &sha256, settle);
    let progress = mayfly::progress::spinner(&format!("upgrading mayfly on {}", ssh.destination()));
    let out = ssh
        .run(
            &words(&["sh", "-s"]),
            Some(script.as_bytes()),
            cloud.timeout,
        )
        .await;
    progress.finish_and_clear();
    let out = out?;
    if out.status.code() == Some(3) {
        eprint!("{}", out.stderr);
        anyhow::bail!(
            "the upgrade was rolled back: the service did not stay active on the new binary \
             (see `mayfly cloud logs --name {}`)",
            cloud.name
        );
    }
    finish(&ssh, "the upgrade", out)
}
