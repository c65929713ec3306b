//! A small HTTP/1.1 client for the admin port: one request per connection
//! (`Connection: close`), blocking std sockets, so tests read as plain steps. Every
//! answer is checked for whole PANs of the test data before a test sees it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub const TOKEN: &str = "test-admin-token-not-secret";

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The admin port of one switch, and the PANs no answer may contain.
pub struct Admin {
    pub addr: SocketAddr,
    pub pans: Vec<String>,
}

impl Admin {
    pub fn get(&self, path: &str) -> HttpResponse {
        self.request("GET", path, None, None)
    }

    /// With the configured token.
    pub fn api_get(&self, path: &str) -> HttpResponse {
        self.request("GET", path, Some(TOKEN), None)
    }

    pub fn api_post(&self, path: &str, body: &str) -> HttpResponse {
        self.request("POST", path, Some(TOKEN), Some(body))
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> HttpResponse {
        let response = http(self.addr, method, path, token, body);
        for pan in &self.pans {
            assert!(
                !response.body.contains(pan.as_str()),
                "{method} {path}: the answer contains a whole PAN"
            );
        }
        response
    }
}

pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).expect("connect to the admin port");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    let body = body.unwrap_or("");
    if method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("write head");
    stream.write_all(body.as_bytes()).expect("write body");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read answer");
    parse(&raw)
}

fn parse(raw: &[u8]) -> HttpResponse {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("a whole HTTP answer");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if size == 0 {
            break;
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
    out
}

/// The sum of a counter's series whose labels satisfy `keep`, from Prometheus text.
pub fn metric_sum(text: &str, name: &str, keep: impl Fn(&str) -> bool) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let labels = series.strip_prefix(name)?;
            if !(labels.is_empty() || labels.starts_with('{')) {
                return None;
            }
            keep(labels).then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// Approved and declined transactions (network management left out), as the
/// dashboard counts them.
pub fn approved_declined(metrics_text: &str) -> (u64, u64) {
    let txn = |l: &str| !l.contains("mti=\"08");
    let approved = metric_sum(metrics_text, "multiguna_requests_total", |l| {
        txn(l) && l.contains("rc=\"00\"")
    });
    let declined = metric_sum(metrics_text, "multiguna_requests_total", |l| {
        txn(l) && !l.contains("rc=\"00\"")
    });
    (approved as u64, declined as u64)
}
