//! A counting proxy in front of moto: each request's `X-Amz-Target` (or `Action=`) is recorded,
//! so a test can count the AWS calls a job's executables made across their processes. One
//! request per connection (`Connection: close` both ways), which the clients handle.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

pub struct Counting {
    pub url: String,
    calls: Arc<Mutex<Vec<String>>>,
}

impl Counting {
    /// Forwards to `upstream` (`host:port`).
    pub fn start(upstream: &str) -> Counting {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let calls = Arc::new(Mutex::new(Vec::new()));
        let (log, upstream) = (calls.clone(), upstream.to_string());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (log, upstream) = (log.clone(), upstream.clone());
                std::thread::spawn(move || {
                    let _ = forward(conn, &upstream, &log);
                });
            }
        });
        Counting { url, calls }
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

fn forward(conn: TcpStream, upstream: &str, log: &Mutex<Vec<String>>) -> std::io::Result<()> {
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
    log.lock().unwrap().push(op);
    let mut up = TcpStream::connect(upstream)?;
    up.write_all(&head)?;
    up.write_all(&body)?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer)?;
    let mut conn = conn;
    conn.write_all(&answer)?;
    conn.shutdown(std::net::Shutdown::Both)
}
