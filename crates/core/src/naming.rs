//! Deterministic instance names. A name is the create's idempotency key: the same job attempt
//! always yields the same name, so a retried or crashed create can never make a second machine.

use crate::model::JobKey;
use crate::time::Time;

/// Longest name every provider and forge accepts (a DNS label; GitHub allows 64).
pub const MAX_NAME: usize = 63;

/// `{controller}-{pool}-{job id}-{attempt}`, with `-{n}` for the n-th replacement.
pub fn job_instance(controller: &str, pool: &str, job: &JobKey, attempt: u32, n: u32) -> String {
    // Built by hand: the planner names thousands of instances a pass and `format!` showed up.
    let mut name = String::with_capacity(controller.len() + pool.len() + 32);
    name.push_str(controller);
    name.push('-');
    name.push_str(pool);
    name.push('-');
    push_decimal(&mut name, job.id);
    name.push('-');
    push_decimal(&mut name, u64::from(attempt));
    if n > 0 {
        name.push('-');
        push_decimal(&mut name, u64::from(n));
    }
    name
}

fn push_decimal(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[i..].iter().map(|&d| char::from(d)));
}

/// `{controller}-{pool}-s{now in base 36}{index}`: standby instances serve no job in particular.
pub fn standby_instance(controller: &str, pool: &str, now: Time, index: usize) -> String {
    format!(
        "{controller}-{pool}-s{}{index}",
        base36(now.millis().max(0) as u64)
    )
}

/// Whether a runner name is one this controller makes (used to find orphan runners).
pub fn is_ours(controller: &str, runner_name: &str) -> bool {
    runner_name.len() > controller.len() + 1
        && runner_name.starts_with(controller)
        && runner_name.as_bytes()[controller.len()] == b'-'
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ascii digits")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ForgeKind;

    #[test]
    fn job_names_are_deterministic_and_fit_a_dns_label() {
        let k = JobKey {
            forge: ForgeKind::Github,
            scope: "o/r".into(),
            id: 29_679_449_012,
        };
        let a = job_instance("mayfly", "linux-x64", &k, 1, 0);
        assert_eq!(a, "mayfly-linux-x64-29679449012-1");
        assert_eq!(a, job_instance("mayfly", "linux-x64", &k, 1, 0));
        assert_eq!(
            job_instance("mayfly", "p", &k, 2, 3),
            "mayfly-p-29679449012-2-3"
        );
        assert!(a.len() <= MAX_NAME);
    }

    #[test]
    fn ours_means_our_prefix_and_a_dash() {
        assert!(is_ours("mayfly", "mayfly-p-1-1"));
        assert!(!is_ours("mayfly", "mayflyx-p-1-1"));
        assert!(!is_ours("mayfly", "mayfly-"));
        assert!(!is_ours("mayfly", "other-p-1"));
        assert_eq!(base36(0), "0");
        assert_eq!(base36(36 * 36), "100");
    }
}
