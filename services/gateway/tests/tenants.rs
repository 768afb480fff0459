//! Authentication and tenant isolation, over HTTP and gRPC, against a gateway with two tenants and real stages:
//! every public call without a valid key is refused (401 with an OpenAI error body / UNAUTHENTICATED); one tenant
//! can never read, watch, cancel, delete, remix, condition on or download another's job — it gets 404 / NOT_FOUND,
//! exactly as for an id that does not exist; ids shaped to escape a job's storage prefix (`..`, encoded slashes,
//! NUL) never reach the storage. Afterwards the owner's job and video are untouched. The figure (checks tried /
//! held) is in docs/reliability.md: `cargo test -p vidmesh-gateway --test tenants -- --nocapture`.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::{Gateway, gateway_config, sqlite, stages, with_tenants};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tonic::{Code, Request};
use vidmesh_proto::gateway::v1::{
    CancelJobRequest, GenerateRequest, GetJobRequest, ListJobsRequest, ListModelsRequest, RemixRequest,
    WatchJobRequest, job_event::Event,
};

/// Checks made and checks that held, by kind.
#[derive(Default)]
struct Tally(Vec<(&'static str, usize, usize)>);

impl Tally {
    fn add(&mut self, kind: &'static str, held: bool, what: &str) {
        assert!(held, "{kind}: {what}");
        match self.0.iter_mut().find(|(k, _, _)| *k == kind) {
            Some((_, tried, ok)) => {
                *tried += 1;
                *ok += usize::from(held);
            }
            None => self.0.push((kind, 1, usize::from(held))),
        }
    }
}

/// `req` with `authorization: <auth>` when given.
fn keyed<T>(msg: T, auth: Option<&str>) -> Request<T> {
    let mut r = Request::new(msg);
    if let Some(a) = auth {
        r.metadata_mut().insert("authorization", a.parse().unwrap());
    }
    r
}

/// An HTTP call: (status, parsed body or Null).
async fn call(
    http: &reqwest::Client,
    gw: &Gateway,
    (method, path, form): &(Method, String, Vec<(&str, String)>),
    auth: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = http.request(method.clone(), gw.url(path));
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    if *method == Method::POST {
        let f = form.iter().fold(reqwest::multipart::Form::new(), |f, (k, v)| f.text(k.to_string(), v.clone()));
        req = req.multipart(f);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, serde_json::from_str(&resp.text().await.unwrap()).unwrap_or(Value::Null))
}

/// An OpenAI-style error body with a message.
fn openai_error(body: &Value) -> bool {
    body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()) && body["error"]["type"].is_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_needs_a_key_and_no_tenant_reaches_another_tenants_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let stages = stages(dir.path()).await;
    let mut config = gateway_config(&stages, dir.path(), &sqlite(dir.path()));
    with_tenants(&mut config, &["acme", "other"]);
    let gw = Gateway::start(config).await;
    let (acme, other) = (Some("Bearer sk-acme"), Some("Bearer sk-other"));
    let mut grpc = gw.client().await;

    // acme's finished job (a video in storage), and one of other's.
    let small = |prompt: &str| GenerateRequest {
        prompt: prompt.into(),
        num_inference_steps: 2,
        seed: Some(3),
        ..Default::default()
    };
    let mut events = grpc.generate(keyed(small("a red circle moving left"), acme)).await.unwrap().into_inner();
    let (mut mine, mut result) = (String::new(), None);
    while let Some(ev) = events.message().await.unwrap() {
        mine.clone_from(&ev.job_id);
        if let Some(Event::Completed(r)) = ev.event {
            result = Some(r);
        }
    }
    let video_sha = result.expect("acme's job completed").video.unwrap().sha256;
    let theirs = grpc.submit(keyed(small("a blue square"), other)).await.unwrap().into_inner().id;

    let http = reqwest::Client::new();
    let form = |pairs: &[(&'static str, &str)]| pairs.iter().map(|(k, v)| (*k, v.to_string())).collect::<Vec<_>>();
    // Every route, aimed at acme's job where it takes one.
    let routes = |id: &str| {
        vec![
            (Method::GET, "/v1/videos".to_string(), vec![]),
            (Method::POST, "/v1/videos".to_string(), form(&[("prompt", "x")])),
            (Method::POST, "/v1/videos".to_string(), form(&[("prompt", "x"), ("input_reference[file_id]", id)])),
            (Method::GET, format!("/v1/videos/{id}"), vec![]),
            (Method::DELETE, format!("/v1/videos/{id}"), vec![]),
            (Method::GET, format!("/v1/videos/{id}/content"), vec![]),
            (Method::GET, format!("/v1/videos/{id}/content?variant=thumbnail"), vec![]),
            (Method::GET, format!("/v1/videos/{id}/content?variant=spritesheet"), vec![]),
            (Method::GET, format!("/v1/videos/{id}/events"), vec![]),
            (Method::POST, format!("/v1/videos/{id}/remix"), form(&[("prompt", "x")])),
            (Method::POST, "/v1/videos/edits".to_string(), form(&[("prompt", "x"), ("video[id]", id)])),
            (
                Method::POST,
                "/v1/videos/extensions".to_string(),
                form(&[("prompt", "x"), ("seconds", "1"), ("video[id]", id)]),
            ),
            (Method::GET, "/v1/models".to_string(), vec![]),
        ]
    };
    let mut tally = Tally::default();

    // 1. No key, an unknown key, a key in the wrong scheme, an empty bearer: 401 with an OpenAI error body.
    for auth in [None, Some("Bearer sk-nobody"), Some("Basic c2stYWNtZQ=="), Some("Bearer "), Some("sk-acme")] {
        for route in routes(&mine) {
            let (status, body) = call(&http, &gw, &route, auth).await;
            let ok = status == StatusCode::UNAUTHORIZED && openai_error(&body);
            tally.add("HTTP: no valid key → 401", ok, &format!("{auth:?} {} {}: {status} {body}", route.0, route.1));
        }
        let unauthenticated = |r: Result<_, tonic::Status>| matches!(r, Err(s) if s.code() == Code::Unauthenticated);
        let id = mine.clone();
        let checks = [
            ("Submit", unauthenticated(grpc.submit(keyed(small("x"), auth)).await.map(|_| ()))),
            ("Generate", unauthenticated(grpc.generate(keyed(small("x"), auth)).await.map(|_| ()))),
            ("Get", unauthenticated(grpc.get(keyed(GetJobRequest { id: id.clone() }, auth)).await.map(|_| ()))),
            ("List", unauthenticated(grpc.list(keyed(ListJobsRequest::default(), auth)).await.map(|_| ()))),
            (
                "Watch",
                unauthenticated(
                    grpc.watch(keyed(WatchJobRequest { id: id.clone(), after_sequence: 0 }, auth)).await.map(|_| ()),
                ),
            ),
            (
                "Cancel",
                unauthenticated(grpc.cancel(keyed(CancelJobRequest { id: id.clone() }, auth)).await.map(|_| ())),
            ),
            (
                "Remix",
                unauthenticated(
                    grpc.remix(keyed(RemixRequest { id: id.clone(), prompt: "x".into(), ..Default::default() }, auth))
                        .await
                        .map(|_| ()),
                ),
            ),
            ("ListModels", unauthenticated(grpc.list_models(keyed(ListModelsRequest {}, auth)).await.map(|_| ()))),
        ];
        for (rpc, ok) in checks {
            tally.add("gRPC: no valid key → UNAUTHENTICATED", ok, &format!("{auth:?} {rpc}"));
        }
    }

    // 2. The other tenant aims every call at acme's job: 404, as for a job that does not exist.
    let aimed = |r: &(Method, String, Vec<(&str, String)>)| r.1.contains(&mine) || r.2.iter().any(|(_, v)| *v == mine);
    for route in routes(&mine).into_iter().filter(aimed) {
        let (status, body) = call(&http, &gw, &route, other).await;
        let ok = status == StatusCode::NOT_FOUND && openai_error(&body);
        tally.add("HTTP: another tenant's job → 404", ok, &format!("{} {}: {status} {body}", route.0, route.1));
    }
    let (_, listed) = call(&http, &gw, &(Method::GET, "/v1/videos?limit=100".into(), vec![]), other).await;
    let ids: Vec<&str> = listed["data"].as_array().unwrap().iter().map(|v| v["id"].as_str().unwrap()).collect();
    tally.add("HTTP: another tenant's job → 404", ids == [theirs.as_str()], &format!("other lists {ids:?}"));
    let not_found = |r: Result<_, tonic::Status>| matches!(r, Err(s) if s.code() == Code::NotFound);
    let id = mine.clone();
    let checks = [
        ("Get", not_found(grpc.get(keyed(GetJobRequest { id: id.clone() }, other)).await.map(|_| ()))),
        (
            "Watch",
            not_found(
                grpc.watch(keyed(WatchJobRequest { id: id.clone(), after_sequence: 0 }, other)).await.map(|_| ()),
            ),
        ),
        ("Cancel", not_found(grpc.cancel(keyed(CancelJobRequest { id: id.clone() }, other)).await.map(|_| ()))),
        (
            "Remix",
            not_found(
                grpc.remix(keyed(RemixRequest { id: id.clone(), prompt: "x".into(), ..Default::default() }, other))
                    .await
                    .map(|_| ()),
            ),
        ),
    ];
    for (rpc, ok) in checks {
        tally.add("gRPC: another tenant's job → NOT_FOUND", ok, rpc);
    }
    let page = grpc.list(keyed(ListJobsRequest { limit: 100, ..Default::default() }, other)).await.unwrap();
    let listed: Vec<String> = page.into_inner().jobs.into_iter().map(|j| j.id).collect();
    tally.add("gRPC: another tenant's job → NOT_FOUND", listed == [theirs.clone()], "List shows only its own");

    // 3. Ids shaped to leave a job's storage prefix, with acme's own key: never a 2xx, never a 5xx.
    for bad in [
        format!("../{mine}"),
        format!("..%2F{mine}"),
        format!("%2E%2E%2F{mine}"),
        format!("{mine}%2F..%2F{theirs}"),
        format!("{mine}%00"),
        format!("jobs%2F{mine}"),
        "..".to_string(),
        "%2E%2E".to_string(),
        format!("{mine}%2F..%2F..%2F..%2Fetc%2Fpasswd"),
    ] {
        for path in
            [format!("/v1/videos/{bad}"), format!("/v1/videos/{bad}/content"), format!("/v1/videos/{bad}/events")]
        {
            let (status, body) = call(&http, &gw, &(Method::GET, path.clone(), vec![]), acme).await;
            let ok = status.is_client_error() && status != StatusCode::UNAUTHORIZED && openai_error(&body);
            tally.add("HTTP: ids escaping the job's prefix → 4xx", ok, &format!("{path}: {status} {body}"));
        }
        let r = grpc.get(keyed(GetJobRequest { id: bad.replace("%2F", "/").replace("%00", "\0") }, acme)).await;
        let ok = matches!(&r, Err(s) if matches!(s.code(), Code::NotFound | Code::InvalidArgument));
        tally.add("gRPC: ids escaping the job's prefix → NOT_FOUND", ok, &format!("{bad}: {r:?}"));
    }

    // The owner's job and video are untouched by all of it.
    let (status, body) = call(&http, &gw, &(Method::GET, format!("/v1/videos/{mine}"), vec![]), acme).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("completed")), "{body}");
    let video = http.get(gw.url(&format!("/v1/videos/{mine}/content"))).header("authorization", acme.unwrap());
    let bytes = video.send().await.unwrap().bytes().await.unwrap();
    assert_eq!(vidmesh_storage::sha256_hex(&bytes), video_sha, "acme's video is intact");

    let (tried, held) = tally.0.iter().fold((0, 0), |(t, h), (_, tr, ok)| (t + tr, h + ok));
    eprintln!("| check | tried | held |\n|---|---|---|");
    for (kind, t, ok) in &tally.0 {
        eprintln!("| {kind} | {t} | {ok} |");
    }
    eprintln!("| all | {tried} | {held} |");
    assert_eq!(held, tried);
    gw.stop().await;
}
