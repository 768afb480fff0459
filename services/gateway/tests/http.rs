//! The OpenAI-compatible HTTP front and admission, against a real gateway: create (JSON and multipart, as the SDK
//! sends it) → SSE progress → retrieve → content (video, thumbnail, spritesheet) → list → delete; and every refusal
//! — no key, bad key, over rate, over quota, policy, malformed body, absurd size — with the right status, an
//! OpenAI-style error body, Retry-After on 429, and no job stored for what was refused.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::{Gateway, gateway_config, no_stages, sqlite, stages as start_stages};
use futures::StreamExt as _;
use serde_json::{Value, json};
use tonic::Code;
use vidmesh_gateway::config::{PolicyCategory, TenantConfig};
use vidmesh_proto::gateway::v1::{GenerateRequest, ListJobsRequest};
use vidmesh_testkit::Raw;

/// Reads an SSE stream to its end: (event name, data JSON) pairs.
async fn sse(resp: reqwest::Response) -> Vec<(String, Value)> {
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    while let Some(chunk) = body.next().await {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    text.split("\n\n")
        .filter_map(|block| {
            let mut name = None;
            let mut data = None;
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event: ").or_else(|| line.strip_prefix("event:")) {
                    name = Some(n.trim().to_string());
                }
                if let Some(d) = line.strip_prefix("data: ").or_else(|| line.strip_prefix("data:")) {
                    data = Some(serde_json::from_str(d.trim()).unwrap());
                }
            }
            Some((name?, data?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_openai_videos_api_creates_streams_downloads_lists_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let stages = start_stages(dir.path()).await;
    let gw = Gateway::start(gateway_config(&stages, dir.path(), &sqlite(dir.path()))).await;
    let http = reqwest::Client::new();

    // JSON body with vidmesh's extensions.
    let created: Value = http
        .post(gw.url("/v1/videos"))
        .json(&json!({"prompt": "a red circle moving right", "model": "vidmesh-tiny", "seconds": "1",
                      "size": "96x64", "num_inference_steps": 3, "seed": 11}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((created["object"].as_str(), created["status"].as_str()), (Some("video"), Some("queued")));
    assert_eq!((created["size"].as_str(), created["seconds"].as_str()), (Some("96x64"), Some("1")));
    let id = created["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("video_"));

    // Progress as server-sent events, to the end.
    let events = sse(http.get(gw.url(&format!("/v1/videos/{id}/events"))).send().await.unwrap()).await;
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"accepted"));
    assert_eq!(names.last(), Some(&"completed"), "{names:?}");
    assert_eq!(names.iter().filter(|n| **n == "denoising").count(), 3);
    // Resuming after a sequence number (Last-Event-ID) gives the rest only.
    let tail =
        sse(http.get(gw.url(&format!("/v1/videos/{id}/events"))).header("last-event-id", "4").send().await.unwrap())
            .await;
    assert_eq!(tail.len(), events.len() - 4);
    assert_eq!(tail[0].1["sequence"], 5);

    let got = http.get(gw.url(&format!("/v1/videos/{id}"))).send().await.unwrap();
    assert!(got.headers().contains_key("openai-poll-after-ms"));
    let got: Value = got.json().await.unwrap();
    assert_eq!((got["status"].as_str(), got["progress"].as_i64()), (Some("completed"), Some(100)));
    assert_eq!(got["detection"]["verdict"], "generated");

    let mp4 = http.get(gw.url(&format!("/v1/videos/{id}/content"))).send().await.unwrap();
    assert_eq!(mp4.headers()["content-type"], "video/mp4");
    let mp4 = mp4.bytes().await.unwrap();
    assert_eq!(&mp4[4..8], b"ftyp");
    let decoded = vidmesh_video::decode_video(&mp4).unwrap();
    assert_eq!((decoded.width, decoded.height, decoded.frames.len()), (96, 64, 8));
    for variant in ["thumbnail", "spritesheet"] {
        let png = http.get(gw.url(&format!("/v1/videos/{id}/content?variant={variant}"))).send().await.unwrap();
        assert_eq!(png.status(), 200, "{variant}");
        assert_eq!(&png.bytes().await.unwrap()[1..4], b"PNG", "{variant}");
    }
    let bad = http.get(gw.url(&format!("/v1/videos/{id}/content?variant=gif"))).send().await.unwrap();
    assert_eq!(bad.status(), 400);

    // The SDK's create: a multipart form with string fields.
    let form = reqwest::multipart::Form::new()
        .text("prompt", "a blue square moving up")
        .text("seconds", "1")
        .text("num_inference_steps", "6")
        .text("cache", "fast");
    let second: Value = http.post(gw.url("/v1/videos")).multipart(form).send().await.unwrap().json().await.unwrap();
    let second_id = second["id"].as_str().unwrap().to_string();
    assert_eq!(second["cache"], "fast", "the step-caching tier is kept on the job");
    let events = sse(http.get(gw.url(&format!("/v1/videos/{second_id}/events"))).send().await.unwrap()).await;
    assert_eq!(events.last().map(|(n, _)| n.as_str()), Some("completed"), "{events:?}");
    let first: Value = http.get(gw.url(&format!("/v1/videos/{id}"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(first["cache"], "off", "no tier asked: the model's default");

    let list: Value = http.get(gw.url("/v1/videos?limit=1")).send().await.unwrap().json().await.unwrap();
    assert_eq!((list["object"].as_str(), list["has_more"].as_bool()), (Some("list"), Some(true)));
    assert_eq!(list["data"][0]["id"], second_id.as_str(), "newest first");
    let after = list["last_id"].as_str().unwrap();
    let page: Value =
        http.get(gw.url(&format!("/v1/videos?limit=1&after={after}"))).send().await.unwrap().json().await.unwrap();
    assert_eq!((page["data"][0]["id"].as_str(), page["has_more"].as_bool()), (Some(id.as_str()), Some(false)));
    let asc: Value = http.get(gw.url("/v1/videos?order=asc")).send().await.unwrap().json().await.unwrap();
    assert_eq!(asc["data"][0]["id"], id.as_str());

    let deleted: Value = http.delete(gw.url(&format!("/v1/videos/{id}"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(deleted, json!({"id": id, "object": "video.deleted", "deleted": true}));
    let gone = http.get(gw.url(&format!("/v1/videos/{id}"))).send().await.unwrap();
    assert_eq!(gone.status(), 404);
    let err: Value = gone.json().await.unwrap();
    assert!(err["error"]["message"].as_str().unwrap().contains(&id));
    assert!(!dir.path().join(format!("jobs/{id}/video.mp4")).exists(), "outputs deleted");
    gw.stop().await;
    stages.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_clear_and_spend_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // No stages run here: whatever is admitted waits (the denoiser endpoint refuses connections and retries back
    // off for a minute), and whatever is refused must not be stored at all.
    let stages = no_stages();
    let mut config = gateway_config(&stages, dir.path(), &sqlite(dir.path()));
    (config.stages.text_encoder.backoff_ms, config.stages.text_encoder.max_backoff_ms) = (60_000, 60_000);
    config.http.max_body_bytes = 1 << 20;
    config.admission.anonymous_tenant = String::new();
    config.admission.tenants = vec![
        TenantConfig {
            name: "acme".into(),
            key_sha256: vec![vidmesh_storage::sha256_hex(b"sk-acme")],
            max_active_jobs: 1,
            ..Default::default()
        },
        TenantConfig {
            name: "slow".into(),
            key_sha256: vec![vidmesh_storage::sha256_hex(b"sk-slow")],
            rate_per_minute: 1,
            burst: 1,
            ..Default::default()
        },
    ];
    config.policy.categories = vec![PolicyCategory {
        name: "weapons".into(),
        terms: vec!["machine gun".into()],
        reason: "weapons are not shown on this service".into(),
    }];
    let gw = Gateway::start(config).await;
    let http = reqwest::Client::new();
    let post = |key: Option<&str>, body: Value| {
        let mut r = http.post(gw.url("/v1/videos")).json(&body);
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r.send()
    };
    let ok = json!({"prompt": "a red circle", "seconds": "1"});

    let r = post(None, ok.clone()).await.unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key");
    assert_eq!(post(Some("sk-wrong"), ok.clone()).await.unwrap().status(), 401);

    let r = post(Some("sk-acme"), json!({"prompt": "a machine  gun on a hill"})).await.unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "content_policy_violation");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("weapons") && msg.contains("not shown"), "{msg}");

    for (bad, why) in [
        (json!({"prompt": "x", "size": "4096x4096"}), "64x64"),
        (json!({"prompt": "x", "seconds": "3600"}), "seconds"),
        (json!({"prompt": "x", "num_inference_steps": -3}), "whole number"),
        (json!({"prompt": ""}), "prompt is required"),
        (json!({"prompt": "x", "seed": "abc"}), "seed must be a number"),
        (
            json!({"prompt": "x", "cache": "turbo"}),
            "cache \"turbo\" is unknown; use one of [\"off\", \"balanced\", \"fast\"]",
        ),
    ] {
        let r = post(Some("sk-acme"), bad.clone()).await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        let body: Value = r.json().await.unwrap();
        assert!(body["error"]["message"].as_str().unwrap().contains(why), "{bad}: {body}");
    }
    let r = http
        .post(gw.url("/v1/videos"))
        .bearer_auth("sk-acme")
        .header("content-type", "application/json")
        .body("{\"prompt\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("not valid JSON"));
    // Bodies over http.max_body_bytes (1 MiB) are refused before they are buffered.
    let huge = format!("{{\"prompt\": \"{}\"}}", "x".repeat(2 << 20));
    let r = http
        .post(gw.url("/v1/videos"))
        .bearer_auth("sk-acme")
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let text = r.text().await.unwrap();
    assert!(text.contains("body"), "{text}");

    // Quota: acme may have one active job.
    assert_eq!(post(Some("sk-acme"), ok.clone()).await.unwrap().status(), 200);
    let r = post(Some("sk-acme"), ok.clone()).await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    // Rate: slow may submit once a minute.
    assert_eq!(post(Some("sk-slow"), ok.clone()).await.unwrap().status(), 200);
    let r = post(Some("sk-slow"), ok.clone()).await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.json::<Value>().await.unwrap()["error"]["message"].as_str().unwrap().contains("rate"));

    // The same over gRPC.
    let mut client = gw.client().await;
    let err = client.submit(GenerateRequest { prompt: "x".into(), ..Default::default() }).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let mut req = tonic::Request::new(GenerateRequest { prompt: "x".into(), ..Default::default() });
    req.metadata_mut().insert("authorization", "Bearer sk-acme".parse().unwrap());
    let err = client.submit(req).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(err.metadata().get("retry-after").is_some());
    assert!(vidmesh_runtime::status::retry_after(&err).is_some());
    let mut req = tonic::Request::new(GenerateRequest { prompt: "machine gun".into(), ..Default::default() });
    req.metadata_mut().insert("authorization", "Bearer sk-slow".parse().unwrap());
    assert_eq!(client.submit(req).await.unwrap_err().code(), Code::InvalidArgument);

    // Bytes that are not a protobuf message: INVALID_ARGUMENT, not an internal error.
    let channel =
        tonic::transport::Channel::from_shared(format!("http://{}", gw.grpc)).unwrap().connect().await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static("/vidmesh.gateway.v1.Gateway/Submit");
    let err = grpc.unary::<_, Vec<u8>, _>(tonic::Request::new(vec![0xff, 0xff, 0xff]), path, Raw).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("malformed protobuf"), "{}", err.message());

    // Only the two admitted jobs exist.
    for (key, n) in [("sk-acme", 1), ("sk-slow", 1)] {
        let mut req = tonic::Request::new(ListJobsRequest::default());
        req.metadata_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
        assert_eq!(client.list(req).await.unwrap().into_inner().jobs.len(), n, "{key}");
    }
    gw.shutdown.cancel();
}

/// Sends `bytes` on a fresh connection and reads until the server closes it (at most 10 s): what came back, and
/// how long it took.
async fn raw(addr: std::net::SocketAddr, bytes: &[u8]) -> (String, std::time::Duration) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let start = std::time::Instant::now();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut got = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "still open after 10 s; got {:?}", String::from_utf8_lossy(&got));
    (String::from_utf8_lossy(&got).into_owned(), start.elapsed())
}

/// The OpenAI error body of a raw answer (its body is the text after the head).
fn raw_error(answer: &str) -> Value {
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str::<Value>(body).unwrap_or_else(|e| panic!("{e}: {answer:?}"))["error"].clone()
}

/// Routing, extractor and timeout errors are OpenAI error bodies too, as a new user meets them: an unknown route,
/// a wrong method, `..` in a path, a malformed header, a prompt of only NUL, a body that stalls; a head that never
/// ends is closed; only what hyper cannot parse gets its bare 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_has_the_openai_body_and_stalled_reads_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let stages = no_stages();
    let mut config = gateway_config(&stages, dir.path(), &sqlite(dir.path()));
    (config.http.header_read_timeout_secs, config.http.body_read_timeout_secs) = (1, 1);
    let gw = Gateway::start(config).await;
    let http = reqwest::Client::new();
    let error = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
        (status, body["error"].clone())
    };

    let (status, e) = error(http.get(gw.url("/v1/vidoes")).send().await.unwrap()).await;
    assert_eq!((status, e["code"].as_str()), (404, Some("not_found")));
    assert!(e["message"].as_str().unwrap().contains("no route GET /v1/vidoes"), "{e}");
    let r = http.delete(gw.url("/v1/models")).send().await.unwrap();
    assert_eq!(r.headers()["allow"], "GET,HEAD");
    let (status, e) = error(r).await;
    assert_eq!((status, e["code"].as_str()), (405, Some("method_not_allowed")));
    assert!(e["message"].as_str().unwrap().contains("does not take DELETE; it takes GET, HEAD"), "{e}");
    let (status, e) = error(http.get(gw.url("/v1/videos/..%2F..%2Fetc%2Fpasswd")).send().await.unwrap()).await;
    assert_eq!(status, 404, "{e}");
    let (status, _) = error(http.get(gw.url("/v1/videos/%c0%ae%c0%ae")).send().await.unwrap()).await;
    assert_eq!(status, 400);
    let (status, e) = error(http.get(gw.url("/v1/videos?after=..%2Fx")).send().await.unwrap()).await;
    assert!(status == 400 && e["message"].as_str().unwrap().contains("not a video id"), "{e}");
    for prompt in ["\0", "\0\0\0", "\u{1b}[2J"] {
        let (status, e) =
            error(http.post(gw.url("/v1/videos")).json(&json!({"prompt": prompt})).send().await.unwrap()).await;
        assert!(status == 400 && e["message"].as_str().unwrap().contains("prompt holds"), "{prompt:?}: {e}");
    }
    let form = reqwest::multipart::Form::new()
        .text("prompt", "x")
        .part("seconds", reqwest::multipart::Part::bytes(b"1".to_vec()).file_name("s.txt"));
    let (status, e) = error(http.post(gw.url("/v1/videos")).multipart(form).send().await.unwrap()).await;
    assert!(status == 400 && e["message"].as_str().unwrap().contains("seconds was sent as a file"), "{e}");

    // What only a raw socket sends.
    let (answer, _) =
        raw(gw.http, b"GET /v1/videos/../../etc/passwd HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    assert_eq!(raw_error(&answer)["code"], "not_found");
    let junk = b"POST /v1/videos HTTP/1.1\r\nHost: g\r\nConnection: close\r\nNo colon here\r\nX-Ctl: a\x01b\r\n\
                 Content-Type: application/json\r\nContent-Length: 20\r\n\r\n{\"prompt\": \"\\u0000\"}";
    let (answer, _) = raw(gw.http, junk).await;
    assert!(
        answer.starts_with("HTTP/1.1 400") && raw_error(&answer)["message"].as_str().unwrap().contains("NUL"),
        "{answer}"
    );
    // hyper answers what it cannot parse itself: a bare 400, and the connection closed.
    let (answer, _) = raw(gw.http, b"POST /v1/videos HTTP/1.1\r\nHost: g\r\nContent-Length: abc\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{answer}");

    // 10 of 1,000 declared bytes: 408 with the OpenAI body after http.body_read_timeout_secs, connection closed.
    let stalled = b"POST /v1/videos HTTP/1.1\r\nHost: g\r\nContent-Type: application/json\r\n\
                    Content-Length: 1000\r\n\r\n{\"prompt\":";
    let (answer, took) = raw(gw.http, stalled).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(raw_error(&answer)["code"], "request_timeout");
    assert!(took >= std::time::Duration::from_millis(900) && took < std::time::Duration::from_secs(6), "{took:?}");
    // A head that never ends: closed after http.header_read_timeout_secs, without an answer (no request was read).
    let (answer, took) = raw(gw.http, b"POST /v1/videos HTTP/1.1\r\nHost: g\r\nX-Slow: ").await;
    assert!(answer.is_empty() && took < std::time::Duration::from_secs(6), "{answer:?} after {took:?}");

    // HTTP/2 with prior knowledge is served on the same port, with the same error bodies.
    use tower::Service as _;
    let mut h2 = tonic::transport::Channel::from_shared(gw.url("")).unwrap().connect().await.unwrap();
    std::future::poll_fn(|cx| h2.poll_ready(cx)).await.unwrap();
    let resp =
        h2.call(http::Request::get(gw.url("/v1/vidoes")).body(tonic::body::Body::empty()).unwrap()).await.unwrap();
    assert_eq!((resp.status().as_u16(), resp.version()), (404, http::Version::HTTP_2));
    assert_eq!(resp.headers()["content-type"], "application/json");
    gw.stop().await;
}
