//! Hostile requests a well-formed HTTP client can send (reqwest): malformed JSON and multipart bodies, wrong types,
//! bad numbers, oversized fields and bodies, control characters, traversal in ids, unknown routes and methods.
//! Each is built to be invalid in exactly the way its category says; the answer must be a 4xx with OpenAI's error
//! body (`{"error": {"message", "type", …}}`, a non-empty message).

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::tally::{Rng, Verdict};

mod bodies;
mod paths;

/// One request.
pub struct Case {
    pub cat: &'static str,
    pub method: Method,
    pub path: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<Vec<u8>>,
}

impl Case {
    pub fn what(&self) -> String {
        let b = self.body.as_deref().unwrap_or_default();
        let (head, tail) = (&b[..b.len().min(100)], &b[b.len().saturating_sub(100).max(b.len().min(100))..]);
        let (head, tail) = (String::from_utf8_lossy(head), String::from_utf8_lossy(tail));
        format!("{} {} ({} bytes) {head:?} … {tail:?}", self.method, self.path, b.len())
    }
}

/// Judges an HTTP answer that must be a refusal with OpenAI's error body.
pub fn judge(status: u16, body: &[u8]) -> Verdict {
    let text = || String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    match status {
        200..=399 => Verdict::Accepted(format!("{status} {}", text())),
        400..=499 => {
            let v: Option<Value> = serde_json::from_slice(body).ok();
            let err = v.as_ref().and_then(|v| v.get("error"));
            let message = err.and_then(|e| e.get("message")).and_then(Value::as_str).unwrap_or("");
            let kind = err.and_then(|e| e.get("type")).and_then(Value::as_str).unwrap_or("");
            if message.trim().is_empty() || kind.is_empty() {
                Verdict::Unhelpful(format!("{status} without an OpenAI error body: {:?}", text()))
            } else {
                Verdict::Handled
            }
        }
        _ => Verdict::Crashed(format!("{status} {}", text())),
    }
}

/// Sends `c` and judges the answer. A job created by mistake is deleted, so it costs no compute.
pub async fn run(client: &reqwest::Client, base: &str, c: &Case) -> Verdict {
    let mut req = client.request(c.method.clone(), format!("{base}{}", c.path));
    for (k, v) in &c.headers {
        req = req.header(*k, v.as_str());
    }
    if let Some(b) = &c.body {
        req = req.body(b.clone());
    }
    let sent = tokio::time::timeout(Duration::from_secs(60), async {
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        Ok::<_, reqwest::Error>((status, resp.bytes().await?))
    });
    let (status, body) = match sent.await {
        Err(_) => return Verdict::Crashed("no answer within 60 s".into()),
        Ok(Err(e)) => return Verdict::Crashed(format!("{e:?}")),
        Ok(Ok(r)) => r,
    };
    let verdict = judge(status, &body);
    if let Verdict::Accepted(_) = verdict
        && let Some(id) = serde_json::from_slice::<Value>(&body).ok().and_then(|v| v["id"].as_str().map(String::from))
        && id.starts_with("video_")
    {
        let _ = client.delete(format!("{base}/v1/videos/{id}")).send().await;
    }
    verdict
}

/// The fields of a valid request, as raw JSON values (every case breaks it in one way).
const BASE: &[(&str, &str)] = &[
    ("prompt", "\"a red circle moving right\""),
    ("seconds", "\"1\""),
    ("size", "\"64x64\""),
    ("num_inference_steps", "2"),
];

/// [`BASE`] with `field` set to the raw JSON `raw` (written as text, so `1e309` and `NaN` reach the server as sent).
fn with(field: &str, raw: &str) -> Vec<u8> {
    let mut parts: Vec<String> =
        BASE.iter().filter(|(k, _)| *k != field).map(|(k, v)| format!("\"{k}\": {v}")).collect();
    parts.push(format!("{}: {raw}", json!(field)));
    format!("{{{}}}", parts.join(", ")).into_bytes()
}

fn post_json(cat: &'static str, path: &str, body: Vec<u8>) -> Case {
    let headers = vec![("content-type", "application/json".to_string())];
    Case { cat, method: Method::POST, path: path.into(), headers, body: Some(body) }
}

/// A multipart form of text fields and file parts (`Some(file name)`), with `boundary`.
pub fn form(boundary: &str, parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, file, data) in parts {
        out.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"").as_bytes());
        if let Some(f) = file {
            out.extend_from_slice(format!("; filename=\"{f}\"\r\nContent-Type: application/octet-stream").as_bytes());
        }
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

fn post_form(cat: &'static str, path: &str, boundary: &str, body: Vec<u8>) -> Case {
    let headers = vec![("content-type", format!("multipart/form-data; boundary={boundary}"))];
    Case { cat, method: Method::POST, path: path.into(), headers, body: Some(body) }
}

/// The creating endpoints (`video_0` ids name no job).
const CREATE: &[&str] = &["/v1/videos", "/v1/videos/edits", "/v1/videos/extensions"];

/// Control characters a prompt must not hold (C0 but tab, newline, carriage return; DEL; C1).
pub fn controls() -> Vec<char> {
    (0u32..0x20)
        .filter(|c| ![9, 10, 13].contains(c))
        .chain([0x7f])
        .chain(0x80..0xa0)
        .filter_map(char::from_u32)
        .collect()
}

/// Ids a job never has: traversal, encodings of it, NUL, junk, too long.
pub fn hostile_ids() -> Vec<String> {
    let mut ids: Vec<String> = [
        "..",
        "...",
        "%2e%2e",
        "%2E%2E",
        "..%2F..%2Fetc%2Fpasswd",
        "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "..%5c..%5cwindows",
        "%252e%252e%252f",
        "%c0%ae%c0%ae%c0%af",
        "%00",
        "video_%00",
        "video_0%00.mp4",
        "....%2F%2F....%2F%2F",
        "%2Fetc%2Fpasswd",
        "jobs%2Fvideo_0%2Fvideo.mp4",
        "video_0%20",
        "v%C3%ADdeo",
        "%ff%fe",
        "%3B",
        "*",
        "%27%3B%20DROP%20TABLE%20jobs%3B%20--",
        "video_0%0d%0aX-Injected:%201",
        "%25",
        "%",
        "%zz",
        "video_..",
        "..%00",
        "%e2%80%ae",
        "video_0%2F..",
    ]
    .map(String::from)
    .to_vec();
    ids.push(format!("video_{}", "a".repeat(300)));
    ids.push("x".repeat(5000));
    ids
}

/// `%XX` decoded (lossy), for putting a path id into a JSON body.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every reqwest-borne case, in a fixed order for `seed`.
pub fn cases(seed: u64, mp4: &[u8], max_body: usize, max_reference: usize) -> Vec<Case> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    bodies::malformed_json(&mut rng, &mut out);
    bodies::malformed_multipart(&mut rng, mp4, &mut out);
    bodies::wrong_types(&mut out);
    bodies::bad_numbers(&mut out);
    bodies::oversized(&mut out, max_body, max_reference);
    paths::control_chars(&mut out);
    paths::traversal(&mut out);
    paths::routes_and_methods(&mut out);
    out
}
