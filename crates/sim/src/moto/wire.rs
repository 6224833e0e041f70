//! Just enough of the AWS wire protocols to read moto without any AWS SDK: the Query protocol
//! of EC2 and Auto Scaling (form-encoded POST, XML answer) and the JSON protocol of ECS and SSM. moto checks no
//! signature; it reads the region and service from the Authorization header's scope.

use serde_json::Value;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Wire {
    http: reqwest::Client,
    endpoint: String,
    region: String,
}

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Wire {
    pub fn new(endpoint: &str, region: &str) -> Wire {
        Wire {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            endpoint: endpoint.trim_end_matches('/').to_string(),
            region: region.to_string(),
        }
    }

    fn auth(&self, service: &str) -> String {
        format!(
            "AWS4-HMAC-SHA256 Credential=testing/20260101/{}/{service}/aws4_request, \
             SignedHeaders=host, Signature=0",
            self.region
        )
    }

    /// An EC2 Query action; the XML answer as text.
    pub async fn ec2(&self, action: &str, params: &[(&str, &str)]) -> Result<String, String> {
        self.query("ec2", "2016-11-15", action, params).await
    }

    /// A Query-protocol action of `service` (EC2, Auto Scaling); the XML answer as text.
    pub async fn query(
        &self,
        service: &str,
        version: &str,
        action: &str,
        params: &[(&str, &str)],
    ) -> Result<String, String> {
        let mut body = format!("Action={action}&Version={version}");
        for (k, v) in params {
            body.push_str(&format!("&{}={}", encode(k), encode(v)));
        }
        let r = self
            .http
            .post(format!("{}/", self.endpoint))
            .header("Authorization", self.auth(service))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = r.status();
        let text = r.text().await.map_err(|e| e.to_string())?;
        if status.is_success() {
            Ok(text)
        } else {
            Err(format!("{action}: {status}"))
        }
    }

    /// A JSON-protocol action (`AmazonEC2ContainerServiceV20141113.ListTasks`, `AmazonSSM.GetParameter`).
    pub async fn json(&self, service: &str, target: &str, body: Value) -> Result<Value, String> {
        let r = self
            .http
            .post(format!("{}/", self.endpoint))
            .header("Authorization", self.auth(service))
            .header("X-Amz-Target", target)
            .header("Content-Type", "application/x-amz-json-1.1")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = r.status();
        let text = r.text().await.map_err(|e| e.to_string())?;
        if status.is_success() {
            serde_json::from_str(&text).map_err(|e| format!("{target}: {e}"))
        } else {
            Err(format!("{target}: {status}"))
        }
    }
}

/// The text of the first `<tag>…</tag>` in `xml`.
pub fn element<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(&xml[start..end])
}

/// The value of tag `key` in an EC2 `tagSet` within `xml`.
pub fn tag<'a>(xml: &'a str, key: &str) -> Option<&'a str> {
    let at = xml.find(&format!("<key>{key}</key>"))?;
    element(&xml[at..], "value")
}

/// Splits a DescribeInstances answer into one slice per instance, each starting at its id.
pub fn instances(xml: &str) -> Vec<&str> {
    split_at(xml, "<instanceId>")
}

/// Splits `xml` into one slice per occurrence of `mark`, each starting at it.
pub fn split_at<'a>(xml: &'a str, mark: &str) -> Vec<&'a str> {
    let marks: Vec<usize> = xml.match_indices(mark).map(|(i, _)| i).collect();
    marks
        .iter()
        .enumerate()
        .map(|(n, &start)| &xml[start..marks.get(n + 1).copied().unwrap_or(xml.len())])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_and_their_tags_are_read_from_the_xml() {
        let xml = "<reservationSet><item><instancesSet><item><instanceId>i-1</instanceId>\
            <tagSet><item><key>Name</key><value>r-1</value></item></tagSet></item>\
            <item><instanceId>i-2</instanceId><tagSet><item><key>Other</key><value>x</value>\
            </item><item><key>Name</key><value>r-2</value></item></tagSet></item></instancesSet>\
            </item></reservationSet>";
        let found: Vec<(Option<&str>, Option<&str>)> = instances(xml)
            .into_iter()
            .map(|i| (element(i, "instanceId"), tag(i, "Name")))
            .collect();
        assert_eq!(
            found,
            [(Some("i-1"), Some("r-1")), (Some("i-2"), Some("r-2"))]
        );
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
    }
}
