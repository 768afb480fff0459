//! Image and video conditioning through the gateway: image→video, edit, extension and remix over gRPC against the
//! real stages (each job completes, with the frames its mode promises), and every bad reference — not an image, a
//! truncated video, a size resizing cannot cover, an unknown or another tenant's job, an unknown field, a duration
//! the model does not make — refused over HTTP with 400/404 and a message naming the problem, with nothing stored
//! and no stage called.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::{Gateway, gateway_config, no_stages, sqlite, stages as start_stages, with_tenants};
use futures::StreamExt as _;
use serde_json::{Value, json};
use vidmesh_proto::gateway::v1::conditioning::Reference;
use vidmesh_proto::gateway::v1::{
    Conditioning, ConditioningMode, GenerateRequest, JobState, ListJobsRequest, RemixRequest, WatchJobRequest,
    job_event::Event,
};

/// A `w`×`h` PNG: a red disc on black.
fn png(w: usize, h: usize) -> Vec<u8> {
    let rgb: Vec<u8> = (0..w * h)
        .flat_map(|i| {
            let (x, y) = ((i % w) as f64 - w as f64 / 2.0, (i / w) as f64 - h as f64 / 2.0);
            if x * x + y * y < 64.0 { [220, 40, 40] } else { [12, 12, 12] }
        })
        .collect();
    vidmesh_video::png_frame(w, h, &rgb).unwrap()
}

/// A 16-frame 64×64 H.264 MP4 of a disc moving right.
fn mp4() -> Vec<u8> {
    let frames = (0..16)
        .map(|t| {
            (0..64 * 64)
                .flat_map(|i| {
                    let (x, y) = ((i % 64) as f64 - 20.0 - t as f64, (i / 64) as f64 - 32.0);
                    if x * x + y * y < 49.0 { [220, 40, 40] } else { [12, 12, 12] }
                })
                .collect()
        })
        .collect();
    let video = vidmesh_video::Video { width: 64, height: 64, fps: 8.0, frames };
    vidmesh_video::encode_mp4(&video, &Default::default()).unwrap()
}

async fn finish(gw: &Gateway, id: &str) -> vidmesh_proto::gateway::v1::Result {
    let mut client = gw.client().await;
    let mut events = client.watch(WatchJobRequest { id: id.into(), after_sequence: 0 }).await.unwrap().into_inner();
    while let Some(ev) = events.next().await {
        match ev.unwrap().event {
            Some(Event::Completed(r)) => return r,
            Some(Event::Failed(e)) => panic!("job {id} failed: {} {}", e.code, e.message),
            _ => {}
        }
    }
    panic!("job {id} ended without a result")
}

fn conditioned(mode: ConditioningMode, reference: Reference, prompt: &str, seed: u64) -> GenerateRequest {
    GenerateRequest {
        prompt: prompt.into(),
        num_inference_steps: 4,
        seed: Some(seed),
        conditioning: Some(Conditioning { mode: mode as i32, reference: Some(reference), ..Default::default() }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn image_to_video_edit_extend_and_remix_complete_over_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let stages = start_stages(dir.path()).await;
    let gw = Gateway::start(gateway_config(&stages, dir.path(), &sqlite(dir.path()))).await;
    let mut client = gw.client().await;
    let prompt = "a small red circle moving right slowly on a black background";

    let i2v = conditioned(ConditioningMode::ImageToVideo, Reference::Data(png(64, 64)), prompt, 1);
    let first = client.submit(i2v).await.unwrap().into_inner();
    let c = first.request.as_ref().unwrap().conditioning.as_ref().unwrap();
    assert!(c.reference.is_none() && c.stored_key.ends_with("/reference"), "the upload is stored with the job");
    let r = finish(&gw, &first.id).await;
    assert_eq!((r.frames, r.width, r.height), (16, 64, 64));

    let mut edit = conditioned(ConditioningMode::Edit, Reference::VideoId(first.id.clone()), "a blue circle", 2);
    edit.conditioning.as_mut().unwrap().strength = 0.5;
    let job = client.submit(edit).await.unwrap().into_inner();
    assert_eq!(finish(&gw, &job.id).await.frames, 16);

    let mut extend = conditioned(ConditioningMode::Extend, Reference::Data(mp4()), prompt, 3);
    extend.seconds = 2.0;
    let job = client.submit(extend).await.unwrap().into_inner();
    let req = job.request.as_ref().unwrap();
    assert_eq!((req.num_frames, req.seconds), (16, 4.0), "seconds are the stitched total");
    let r = finish(&gw, &job.id).await;
    assert_eq!((r.frames, r.duration_seconds), (32, 4.0));

    let remix = RemixRequest { id: first.id.clone(), prompt: "a green circle".into(), ..Default::default() };
    let job = client.remix(remix).await.unwrap().into_inner();
    let req = job.request.as_ref().unwrap();
    assert_eq!((req.remixed_from.as_str(), req.seed), (first.id.as_str(), Some(1)));
    assert_eq!(finish(&gw, &job.id).await.frames, 16);
    let done = client.get(vidmesh_proto::gateway::v1::GetJobRequest { id: job.id }).await.unwrap().into_inner();
    assert_eq!(done.state, JobState::Completed as i32);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_references_are_refused_with_nothing_stored() {
    let dir = tempfile::tempdir().unwrap();
    let stages = no_stages();
    let mut config = gateway_config(&stages, dir.path(), &sqlite(dir.path()));
    (config.stages.text_encoder.backoff_ms, config.stages.text_encoder.max_backoff_ms) = (60_000, 60_000);
    with_tenants(&mut config, &["acme", "other"]);
    let gw = Gateway::start(config).await;
    let http = reqwest::Client::new();
    // Another tenant's job and one of ours, queued (no stages run here).
    let create = |key: &'static str| {
        let req = http.post(gw.url("/v1/videos")).bearer_auth(key).json(&json!({"prompt": "a red circle"}));
        async move { req.send().await.unwrap().json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string() }
    };
    let (theirs, mine) = (create("sk-other").await, create("sk-acme").await);

    let file = |name: &str, bytes: Vec<u8>| reqwest::multipart::Part::bytes(bytes).file_name(name.to_string());
    let form = |f: &[(&str, &str)]| {
        f.iter().fold(reqwest::multipart::Form::new(), |form, (k, v)| form.text(k.to_string(), v.to_string()))
    };
    let mut truncated = mp4();
    truncated.truncate(truncated.len() / 2);
    let cases: Vec<(&str, reqwest::multipart::Form, u16, &str)> = vec![
        (
            "/v1/videos",
            form(&[("prompt", "x")]).part("input_reference", file("a.png", b"not an image".to_vec())),
            400,
            "neither an image",
        ),
        (
            "/v1/videos",
            form(&[("prompt", "x")]).part("input_reference", file("a.png", png(200, 20))),
            400,
            "aspect ratio",
        ),
        ("/v1/videos", form(&[("prompt", "x")]).part("input_reference", file("a.png", png(8, 8))), 400, "16 to 8192"),
        (
            "/v1/videos",
            form(&[("prompt", "x"), ("input_reference[image_url]", "https://example.com/a.png")]),
            400,
            "data URLs",
        ),
        (
            "/v1/videos",
            form(&[("prompt", "x"), ("input_reference[image_url]", "data:image/png;base64,!!")]),
            400,
            "base64",
        ),
        ("/v1/videos", form(&[("prompt", "x"), ("input_reference[file_id]", "video_nope")]), 404, "not found"),
        ("/v1/videos", form(&[("prompt", "x"), ("input_reference[file_id]", &theirs)]), 404, "not found"),
        ("/v1/videos", form(&[("prompt", "x"), ("input_reference[file_id]", &mine)]), 409, "has not completed"),
        (
            "/v1/videos/edits",
            form(&[("prompt", "x")]).part("video", file("v.mp4", truncated.clone())),
            400,
            "truncated",
        ),
        ("/v1/videos/edits", form(&[("prompt", "x")]).part("video", file("v.png", png(64, 64))), 400, "not an image"),
        ("/v1/videos/edits", form(&[("prompt", "x"), ("video[id]", &theirs)]), 404, "not found"),
        (
            "/v1/videos/edits",
            form(&[("prompt", "x"), ("strength", "1.5")]).part("video", file("v.mp4", mp4())),
            400,
            "strength",
        ),
        ("/v1/videos/edits", form(&[("prompt", "x")]), 400, "video is required"),
        (
            "/v1/videos/extensions",
            form(&[("prompt", "x"), ("seconds", "8")]).part("video", file("v.mp4", mp4())),
            400,
            "cannot add",
        ),
        (
            "/v1/videos/extensions",
            form(&[("prompt", "x"), ("seconds", "0.3")]).part("video", file("v.mp4", mp4())),
            400,
            "whole number",
        ),
        ("/v1/videos", form(&[("prompt", "x"), ("bogus_field", "1")]), 400, "bogus_field"),
        ("/v1/videos", form(&[("prompt", "x"), ("seconds", "3")]), 400, "1s, 2s, 4s"),
        (&format!("/v1/videos/{theirs}/remix"), form(&[("prompt", "x")]), 404, "no job"),
        (&format!("/v1/videos/{mine}/remix"), form(&[("prompt", "x"), ("seed", "1")]), 400, "seed"),
    ]
    .into_iter()
    .map(|(p, f, s, w)| (Box::leak(p.to_string().into_boxed_str()) as &str, f, s, w))
    .collect();
    for (path, body, status, why) in cases {
        let r = http.post(gw.url(path)).bearer_auth("sk-acme").multipart(body).send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{path} {why}");
        let body: Value = r.json().await.unwrap();
        let msg = body["error"]["message"].as_str().unwrap_or_default().to_string();
        assert!(msg.to_lowercase().contains(&why.to_lowercase()), "{path}: {msg:?} should mention {why:?}");
    }
    // JSON bodies: an unknown field, and an unknown field inside input_reference.
    for (body, why) in [
        (json!({"prompt": "x", "colour": "red"}), "colour"),
        (json!({"prompt": "x", "input_reference": {"url": "data:,"}}), "input_reference.url"),
    ] {
        let r = http.post(gw.url("/v1/videos")).bearer_auth("sk-acme").json(&body).send().await.unwrap();
        assert_eq!(r.status(), 400);
        assert!(r.text().await.unwrap().contains(why), "{body}");
    }

    // The same over gRPC: INVALID_ARGUMENT for bad media, NOT_FOUND for another tenant's video.
    let mut client = gw.client().await;
    for (reference, code) in [
        (Reference::Data(b"junk".to_vec()), tonic::Code::InvalidArgument),
        (Reference::Data(truncated.clone()), tonic::Code::InvalidArgument),
        (Reference::VideoId(theirs.clone()), tonic::Code::NotFound),
    ] {
        let mut req = tonic::Request::new(conditioned(ConditioningMode::Edit, reference, "x", 1));
        req.metadata_mut().insert("authorization", "Bearer sk-acme".parse().unwrap());
        assert_eq!(client.submit(req).await.unwrap_err().code(), code);
    }

    // Nothing was stored: each tenant still has only its one job, and no reference file exists.
    for key in ["sk-acme", "sk-other"] {
        let mut req = tonic::Request::new(ListJobsRequest::default());
        req.metadata_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
        assert_eq!(client.list(req).await.unwrap().into_inner().jobs.len(), 1, "{key}");
    }
    let stored: Vec<_> = walk(dir.path()).into_iter().filter(|p| p.ends_with("reference")).collect();
    assert!(stored.is_empty(), "{stored:?}");
    gw.shutdown.cancel();
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}

/// Without API keys (development), any bearer key is the anonymous tenant: the SDKs insist on sending one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tenants_any_key_is_the_anonymous_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let stages = no_stages();
    let mut config = gateway_config(&stages, dir.path(), &sqlite(dir.path()));
    (config.stages.text_encoder.backoff_ms, config.stages.text_encoder.max_backoff_ms) = (60_000, 60_000);
    let gw = Gateway::start(config).await;
    let http = reqwest::Client::new();
    for key in [Some("sk-anything"), Some("another"), None] {
        let mut r = http.post(gw.url("/v1/videos")).json(&json!({"prompt": "a red circle"}));
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        assert_eq!(r.send().await.unwrap().status(), 200, "{key:?}");
    }
    let list: Value = http.get(gw.url("/v1/videos")).bearer_auth("sk-x").send().await.unwrap().json().await.unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 3);
    gw.shutdown.cancel();
}
