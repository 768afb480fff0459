//! Where requests go and what they carry besides a body: control characters in fields and queries, traversal and
//! junk in ids (in paths, queries and references), routes that do not exist and methods a route does not take.

use reqwest::Method;
use serde_json::json;

use super::{Case, controls, form, hostile_ids, percent_decode, post_form, post_json, with};

pub(super) fn control_chars(out: &mut Vec<Case>) {
    let cat = "http: control characters and NUL";
    let b = "ctlBoundary";
    let mut prompts: Vec<String> = Vec::new();
    for c in controls() {
        prompts.push(c.to_string());
        prompts.push(format!("a red {c}circle"));
        prompts.push(c.to_string().repeat(100));
    }
    prompts.extend(["", " ", "\t\n\r", "\u{3000}", "\u{a0}\u{2028}"].map(String::from));
    for p in &prompts {
        out.push(post_json(cat, "/v1/videos", with("prompt", &json!(p).to_string())));
        out.push(post_form(cat, "/v1/videos", b, form(b, &[("prompt", None, p.as_bytes()), ("seconds", None, b"1")])));
    }
    for c in controls() {
        let s = json!(format!("x{c}y")).to_string();
        for field in ["negative_prompt", "idempotency_key", "model", "scheduler", "size"] {
            out.push(post_json(cat, "/v1/videos", with(field, &s)));
        }
        out.push(post_json(cat, "/v1/videos/video_0/remix", format!("{{\"prompt\": {s}}}").into_bytes()));
    }
    for q in ["limit=%00", "order=%00", "after=%00", "after=video_%01", "limit=1%00", "order=asc%0d%0a"] {
        out.push(Case { cat, method: Method::GET, path: format!("/v1/videos?{q}"), headers: vec![], body: None });
    }
    for v in ["%00", "video%0a", "thumbnail%00"] {
        out.push(Case {
            cat,
            method: Method::GET,
            path: format!("/v1/videos/video_0/content?variant={v}"),
            headers: vec![],
            body: None,
        });
    }
}

pub(super) fn traversal(out: &mut Vec<Case>) {
    let cat = "http: traversal and junk in ids";
    let remix = || Some(br#"{"prompt": "a red circle"}"#.to_vec());
    for id in hostile_ids() {
        let get = |path: String| Case { cat, method: Method::GET, path, headers: vec![], body: None };
        out.push(get(format!("/v1/videos/{id}")));
        out.push(get(format!("/v1/videos/{id}/content")));
        out.push(get(format!("/v1/videos/{id}/content?variant=thumbnail")));
        out.push(get(format!("/v1/videos/{id}/events")));
        out.push(get(format!("/v1/videos?after={id}")));
        out.push(Case { cat, method: Method::DELETE, path: format!("/v1/videos/{id}"), headers: vec![], body: None });
        let headers = vec![("content-type", "application/json".to_string())];
        out.push(Case { cat, method: Method::POST, path: format!("/v1/videos/{id}/remix"), headers, body: remix() });
        // The same ids as references, decoded (as a JSON string carries them).
        let plain = json!(percent_decode(&id)).to_string();
        out.push(post_json(cat, "/v1/videos", with("input_reference", &format!("{{\"file_id\": {plain}}}"))));
        out.push(post_json(cat, "/v1/videos/edits", with("video", &format!("{{\"id\": {plain}}}"))));
        out.push(post_json(cat, "/v1/videos/extensions", with("video", &format!("{{\"id\": {plain}}}"))));
    }
}

pub(super) fn routes_and_methods(out: &mut Vec<Case>) {
    let cat = "http: unknown routes and methods";
    let unknown = [
        "/",
        "/v1",
        "/v1/",
        "/v2/videos",
        "/v1/video",
        "/v1/videos/",
        "/V1/VIDEOS",
        "/v1/videos/video_0/content/x",
        "/v1/videos/video_0/remix/x",
        "/v1/models/vidmesh-tiny",
        "/admin",
        "/.env",
        "/.git/config",
        "/metrics",
        "/healthz",
        "/v1/chat/completions",
        "/v1/images/generations",
        "//v1/videos",
        "/v1//videos",
        "/v1/videos;x",
        "/v1/videos%2Fvideo_0",
        "/favicon.ico",
        "/v1/files",
        "/v1/videos/video_0/events/1",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/v1/videos/edits/x",
        "/v1/videos/extensions/x",
        "/wp-login.php",
        "/index.html",
        "/v1/models/",
    ];
    let methods: Vec<Method> =
        ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"].iter().map(|m| m.parse().unwrap()).collect();
    for path in unknown {
        for m in &methods {
            out.push(Case { cat, method: m.clone(), path: path.into(), headers: vec![], body: None });
        }
    }
    let wrong: &[(&str, &[&str])] = &[
        ("/v1/videos", &["PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "PURGE", "FOO", "PROPFIND"]),
        ("/v1/videos/video_0", &["POST", "PUT", "PATCH", "OPTIONS", "TRACE", "COPY"]),
        ("/v1/videos/video_0/content", &["POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
        ("/v1/videos/video_0/events", &["POST", "PUT", "DELETE", "PATCH"]),
        ("/v1/videos/video_0/remix", &["GET", "PUT", "DELETE", "PATCH", "OPTIONS"]),
        ("/v1/videos/edits", &["PUT", "DELETE", "PATCH"]),
        ("/v1/videos/extensions", &["PUT", "DELETE", "PATCH"]),
        ("/v1/models", &["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "MKCOL"]),
    ];
    for (path, ms) in wrong {
        for m in *ms {
            for body in [None, Some(b"{}".to_vec())] {
                out.push(Case { cat, method: m.parse().unwrap(), path: path.to_string(), headers: vec![], body });
            }
        }
    }
    for q in [
        "limit=abc",
        "limit=0",
        "limit=101",
        "limit=-1",
        "limit=1e2",
        "limit=4294967296",
        "order=sideways",
        "order=",
        "limit=",
    ] {
        out.push(Case { cat, method: Method::GET, path: format!("/v1/videos?{q}"), headers: vec![], body: None });
    }
    for v in ["gif", "", "VIDEO", "../video", "video.mp4"] {
        out.push(Case {
            cat,
            method: Method::GET,
            path: format!("/v1/videos/video_0/content?variant={v}"),
            headers: vec![],
            body: None,
        });
    }
    for h in [("last-event-id", "abc"), ("last-event-id", "-1"), ("last-event-id", "18446744073709551616")] {
        out.push(Case {
            cat,
            method: Method::GET,
            path: "/v1/videos/video_0/events".into(),
            headers: vec![(h.0, h.1.into())],
            body: None,
        });
    }
}
