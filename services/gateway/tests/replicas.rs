//! Two gateway replicas on one PostgreSQL database (a fresh database per test on the local server;
//! `VIDMESH_TEST_POSTGRES` overrides the admin URL): a job submitted on one is run by the other and watched live
//! across replicas (LISTEN/NOTIFY), and a cancel sent to the replica that does not run the job stops it.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::Duration;

use common::{Gateway, gateway_config, stages as start_stages};
use sqlx::Connection as _;
use vidmesh_proto::gateway::v1::{
    CancelJobRequest, GenerateRequest, GetJobRequest, JobEvent, JobState, WatchJobRequest, job_event::Event,
};

async fn fresh_database() -> (String, String) {
    let admin = std::env::var("VIDMESH_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
    let name = format!("vidmesh_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {admin} (start it, or set VIDMESH_TEST_POSTGRES): {e}"));
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.unwrap();
    let (base, _) = admin.rsplit_once('/').unwrap();
    (format!("{base}/{name}"), admin)
}

async fn drop_database(url: &str, admin: &str) {
    let name = url.rsplit_once('/').unwrap().1;
    if let Ok(mut conn) = sqlx::PgConnection::connect(admin).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn).await;
    }
}

async fn collect(mut s: tonic::Streaming<JobEvent>) -> Vec<JobEvent> {
    let mut out = Vec::new();
    while let Some(ev) = s.message().await.unwrap() {
        out.push(ev);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_share_jobs_watch_and_cancel_through_postgres() {
    let (url, admin) = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let stages = start_stages(dir.path()).await;
    // Replica A runs jobs; replica B only serves the APIs, so every job B accepts runs on A.
    let runner = Gateway::start(gateway_config(&stages, dir.path(), &url)).await;
    let mut api_only = gateway_config(&stages, dir.path(), &url);
    api_only.stages.max_running = 0;
    let front = Gateway::start(api_only).await;
    let (mut a, mut b) = (runner.client().await, front.client().await);

    // Submitted on B, run on A, watched on B as it happens.
    let req = GenerateRequest {
        prompt: "a purple square moving down".into(),
        num_frames: 8,
        num_inference_steps: 3,
        seed: Some(3),
        ..Default::default()
    };
    let events = collect(b.generate(req.clone()).await.unwrap().into_inner()).await;
    assert!(matches!(events.last().unwrap().event, Some(Event::Completed(_))), "{events:?}");
    for (i, ev) in events.iter().enumerate() {
        assert_eq!(ev.sequence, i as u64 + 1);
    }
    let id = events[0].job_id.clone();
    assert_eq!(a.get(GetJobRequest { id }).await.unwrap().into_inner().state, JobState::Completed as i32);

    // Submitted on A, watched and cancelled on B mid-denoise.
    let job = a.submit(GenerateRequest { num_inference_steps: 1000, ..req }).await.unwrap().into_inner();
    let mut watch = b.watch(WatchJobRequest { id: job.id.clone(), after_sequence: 0 }).await.unwrap().into_inner();
    while let Some(ev) = watch.message().await.unwrap() {
        if matches!(&ev.event, Some(Event::Denoising(d)) if d.step >= 2) {
            break;
        }
    }
    let cancelled = b.cancel(CancelJobRequest { id: job.id.clone() }).await.unwrap().into_inner();
    assert_eq!(cancelled.state, JobState::Cancelled as i32, "the cancel reached the replica running the job");
    let rest = collect(watch).await;
    assert!(matches!(rest.last().unwrap().event, Some(Event::Cancelled(_))));
    let active = || vidmesh_runtime::metrics::value(&stages.denoiser_metrics, "denoiser_active_requests").unwrap();
    let t0 = std::time::Instant::now();
    while active() > 0.0 {
        assert!(t0.elapsed() < Duration::from_secs(10), "the denoiser kept the cancelled request");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let steps = vidmesh_runtime::metrics::value(&stages.denoiser_metrics, "denoiser_steps_total").unwrap();
    assert!(steps < 100.0, "{steps} steps ran for a job cancelled at step 2");

    front.stop().await;
    runner.stop().await;
    stages.shutdown.cancel();
    drop_database(&url, &admin).await;
}
