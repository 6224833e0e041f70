//! Pagination as GitLab does it. Offset: `page` and `per_page` (20 by default, at most 100),
//! headers `x-page`, `x-per-page`, `x-next-page`, `x-prev-page`, `x-total`, `x-total-pages` and
//! `Link` (prev, next, first, last); above the count limit the totals and `rel="last"` are left
//! out. Keyset (`pagination=keyset`, ordered by id): a `Link rel="next"` while more remain, with
//! the last id seen in `id_after` or `id_before`.

use axum::http::{HeaderMap, HeaderValue};

pub const DEFAULT_PER_PAGE: usize = 20;
pub const MAX_PER_PAGE: usize = 100;

/// The query of a list request, kept as pairs: GitLab's arrays repeat a key (`scope[]=a&scope[]=b`).
#[derive(Clone, Debug, Default)]
pub struct Query {
    pub pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        let raw = raw.unwrap_or("");
        // reqwest's Url decodes `+` and percent escapes as forms do.
        let pairs = reqwest::Url::parse(&format!("http://q/?{raw}"))
            .map(|u| {
                u.query_pairs()
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        Query { pairs }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of an array parameter, given as `key[]=` repeated, `key=` repeated, or one
    /// `key=a,b` list.
    pub fn all(&self, key: &str) -> Vec<String> {
        let array = format!("{key}[]");
        self.pairs
            .iter()
            .filter(|(k, _)| *k == key || *k == array)
            .flat_map(|(_, v)| v.split(',').map(str::trim).map(str::to_string))
            .filter(|v| !v.is_empty())
            .collect()
    }

    /// A boolean parameter as Grape reads one (`true`/`false`, `1`/`0`); `Err` names the value.
    pub fn flag(&self, key: &str) -> Result<Option<bool>, String> {
        match self.get(key) {
            None => Ok(None),
            Some("true" | "1" | "True") => Ok(Some(true)),
            Some("false" | "0" | "False") => Ok(Some(false)),
            Some(v) => Err(format!("{key} is invalid: {v:?}")),
        }
    }

    /// The query again with `key` set to `value` (and no other `key`), encoded.
    fn with(&self, key: &str, value: &str) -> String {
        let mut out = reqwest::Url::parse("http://q/").expect("a constant URL parses");
        {
            let mut q = out.query_pairs_mut();
            for (k, v) in self.pairs.iter().filter(|(k, _)| k != key) {
                q.append_pair(k, v);
            }
            q.append_pair(key, value);
        }
        out.query().unwrap_or("").to_string()
    }
}

/// One page of a list and the headers that describe it.
pub struct Page<T> {
    pub items: Vec<T>,
    pub headers: HeaderMap,
}

fn set(h: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

fn per_page(q: &Query) -> usize {
    q.get("per_page")
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_PER_PAGE)
        .min(MAX_PER_PAGE)
}

/// The page `q` asks for of `items` (already in the list's order), by offset. `url` is the
/// absolute URL of the list without query.
pub fn offset<T>(items: Vec<T>, url: &str, q: &Query, count_limit: usize) -> Page<T> {
    let per = per_page(q);
    let page = q
        .get("page")
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(1);
    let total = items.len();
    let pages = total.div_ceil(per).max(1);
    let counted = total <= count_limit;
    let next = (page * per < total).then_some(page + 1);
    let prev = (page > 1).then(|| (page - 1).min(pages));
    let items: Vec<T> = items
        .into_iter()
        .skip((page - 1).saturating_mul(per))
        .take(per)
        .collect();
    let mut h = HeaderMap::new();
    set(&mut h, "x-page", &page.to_string());
    set(&mut h, "x-per-page", &per.to_string());
    set(
        &mut h,
        "x-next-page",
        &next.map(|n| n.to_string()).unwrap_or_default(),
    );
    set(
        &mut h,
        "x-prev-page",
        &prev.map(|n| n.to_string()).unwrap_or_default(),
    );
    if counted {
        set(&mut h, "x-total", &total.to_string());
        set(&mut h, "x-total-pages", &pages.to_string());
    }
    let at = |n: usize| format!("<{url}?{}>", q.with("page", &n.to_string()));
    let mut links = Vec::new();
    if let Some(p) = prev {
        links.push(format!("{}; rel=\"prev\"", at(p)));
    }
    if let Some(n) = next {
        links.push(format!("{}; rel=\"next\"", at(n)));
    }
    links.push(format!("{}; rel=\"first\"", at(1)));
    if counted {
        links.push(format!("{}; rel=\"last\"", at(pages)));
    }
    set(&mut h, "link", &links.join(", "));
    Page { items, headers: h }
}

/// A list of `(id, item)` as the caller asks: keyset pages by id with `pagination=keyset`,
/// offset pages otherwise (GitLab's lists that offer both).
pub fn by_id<T>(items: Vec<(u64, T)>, url: &str, q: &Query, count_limit: usize) -> Page<T> {
    let page = if q.get("pagination") == Some("keyset") {
        keyset(items, |(id, _)| *id, url, q)
    } else {
        offset(items, url, q, count_limit)
    };
    Page {
        items: page.items.into_iter().map(|(_, v)| v).collect(),
        headers: page.headers,
    }
}

/// Keyset pagination over items ordered by id (`sort=asc` or `desc`), continuing after the id
/// in `id_after` / before the one in `id_before`.
pub fn keyset<T>(items: Vec<T>, id: impl Fn(&T) -> u64, url: &str, q: &Query) -> Page<T> {
    let per = per_page(q);
    let desc = q.get("sort") != Some("asc");
    let after = q.get("id_after").and_then(|v| v.parse::<u64>().ok());
    let before = q.get("id_before").and_then(|v| v.parse::<u64>().ok());
    let mut rest: Vec<T> = items
        .into_iter()
        .filter(|t| after.is_none_or(|a| id(t) > a) && before.is_none_or(|b| id(t) < b))
        .collect();
    rest.sort_by_key(|t| id(t));
    if desc {
        rest.reverse();
    }
    let more = rest.len() > per;
    rest.truncate(per);
    let mut h = HeaderMap::new();
    set(&mut h, "x-per-page", &per.to_string());
    if more && let Some(last) = rest.last() {
        let (key, drop) = if desc {
            ("id_before", "id_after")
        } else {
            ("id_after", "id_before")
        };
        let next = Query {
            pairs: q.pairs.iter().filter(|(k, _)| k != drop).cloned().collect(),
        };
        set(
            &mut h,
            "link",
            &format!(
                "<{url}?{}>; rel=\"next\"",
                next.with(key, &id(last).to_string())
            ),
        );
    }
    Page {
        items: rest,
        headers: h,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_come_in_every_spelling() {
        let q = Query::parse(Some("scope%5B%5D=pending&scope[]=created&x=a%2Cb"));
        assert_eq!(q.all("scope"), ["pending", "created"]);
        assert_eq!(q.all("x"), ["a", "b"]);
        assert_eq!(
            Query::parse(Some("scope=running")).all("scope"),
            ["running"]
        );
        assert_eq!(q.flag("x"), Err("x is invalid: \"a,b\"".into()));
    }

    #[test]
    fn offset_pages_carry_gitlabs_headers() {
        let q = Query::parse(Some("scope[]=pending&per_page=2&page=2"));
        let p = offset((1..=5).collect(), "http://h/api/v4/x", &q, 10_000);
        assert_eq!(p.items, [3, 4]);
        let h = |k: &str| p.headers[k].to_str().unwrap().to_string();
        assert_eq!(
            (
                h("x-page"),
                h("x-next-page"),
                h("x-prev-page"),
                h("x-total"),
                h("x-total-pages")
            ),
            ("2".into(), "3".into(), "1".into(), "5".into(), "3".into())
        );
        assert!(
            h("link").contains(
                "<http://h/api/v4/x?scope%5B%5D=pending&per_page=2&page=3>; rel=\"next\""
            )
        );
        let last = offset(
            (1..=5).collect::<Vec<_>>(),
            "http://h/x",
            &Query::parse(Some("page=9")),
            3,
        );
        assert!(last.items.is_empty());
        assert_eq!(last.headers["x-next-page"], "");
        assert!(
            last.headers.get("x-total").is_none(),
            "over the count limit"
        );
        assert!(!last.headers["link"].to_str().unwrap().contains("last"));
    }

    #[test]
    fn keyset_pages_follow_the_id() {
        let q = Query::parse(Some("pagination=keyset&order_by=id&sort=desc&per_page=2"));
        let p = keyset((1..=5).collect(), |i| *i, "http://h/x", &q);
        assert_eq!(p.items, [5, 4]);
        let link = p.headers["link"].to_str().unwrap();
        assert!(link.ends_with("id_before=4>; rel=\"next\""), "{link}");
        let q = Query::parse(Some("pagination=keyset&sort=desc&per_page=2&id_before=2"));
        let p = keyset((1..=5).collect(), |i| *i, "http://h/x", &q);
        assert_eq!(p.items, [1]);
        assert!(p.headers.get("link").is_none(), "the end");
    }
}
