//! The gateway over real gRPC in front of the four real stages (bundled model, ONNX Runtime), jobs in SQLite:
//! Generate streams a job from accepted to completed with monotonic progress and a stored, recognised MP4; Watch
//! resumes from any sequence; Get/List/idempotency; cancel mid-denoise stops the denoiser within a step; a gateway
//! that stops mid-job hands the job back and the next gateway on the same database completes it.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::Duration;

use common::{Gateway, Stages, gateway_config, no_stages, sqlite, stages as start_stages};
use tonic::Code;
use vidmesh_proto::gateway::v1::{
    CancelJobRequest, GenerateRequest, GetJobRequest, JobEvent, JobState, ListJobsRequest, ListModelsRequest,
    WatchJobRequest, job_event::Event,
};

fn small(prompt: &str) -> GenerateRequest {
    GenerateRequest {
        prompt: prompt.into(),
        num_frames: 8,
        num_inference_steps: 4,
        seed: Some(7),
        ..Default::default()
    }
}

async fn collect(mut s: tonic::Streaming<JobEvent>) -> Vec<JobEvent> {
    let mut out = Vec::new();
    while let Some(ev) = s.message().await.unwrap() {
        out.push(ev);
    }
    out
}

fn kinds(events: &[JobEvent]) -> Vec<&'static str> {
    events
        .iter()
        .map(|e| match e.event.as_ref().unwrap() {
            Event::Accepted(_) => "accepted",
            Event::Queued(_) => "queued",
            Event::Encoding(_) => "encoding",
            Event::Denoising(_) => "denoising",
            Event::Decoding(_) => "decoding",
            Event::Classifying(_) => "classifying",
            Event::Completed(_) => "completed",
            Event::Failed(_) => "failed",
            Event::Cancelled(_) => "cancelled",
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_streams_from_accepted_to_a_stored_recognised_video_and_can_be_watched_again() {
    let dir = tempfile::tempdir().unwrap();
    let stages = start_stages(dir.path()).await;
    let gw = Gateway::start(gateway_config(&stages, dir.path(), &sqlite(dir.path()))).await;
    let mut client = gw.client().await;

    let models = client.list_models(ListModelsRequest {}).await.unwrap().into_inner().models;
    assert_eq!(models[0].name, "vidmesh-tiny");
    assert!(models[0].sizes.contains(&"64x64".to_string()));
    assert_eq!(
        (models[0].cache_tiers.join(","), models[0].default_cache.as_str()),
        ("off,balanced,fast".into(), "off")
    );

    let with_previews = GenerateRequest { preview_every: 2, ..small("a red circle moving left") };
    let events = collect(client.generate(with_previews).await.unwrap().into_inner()).await;
    let k = kinds(&events);
    assert_eq!(&k[..3], ["accepted", "queued", "encoding"], "{k:?}");
    assert_eq!(k.iter().filter(|k| **k == "denoising").count(), 4, "one event per step: {k:?}");
    assert!(k.contains(&"decoding") && k.contains(&"classifying"), "{k:?}");
    assert_eq!(k.last(), Some(&"completed"), "{k:?}");
    for (i, ev) in events.iter().enumerate() {
        assert_eq!(ev.sequence, i as u64 + 1, "sequences are 1, 2, 3, ...");
    }
    for w in events.windows(2) {
        assert!(w[1].progress >= w[0].progress, "progress went down: {} → {}", w[0].progress, w[1].progress);
    }
    assert_eq!(events.last().unwrap().progress, 1.0);
    let steps: Vec<u32> = events
        .iter()
        .filter_map(|e| match &e.event {
            Some(Event::Denoising(d)) => Some(d.step),
            _ => None,
        })
        .collect();
    assert_eq!(steps, [1, 2, 3, 4]);
    // A preview every 2 steps (before the last): step 2 carries a PNG of the x0 estimate, the others none.
    let previews: Vec<(u32, usize)> = events
        .iter()
        .filter_map(|e| match &e.event {
            Some(Event::Denoising(d)) if !d.preview_png.is_empty() => {
                assert_eq!(&d.preview_png[1..4], b"PNG");
                Some((d.step, d.preview_png.len()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(previews.iter().map(|p| p.0).collect::<Vec<_>>(), [2], "{previews:?}");
    let Some(Event::Completed(result)) = events.last().unwrap().event.clone() else { unreachable!() };
    let video = result.video.unwrap();
    let path = video.uri.strip_prefix("file://").unwrap();
    let mp4 = std::fs::read(path).unwrap();
    assert_eq!((mp4.len() as u64, vidmesh_storage::sha256_hex(&mp4)), (video.bytes, video.sha256));
    assert_eq!(&mp4[4..8], b"ftyp");
    assert_eq!((result.width, result.height, result.frames, result.fps), (64, 64, 8, 8));
    assert_eq!(result.detection_verdict, "generated", "{:?}", result.detection_reasons);

    // Watch resumes after any sequence with exactly the rest of the log.
    let id = events[0].job_id.clone();
    let again =
        collect(client.watch(WatchJobRequest { id: id.clone(), after_sequence: 3 }).await.unwrap().into_inner()).await;
    assert_eq!(again, events[3..]);
    let job = client.get(GetJobRequest { id: id.clone() }).await.unwrap().into_inner();
    assert_eq!((job.state, job.progress, job.last_sequence), (JobState::Completed as i32, 1.0, events.len() as u64));
    assert_eq!(job.request.unwrap().seed, Some(7));

    // Idempotency: the same key returns the same job.
    let keyed = GenerateRequest { idempotency_key: "once".into(), ..small("a blue square") };
    let a = client.submit(keyed.clone()).await.unwrap().into_inner();
    let b = client.submit(keyed).await.unwrap().into_inner();
    assert_eq!(a.id, b.id);
    collect(client.watch(WatchJobRequest { id: a.id.clone(), after_sequence: 0 }).await.unwrap().into_inner()).await;

    // List: newest first, paginated.
    let page = client.list(ListJobsRequest { limit: 1, ..Default::default() }).await.unwrap().into_inner();
    assert_eq!(page.jobs[0].id, a.id);
    let next = client.list(ListJobsRequest { limit: 1, after: page.next_after, ..Default::default() }).await.unwrap();
    assert_eq!(next.get_ref().jobs[0].id, id);
    assert!(next.get_ref().next_after.is_empty());

    for bad in ["nope", ""] {
        let err = client.get(GetJobRequest { id: bad.into() }).await.unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
    }
    let err = client.generate(GenerateRequest { width: 4096, height: 4096, ..small("x") }).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("64x64"), "{}", err.message());
    gw.stop().await;
    stages.shutdown.cancel();
}

fn steps_run(stages: &Stages) -> f64 {
    vidmesh_runtime::metrics::value(&stages.denoiser_metrics, "denoiser_steps_total").unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_mid_denoise_stops_the_denoiser_within_a_step() {
    let dir = tempfile::tempdir().unwrap();
    let stages = start_stages(dir.path()).await;
    let gw = Gateway::start(gateway_config(&stages, dir.path(), &sqlite(dir.path()))).await;
    let mut client = gw.client().await;
    let job = client
        .submit(GenerateRequest { num_inference_steps: 1000, num_frames: 32, ..small("a green triangle") })
        .await
        .unwrap()
        .into_inner();
    let mut watch = client.watch(WatchJobRequest { id: job.id.clone(), after_sequence: 0 }).await.unwrap().into_inner();
    let mut seen = Vec::new();
    while let Some(ev) = watch.message().await.unwrap() {
        let at_step_two = matches!(&ev.event, Some(Event::Denoising(d)) if d.step >= 2);
        seen.push(ev);
        if at_step_two {
            break;
        }
    }
    let cancelled = client.cancel(CancelJobRequest { id: job.id.clone() }).await.unwrap().into_inner();
    assert_eq!(cancelled.state, JobState::Cancelled as i32);
    let at_cancel = steps_run(&stages);
    seen.extend(collect(watch).await);
    assert_eq!(kinds(&seen).last(), Some(&"cancelled"));
    // The denoiser lets go of the request within one step of the stream being dropped.
    let active = || vidmesh_runtime::metrics::value(&stages.denoiser_metrics, "denoiser_active_requests").unwrap();
    let t0 = std::time::Instant::now();
    while active() > 0.0 {
        assert!(t0.elapsed() < Duration::from_secs(10), "the denoiser kept the cancelled request");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let after = steps_run(&stages);
    assert!(after - at_cancel <= 1.0, "{} steps ran after the cancel", after - at_cancel);
    assert!(after < 100.0, "{after} of 1000 steps ran");
    // Cancel is idempotent on final jobs.
    let again = client.cancel(CancelJobRequest { id: job.id.clone() }).await.unwrap().into_inner();
    assert_eq!(again.state, JobState::Cancelled as i32);
    gw.stop().await;
    stages.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_whose_gateway_stops_mid_run_is_completed_by_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let stages = start_stages(dir.path()).await;
    let config = gateway_config(&stages, dir.path(), &sqlite(dir.path()));
    // No drain grace: the running job is handed back at once.
    let mut impatient = config.clone();
    impatient.server.drain_grace_secs = 0;
    let first = Gateway::start(impatient).await;
    let mut client = first.client().await;
    let job = client
        .submit(GenerateRequest { num_inference_steps: 400, ..small("a yellow circle") })
        .await
        .unwrap()
        .into_inner();
    let mut watch = client.watch(WatchJobRequest { id: job.id.clone(), after_sequence: 0 }).await.unwrap().into_inner();
    let mut last = 0;
    while let Some(ev) = watch.message().await.unwrap() {
        last = ev.sequence;
        if matches!(ev.event, Some(Event::Denoising(_))) {
            break;
        }
    }
    first.shutdown.cancel();
    let _ = first.task.await.unwrap();

    let second = Gateway::start(config).await;
    let mut client = second.client().await;
    let rest =
        collect(client.watch(WatchJobRequest { id: job.id.clone(), after_sequence: last }).await.unwrap().into_inner())
            .await;
    let k = kinds(&rest);
    assert!(k.contains(&"queued"), "handed back to the queue: {k:?}");
    assert_eq!(k.last(), Some(&"completed"), "{k:?}");
    assert_eq!(rest[0].sequence, last + 1, "nothing lost in between");
    let done = client.get(GetJobRequest { id: job.id }).await.unwrap().into_inner();
    assert_eq!(done.state, JobState::Completed as i32);
    second.stop().await;
    stages.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn finished_jobs_and_their_videos_are_deleted_after_the_retention() {
    let dir = tempfile::tempdir().unwrap();
    let stages = start_stages(dir.path()).await;
    let mut config = gateway_config(&stages, dir.path(), &sqlite(dir.path()));
    config.store.retention_secs = 1;
    config.store.poll_ms = 50;
    let gw = Gateway::start(config).await;
    let mut client = gw.client().await;
    let events = collect(client.generate(small("a white square")).await.unwrap().into_inner()).await;
    let Some(Event::Completed(result)) = events.last().unwrap().event.clone() else { panic!("{events:?}") };
    let video = std::path::PathBuf::from(result.video.unwrap().uri.strip_prefix("file://").unwrap());
    assert!(video.exists());
    let id = events[0].job_id.clone();
    let t0 = std::time::Instant::now();
    loop {
        match client.get(GetJobRequest { id: id.clone() }).await {
            Err(e) if e.code() == Code::NotFound => break,
            Ok(_) => {}
            Err(e) => panic!("{e}"),
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "the job outlived its retention by far");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!video.exists(), "the video is deleted with the job");
    gw.stop().await;
    stages.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waiting_jobs_hear_their_queue_position_move_up() {
    let dir = tempfile::tempdir().unwrap();
    let stages = start_stages(dir.path()).await;
    let mut config = gateway_config(&stages, dir.path(), &sqlite(dir.path()));
    config.stages.max_running = 1;
    let gw = Gateway::start(config).await;
    let mut client = gw.client().await;
    let mut ids = Vec::new();
    for k in 0..3 {
        ids.push(client.submit(small(&format!("a red circle {k}"))).await.unwrap().into_inner().id);
    }
    let last =
        collect(client.watch(WatchJobRequest { id: ids[2].clone(), after_sequence: 0 }).await.unwrap().into_inner())
            .await;
    let positions: Vec<u32> = last
        .iter()
        .filter_map(|e| if let Some(Event::Queued(q)) = &e.event { Some(q.position) } else { None })
        .collect();
    // Submitted third (two ahead, or one if the first had already been claimed), then moving up to first.
    assert!(positions.first().is_some_and(|p| *p >= 2), "{positions:?}");
    assert_eq!(positions.last(), Some(&1), "{positions:?}");
    assert!(positions.windows(2).all(|w| w[1] < w[0]), "positions only move up: {positions:?}");
    let k = kinds(&last);
    let started = k.iter().position(|k| *k == "encoding").unwrap();
    assert!(k[..started].iter().all(|k| *k == "accepted" || *k == "queued"), "{k:?}");
    assert_eq!(k.last(), Some(&"completed"));
    gw.stop().await;
    stages.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_store_has_one_replica() {
    let dir = tempfile::tempdir().unwrap();
    let stages = no_stages();
    let config = gateway_config(&stages, dir.path(), &sqlite(dir.path()));
    let first = Gateway::start(config.clone()).await;
    let mut second = config;
    second.store.lock_wait_ms = 100;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let opts = vidmesh_runtime::stage::Options::with_env(Default::default());
    let err =
        vidmesh_runtime::stage::serve_with::<vidmesh_gateway::Gateway, _>(second, listener, Default::default(), opts)
            .await
            .unwrap_err();
    assert!(err.to_string().contains("PostgreSQL"), "{err}");
    first.stop().await;
}

/// An exported family behind the gateway: Wan 2.1's 4k+1 frames, sizes from ranges, its scheduler and its causal
/// VAE (preview and video) from request to a stored, recognised video.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_exported_wan_bundle_is_served_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let wan = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/wan2.1-tiny").display().to_string();
    let setup = vidmesh_testmesh::Setup { bundle: wan.clone(), ..vidmesh_testmesh::Setup::new(dir.path()) };
    let stages = Stages::start(&setup).await.unwrap();
    let mut config = gateway_config(&stages, dir.path(), &sqlite(dir.path()));
    config.model.bundle = wan;
    let gw = Gateway::start(config).await;
    let mut client = gw.client().await;
    let models = client.list_models(ListModelsRequest {}).await.unwrap().into_inner().models;
    assert_eq!(models[0].name, "wan2.1-tiny");
    assert_eq!(models[0].frame_counts.first(), Some(&5));
    assert!(models[0].frame_counts.iter().all(|f| f % 4 == 1), "{:?}", models[0].frame_counts);

    let bad = GenerateRequest { num_frames: 16, width: 64, height: 48, ..small("a red car") };
    let err = client.generate(bad).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("1 + a multiple of 4"), "{}", err.message());

    let req = GenerateRequest {
        num_frames: 17,
        width: 64,
        height: 48,
        num_inference_steps: 3,
        preview_every: 2,
        ..small("a red car drives through a forest")
    };
    let events = collect(client.generate(req).await.unwrap().into_inner()).await;
    let Some(Event::Completed(result)) = events.last().unwrap().event.clone() else { panic!("{:?}", kinds(&events)) };
    assert_eq!((result.width, result.height, result.frames, result.fps), (64, 48, 17, 16));
    assert!(events.iter().any(|e| matches!(&e.event, Some(Event::Denoising(d)) if !d.preview_png.is_empty())));
    let mp4 = std::fs::read(result.video.unwrap().uri.strip_prefix("file://").unwrap()).unwrap();
    let decoded = vidmesh_video::decode_video(&mp4).unwrap();
    assert_eq!((decoded.frames.len(), decoded.width, decoded.height), (17, 64, 48));
    assert_eq!(result.detection_verdict, "generated", "{:?}", result.detection_reasons);
    gw.stop().await;
    stages.shutdown.cancel();
}
