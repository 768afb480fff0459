//! One stage client over several endpoints balances its calls over all of them (tower's p2c over tonic's balanced
//! channel), and keeps serving from the others when one goes away.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use vidmesh_gateway::config::StageConfig;
use vidmesh_gateway::stages::Stage;

/// A grpc.health.v1 server that counts the calls it gets; stops when `stop` fires.
async fn counting_server(stop: CancellationToken) -> (String, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_service_status("", tonic_health::ServingStatus::Serving).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let counted = tonic::service::interceptor::InterceptedService::new(health, move |req| {
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(req)
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _reporter = reporter;
        tonic::transport::Server::builder()
            .add_service(counted)
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), stop.cancelled_owned())
            .await
            .unwrap();
    });
    (format!("http://{addr}"), calls, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_spread_over_every_endpoint_and_survive_losing_one() {
    let (stop_a, stop_b) = (CancellationToken::new(), CancellationToken::new());
    let (a, calls_a, server_a) = counting_server(stop_a.clone()).await;
    let (b, calls_b, _server_b) = counting_server(stop_b.clone()).await;
    let shutdown = CancellationToken::new();
    let config = StageConfig { endpoints: vec![a, b], backoff_ms: 10, ..Default::default() };
    let stage = Stage::connect("test", &config, &shutdown).unwrap();
    let call = || {
        let stage = stage.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            stage
                .retry(deadline, |left| {
                    let mut req = tonic::Request::new(HealthCheckRequest::default());
                    req.set_timeout(left);
                    let mut client = HealthClient::new(stage.svc());
                    async move { client.check(req).await }
                })
                .await
        }
    };
    for _ in 0..40 {
        call().await.unwrap();
    }
    let (na, nb) = (calls_a.load(Ordering::Relaxed), calls_b.load(Ordering::Relaxed));
    assert_eq!(na + nb, 40);
    assert!(na > 0 && nb > 0, "both endpoints get calls: {na} / {nb}");

    // One endpoint goes away: calls keep succeeding on the other (UNAVAILABLE is retried).
    stop_a.cancel();
    server_a.await.unwrap();
    let nb = calls_b.load(Ordering::Relaxed);
    for _ in 0..20 {
        call().await.unwrap();
    }
    assert_eq!(calls_b.load(Ordering::Relaxed), nb + 20, "the survivor took every call");
    shutdown.cancel();
    stop_b.cancel();
}
