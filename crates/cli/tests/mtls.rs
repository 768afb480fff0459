//! Stage-to-stage mutual TLS, with the services as processes on loopback (`vidmesh serve <service>`) and every
//! certificate issued by a CA this test makes:
//! - the four stages serve gRPC with `[server.tls]` (client certificates required) and a gateway with
//!   `[stages.tls]` and `https://` endpoints completes a real job end to end; the stages' HTTP probes (`/readyz` on
//!   the metrics port) answer without a certificate;
//! - a stage refuses a client with no certificate, one with a certificate another CA issued, and a plaintext one; a
//!   client that expects another server name refuses the stage;
//! - a gateway configured without TLS against the TLS stages fails its job with an error naming the stage;
//! - a stage whose key file is missing does not start, and says which key.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::net::SocketAddr;
use std::path::Path;

use common::{Proc, Stages};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use vidmesh_proto::gateway::v1::gateway_client::GatewayClient;
use vidmesh_proto::gateway::v1::{GenerateRequest, JobEvent, job_event::Event};
use vidmesh_testkit::{TestCa, TlsFiles};

const STAGES: [&str; 4] = ["text-encoder", "denoiser", "decoder", "classifier"];

/// The four stages, each with its own certificate from `ca`, requiring client certificates from `ca`.
async fn tls_stages(ca: &TestCa, dir: &Path, root: &Path, client: &TlsFiles) -> Stages {
    let start = |service: &'static str| {
        let files = ca.issue(service, &[service, "localhost", "127.0.0.1"], dir);
        let toml = format!("{}{}", common::stage_toml(service, root, None), files.server_toml());
        let tls = client.client("127.0.0.1");
        async move { Proc::start_tls(service, dir, &toml, tls).await }
    };
    let (a, b, c, d) = tokio::join!(start(STAGES[0]), start(STAGES[1]), start(STAGES[2]), start(STAGES[3]));
    Stages(vec![a, b, c, d])
}

/// What the stage answers a health check through `endpoint`: `Ok` when it served it, else why not — `connect: …`
/// or `transport: …` when the connection failed (the stage never answered the call; with TLS 1.3 a refused client
/// certificate shows on the first call), `status: …` when the stage answered with an error.
async fn health(endpoint: Endpoint) -> Result<(), String> {
    let channel = endpoint.connect().await.map_err(|e| format!("connect: {}", chain(&e)))?;
    let check = HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await;
    check.map(drop).map_err(|s| {
        let from = if std::error::Error::source(&s).is_some() { "transport" } else { "status" };
        format!("{from}: {:?}: {}", s.code(), chain(&s))
    })
}

/// An error and its sources, `: `-separated.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

fn https(addr: SocketAddr, tls: ClientTlsConfig) -> Endpoint {
    Endpoint::from_shared(format!("https://{addr}")).unwrap().tls_config(tls).unwrap()
}

async fn generate(gw: &Proc) -> Vec<JobEvent> {
    let mut client = GatewayClient::connect(format!("http://{}", gw.grpc)).await.unwrap();
    let req = GenerateRequest {
        prompt: "a small red circle moving left".into(),
        num_inference_steps: 2,
        seed: Some(5),
        ..Default::default()
    };
    let mut stream = client.generate(req).await.unwrap().into_inner();
    let mut events = Vec::new();
    while let Some(ev) = stream.message().await.unwrap() {
        events.push(ev);
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stages_serve_mutual_tls_to_a_gateway_with_a_certificate_and_refuse_everyone_else() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let ca = TestCa::new("vidmesh test");
    let gateway_cert = ca.issue("gateway", &["gateway"], dir.path());
    let stages = tls_stages(&ca, dir.path(), &root, &gateway_cert).await;

    // The gateway reaches every stage over mutual TLS and the job completes.
    let store = format!("sqlite://{}", dir.path().join("jobs.db").display());
    let plain = stages.gateway_toml(&root, &store, None, 10);
    let toml =
        format!("{}{}", plain.replace("endpoints = [\"http://", "endpoints = [\"https://"), gateway_cert.stages_toml());
    let gw = Proc::start("gateway", dir.path(), &toml).await;
    let events = generate(&gw).await;
    let Some(Event::Completed(result)) = &events.last().unwrap().event else {
        panic!("not completed over mTLS: {:?}", events.last())
    };
    assert_eq!(result.detection_verdict, "generated", "the classifier, over mTLS too, recognised the video");
    assert!(gw.terminate(), "gateway exit status");

    // Kubernetes' probes: the metrics port answers readiness in plain HTTP, no certificate needed.
    let probe = format!("http://{}/readyz", stages.denoiser().metrics.unwrap());
    assert_eq!(reqwest::get(probe).await.unwrap().status(), 200);

    let addr = stages.denoiser().grpc;
    let trusting = || ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca.pem())).domain_name("127.0.0.1");
    health(https(addr, gateway_cert.client("127.0.0.1"))).await.expect("the gateway's certificate is accepted");
    let refusals = [
        ("no client certificate", https(addr, trusting())),
        ("a certificate another CA issued", {
            let rogue = TestCa::new("rogue").issue("gateway", &["gateway"], &dir.path().join("rogue"));
            let identity = tonic::transport::Identity::from_pem(
                std::fs::read(&rogue.cert).unwrap(),
                std::fs::read(&rogue.key).unwrap(),
            );
            https(addr, trusting().identity(identity))
        }),
        ("plaintext", Endpoint::from_shared(format!("http://{addr}")).unwrap()),
    ];
    for (who, endpoint) in refusals {
        let err = health(endpoint).await.expect_err(who);
        eprintln!("{who}: refused with {err}");
        assert!(err.starts_with("connect:") || err.starts_with("transport:"), "{who}: {err}");
    }
    // The client checks the stage's name too: a certificate for other names is refused by the client.
    let err = health(https(addr, gateway_cert.client("denoiser.elsewhere"))).await.expect_err("wrong server name");
    assert!(err.contains("NotValidForName") || err.contains("not valid for name"), "{err}");

    // A gateway that speaks plaintext to the TLS stages fails the job, naming the stage it could not reach.
    let store = format!("sqlite://{}", dir.path().join("plain-jobs.db").display());
    let quick = stages
        .gateway_toml(&root, &store, None, 10)
        .replace("endpoints = [", "attempts = 2\nbackoff_ms = 10\nendpoints = [");
    let gw = Proc::start("gateway", dir.path(), &quick).await;
    let events = generate(&gw).await;
    let Some(Event::Failed(failed)) = &events.last().unwrap().event else {
        panic!("a plaintext gateway completed against TLS stages: {:?}", events.last())
    };
    eprintln!("plaintext gateway: {failed:?}");
    assert_eq!(failed.code, "UNAVAILABLE", "{failed:?}");
    assert!(failed.message.starts_with("text-encoder: the connection failed before the stage answered"), "{failed:?}");
}

#[test]
fn a_stage_with_a_missing_key_file_does_not_start_and_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("vidmesh test");
    let mut files = ca.issue("text-encoder", &["localhost"], dir.path());
    files.key = dir.path().join("missing.key");
    let toml = format!("{}{}", common::stage_toml("text-encoder", dir.path(), None), files.server_toml());
    let file = dir.path().join("text-encoder.toml");
    std::fs::write(&file, toml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vidmesh"))
        .args(["serve", "text-encoder", file.to_str().unwrap()])
        .env("VIDMESH_CACHE", dir.path().join("cache"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("server.tls.key_file: cannot read"), "{stderr}");
}
