//! The JSON 1.1 protocol of ECS and SSM: a JSON body, the operation in `X-Amz-Target`, and
//! errors named by `X-Amzn-ErrorType` or the body's `__type` (`com.amazonaws.ecs#ClientException`).

pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// The bare code of a type name: `aws.protocoltests#Foo:http://…` is `Foo`.
fn bare(code: &str) -> String {
    let code = code.split(':').next().unwrap_or(code);
    code.rsplit('#').next().unwrap_or(code).trim().to_string()
}

/// The code and message of an error answer; `Unknown` when neither header nor body names one.
pub fn error(status: u16, error_type: Option<&str>, body: &[u8]) -> (String, String) {
    let doc: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let field = |names: &[&str]| {
        doc.as_ref().and_then(|d| {
            names
                .iter()
                .find_map(|n| d.get(*n).and_then(|v| v.as_str()).map(str::to_string))
        })
    };
    let code = error_type
        .map(bare)
        .filter(|c| !c.is_empty())
        .or_else(|| field(&["__type", "code", "Code"]).map(|c| bare(&c)))
        .unwrap_or_else(|| "Unknown".into());
    let message =
        field(&["message", "Message", "errorMessage"]).unwrap_or_else(|| format!("HTTP {status}"));
    (code, message)
}

/// A JSON parse error without the text around it (which may hold anything the service sent).
pub fn describe(e: &serde_json::Error) -> String {
    format!(
        "{:?} error at line {} column {}",
        e.classify(),
        e.line(),
        e.column()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_come_from_the_header_or_the_body() {
        assert_eq!(
            error(
                400,
                Some("ThrottlingException:http://internal.amazon.com/coral/"),
                b""
            ),
            ("ThrottlingException".into(), "HTTP 400".into())
        );
        assert_eq!(
            error(
                400,
                None,
                br#"{"__type":"com.amazonaws.ecs#ClientException","message":"no task def"}"#
            ),
            ("ClientException".into(), "no task def".into())
        );
        assert_eq!(
            error(
                400,
                None,
                br#"{"__type":"ParameterNotFound","Message":"gone"}"#
            ),
            ("ParameterNotFound".into(), "gone".into())
        );
        assert_eq!(
            error(500, None, b"oops"),
            ("Unknown".into(), "HTTP 500".into())
        );
    }
}
