//! The Query protocol of EC2 and Auto Scaling: `Action=…&Version=…` and the parameters,
//! form-encoded in a POST body; lists as `Name.1`, `Name.2` (EC2) or `Name.member.1` (Auto
//! Scaling), structures as `Name.Field`; errors in the XML body's `<Error><Code>`.

use super::{sigv4, xml};

pub const CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// The parameters of one action, in the order they were set. Its `Debug` shows names only:
/// values may hold user data.
#[derive(Clone, Default)]
pub struct Params(Vec<(String, String)>);

impl std::fmt::Debug for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(k, _)| k))
            .finish()
    }
}

impl Params {
    pub fn new() -> Params {
        Params::default()
    }

    /// Sets one parameter.
    pub fn set(&mut self, key: impl Into<String>, value: impl std::fmt::Display) -> &mut Params {
        self.0.push((key.into(), value.to_string()));
        self
    }

    /// Sets `prefix.1`, `prefix.2`, … to the values (pass `Name.member` for Auto Scaling).
    pub fn list<T: std::fmt::Display>(
        &mut self,
        prefix: &str,
        values: impl IntoIterator<Item = T>,
    ) -> &mut Params {
        for (i, v) in values.into_iter().enumerate() {
            self.set(format!("{prefix}.{}", i + 1), v);
        }
        self
    }

    /// The value set for `key`, for tests of what a call sends.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn body(&self, action: &str, version: &str) -> String {
        let mut body = format!(
            "Action={}&Version={}",
            sigv4::encode(action, false),
            sigv4::encode(version, false)
        );
        for (k, v) in &self.0 {
            body.push('&');
            body.push_str(&sigv4::encode(k, false));
            body.push('=');
            body.push_str(&sigv4::encode(v, false));
        }
        body
    }
}

/// The code and message of an error answer; `Unknown` when the body says nothing readable.
pub fn error(status: u16, body: &[u8]) -> (String, String) {
    xml::parse(&String::from_utf8_lossy(body))
        .ok()
        .and_then(|doc| xml::error(&doc))
        .unwrap_or_else(|| ("Unknown".into(), format!("HTTP {status}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_form_encoded_in_order_with_numbered_lists() {
        let mut p = Params::new();
        p.set("Filter.1.Name", "tag:mayfly-controller")
            .list("Filter.1.Value", ["ctl one", "a&b=c"])
            .list("AutoScalingGroupNames.member", ["g"]);
        assert_eq!(
            p.body("DescribeInstances", "2016-11-15"),
            "Action=DescribeInstances&Version=2016-11-15&Filter.1.Name=tag%3Amayfly-controller\
             &Filter.1.Value.1=ctl%20one&Filter.1.Value.2=a%26b%3Dc&AutoScalingGroupNames.member.1=g"
        );
        assert_eq!(p.get("Filter.1.Value.2"), Some("a&b=c"));
    }

    #[test]
    fn values_never_show_in_debug_output() {
        let mut p = Params::new();
        p.set("UserData", "c2VjcmV0LXJ1bm5lci10b2tlbg==");
        let shown = format!("{p:?}");
        assert!(
            shown.contains("UserData") && !shown.contains("c2VjcmV0"),
            "{shown}"
        );
    }

    #[test]
    fn an_unreadable_error_body_is_unknown_with_its_status() {
        assert_eq!(
            error(503, b"<html>busy</html>"),
            ("Unknown".into(), "HTTP 503".into())
        );
        assert_eq!(
            error(400, b"<Response><Errors><Error><Code>InvalidAMIID.Malformed</Code><Message>bad</Message></Error></Errors></Response>"),
            ("InvalidAMIID.Malformed".into(), "bad".into())
        );
    }
}
