//! Overload with the five services as separate processes on loopback, the figure of docs/reliability.md
//! (`cargo test -p vidmesh-cli --features gateway --test overload -- --nocapture` prints it): four times more jobs
//! than the queue bound submitted at once over HTTP — and a tenant's burst past its active-job quota — are admitted
//! exactly up to the bounds, the rest refused with 429 + Retry-After (RESOURCE_EXHAUSTED + RetryInfo over gRPC);
//! every admitted job completes within its deadline, and the RSS of every process stays bounded.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::Duration;

use common::{PgDb, Proc, Stages, rss_mib};
use futures::future::join_all;
use tonic::Code;
use vidmesh_proto::gateway::v1::gateway_client::GatewayClient;
use vidmesh_proto::gateway::v1::{GenerateRequest, WatchJobRequest, job_event::Event};

/// The queue bound of the test's gateways.
const QUEUE: usize = 16;
/// The active-job quota of the tenant `capped`.
const QUOTA: usize = 5;

/// A burst of `n` concurrent `POST /v1/videos` with `key` (none: the anonymous tenant): (admitted ids, 429
/// refusals with their messages).
async fn burst(http: std::net::SocketAddr, key: Option<&str>, n: usize) -> (Vec<String>, Vec<String>) {
    let client = reqwest::Client::new();
    let posts = (0..n).map(|i| {
        let client = client.clone();
        async move {
            let body = format!(r#"{{"prompt": "a white circle moving right, take {i}", "num_inference_steps": 4}}"#);
            let mut post = client.post(format!("http://{http}/v1/videos"));
            if let Some(key) = key {
                post = post.bearer_auth(key);
            }
            let resp = post.header("content-type", "application/json").body(body).send().await.unwrap();
            let status = resp.status().as_u16();
            let retry_after = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
            let body: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
            (status, retry_after, body)
        }
    });
    let (mut admitted, mut refused) = (Vec::new(), Vec::new());
    for (status, retry_after, body) in join_all(posts).await {
        match status {
            200 => admitted.push(body["id"].as_str().unwrap().to_string()),
            429 => {
                let after: u64 = retry_after.expect("a 429 carries Retry-After").parse().unwrap();
                assert!(after >= 1, "Retry-After {after}");
                assert_eq!(body["error"]["type"], "rate_limit_exceeded", "{body}");
                refused.push(body["error"]["message"].as_str().unwrap().to_string());
            }
            other => panic!("{other}: {body}"),
        }
    }
    (admitted, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_four_times_the_queue_bound_is_admitted_exactly_to_the_bounds_and_every_admitted_job_completes() {
    let db = PgDb::create("overload");
    overload(&db.url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_four_times_the_queue_bound_is_admitted_exactly_to_the_bounds_and_every_admitted_job_completes() {
    let dir = tempfile::tempdir().unwrap();
    overload(&format!("sqlite://{}", dir.path().join("jobs.db").display())).await;
}

/// The burst against a replica that runs nothing (so the queue only fills and the bounds are exact), then a
/// replica that runs the queue dry: beside it on PostgreSQL, in its place (a restart) on SQLite.
async fn overload(store: &str) {
    let postgres = store.starts_with("postgres");
    let dir = tempfile::tempdir().unwrap();
    let (dir, root) = (dir.path(), dir.path().join("data"));
    let stages = Stages::start(dir, &root, None).await;
    let capped_key = "sk-capped-tenant";
    let tenants = format!(
        "[admission]\nmax_queued = {QUEUE}\nretry_after_secs = 3\n\n\
         [[admission.tenants]]\nname = \"default\"\nmax_active_jobs = 1000\nrate_per_minute = 100000\nburst = 1000\n\n\
         [[admission.tenants]]\nname = \"capped\"\nkey_sha256 = [\"{}\"]\nmax_active_jobs = {QUOTA}\n\
         rate_per_minute = 100000\nburst = 1000\n\n",
        vidmesh_storage::sha256_hex(capped_key.as_bytes())
    );
    let base = stages.gateway_toml(&root, store, None, 10).replace("[http]", &format!("{tenants}[http]"));
    let front = Proc::start("gateway", dir, &base.replace("[http]", "[stages]\nmax_running = 0\n\n[http]")).await;
    let http = front.http.unwrap();
    let rss_before = rss_mib(front.child.id());

    // A tenant's burst of 4× its quota at once.
    let (capped, refused) = burst(http, Some(capped_key), 4 * QUOTA).await;
    assert_eq!((capped.len(), refused.len()), (QUOTA, 3 * QUOTA), "{refused:?}");
    assert!(refused.iter().all(|m| m.contains("quota")), "{refused:?}");
    // 4× the queue bound at once, from the anonymous tenant: the queue fills to exactly its bound.
    let (admitted, refused) = burst(http, None, 4 * QUEUE).await;
    assert_eq!((admitted.len(), refused.len()), (QUEUE - QUOTA, 4 * QUEUE - (QUEUE - QUOTA)), "{refused:?}");
    assert!(refused.iter().all(|m| m.contains("the queue is full")), "{refused:?}");
    let rss_burst = rss_mib(front.child.id());
    // Over gRPC the same refusal is RESOURCE_EXHAUSTED with a RetryInfo.
    let mut grpc = GatewayClient::connect(format!("http://{}", front.grpc)).await.unwrap();
    let req = GenerateRequest { prompt: "one more".into(), num_inference_steps: 4, ..Default::default() };
    let status = grpc.submit(req).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(vidmesh_runtime::status::retry_after(&status), Some(Duration::from_secs(3)));

    // A replica that runs jobs drains the queue: every admitted job completes within its deadline.
    let front = if postgres {
        Some(front)
    } else {
        assert!(front.terminate(), "the front replica drains and exits");
        None
    };
    let runner = Proc::start("gateway", dir, &base).await;
    let mut grpc = GatewayClient::connect(format!("http://{}", runner.grpc)).await.unwrap();
    let t0 = std::time::Instant::now();
    let mut completed = 0;
    let keyed = capped.iter().map(|id| (id, Some(capped_key))).chain(admitted.iter().map(|id| (id, None)));
    for (id, key) in keyed {
        let mut req = tonic::Request::new(WatchJobRequest { id: id.clone(), after_sequence: 0 });
        if let Some(key) = key {
            req.metadata_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
        }
        let mut watch = grpc.watch(req).await.unwrap().into_inner();
        let mut last = None;
        while let Some(ev) = tokio::time::timeout(Duration::from_secs(120), watch.message()).await.unwrap().unwrap() {
            last = ev.event;
        }
        assert!(matches!(last, Some(Event::Completed(_))), "{id}: {last:?}");
        completed += 1;
    }
    let drained = t0.elapsed();
    let rss = |p: &Proc| rss_mib(p.child.id());
    let runner_after = rss(&runner);
    let stage_rss: Vec<(String, f64)> = stages.0.iter().map(|p| (p.name.clone(), rss(p))).collect();

    let tried = 4 * QUOTA + 4 * QUEUE + 1;
    eprintln!(
        "| store | submitted at once | admitted | refused 429 / RESOURCE_EXHAUSTED | admitted jobs completed | drained in |"
    );
    eprintln!("|---|---|---|---|---|---|");
    eprintln!(
        "| {} | {tried} ({} from a tenant with a quota of {QUOTA}, {} anonymous with a queue bound of {QUEUE}, 1 over gRPC) | {} | {} | {completed} | {:.1} s |",
        if postgres { "PostgreSQL" } else { "SQLite" },
        4 * QUOTA,
        4 * QUEUE,
        capped.len() + admitted.len(),
        tried - capped.len() - admitted.len(),
        drained.as_secs_f64()
    );
    let backend = if postgres { "PostgreSQL" } else { "SQLite" };
    eprintln!(
        "{backend}: RSS MiB: gateway taking the burst {rss_before:.0} before, {rss_burst:.0} after it; gateway \
         running the jobs {runner_after:.0} at the end"
    );
    for (name, mib) in &stage_rss {
        eprintln!("RSS MiB: {name} {mib:.0} after running every admitted job");
    }
    assert_eq!(completed, QUEUE);
    // Bounded: the burst costs the gateway only its refused requests' transient memory; a stage holds the bundle's
    // sessions and one job's buffers, never a queue (the gateway holds the queue, in the store).
    assert!(rss_burst < rss_before + 64.0, "gateway RSS {rss_before:.0} → {rss_burst:.0} MiB over a burst");
    for (name, mib) in stage_rss {
        assert!(mib < 1024.0, "{name}: {mib:.0} MiB");
    }
    drop((front, runner, stages));
}
