//! End-to-end latency through the gateway and what the gateway adds: the four stages and a gateway served in this
//! process on loopback (real gRPC, jobs in SQLite), jobs of the bundle's default size (16x64x64, 30 steps, CFG 5)
//! submitted over gRPC at 1 and 4 concurrent jobs.
//!
//! e2e = Submit sent → completed event received. Stage time = the gateway's own timing of its stage calls
//! (gateway_stage_seconds for text-encoder, denoiser, decoder, classifier). Gateway overhead = e2e − stage time:
//! admission, the job store's writes (one per event), claiming, event fan-out to the watcher.
//!
//!   cargo run --release -p vidmesh-bench --bin gateway_e2e -- [--jobs N] [--out FILE]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tonic::transport::Channel;
use vidmesh_proto::gateway::v1::gateway_client::GatewayClient;
use vidmesh_proto::gateway::v1::{GenerateRequest, WatchJobRequest, job_event::Event};
use vidmesh_runtime::stage::Options;

fn stage_sum(registry: &prometheus::Registry) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == "gateway_stage_seconds")
        .flat_map(|f| f.get_metric())
        .filter(|m| m.get_label().iter().any(|l| l.name() == "stage" && l.value() != "job"))
        .map(|m| m.get_histogram().get_sample_sum())
        .sum()
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |k: &str| args.iter().position(|a| a == k).and_then(|i| args.get(i + 1)).cloned();
    let jobs: usize = arg("--jobs").map(|j| j.parse()).transpose()?.unwrap_or(8);
    let env: HashMap<String, String> = std::env::vars().collect();
    let dir = tempfile::tempdir()?;
    let root = dir.path().display().to_string();
    let stages =
        vidmesh_testmesh::Stages::start(&vidmesh_testmesh::Setup::new(dir.path())).await.map_err(anyhow::Error::msg)?;
    let [te, dn, dc, cl] = stages.addrs;
    let stop = stages.shutdown.clone();
    let mut config = vidmesh_gateway::Config::default();
    config.model.bundle = vidmesh_testmesh::bundle();
    config.storage.local_root.clone_from(&root);
    config.store.url = format!("sqlite://{}", dir.path().join("jobs.db").display());
    for (stage, addr) in [
        (&mut config.stages.text_encoder, te),
        (&mut config.stages.denoiser, dn),
        (&mut config.stages.decoder, dc),
        (&mut config.stages.classifier, cl),
    ] {
        stage.endpoints = vec![format!("http://{addr}")];
    }
    config.admission.tenants = vec![vidmesh_gateway::config::TenantConfig {
        name: "default".into(),
        max_active_jobs: 64,
        rate_per_minute: 6000,
        burst: 64,
        ..Default::default()
    }];
    let registry = prometheus::Registry::new();
    let opts = Options { registry: registry.clone(), ..Options::with_env(env.clone()) };
    let (addr, _gateway) = vidmesh_testmesh::serve_stage::<vidmesh_gateway::Gateway>(config, opts, &stop)
        .await
        .map_err(anyhow::Error::msg)?;
    let channel = Channel::from_shared(format!("http://{addr}"))?.connect().await?;

    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mut out = format!(
        "\n## Gateway end to end ({cores} cores; 4 stages + gateway in one process over loopback gRPC, SQLite jobs; \
         16x64x64, 30 steps, CFG 5; {jobs} jobs per row)\n\n\
         Reproduce: `cargo run --release -p vidmesh-bench --bin gateway_e2e -- --jobs {jobs}`\n\n\
         | concurrent jobs | e2e p50 s | e2e mean s | jobs/s | stage time per job s | gateway overhead per job ms |\n\
         |---|---|---|---|---|---|\n"
    );
    // One warm-up job so sessions and caches are hot.
    run(&channel, 1, 0).await?;
    for concurrency in [1usize, 4] {
        let before = stage_sum(&registry);
        let t0 = Instant::now();
        let mut latencies = Vec::new();
        for wave in 0..jobs.div_ceil(concurrency) {
            let n = concurrency.min(jobs - wave * concurrency);
            latencies.extend(run(&channel, n, (wave * concurrency) as u64 + 1).await?);
        }
        let wall = t0.elapsed().as_secs_f64();
        let stage = (stage_sum(&registry) - before) / jobs as f64;
        latencies.sort();
        let mean = latencies.iter().map(Duration::as_secs_f64).sum::<f64>() / jobs as f64;
        out.push_str(&format!(
            "| {concurrency} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} |\n",
            latencies[jobs / 2].as_secs_f64(),
            mean,
            jobs as f64 / wall,
            stage,
            (mean - stage) * 1e3
        ));
    }
    out.push_str(
        "\nAt 4 concurrent jobs the stage time includes waiting for the shared stages (the denoiser batches steps \
         of concurrent jobs), so e2e grows while jobs/s rises; the overhead column is what the gateway adds per job.\n",
    );
    print!("{out}");
    if let Some(p) = arg("--out") {
        let mut text = std::fs::read_to_string(&p).unwrap_or_default();
        text.push_str(&out);
        std::fs::write(&p, text).with_context(|| format!("writing {p}"))?;
    }
    stop.cancel();
    Ok(())
}

/// Submits `n` jobs at once and returns each one's submit → completed time.
async fn run(channel: &Channel, n: usize, seed0: u64) -> Result<Vec<Duration>> {
    let runs = (0..n).map(|k| {
        let mut client = GatewayClient::new(channel.clone());
        async move {
            let t0 = Instant::now();
            let req = GenerateRequest {
                prompt: "a small red circle moving left slowly on a black background".into(),
                seed: Some(seed0 + k as u64),
                ..Default::default()
            };
            let job = client.submit(req).await?.into_inner();
            let mut events = client.watch(WatchJobRequest { id: job.id, after_sequence: 0 }).await?.into_inner();
            while let Some(ev) = events.message().await? {
                match ev.event {
                    Some(Event::Completed(_)) => return Ok(t0.elapsed()),
                    Some(Event::Failed(e)) => anyhow::bail!("job failed: {} {}", e.code, e.message),
                    _ => {}
                }
            }
            anyhow::bail!("the watch ended before the job did")
        }
    });
    futures::future::try_join_all(runs).await
}
