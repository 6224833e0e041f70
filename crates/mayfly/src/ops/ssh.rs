//! `mayfly ssh NAME [COMMAND]`: the system's ssh client on an instance's public address, with the
//! terminal attached; exits with the remote command's status.

use super::SshArgs;
use super::source::Source;
use crate::config::Config;
use anyhow::bail;
use mayfly::ssh::Ssh;
use std::process::ExitCode;

pub async fn ssh(config: &Config, args: SshArgs) -> anyhow::Result<ExitCode> {
    let (source, view) = Source::open(config).await?;
    source.close().await;
    let Some(instance) = view.instance(&args.name) else {
        bail!(
            "no instance named {} (controller {}): `mayfly list` shows the instances",
            args.name,
            view.controller
        );
    };
    let Some(address) = &instance.address else {
        let state = serde_json::to_value(instance.state).unwrap_or_default();
        bail!(
            "{} has no address (state {}): it is still being created, or provider {} gives it no \
             public address (providers.{}.ipv4 and ipv6)",
            instance.name,
            state.as_str().unwrap_or("unknown"),
            instance.provider,
            instance.provider
        );
    };
    let status = Ssh::new(&args.user, address)
        .interactive(&args.command)
        .await?;
    // A remote command killed by a signal has no code: ssh's own "something failed".
    let code = status.code().unwrap_or(255);
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(255)))
}
