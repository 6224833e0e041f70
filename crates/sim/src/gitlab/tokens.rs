//! The random strings GitLab hands out: runner authentication tokens (`glrt-`), job tokens,
//! runner system ids and the UUIDs of webhook deliveries.

use rand::Rng;
use rand::distr::Alphanumeric;

fn random(n: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

/// A runner authentication token: `glrt-` and 20 characters, as `POST /user/runners` returns.
pub fn runner_token() -> String {
    format!("glrt-{}", random(20))
}

/// A CI job token (`CI_JOB_TOKEN`), prefixed as GitLab 17+ prefixes them.
pub fn job_token() -> String {
    format!("glcbt-{}", random(20))
}

/// A runner manager's system id as gitlab-runner makes one without `/etc/machine-id`.
pub fn system_id() -> String {
    let mut b = [0u8; 6];
    rand::rng().fill(&mut b);
    format!("r_{}", hex::encode(b))
}

/// A random (version 4) UUID.
pub fn uuid() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert!(runner_token().starts_with("glrt-") && runner_token().len() == 25);
        assert_ne!(runner_token(), runner_token());
        assert!(system_id().starts_with("r_"));
        let u = uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }
}
