//! Pagination both forges share: the `rel="next"` URL of a `Link` header (RFC 8288), which
//! GitHub and GitLab both send on paginated lists.

use reqwest::header::{HeaderMap, LINK};

/// The `rel="next"` URL of a Link header.
pub(crate) fn next_link(headers: &HeaderMap) -> Option<String> {
    let link = headers.get(LINK)?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim() == "rel=\"next\"")
            .then(|| {
                url.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string()
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn finds_the_next_page() {
        let mut h = HeaderMap::new();
        h.insert(
            LINK,
            HeaderValue::from_static(concat!(
                "<https://x/api/v4/p?page=1>; rel=\"prev\", <https://x/api/v4/p?page=3>; rel=\"next\", ",
                "<https://x/api/v4/p?page=1>; rel=\"first\""
            )),
        );
        assert_eq!(next_link(&h).as_deref(), Some("https://x/api/v4/p?page=3"));
        assert_eq!(next_link(&HeaderMap::new()), None);
    }
}
