//! Hostile HTTP/1 on a bare TCP socket, where no client library would let it through: malformed header lines,
//! literal `..` in request targets, broken framing and request lines, bodies that stall, heads that never end.
//!
//! What the gateway can parse must get a 4xx with OpenAI's error body ([`Expect::Json`]); what hyper cannot parse
//! never reaches the router and gets hyper's own bare 4xx, then the connection is closed ([`Expect::Bare`]).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::tally::{Rng, Verdict};
use crate::web::{controls, judge};

/// What the answer must be.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Expect {
    /// A 4xx with OpenAI's error body.
    Json,
    /// hyper's bare 4xx (no body) and a closed connection.
    Bare,
}

/// Bytes to send on a fresh connection.
pub struct Case {
    pub cat: &'static str,
    pub bytes: Vec<u8>,
    pub expect: Expect,
}

impl Case {
    pub fn what(&self) -> String {
        format!("{:?}", String::from_utf8_lossy(&self.bytes[..self.bytes.len().min(160)]))
    }
}

/// A head and body refused by the router whatever the head's junk does (the prompt is a NUL).
const NUL_BODY: &str = "{\"prompt\": \"\\u0000\"}";

fn request(target: &str, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {target} HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\nContent-Type: application/json\r\n{extra}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The status, headers and body of the first response in `bytes` (body per Content-Length or chunked).
fn parse(mut bytes: &[u8]) -> Option<(u16, String, Vec<u8>)> {
    let (status, head, rest) = loop {
        let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&bytes[..end]).to_string();
        let status: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
        bytes = &bytes[end + 4..];
        // Interim answers (100 Continue) come before the answer.
        if status >= 200 {
            break (status, head, bytes);
        }
    };
    let lower = head.to_ascii_lowercase();
    let body = if lower.contains("transfer-encoding: chunked") {
        let mut out = Vec::new();
        let mut r = rest;
        loop {
            let nl = r.windows(2).position(|w| w == b"\r\n")?;
            let n = usize::from_str_radix(std::str::from_utf8(&r[..nl]).ok()?.trim(), 16).ok()?;
            if n == 0 {
                break;
            }
            out.extend_from_slice(r.get(nl + 2..nl + 2 + n)?);
            r = r.get(nl + 4 + n..)?;
        }
        out
    } else {
        let len = lower.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok());
        rest[..len.unwrap_or(rest.len()).min(rest.len())].to_vec()
    };
    Some((status, head, body))
}

/// Reads until the server closes (or `limit` passes); returns what came and whether it closed.
async fn read_all(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool, Option<String>) {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 16 << 10];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return (got, false, None),
            Ok(Ok(0)) => return (got, true, None),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => return (got, true, Some(e.to_string())),
        }
    }
}

/// Sends `c` and judges the answer.
pub async fn run(addr: SocketAddr, c: &Case) -> Verdict {
    let Ok(mut s) = TcpStream::connect(addr).await else { return Verdict::Crashed("connect refused".into()) };
    // The server may answer and close before reading everything; what it answered is still in our buffer.
    let _ = s.write_all(&c.bytes).await;
    let (got, closed, err) = read_all(&mut s, Duration::from_secs(30)).await;
    let Some((status, _, body)) = parse(&got) else {
        let how = if closed { format!("closed without an answer ({err:?})") } else { "no answer within 30 s".into() };
        return Verdict::Crashed(how);
    };
    match c.expect {
        Expect::Json => judge(status, &body),
        // hyper's own answer has no body; one the router gave (hyper could parse it after all) has the JSON body.
        Expect::Bare if (400..500).contains(&status) => Verdict::Handled,
        Expect::Bare => judge(status, &body),
    }
}

/// Malformed header lines the server skips (the request is then refused for its NUL prompt) or refuses.
fn headers(rng: &mut Rng, out: &mut Vec<Case>) {
    let cat = "http: malformed headers";
    let mut lines: Vec<String> = [
        "NoColonHere",
        "Bad Name: x",
        "X@Y: 1",
        "(x): 1",
        ": empty-name",
        "X-A:",
        "X-A :spaced",
        "X-\u{e9}: accented",
        "Authorization: Bearer",
        "Authorization: Basic !!!",
        "Authorization: Bearer \u{ff}\u{fe}",
        "Authorization:",
        "Idempotency-Key: \u{ff}",
        "Content-Encoding: gzip",
        "Content-Encoding: br, compress",
        "Expect: 100-continue",
        "Expect: nonsense",
        "Accept: */*;q=NaN",
        "Host: evil.example",
        "Host: ",
        "Traceparent: 00-zz-zz-01",
        "Traceparent: 00-00000000000000000000000000000000-0000000000000000-00",
        "Tracestate: ,,,,=====",
        "Content-Type: application/json; charset=utf-7",
        "X-Forwarded-For: 999.999.999.999",
        "Cookie: a=\u{7f}",
        "Range: bytes=-1-2",
        "If-None-Match: \u{1}",
        "Upgrade: websocket",
        "Upgrade: h2c",
    ]
    .map(String::from)
    .to_vec();
    // NUL is left out: a header line holding one is a framing error (see `framing`).
    for c in controls().into_iter().filter(|&c| c != '\0') {
        lines.push(format!("X-Ctl: a{c}b"));
        lines.push(format!("Idempotency-Key: k{c}"));
    }
    lines.push(format!("X-Huge: {}", "h".repeat(32 << 10)));
    lines.push(format!("Authorization: Bearer {}", "k".repeat(10 << 10)));
    for _ in 0..20 {
        let n = rng.range(1, 64);
        let junk: String = rng.bytes(n).iter().map(|&b| char::from(b'!' + b % 90)).collect();
        lines.push(format!("X-Junk-{n}: {junk}"));
    }
    for line in &lines {
        out.push(Case { cat, bytes: request("/v1/videos", &format!("{line}\r\n"), NUL_BODY), expect: Expect::Json });
    }
    // Content types the router cannot read as JSON or a form.
    for ct in ["multipart/form-data", "text/plain", "application/x-www-form-urlencoded", "\u{1}"] {
        let bytes = request("/v1/videos", "", "prompt=x");
        let text =
            String::from_utf8_lossy(&bytes).replace("Content-Type: application/json", &format!("Content-Type: {ct}"));
        out.push(Case { cat, bytes: text.into_bytes(), expect: Expect::Json });
    }
    // A chunked body that breaks part-way (or never ends: the body read timeout ends it), or that also declares a
    // length: the body read fails, the handler refuses it.
    for (extra, tail) in [
        ("", "zz\r\nxx\r\n"),
        ("", "5\r\n{\"pro\r\nffffffffffffffffff\r\n"),
        ("", "3\r\n{\"p\r\n"),
        ("Content-Length: 5\r\n", NUL_BODY),
    ] {
        let head = format!(
            "POST /v1/videos HTTP/1.1\r\nHost: g\r\nConnection: close\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\n{extra}\r\n"
        );
        out.push(Case { cat, bytes: format!("{head}{tail}").into_bytes(), expect: Expect::Json });
    }
}

/// Request targets with literal `..` and other things only a raw request carries.
fn targets(out: &mut Vec<Case>) {
    let cat = "http: `..` and odd request targets";
    let paths = [
        "/v1/videos/../../etc/passwd",
        "/../../../etc/passwd",
        "/v1/videos/..",
        "/v1/videos/../models/..",
        "/v1/./videos/x",
        "/v1/videos/..;/x",
        "/v1/videos/.%2e/x",
        "/v1/videos/video_0/../../../..",
        "/v1/videos/%2e%2e",
        "/v1/videos/video_0/content/../../../../etc/passwd",
        "/./././",
        "/v1/videos/ ",
        "*",
        "/v1/videos?after=../../x",
        "/v1/videos/..%00",
        "/v1/videos\\..\\..\\x",
        "/v1/{id}",
        "/v1/videos/\"x\"",
        "/\u{ff}",
        "/v1/videos/|",
        "/v1/videos/^[]",
    ];
    for path in paths {
        for method in ["GET", "DELETE", "POST"] {
            let bytes = format!(
                "{method} {} HTTP/1.1\r\nHost: g\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                path.replace(' ', "%20")
            );
            out.push(Case { cat, bytes: bytes.into_bytes(), expect: Expect::Json });
        }
    }
}

/// What hyper answers itself: broken request lines and framing headers, oversized heads.
fn framing(rng: &mut Rng, out: &mut Vec<Case>) {
    let cat = "http: framing (hyper's bare answer)";
    let heads = [
        "G@T / HTTP/1.1",
        "GET / HTTP/9.9",
        "GET / HTTP/1.1 extra",
        "GET /v1/vid eos HTTP/1.1",
        "GET /\u{1} HTTP/1.1",
        "GET\t/ HTTP/1.1",
        " GET / HTTP/1.1",
        "GET / FTP/1.1",
        "GET / HTTP/1.",
        "\u{0}\u{1}\u{2}",
        "GET /\u{7f} HTTP/1.1",
        "GET /v1/videos/<script> HTTP/1.1",
        "DELETE /v1/videos/a>b HTTP/1.1",
        "GET /v1/`x` HTTP/1.1",
        "GET",
        "GET /",
    ];
    for h in heads {
        let bytes = format!("{h}\r\nHost: g\r\nConnection: close\r\n\r\n").into_bytes();
        out.push(Case { cat, bytes, expect: Expect::Bare });
    }
    let framing_headers = [
        "Content-Length: abc",
        "Content-Length: -1",
        "Content-Length: 1, 2",
        "Content-Length: 5\r\nContent-Length: 6",
        "Content-Length: 99999999999999999999999",
        "Content-Length: +5",
        "Transfer-Encoding: gzip",
        "Transfer-Encoding: chunked, gzip",
        "Transfer-Encoding: identity",
        // A NUL or a lone carriage return in a header line: hyper refuses the head rather than skip the line.
        "X-Ctl: a\0b",
        "Idempotency-Key: k\0",
        "X\0: y",
        "X-A: a\rb",
        "X-A\r: b",
    ];
    for h in framing_headers {
        let bytes = format!("POST /v1/videos HTTP/1.1\r\nHost: g\r\nConnection: close\r\n{h}\r\n\r\n{NUL_BODY}");
        out.push(Case { cat, bytes: bytes.into_bytes(), expect: Expect::Bare });
    }
    // More header lines than hyper takes (100), and a URI longer than it takes (64 KiB).
    let many: String = (0..101).map(|i| format!("X-{i}: {i}\r\n")).collect();
    out.push(Case {
        cat,
        bytes: format!("GET /v1/models HTTP/1.1\r\nHost: g\r\n{many}\r\n").into_bytes(),
        expect: Expect::Bare,
    });
    let long = format!("GET /v1/videos/{} HTTP/1.1\r\nHost: g\r\n\r\n", "a".repeat(70_000));
    out.push(Case { cat, bytes: long.into_bytes(), expect: Expect::Bare });
    // Random bytes where a request line should be.
    for _ in 0..120 {
        let n = rng.range(1, 300);
        let mut bytes = rng.bytes(n);
        bytes[0] = b'#';
        bytes.extend_from_slice(b"\r\n\r\n");
        out.push(Case { cat, bytes, expect: Expect::Bare });
    }
}

/// Every raw case, in a fixed order for `seed`.
pub fn cases(seed: u64) -> Vec<Case> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    headers(&mut rng, &mut out);
    targets(&mut out);
    framing(&mut rng, &mut out);
    out
}

/// Opens `n` connections that each declare a 1,000-byte JSON body and send 10 bytes of it, then wait. Each must get
/// 408 with OpenAI's error body and be closed within `timeout` (plus scheduling slack).
pub async fn stalled_bodies(addr: SocketAddr, n: usize, timeout: Duration) -> Vec<Verdict> {
    let conns = (0..n).map(|_| async move {
        let Ok(mut s) = TcpStream::connect(addr).await else { return Verdict::Crashed("connect refused".into()) };
        let head =
            "POST /v1/videos HTTP/1.1\r\nHost: g\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n";
        let start = Instant::now();
        if s.write_all(format!("{head}{{\"prompt\":").as_bytes()).await.is_err() {
            return Verdict::Crashed("write failed".into());
        }
        let (got, closed, _) = read_all(&mut s, timeout + Duration::from_secs(20)).await;
        let took = start.elapsed();
        match parse(&got) {
            Some((408, _, body)) if closed && took >= timeout.saturating_sub(Duration::from_millis(100)) => {
                judge(408, &body)
            }
            Some((status, _, _)) => Verdict::Crashed(format!("{status} after {took:?}, closed: {closed}")),
            None => Verdict::Crashed(format!("no answer after {took:?}, closed: {closed}")),
        }
    });
    futures::future::join_all(conns).await
}

/// Opens `n` connections whose request head never ends (half of them dripping a byte every 200 ms); each must be
/// closed by the server within `timeout` (plus slack). There is no answer to give: no request was read.
pub async fn unfinished_heads(addr: SocketAddr, n: usize, timeout: Duration) -> Vec<Verdict> {
    let conns = (0..n).map(|i| async move {
        let Ok(mut s) = TcpStream::connect(addr).await else { return Verdict::Crashed("connect refused".into()) };
        let start = Instant::now();
        let _ = s.write_all(b"POST /v1/videos HTTP/1.1\r\nHost: g\r\nX-Slow: ").await;
        let limit = timeout + Duration::from_secs(20);
        let closed = if i % 2 == 0 {
            read_all(&mut s, limit).await.1
        } else {
            let mut ticker = tokio::time::interval(Duration::from_millis(200));
            let mut buf = [0u8; 1024];
            loop {
                tokio::select! {
                    _ = ticker.tick() => if s.write_all(b"x").await.is_err() { break true },
                    r = s.read(&mut buf) => if matches!(r, Ok(0) | Err(_)) { break true },
                }
                if start.elapsed() > limit {
                    break false;
                }
            }
        };
        let took = start.elapsed();
        if closed && took <= timeout + Duration::from_secs(5) {
            Verdict::Handled
        } else {
            Verdict::Crashed(format!("closed: {closed} after {took:?}"))
        }
    });
    futures::future::join_all(conns).await
}
