//! The billing ledger: every server ever created, billed by the started hour from creation to
//! deletion, powered off or not, at the gross hourly price of its type in its location.

use super::catalog::{Location, ServerType};
use serde::Serialize;

const HOUR_MS: i64 = 3_600_000;

pub struct LedgerRow {
    pub id: u64,
    pub name: String,
    pub server_type: &'static ServerType,
    pub location: &'static Location,
    pub created_ms: i64,
    pub deleted_ms: Option<i64>,
    /// When it was rebuilt (a reuse for another job), in order.
    pub rebuilt_ms: Vec<i64>,
}

/// What a run cost, in EUR gross.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct BillingReport {
    pub total: f64,
    pub currency: &'static str,
    pub hours_billed: u64,
    pub servers: Vec<BillingRow>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BillingRow {
    pub id: u64,
    pub name: String,
    #[serde(rename = "type")]
    pub server_type: String,
    pub location: String,
    pub created_ms: i64,
    /// None while the server exists (billed up to now).
    pub deleted_ms: Option<i64>,
    /// When it was rebuilt for another job, in order.
    pub rebuilt_ms: Vec<i64>,
    /// Started hours of its life, at least one.
    pub hours_billed: u64,
    pub price_hourly_gross: f64,
    pub cost: f64,
}

impl LedgerRow {
    pub fn bill(&self, now_ms: i64) -> BillingRow {
        let lifetime = (self.deleted_ms.unwrap_or(now_ms) - self.created_ms).max(0);
        let hours = u64::try_from(((lifetime + HOUR_MS - 1) / HOUR_MS).max(1)).unwrap_or(1);
        let (_, gross) = self.server_type.hourly(self.location);
        BillingRow {
            id: self.id,
            name: self.name.clone(),
            server_type: self.server_type.name.to_string(),
            location: self.location.name.to_string(),
            created_ms: self.created_ms,
            deleted_ms: self.deleted_ms,
            rebuilt_ms: self.rebuilt_ms.clone(),
            hours_billed: hours,
            price_hourly_gross: gross,
            cost: hours as f64 * gross,
        }
    }
}

pub fn report<'a>(ledger: impl Iterator<Item = &'a LedgerRow>, now_ms: i64) -> BillingReport {
    let servers: Vec<BillingRow> = ledger.map(|r| r.bill(now_ms)).collect();
    BillingReport {
        total: servers.iter().map(|r| r.cost).sum(),
        currency: "EUR",
        hours_billed: servers.iter().map(|r| r.hours_billed).sum(),
        servers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn started_hours_are_billed_and_deleted_servers_stop() {
        let (t, l) = (
            ServerType::get(&json!("cx23")),
            Location::get(&json!("fsn1")),
        );
        let (Some(t), Some(l)) = (t, l) else {
            panic!("catalogue lacks cx23 in fsn1")
        };
        let row = |created_ms, deleted_ms| LedgerRow {
            rebuilt_ms: Vec::new(),
            id: 1,
            name: "a".into(),
            server_type: t,
            location: l,
            created_ms,
            deleted_ms,
        };
        assert_eq!(
            row(0, Some(60_000)).bill(0).hours_billed,
            1,
            "a minute costs an hour"
        );
        assert_eq!(row(0, Some(0)).bill(0).hours_billed, 1, "at least one hour");
        assert_eq!(
            row(0, None).bill(90 * 60_000).hours_billed,
            2,
            "90 minutes alive is two hours"
        );
        assert_eq!(row(0, Some(HOUR_MS)).bill(10 * HOUR_MS).hours_billed, 1);
        let r = report([row(0, None), row(0, Some(1))].iter(), 1);
        assert_eq!(r.total, 2.0 * t.hourly(l).1);
    }
}
