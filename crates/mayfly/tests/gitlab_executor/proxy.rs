//! A counting proxy in front of moto: each request's `X-Amz-Target` (or `Action=`) is recorded,
//! so a test can count the AWS calls a job's executables made across their processes. One
//! request per connection (`Connection: close` both ways), which the clients handle.
//!
//! It can also make moto's answers look like real AWS while a machine boots, where moto is
//! done at once: an ECS task is PROVISIONING, its network interface PRECREATED with no address
//! until it attaches (ECS API reference, `Task.lastStatus`, `Attachment.status`); a new EC2
//! instance is `pending` with no public IP in RunInstances' answer.
//!
//! And it keeps RunTask's client tokens as ECS does (moto ignores them): a repeated request
//! with the same token gets the first one's answer, a request with the same token and other
//! parameters a `ConflictException` (ECS API reference, "Ensuring idempotency").

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

pub struct Counting {
    pub url: String,
    calls: Arc<Mutex<Vec<String>>>,
    rules: Arc<Mutex<Rules>>,
}

/// RunTask's client tokens: the request's body and the answer it got.
type Tokens = Mutex<BTreeMap<String, (Vec<u8>, Vec<u8>)>>;

/// How the proxy changes answers on their way back.
#[derive(Debug, Default)]
struct Rules {
    /// Tasks are still provisioning in RunTask's answer and in this many DescribeTasks
    /// answers (those that show a task meant to run); `None`: moto's answers as they are.
    provisioning: Option<usize>,
    /// RunInstances answers show the instance pending, without its public IP.
    pending_instances: bool,
}

impl Counting {
    /// Forwards to `upstream` (`host:port`).
    pub fn start(upstream: &str) -> Counting {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let calls = Arc::new(Mutex::new(Vec::new()));
        let rules = Arc::new(Mutex::new(Rules::default()));
        let (log, upstream, r) = (calls.clone(), upstream.to_string(), rules.clone());
        let tokens: Arc<Tokens> = Arc::default();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (log, upstream, r, t) =
                    (log.clone(), upstream.clone(), r.clone(), tokens.clone());
                std::thread::spawn(move || {
                    let _ = forward(conn, &upstream, &log, &r, &t);
                });
            }
        });
        Counting { url, calls, rules }
    }

    /// From now on a task has no address in RunTask's answer nor in the next `describes`
    /// DescribeTasks answers (`usize::MAX`: never).
    pub fn provision_tasks_for(&self, describes: usize) {
        self.rules.lock().unwrap().provisioning = Some(describes);
    }

    /// From now on RunInstances answers with the instance pending, before its public IP.
    pub fn pending_instances(&self) {
        self.rules.lock().unwrap().pending_instances = true;
    }

    /// Calls so far, by operation.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for c in self.calls.lock().unwrap().iter() {
            *m.entry(c.clone()).or_insert(0) += 1;
        }
        m
    }

    pub fn total(&self) -> usize {
        self.calls.lock().unwrap().len()
    }
}

fn forward(
    conn: TcpStream,
    upstream: &str,
    log: &Mutex<Vec<String>>,
    rules: &Mutex<Rules>,
    tokens: &Tokens,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut head = Vec::new();
    let mut length = 0usize;
    let mut target = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("x-amz-target:") {
            target = line
                .split(':')
                .nth(1)
                .map(|t| t.trim().rsplit('.').next().unwrap_or("").to_string());
        }
        if lower.starts_with("connection:") {
            continue;
        }
        if line == "\r\n" {
            head.extend_from_slice(b"Connection: close\r\n\r\n");
            break;
        }
        head.extend_from_slice(line.as_bytes());
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let op = target.unwrap_or_else(|| {
        String::from_utf8_lossy(&body)
            .split('&')
            .find_map(|kv| kv.strip_prefix("Action=").map(str::to_string))
            .unwrap_or_else(|| "?".into())
    });
    log.lock().unwrap().push(op.clone());
    let token = (op == "RunTask")
        .then(|| serde_json::from_slice::<serde_json::Value>(&body).ok())
        .flatten()
        .and_then(|v| v["clientToken"].as_str().map(str::to_string));
    let mut conn = conn;
    if let Some(token) = &token {
        // The lock is held through the call: a second request of the token waits for the first.
        let mut known = tokens.lock().unwrap();
        if let Some((first, answer)) = known.get(token) {
            let answer = if *first == body {
                answer.clone()
            } else {
                conflict(token)
            };
            conn.write_all(&answer)?;
            return conn.shutdown(std::net::Shutdown::Both);
        }
        let answer = call(upstream, &head, &body)?;
        let answer = rewrite(&op, answer, &mut rules.lock().unwrap());
        known.insert(token.clone(), (body, answer.clone()));
        conn.write_all(&answer)?;
        return conn.shutdown(std::net::Shutdown::Both);
    }
    let answer = call(upstream, &head, &body)?;
    let answer = rewrite(&op, answer, &mut rules.lock().unwrap());
    conn.write_all(&answer)?;
    conn.shutdown(std::net::Shutdown::Both)
}

fn call(upstream: &str, head: &[u8], body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut up = TcpStream::connect(upstream)?;
    up.write_all(head)?;
    up.write_all(body)?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer)?;
    Ok(answer)
}

/// ECS's answer to a client token used again with other parameters.
fn conflict(token: &str) -> Vec<u8> {
    let body = serde_json::json!({
        "__type": "ConflictException",
        "message": format!("The client token {token} was used with different parameters"),
    })
    .to_string();
    format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/x-amz-json-1.1\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The answer to `op` as the rules want it; a `Content-Length` answer (moto's) is rewritten
/// with its new length, anything else goes back as it came.
fn rewrite(op: &str, answer: Vec<u8>, rules: &mut Rules) -> Vec<u8> {
    let tasks = matches!(op, "RunTask" | "DescribeTasks") && rules.provisioning.is_some();
    let instances = op == "RunInstances" && rules.pending_instances;
    if !(tasks || instances) {
        return answer;
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return answer;
    };
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    if chunked || !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return answer;
    }
    let new_body = if instances {
        pending_instance(body)
    } else {
        let Ok(mut v) = serde_json::from_str::<serde_json::Value>(body) else {
            return answer;
        };
        let left = rules.provisioning.unwrap_or(0);
        let mut changed = false;
        if op == "RunTask" || left > 0 {
            for t in v["tasks"].as_array_mut().into_iter().flatten() {
                changed |= provisioning(t);
            }
        }
        if changed && op == "DescribeTasks" {
            rules.provisioning = Some(left.saturating_sub(1));
        }
        v.to_string()
    };
    let head: Vec<String> = head
        .split("\r\n")
        .map(|l| {
            if l.to_ascii_lowercase().starts_with("content-length:") {
                format!("Content-Length: {}", new_body.len())
            } else {
                l.to_string()
            }
        })
        .collect();
    format!("{}\r\n\r\n{new_body}", head.join("\r\n")).into_bytes()
}

/// A task meant to run as ECS shows it before its network interface is attached: PROVISIONING,
/// the attachment PRECREATED with its subnet only, the containers PENDING without interfaces.
fn provisioning(t: &mut serde_json::Value) -> bool {
    if t["desiredStatus"] != "RUNNING" || t["lastStatus"] == "STOPPED" {
        return false;
    }
    t["lastStatus"] = "PROVISIONING".into();
    for a in t["attachments"].as_array_mut().into_iter().flatten() {
        a["status"] = "PRECREATED".into();
        if let Some(d) = a["details"].as_array_mut() {
            d.retain(|kv| kv["name"] == "subnetId");
        }
    }
    for c in t["containers"].as_array_mut().into_iter().flatten() {
        c["lastStatus"] = "PENDING".into();
        if let Some(c) = c.as_object_mut() {
            c.remove("networkInterfaces");
        }
    }
    true
}

/// RunInstances' answer as EC2 gives it: the instance pending, its public IP not yet assigned
/// (no `ipAddress`, `dnsName` or public `association`).
fn pending_instance(xml: &str) -> String {
    let mut out = xml.to_string();
    for tag in ["ipAddress", "dnsName", "association"] {
        let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
        while let Some(start) = out.find(&open) {
            let Some(end) = out[start..].find(&close) else {
                break;
            };
            out.replace_range(start..start + end + close.len(), "");
        }
    }
    out.replace("<name>running</name>", "<name>pending</name>")
        .replace("<code>16</code>", "<code>0</code>")
}
