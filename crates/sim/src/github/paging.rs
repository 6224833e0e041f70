//! Pagination as GitHub does it: `per_page` (default 30, at most 100) and `page` query
//! parameters, and a Link header pointing at the first, previous, next and last pages.

use std::collections::HashMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Paging {
    pub per_page: usize,
    pub page: usize,
}

impl Paging {
    /// Unparsable values fall back to the defaults, as GitHub ignores them too.
    pub fn from_query(q: &HashMap<String, String>) -> Paging {
        let num = |k: &str| {
            q.get(k)
                .and_then(|v| v.trim().parse::<usize>().ok())
                .filter(|n| *n > 0)
        };
        Paging {
            per_page: num("per_page").unwrap_or(30).min(100),
            page: num("page").unwrap_or(1),
        }
    }

    /// This page's share of `items`, and the number of the last page (at least 1).
    pub fn slice<T>(&self, items: Vec<T>) -> (Vec<T>, usize) {
        let last = items.len().div_ceil(self.per_page).max(1);
        let start = (self.page - 1).saturating_mul(self.per_page);
        (
            items.into_iter().skip(start).take(self.per_page).collect(),
            last,
        )
    }

    /// The Link header for a page of `url` (absolute, without query) asked with `query`; `None`
    /// when everything fits on one page.
    pub fn link(&self, url: &str, query: &str, last: usize) -> Option<String> {
        let at = |page: usize| {
            let mut pairs: Vec<String> = query
                .split('&')
                .filter(|p| !p.is_empty() && !p.starts_with("page="))
                .map(str::to_string)
                .collect();
            pairs.push(format!("page={page}"));
            format!("{url}?{}", pairs.join("&"))
        };
        let mut rels = Vec::new();
        if self.page > 1 {
            rels.push(format!("<{}>; rel=\"prev\"", at((self.page - 1).min(last))));
        }
        if self.page < last {
            rels.push(format!("<{}>; rel=\"next\"", at(self.page + 1)));
            rels.push(format!("<{}>; rel=\"last\"", at(last)));
        }
        if self.page > 1 {
            rels.push(format!("<{}>; rel=\"first\"", at(1)));
        }
        (!rels.is_empty()).then(|| rels.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_and_caps() {
        assert_eq!(
            Paging::from_query(&q(&[])),
            Paging {
                per_page: 30,
                page: 1
            }
        );
        assert_eq!(
            Paging::from_query(&q(&[("per_page", "500"), ("page", "x")])),
            Paging {
                per_page: 100,
                page: 1
            }
        );
    }

    #[test]
    fn a_middle_page_links_every_way() {
        let p = Paging {
            per_page: 2,
            page: 2,
        };
        let (items, last) = p.slice((1..=5).collect::<Vec<_>>());
        assert_eq!((items, last), (vec![3, 4], 3));
        let link = p
            .link("http://h/r", "status=queued&per_page=2&page=2", last)
            .unwrap();
        assert_eq!(
            link,
            "<http://h/r?status=queued&per_page=2&page=1>; rel=\"prev\", <http://h/r?status=queued&per_page=2&page=3>; rel=\"next\", \
             <http://h/r?status=queued&per_page=2&page=3>; rel=\"last\", <http://h/r?status=queued&per_page=2&page=1>; rel=\"first\""
        );
        assert_eq!(
            Paging {
                per_page: 30,
                page: 1
            }
            .link("http://h/r", "", 1),
            None
        );
    }
}
