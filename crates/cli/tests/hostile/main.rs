//! The hostile-input corpus: more than 5,000 generated requests no well-behaved client sends, against the five
//! services as processes (`vidmesh serve <service>`, the gateway on SQLite). Over HTTP: malformed JSON and
//! multipart, wrong types, NaN/Inf/huge/negative numbers, oversized prompts and bodies, control characters and NUL,
//! traversal in ids, unknown routes and methods, malformed headers, broken framing, stalled bodies and heads that
//! never end. Over gRPC: undecodable messages, tensors of the wrong dtype or shape or holding NaN/Inf, huge step
//! counts and dimensions, random and truncated video bytes, oversized uploads, traversal in ids, keys and URIs.
//!
//! Every request must be refused in a way a person can act on — an HTTP 4xx with OpenAI's error body, a gRPC
//! INVALID_ARGUMENT-class status with a message; the one exception is what hyper cannot parse at all (category
//! `framing`), which gets hyper's bare 4xx. None may get a 5xx, INTERNAL/UNKNOWN/UNAVAILABLE, a reset or no
//! answer; every process must still run, serve a normal job afterwards, and keep its RSS bounded. The table
//! printed (tried / handled / accepted / unhelpful / crashed per category) is the figure in docs/reliability.md.
//!
//! Run: `cargo test -p vidmesh-cli --features gateway --test hostile -- --nocapture`.
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "../common/mod.rs"]
mod common;
mod raw;
mod rpc;
mod tally;
mod web;

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{KEY, Proc, Stages, bundle, common_toml};
use serde_json::Value;
use tally::{Rng, Tally};

/// The corpus's seed: the same requests on every run.
const SEED: u64 = 23;
/// Requests in flight at once.
const CONCURRENCY: usize = 16;
/// The gateway's `http.header_read_timeout_secs` and `http.body_read_timeout_secs` here.
const HEAD_SECS: u64 = 3;
const BODY_SECS: u64 = 2;
/// The gateway's `http.max_body_bytes` and `limits.max_reference_bytes`, and the classifier's `max_video_bytes`
/// here: small, so requests over them are cheap to send.
const MAX_BODY: usize = 4 << 20;
const MAX_REFERENCE: usize = 3 << 20;
const MAX_VIDEO: usize = 8 << 20;
/// Connections that stall their body, and connections whose head never ends.
const STALLED: usize = 200;
const UNFINISHED: usize = 20;

/// The four stages as `Stages::start` runs them, with the classifier's upload limit at [`MAX_VIDEO`].
async fn start_stages(dir: &Path, root: &Path) -> Stages {
    let base = common_toml(None, 10);
    let model = format!("[model]\nbundle = \"{}\"\n\n", bundle());
    let storage = format!("[storage]\nlocal_root = \"{}\"\n\n", root.display());
    let key = format!("[watermark]\nkey_hex = \"{KEY}\"\n\n");
    let te = format!("{base}{model}");
    let dn = format!("max_steps = 1000\n{base}{model}");
    let dc = format!("{base}{model}{storage}{key}");
    let cl = format!("max_video_bytes = {MAX_VIDEO}\n{base}{model}{storage}{key}");
    let (a, b, c, d) = tokio::join!(
        Proc::start("text-encoder", dir, &te),
        Proc::start("denoiser", dir, &dn),
        Proc::start("decoder", dir, &dc),
        Proc::start("classifier", dir, &cl),
    );
    Stages(vec![a, b, c, d])
}

/// Creates a normal job over HTTP, follows its events to the end, checks it completed; returns its MP4.
async fn normal_job(http: &reqwest::Client, base: &str) -> Vec<u8> {
    let body = r#"{"prompt": "a red circle moving right", "seconds": "1", "size": "64x64", "num_inference_steps": 2}"#;
    let resp = http.post(format!("{base}/v1/videos")).header("content-type", "application/json").body(body);
    let resp = resp.send().await.unwrap();
    let status = resp.status();
    let created: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(status, 200, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    // The event stream ends after the job's final event.
    let events = http.get(format!("{base}/v1/videos/{id}/events")).send().await.unwrap().text().await.unwrap();
    assert!(events.contains("event: completed"), "{events}");
    let got = http.get(format!("{base}/v1/videos/{id}")).send().await.unwrap().bytes().await.unwrap();
    let got: Value = serde_json::from_slice(&got).unwrap();
    assert_eq!(got["status"], "completed", "{got}");
    let mp4 = http.get(format!("{base}/v1/videos/{id}/content")).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(&mp4[4..8], b"ftyp");
    mp4.to_vec()
}

enum Case {
    Web(web::Case),
    Raw(raw::Case),
    Rpc(rpc::Case),
}

/// Runs every case, [`CONCURRENCY`] at a time, into `tally`.
async fn run_corpus(cases: Vec<Case>, gw: &Proc, channels: Vec<tonic::transport::Channel>, tally: &Arc<Mutex<Tally>>) {
    let queue = Arc::new(Mutex::new(VecDeque::from(cases)));
    let http = reqwest::Client::builder().pool_idle_timeout(Duration::from_millis(500)).build().unwrap();
    let addr = gw.http.unwrap();
    let base = format!("http://{addr}");
    let channels = Arc::new(channels);
    let workers = (0..CONCURRENCY).map(|_| {
        let (queue, tally, http, base, channels) =
            (queue.clone(), tally.clone(), http.clone(), base.clone(), channels.clone());
        tokio::spawn(async move {
            loop {
                let Some(case) = queue.lock().unwrap().pop_front() else { return };
                let (cat, what, verdict) = match &case {
                    Case::Web(c) => (c.cat, c.what(), web::run(&http, &base, c).await),
                    Case::Raw(c) => (c.cat, c.what(), raw::run(addr, c).await),
                    Case::Rpc(c) => (c.cat, c.what(), rpc::run(&channels, c).await),
                };
                tally.lock().unwrap().record(cat, &what, verdict);
            }
        })
    });
    for w in workers.collect::<Vec<_>>() {
        w.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_input_is_refused_with_an_actionable_answer_and_breaks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let stages = start_stages(dir.path(), &root).await;
    let store = format!("sqlite://{}", dir.path().join("jobs.db").display());
    let http_keys = format!(
        "[http]\nheader_read_timeout_secs = {HEAD_SECS}\nbody_read_timeout_secs = {BODY_SECS}\n\
         max_body_bytes = {MAX_BODY}\n"
    );
    let config = stages
        .gateway_toml(&root, &store, None, 10)
        .replace("[http]\n", &http_keys)
        .replace("[limits]\n", &format!("[limits]\nmax_reference_bytes = {MAX_REFERENCE}\n"));
    let gw = Proc::start("gateway", dir.path(), &config).await;
    let base = format!("http://{}", gw.http.unwrap());
    let http = reqwest::Client::builder().pool_idle_timeout(Duration::from_millis(500)).build().unwrap();

    let mp4 = normal_job(&http, &base).await;
    let procs: Vec<&Proc> = stages.0.iter().chain([&gw]).collect();
    let before: Vec<u64> = procs.iter().map(|p| p.rss_kib()).collect();

    let mut cases: Vec<Case> = Vec::new();
    cases.extend(web::cases(SEED, &mp4, MAX_BODY, MAX_REFERENCE).into_iter().map(Case::Web));
    cases.extend(raw::cases(SEED + 1).into_iter().map(Case::Raw));
    cases.extend(rpc::cases(SEED + 2, &mp4, MAX_VIDEO).into_iter().map(Case::Rpc));
    // Interleave the categories (deterministically) so no one service takes all the load at once.
    let mut rng = Rng::new(SEED + 3);
    for i in (1..cases.len()).rev() {
        cases.swap(i, rng.below(i + 1));
    }
    let mut channels = Vec::new();
    // In rpc::Svc order: the gateway, then the stages.
    for p in [&gw].into_iter().chain(&stages.0) {
        let endpoint = tonic::transport::Channel::from_shared(format!("http://{}", p.grpc)).unwrap();
        channels.push(endpoint.connect().await.unwrap());
    }
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    run_corpus(cases, &gw, channels, &tally).await;
    let addr = gw.http.unwrap();
    let (stalled, unfinished) = tokio::join!(
        raw::stalled_bodies(addr, STALLED, Duration::from_secs(BODY_SECS)),
        raw::unfinished_heads(addr, UNFINISHED, Duration::from_secs(HEAD_SECS)),
    );
    {
        let mut t = tally.lock().unwrap();
        for v in stalled {
            t.record("http: stalled bodies (10 of 1,000 bytes)", "stalled body", v);
        }
        for v in unfinished {
            t.record("http: heads that never end", "unfinished head", v);
        }
    }
    let took = started.elapsed();

    // Every process is still up and the mesh still makes a video.
    let mut gone = Vec::new();
    for p in stages.0.iter().chain([&gw]) {
        if !p.alive() {
            gone.push(p.name.clone());
        }
    }
    normal_job(&http, &base).await;
    let after: Vec<u64> = procs.iter().map(|p| p.rss_kib()).collect();

    let t = tally.lock().unwrap();
    eprintln!("\nhostile corpus: {} requests in {:.1} s\n\n{}", t.total().tried, took.as_secs_f64(), t.table());
    eprintln!("RSS (MiB) after a normal job → after the corpus and another job:");
    for (i, p) in procs.iter().enumerate() {
        eprintln!("  {:<24} {:>6.1} → {:>6.1}", p.name, before[i] as f64 / 1024.0, after[i] as f64 / 1024.0);
    }
    let failures = t.failures();
    if !failures.is_empty() {
        eprintln!("\nfailures (first of each category):\n{failures}");
    }
    let total = t.total();
    assert!(gone.is_empty(), "processes exited: {gone:?}");
    assert!(total.tried >= 5000, "only {} requests", total.tried);
    assert_eq!((total.accepted, total.unhelpful, total.crashed), (0, 0, 0), "\n{failures}");
    // RSS: allocators keep what they freed, so the bound is generous — twice the RSS after a normal job plus
    // 64 MiB (the corpus sends bodies of up to 9 MiB, 16 at a time) — but a leak per request (5,000 requests)
    // or buffering of every oversized body would cross it.
    for (i, p) in procs.iter().enumerate() {
        let bound = 2 * before[i] + (64 << 10);
        assert!(after[i] < bound, "{}: RSS {} KiB after the corpus, bound {bound} KiB", p.name, after[i]);
    }
}
