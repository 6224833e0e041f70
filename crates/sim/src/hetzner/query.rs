//! Query strings as the API reads them: repeatable keys (`status=a&status=b`), and pagination
//! (`page`, `per_page` up to 50) answered with `meta.pagination`.

use super::errors::ApiError;
use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use serde_json::{Value, json};

pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn from(
        q: Result<Query<Vec<(String, String)>>, QueryRejection>,
    ) -> Result<Params, ApiError> {
        q.map(|Query(pairs)| Params(pairs))
            .map_err(|e| ApiError::invalid_field("query", &e.body_text()))
    }

    /// The last value of a key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeatable key.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn number(&self, key: &str, default: usize) -> Result<usize, ApiError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if n >= 1 => Ok(n),
                _ => Err(ApiError::invalid_field(key, "must be a positive integer")),
            },
        }
    }

    /// Cuts one page out of `items` and describes it as `meta`.
    pub fn page<T>(&self, items: Vec<T>) -> Result<(Vec<T>, Value), ApiError> {
        let page = self.number("page", 1)?;
        let per_page = self.number("per_page", 25)?.min(50);
        let total = items.len();
        let last = total.div_ceil(per_page).max(1);
        let items: Vec<T> = items
            .into_iter()
            .skip((page - 1).saturating_mul(per_page))
            .take(per_page)
            .collect();
        let meta = json!({ "pagination": {
            "page": page,
            "per_page": per_page,
            "previous_page": (page > 1).then(|| page - 1),
            "next_page": (page < last).then(|| page + 1),
            "last_page": last,
            "total_entries": total,
        }});
        Ok((items, meta))
    }
}
