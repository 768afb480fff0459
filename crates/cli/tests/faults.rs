//! Faults with the five services as separate processes on loopback (`vidmesh serve <service>`), the figures of
//! docs/reliability.md (`cargo test -p vidmesh-cli --features gateway --test faults -- --nocapture` prints them):
//! - every stage killed (`kill -9`) mid-job and replaced, on the same address or another one the gateway lists:
//!   every job completes, with the same video as an undisturbed run of the same request (same seed);
//! - a stage that stays down past the job's deadline: the job fails with a stage-prefixed DEADLINE_EXCEEDED;
//! - a gateway replica killed mid-job: on PostgreSQL the other replica takes its jobs over when their leases
//!   expire, on SQLite the restarted replica does; watchers reconnect and see gapless event logs.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{PgDb, Proc, Stages, free_addr, listening_at, stage_toml};
use tonic::transport::Channel;
use vidmesh_proto::gateway::v1::gateway_client::GatewayClient;
use vidmesh_proto::gateway::v1::{GenerateRequest, Job, JobEvent, JobState, WatchJobRequest, job_event::Event};

async fn client(gw: &Proc) -> GatewayClient<Channel> {
    GatewayClient::connect(format!("http://{}", gw.grpc)).await.unwrap()
}

fn request(steps: u32) -> GenerateRequest {
    GenerateRequest {
        prompt: "a small red circle moving left slowly on a black background".into(),
        num_inference_steps: steps,
        seed: Some(11),
        ..Default::default()
    }
}

/// Watches `id` after `after` until `stop` holds for an event (returned with everything seen), or the log ends.
async fn watch_until(
    gw: &Proc,
    id: &str,
    after: u64,
    stop: impl Fn(&JobEvent) -> bool,
) -> (Vec<JobEvent>, tonic::Streaming<JobEvent>) {
    let req = WatchJobRequest { id: id.into(), after_sequence: after };
    let mut stream = client(gw).await.watch(req).await.unwrap().into_inner();
    let mut seen = Vec::new();
    while let Some(ev) = stream.message().await.unwrap() {
        let done = stop(&ev);
        seen.push(ev);
        if done {
            break;
        }
    }
    (seen, stream)
}

/// Everything left of `id`'s log after `after`, to its final event (a watch ends there), within `limit`.
async fn rest(gw: &Proc, id: &str, after: u64, limit: Duration) -> Vec<JobEvent> {
    let watch = watch_until(gw, id, after, |_| false);
    tokio::time::timeout(limit, watch).await.unwrap_or_else(|_| panic!("job {id} hung")).0
}

/// The log from `first` on has no gaps and ends in exactly one final event.
fn assert_gapless(events: &[JobEvent], first: u64) {
    for (i, ev) in events.iter().enumerate() {
        assert_eq!(ev.sequence, first + i as u64, "a gap or a repeat in the log at {i}: {events:?}");
    }
    let finals = events.iter().filter(|e| matches!(e.event, Some(Event::Completed(_) | Event::Failed(_)))).count();
    assert_eq!(finals, 1, "exactly one final event");
}

fn is_step(ev: &JobEvent, at_least: u32) -> bool {
    matches!(&ev.event, Some(Event::Denoising(d)) if d.step >= at_least)
}

/// The frames of a completed job's video.
fn frames(ev: &JobEvent) -> Vec<Vec<u8>> {
    let Some(Event::Completed(result)) = &ev.event else { panic!("not completed: {ev:?}") };
    let path = result.video.as_ref().unwrap().uri.strip_prefix("file://").unwrap().to_string();
    vidmesh_video::decode_video(&std::fs::read(path).unwrap()).unwrap().frames
}

/// PSNR over all frames of two equally long videos, in dB (RGB, 8-bit); infinite when they are identical.
fn psnr(a: &[Vec<u8>], b: &[Vec<u8>]) -> f64 {
    assert_eq!(a.len(), b.len(), "frame counts");
    let (mut sum, mut n) = (0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        for (p, q) in x.iter().zip(y) {
            sum += (f64::from(*p) - f64::from(*q)).powi(2);
            n += 1.0;
        }
    }
    10.0 * (255f64.powi(2) / (sum / n)).log10() // infinite for identical frames
}

/// Kills stage `i` and starts its replacement at `addr`.
async fn replace(stages: &mut Stages, i: usize, service: &str, dir: &Path, root: &Path, addr: std::net::SocketAddr) {
    stages.0.remove(i).kill9();
    let config = listening_at(&stage_toml(service, root, None), addr);
    stages.0.insert(i, Proc::start(service, dir, &config).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stage_killed_mid_job_is_replaced_and_every_job_completes_with_the_same_video() {
    let dir = tempfile::tempdir().unwrap();
    let (dir, root) = (dir.path(), dir.path().join("data"));
    let mut stages = Stages::start(dir, &root, None).await;
    // The denoiser's replacement comes up on another address, one the gateway lists but nothing serves yet.
    let (denoiser, spare) = (stages.denoiser().grpc, free_addr());
    let config = stages.gateway_toml(&root, &format!("sqlite://{}", dir.join("jobs.db").display()), None, 10).replace(
        &format!("endpoints = [\"http://{denoiser}\"]"),
        &format!("endpoints = [\"http://{denoiser}\", \"http://{spare}\"]"),
    );
    let gw = Proc::start("gateway", dir, &config).await;
    let limit = Duration::from_secs(120);
    let steps = 60;
    let submit = async || client(&gw).await.submit(request(steps)).await.unwrap().into_inner();

    let baseline = submit().await;
    let events = rest(&gw, &baseline.id, 0, limit).await;
    let expected = frames(events.last().unwrap());
    // Each job's video carries its own watermark payload (from the job id), so two jobs' videos are compared by
    // PSNR: the same seed's videos differ only by their marks; another seed's is another video.
    let mut other = request(steps);
    other.seed = Some(12);
    let other = client(&gw).await.submit(other).await.unwrap().into_inner();
    let other = psnr(&frames(rest(&gw, &other.id, 0, limit).await.last().unwrap()), &expected);
    assert!(other < 25.0, "another seed's video is {other:.1} dB from the baseline: PSNR cannot tell videos apart");
    let mut rows = Vec::new();

    for (i, service, moment) in [
        (0, "text-encoder", "its encode call"),
        (1, "denoiser", "denoising step 3"),
        (2, "decoder", "its decode call"),
        (3, "classifier", "its detect call"),
    ] {
        // A stage that answers in milliseconds is frozen first (SIGSTOP: it keeps its sockets, answers nothing), so
        // the job's call to it is in flight when it is killed; the denoiser is killed while it streams steps.
        if service == "text-encoder" {
            stages.0[i].stop();
        }
        let job: Job = submit().await;
        let reached: Box<dyn Fn(&JobEvent) -> bool> = match service {
            "text-encoder" => Box::new(|e| matches!(e.event, Some(Event::Encoding(_)))),
            "denoiser" => Box::new(|e| is_step(e, 3)),
            "decoder" => Box::new(move |e| is_step(e, steps)),
            _ => Box::new(|e| matches!(e.event, Some(Event::Classifying(_)))),
        };
        if service == "decoder" || service == "classifier" {
            watch_until(&gw, &job.id, 0, |e| is_step(e, 1)).await;
            stages.0[i].stop();
        }
        let (seen, _) = watch_until(&gw, &job.id, 0, reached).await;
        let last = seen.last().unwrap().sequence;
        let addr = if service == "denoiser" { spare } else { stages.0[i].grpc };
        replace(&mut stages, i, service, dir, &root, addr).await;
        let after = rest(&gw, &job.id, last, limit).await;
        assert_gapless(&after, last + 1);
        let mut log = seen;
        log.extend(after);
        let denoised: Vec<u32> = log
            .iter()
            .filter_map(|e| if let Some(Event::Denoising(d)) = &e.event { Some(d.step) } else { None })
            .collect();
        assert_eq!(denoised, (1..=steps).collect::<Vec<_>>(), "{service}: every step reported once, in order");
        for w in log.windows(2) {
            assert!(w[1].progress >= w[0].progress, "{service}: progress went down");
        }
        let same = psnr(&frames(log.last().unwrap()), &expected);
        assert!(same > 35.0, "{service}: {same:.1} dB from the undisturbed run's video (another seed: {other:.1} dB)");
        let retries = gw.metric(&format!("gateway_stage_retries_total{{stage=\"{service}\"}}")).await.unwrap_or(0.0);
        assert!(retries >= 1.0, "{service}: the gateway made no second call");
        let how = if service == "denoiser" { "another address" } else { "the same address" };
        let same = if same.is_infinite() { "identical frames".to_string() } else { format!("{same:.1} dB") };
        rows.push(format!("| {service} | {moment} | {how} | completed | {same} | {retries} |"));
    }

    eprintln!(
        "| stage killed (kill -9) | while the job was at | replacement on | job | PSNR to the undisturbed video | stage calls retried |"
    );
    eprintln!("|---|---|---|---|---|---|");
    for r in &rows {
        eprintln!("{r}");
    }
    eprintln!("another seed's video: {other:.1} dB from the undisturbed one");
    eprintln!("jobs submitted: 6 (2 undisturbed + 4 with a stage killed); completed: 6; lost: 0; hung: 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_down_past_the_deadline_fails_the_job_naming_the_stage() {
    let dir = tempfile::tempdir().unwrap();
    let (dir, root) = (dir.path(), dir.path().join("data"));
    let stages = Stages::start(dir, &root, None).await;
    let store = format!("sqlite://{}", dir.join("jobs.db").display());
    let config = stages
        .gateway_toml(&root, &store, None, 10)
        .replace(&format!("http://{}", stages.0[0].grpc), &format!("http://{}", free_addr()))
        .replace("[http]", "[stages]\njob_timeout_secs = 3\n\n[http]");
    let gw = Proc::start("gateway", dir, &config).await;
    let job = client(&gw).await.submit(request(4)).await.unwrap().into_inner();
    let t0 = std::time::Instant::now();
    let events = rest(&gw, &job.id, 0, Duration::from_secs(30)).await;
    let Some(Event::Failed(error)) = &events.last().unwrap().event else { panic!("{:?}", events.last()) };
    assert_eq!(error.code, "DEADLINE_EXCEEDED");
    assert!(error.message.starts_with("text-encoder: the job's deadline passed while retrying"), "{}", error.message);
    assert!(t0.elapsed() < Duration::from_secs(10), "failed {:?} after submission (deadline 3 s)", t0.elapsed());
    eprintln!("a stage down past the deadline (3 s): failed after {:?}: {}", t0.elapsed(), error.message);
}

/// `jobs` jobs running on a gateway replica (config `first`) that is killed; a replica with `second` takes them
/// over: on PostgreSQL started before the kill, on SQLite after it (a restart).
async fn gateway_killed_mid_jobs(name: &str, first: &str, second: &str, dir: &Path, jobs: usize) {
    let a = Proc::start("gateway", dir, first).await;
    let mut ids = Vec::new();
    for _ in 0..jobs {
        ids.push(client(&a).await.submit(request(150)).await.unwrap().into_inner().id);
    }
    // Every job running on the first replica, a watcher on each.
    let mut last = Vec::new();
    for id in &ids {
        let (seen, _) = watch_until(&a, id, 0, |e| is_step(e, 2)).await;
        last.push(seen.last().unwrap().sequence);
    }
    let b = if name == "PostgreSQL" { Some(Proc::start("gateway", dir, second).await) } else { None };
    a.kill9();
    let b = match b {
        Some(b) => b,
        None => Proc::start("gateway", dir, second).await,
    };
    let mut completed = 0;
    for (id, last) in ids.iter().zip(last) {
        let after = rest(&b, id, last, Duration::from_secs(180)).await;
        assert_gapless(&after, last + 1);
        assert!(matches!(after.last().unwrap().event, Some(Event::Completed(_))), "{:?}", after.last());
        let job = client(&b).await.get(vidmesh_proto::gateway::v1::GetJobRequest { id: id.clone() }).await;
        assert_eq!(job.unwrap().into_inner().state, JobState::Completed as i32);
        completed += 1;
    }
    eprintln!("gateway killed mid-job on {name}: jobs {jobs}, completed {completed}, lost 0, hung 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_replica_killed_on_postgres_hands_its_jobs_to_the_other() {
    let db = PgDb::create("faults");
    let dir = tempfile::tempdir().unwrap();
    let (dir, root) = (dir.path(), dir.path().join("data"));
    let stages = Stages::start(dir, &root, None).await;
    let config = stages.gateway_toml(&root, &db.url, None, 10);
    gateway_killed_mid_jobs("PostgreSQL", &config, &config, dir, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_on_sqlite_completes_its_jobs_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (dir, root) = (dir.path(), dir.path().join("data"));
    let stages = Stages::start(dir, &root, None).await;
    let config = stages.gateway_toml(&root, &format!("sqlite://{}", dir.join("jobs.db").display()), None, 10);
    gateway_killed_mid_jobs("SQLite", &config, &config, dir, 3).await;
}
