//! How a provider bills a machine, and the one decision that depends on it: keep a powered-off
//! machine for the next job (its paid time is not used up yet) or delete it now.

use crate::time::Time;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A provider's billing for one machine type in one place.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Billing {
    /// Price of one hour, in the provider's currency.
    pub price_per_hour: f64,
    /// Time is billed in whole periods of this length (Hetzner: one hour; AWS: one second).
    pub granularity: Duration,
    /// The shortest time ever billed (AWS: 60 s).
    pub minimum: Duration,
    /// Whether a powered-off machine is still billed (Hetzner: yes; EC2: no).
    pub billed_while_stopped: bool,
}

/// The recycling decision for a powered-off instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recycle {
    /// Worth keeping: time is paid until `paid_until`; delete it by `until` at the latest.
    Keep { until: Time, paid_until: Time },
    /// Nothing paid is left to use (or keeping it would cost money); delete it.
    Delete { paid_until: Time },
}

impl Billing {
    pub fn hourly(price_per_hour: f64) -> Self {
        Billing {
            price_per_hour,
            granularity: Duration::from_secs(3600),
            minimum: Duration::from_secs(3600),
            billed_while_stopped: true,
        }
    }

    pub fn per_second(price_per_hour: f64) -> Self {
        Billing {
            price_per_hour,
            granularity: Duration::from_secs(1),
            minimum: Duration::from_secs(60),
            billed_while_stopped: false,
        }
    }

    fn periods(&self, lifetime: Duration) -> u128 {
        let g = self.granularity.as_millis().max(1);
        let billed = lifetime.max(self.minimum).as_millis();
        billed.div_ceil(g).max(1)
    }

    /// What a machine that lived for `lifetime` costs.
    pub fn cost(&self, lifetime: Duration) -> f64 {
        let billed_ms = self.periods(lifetime) * self.granularity.as_millis().max(1);
        self.price_per_hour * billed_ms as f64 / 3_600_000.0
    }

    /// The end of the time already paid for, for a machine created at `created`, seen at `now`.
    /// The period that has just begun at `now` counts as paid: it is billed whatever we do.
    pub fn paid_until(&self, created: Time, now: Time) -> Time {
        let age = now.since(created);
        let g = self.granularity.as_millis().max(1);
        let periods = age.as_millis() / g + 1;
        let by_periods = created.plus(Duration::from_millis(
            (periods * g).min(u64::MAX as u128) as u64
        ));
        by_periods.max(created.plus(self.minimum))
    }

    /// Keep a powered-off machine while it is billed anyway and paid time is left beyond
    /// `margin`; the margin leaves room to delete it before the next period starts.
    pub fn recycle(&self, created: Time, now: Time, margin: Duration) -> Recycle {
        let paid_until = self.paid_until(created, now);
        if !self.billed_while_stopped {
            return Recycle::Delete { paid_until };
        }
        let until = paid_until.minus(margin);
        if until > now {
            Recycle::Keep { until, paid_until }
        } else {
            Recycle::Delete { paid_until }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn hourly_billing_rounds_up_to_the_hour() {
        let b = Billing::hourly(0.01);
        assert!((b.cost(MIN) - 0.01).abs() < 1e-12);
        assert!((b.cost(Duration::from_secs(3601)) - 0.02).abs() < 1e-12);
        assert!((b.cost(Duration::ZERO) - 0.01).abs() < 1e-12);
    }

    #[test]
    fn per_second_billing_has_a_minute_minimum() {
        let b = Billing::per_second(3.6);
        assert!((b.cost(Duration::from_secs(10)) - 0.06).abs() < 1e-9);
        assert!((b.cost(Duration::from_secs(90)) - 0.09).abs() < 1e-9);
    }

    #[test]
    fn hourly_machine_is_kept_until_the_margin_before_the_next_hour() {
        let b = Billing::hourly(0.01);
        let created = Time::from_secs(1000);
        let margin = 10 * MIN;
        // 5 minutes old: paid until the hour, keep until minute 50.
        let r = b.recycle(created, created.plus(5 * MIN), margin);
        assert_eq!(
            r,
            Recycle::Keep {
                until: created.plus(50 * MIN),
                paid_until: created.plus(60 * MIN)
            }
        );
        // 55 minutes old: inside the margin, delete before the next hour is billed.
        assert!(matches!(
            b.recycle(created, created.plus(55 * MIN), margin),
            Recycle::Delete { .. }
        ));
        // 65 minutes old: the second hour is paid already, keep it until minute 110.
        let r = b.recycle(created, created.plus(65 * MIN), margin);
        assert_eq!(
            r,
            Recycle::Keep {
                until: created.plus(110 * MIN),
                paid_until: created.plus(120 * MIN)
            }
        );
    }

    #[test]
    fn machines_not_billed_while_stopped_are_never_kept() {
        let b = Billing::per_second(1.0);
        let created = Time::from_secs(0);
        assert!(matches!(
            b.recycle(created, created.plus(MIN / 2), Duration::ZERO),
            Recycle::Delete { .. }
        ));
    }
}
