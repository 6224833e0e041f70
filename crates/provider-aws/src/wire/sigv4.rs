//! AWS Signature Version 4: the canonical request, the string to sign and the signature of one
//! request, checked against vectors of AWS's published SigV4 test suite.
//!
//! Hand-written over `hmac` and `sha2`, which the workspace has already: the standalone
//! `aws-sigv4` crate brings 58 crates (the smithy runtime types, `time`, a second generation of
//! the RustCrypto digests) for about a hundred lines of work; built alone it took 37 s on this
//! 2-core machine (docs/performance.md).

use crate::credentials::Credentials;
use hmac::{Hmac, Mac};
use jiff::Timestamp;
use sha2::{Digest, Sha256};

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// A request as it will be sent, before signing.
#[derive(Clone, Copy, Debug)]
pub struct Unsigned<'a> {
    pub method: &'a str,
    /// The Host header: the URL's host, with its port unless it is the scheme's default.
    pub host: &'a str,
    /// The path as sent (already percent-encoded once).
    pub path: &'a str,
    /// The query string as sent, without `?`.
    pub query: &'a str,
    /// Headers besides host, date and token that are sent and signed (content type, target).
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

/// Where the signature is valid: one region's one service.
#[derive(Clone, Copy, Debug)]
pub struct Scope<'a> {
    pub region: &'a str,
    pub service: &'a str,
}

/// RFC 3986 percent-encoding of everything but the unreserved characters (and `/` in paths),
/// with upper-case hex, as SigV4 requires.
pub fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(hi << 4 | lo);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length: this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// `20150830T123600Z`.
pub fn amz_date(at: Timestamp) -> String {
    at.strftime("%Y%m%dT%H%M%SZ").to_string()
}

fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (encode(&decode(k), false), encode(&decode(v), false))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The headers that are signed, by lower-case name, values trimmed with inner runs of spaces
/// collapsed; repeated names joined with commas.
fn canonical_headers(headers: &[(String, String)]) -> (String, String) {
    let mut by_name: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (name, value) in headers {
        let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
        by_name
            .entry(name.to_ascii_lowercase())
            .or_default()
            .push(value);
    }
    let signed = by_name.keys().cloned().collect::<Vec<_>>().join(";");
    let canonical = by_name
        .iter()
        .map(|(n, v)| format!("{n}:{}\n", v.join(",")))
        .collect::<String>();
    (signed, canonical)
}

/// Every header that is signed for this request: its own, the host, the date and the token.
fn signed_headers(req: &Unsigned<'_>, creds: &Credentials, date: &str) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    all.push(("host".into(), req.host.to_string()));
    all.push(("x-amz-date".into(), date.to_string()));
    if let Some(token) = &creds.session_token {
        all.push(("x-amz-security-token".into(), token.expose().to_string()));
    }
    all
}

/// The canonical request and the list of signed headers.
pub fn canonical_request(
    req: &Unsigned<'_>,
    creds: &Credentials,
    at: Timestamp,
) -> (String, String) {
    let date = amz_date(at);
    let (signed, headers) = canonical_headers(&signed_headers(req, creds, &date));
    let path = if req.path.is_empty() { "/" } else { req.path };
    let canonical = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method.to_ascii_uppercase(),
        // Non-S3 services want each path segment encoded twice: once as sent, once here.
        encode(path, true),
        canonical_query(req.query),
        headers,
        signed,
        sha256_hex(req.body),
    );
    (canonical, signed)
}

pub fn string_to_sign(canonical: &str, scope: Scope<'_>, at: Timestamp) -> String {
    format!(
        "{ALGORITHM}\n{}\n{}/{}/{}/aws4_request\n{}",
        amz_date(at),
        at.strftime("%Y%m%d"),
        scope.region,
        scope.service,
        sha256_hex(canonical.as_bytes())
    )
}

fn signature(secret: &str, to_sign: &str, scope: Scope<'_>, at: Timestamp) -> String {
    let day = at.strftime("%Y%m%d").to_string();
    let k = hmac(format!("AWS4{secret}").as_bytes(), day.as_bytes());
    let k = hmac(&k, scope.region.as_bytes());
    let k = hmac(&k, scope.service.as_bytes());
    let k = hmac(&k, b"aws4_request");
    hex::encode(hmac(&k, to_sign.as_bytes()))
}

/// The headers that sign `req`: `x-amz-date`, `x-amz-security-token` with temporary
/// credentials, and `authorization`. The caller sends them with the request's own.
pub fn sign(
    req: &Unsigned<'_>,
    creds: &Credentials,
    scope: Scope<'_>,
    at: Timestamp,
) -> Vec<(&'static str, String)> {
    let (canonical, signed) = canonical_request(req, creds, at);
    let to_sign = string_to_sign(&canonical, scope, at);
    let sig = signature(creds.secret_access_key.expose(), &to_sign, scope, at);
    let mut out = vec![("x-amz-date", amz_date(at))];
    if let Some(token) = &creds.session_token {
        out.push(("x-amz-security-token", token.expose().to_string()));
    }
    out.push((
        "authorization",
        format!(
            "{ALGORITHM} Credential={}/{}/{}/{}/aws4_request, SignedHeaders={signed}, Signature={sig}",
            creds.access_key_id,
            at.strftime("%Y%m%d"),
            scope.region,
            scope.service,
        ),
    ));
    out
}

#[cfg(test)]
mod tests {
    //! Vectors of AWS's Signature Version 4 test suite ("aws-sig-v4-test-suite", formerly at
    //! docs.aws.amazon.com/general/latest/gr/signature-v4-test-suite.html, and kept in the
    //! AWS SDKs' repositories): credentials AKIDEXAMPLE, region us-east-1, service `service`,
    //! 2015-08-30T12:36:00Z. Each case below is the suite's request (`.req`) and the
    //! expected canonical request (`.creq`), string to sign (`.sts`) or signature (`.authz`),
    //! written here as data.
    use super::*;
    use mayfly_core::Secret;

    fn suite_credentials(token: Option<&str>) -> Credentials {
        Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
            session_token: token.map(Secret::new),
            expires: None,
            source: "test",
        }
    }

    fn at() -> Timestamp {
        "2015-08-30T12:36:00Z".parse().unwrap()
    }

    const SCOPE: Scope<'static> = Scope {
        region: "us-east-1",
        service: "service",
    };

    fn request<'a>(
        method: &'a str,
        query: &'a str,
        headers: &'a [(&'a str, &'a str)],
        body: &'a [u8],
    ) -> Unsigned<'a> {
        Unsigned {
            method,
            host: "example.amazonaws.com",
            path: "/",
            query,
            headers,
            body,
        }
    }

    fn authorization(req: &Unsigned<'_>, token: Option<&str>) -> String {
        sign(req, &suite_credentials(token), SCOPE, at())
            .into_iter()
            .find(|(k, _)| *k == "authorization")
            .unwrap()
            .1
    }

    fn expected(signed: &str, signature: &str) -> String {
        format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders={signed}, Signature={signature}"
        )
    }

    #[test]
    fn get_vanilla() {
        let req = request("GET", "", &[], b"");
        let (creq, _) = canonical_request(&req, &suite_credentials(None), at());
        assert_eq!(
            creq,
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            authorization(&req, None),
            expected(
                "host;x-amz-date",
                "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
            )
        );
    }

    #[test]
    fn get_vanilla_query_order_key_case() {
        let req = request("GET", "Param2=value2&Param1=value1", &[], b"");
        let (creq, _) = canonical_request(&req, &suite_credentials(None), at());
        assert_eq!(
            string_to_sign(&creq, SCOPE, at()),
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n816cd5b414d056048ba4f7c5386d6e0533120fb1fcfa93762cf0fc39e2cf19e0"
        );
        assert_eq!(
            authorization(&req, None),
            expected(
                "host;x-amz-date",
                "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
            )
        );
    }

    #[test]
    fn post_vanilla_and_post_vanilla_query() {
        assert_eq!(
            authorization(&request("POST", "", &[], b""), None),
            expected(
                "host;x-amz-date",
                "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
            )
        );
        assert_eq!(
            authorization(&request("POST", "Param1=value1", &[], b""), None),
            expected(
                "host;x-amz-date",
                "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11"
            )
        );
    }

    /// The shape of every Query-protocol call (EC2, Auto Scaling, STS): a form body.
    #[test]
    fn post_x_www_form_urlencoded() {
        let headers = [("Content-Type", "application/x-www-form-urlencoded")];
        let req = request("POST", "", &headers, b"Param1=value1");
        let (creq, _) = canonical_request(&req, &suite_credentials(None), at());
        assert_eq!(
            creq,
            "POST\n/\n\ncontent-type:application/x-www-form-urlencoded\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\ncontent-type;host;x-amz-date\n9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e"
        );
        assert_eq!(
            string_to_sign(&creq, SCOPE, at()),
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281"
        );
        assert_eq!(
            authorization(&req, None),
            expected(
                "content-type;host;x-amz-date",
                "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"
            )
        );
    }

    /// Temporary credentials (instance role, web identity): the token is sent and signed.
    #[test]
    fn get_vanilla_with_session_token() {
        let token = "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267";
        let req = request("GET", "", &[], b"");
        let headers = sign(&req, &suite_credentials(Some(token)), SCOPE, at());
        assert!(headers.contains(&("x-amz-security-token", token.to_string())));
        assert_eq!(
            authorization(&req, Some(token)),
            expected(
                "host;x-amz-date;x-amz-security-token",
                "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8"
            )
        );
    }

    #[test]
    fn the_secret_never_appears_in_what_is_sent() {
        let req = request("GET", "", &[], b"");
        let sent = format!("{:?}", sign(&req, &suite_credentials(None), SCOPE, at()));
        assert!(!sent.contains("wJalrXUtnFEMI"), "{sent}");
    }

    #[test]
    fn encoding_keeps_only_unreserved_characters() {
        assert_eq!(encode("a b/c~d*é", false), "a%20b%2Fc~d%2A%C3%A9");
        assert_eq!(encode("/x y/", true), "/x%20y/");
        assert_eq!(canonical_query("b=2&a=%7E&a=1"), "a=1&a=~&b=2");
    }
}
