//! A new service through the shared stage shell: a toy "echo" stage (its whole code is the block marked below, 38
//! lines) is configured in layers with its values validated, served on 127.0.0.1:0, health-checked while loading
//! and once loaded (over gRPC, and over HTTP on the metrics port), called, found by reflection in both versions, and
//! drained.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::{Request, Response, Status};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use vidmesh_proto::text_encoder::v1::text_encoder_client::TextEncoderClient;
use vidmesh_proto::text_encoder::v1::text_encoder_server::{TextEncoder, TextEncoderServer};
use vidmesh_proto::text_encoder::v1::{EncodeRequest, EncodeResponse, Encoding};
use vidmesh_runtime::config::{Checks, Validate};
use vidmesh_runtime::stage::{Context, Options, StartError, Started, serve_with};
use vidmesh_runtime::{ServerConfig, Stage, TelemetryConfig};

// ---- the echo stage: everything it needs of its own ----
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct EchoConfig {
    server: ServerConfig,
    telemetry: TelemetryConfig,
    repeat: usize,
}
impl Default for EchoConfig {
    fn default() -> Self {
        Self { server: ServerConfig::default(), telemetry: TelemetryConfig::default(), repeat: 1 }
    }
}
impl Validate for EchoConfig {
    fn check(&self, prefix: &str, checks: &mut Checks) {
        checks.section(prefix, "server", &self.server).at_least(format_args!("{prefix}repeat"), self.repeat, 1);
    }
}
vidmesh_runtime::stage_config!(EchoConfig);
struct Echo(usize);
#[tonic::async_trait]
impl TextEncoder for Echo {
    async fn encode(&self, r: Request<EncodeRequest>) -> Result<Response<EncodeResponse>, Status> {
        let ids = |p: String| p.repeat(self.0).bytes().map(i64::from).collect();
        let encodings =
            r.into_inner().prompts.into_iter().map(|p| Encoding { token_ids: ids(p), ..Default::default() });
        Ok(Response::new(EncodeResponse { encodings: encodings.collect(), model: "echo".into(), ..Default::default() }))
    }
}
struct EchoStage;
impl Stage for EchoStage {
    type Config = EchoConfig;
    const NAME: &'static str = "vidmesh-echo";
    const SERVICE: &'static str = "vidmesh.text_encoder.v1.TextEncoder";
    async fn start(config: EchoConfig, _ctx: Context) -> Result<Started, StartError> {
        let routes = Routes::new(TextEncoderServer::new(Echo(config.repeat)));
        Ok(Started::new(routes).loading(|| Ok::<(), std::io::Error>(())))
    }
}
// ---- end of the echo stage ----

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn its_config_loads_in_layers_and_invalid_values_name_their_keys() {
    let config: EchoConfig = vidmesh_runtime::config::load(None, &env(&[("VIDMESH__REPEAT", "3")])).unwrap();
    assert_eq!(config.repeat, 3);
    let err = vidmesh_runtime::config::load::<EchoConfig>(None, &env(&[("VIDMESH__REPEAT", "0")])).unwrap_err();
    assert!(err.to_string().contains("repeat: must be at least 1 (is 0)"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_is_served_health_checked_reflected_and_drained() {
    let config: EchoConfig = vidmesh_runtime::config::load(None, &env(&[("VIDMESH__REPEAT", "2")])).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (open, gate) = oneshot::channel::<()>();
    let opts = Options {
        env: HashMap::new(),
        registry: prometheus::Registry::new(),
        metrics_listener: None,
        load_gate: async move {
            let _ = gate.await;
        },
        listeners: HashMap::new(),
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve_with::<EchoStage, _>(config, listener, shutdown.clone(), opts));

    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    let mut health = HealthClient::new(channel.clone());
    let status = |s: &str| HealthCheckRequest { service: s.into() };
    assert_eq!(health.check(status(EchoStage::SERVICE)).await.unwrap().into_inner().status, 2, "NOT_SERVING");
    assert_eq!(health.check(status("liveness")).await.unwrap().into_inner().status, 1, "alive while loading");
    open.send(()).unwrap();
    vidmesh_runtime::health::wait_serving(addr, EchoStage::SERVICE).await.unwrap();

    let reply = TextEncoderClient::new(channel.clone())
        .encode(EncodeRequest { prompts: vec!["ab".into()], ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.encodings[0].token_ids, [97, 98, 97, 98], "the configured repeat reached the service");

    for v1alpha in [false, true] {
        let services = reflected_services(channel.clone(), v1alpha).await;
        assert!(services.contains(&EchoStage::SERVICE.to_string()), "v1alpha={v1alpha}: {services:?}");
        assert!(services.contains(&"grpc.health.v1.Health".to_string()), "v1alpha={v1alpha}: {services:?}");
    }

    let mut watch = health.watch(status(EchoStage::SERVICE)).await.unwrap().into_inner();
    assert_eq!(watch.message().await.unwrap().unwrap().status, 1);
    shutdown.cancel();
    assert_eq!(watch.message().await.unwrap().unwrap().status, 2, "a drain flips health to NOT_SERVING first");
    drop((watch, health, channel));
    tokio::time::timeout(Duration::from_secs(30), task).await.unwrap().unwrap().unwrap();
}

/// `GET path` on `addr`: the status line and the body.
async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).await.unwrap();
    reply
}

/// What Kubernetes probes use when the gRPC port wants client certificates: the metrics port's `/readyz` follows
/// the service's health (503 while loading), `/livez` answers while the process serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_port_answers_http_probes() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (addr, probes) = (listener.local_addr().unwrap(), metrics.local_addr().unwrap());
    let (open, gate) = oneshot::channel::<()>();
    let opts = Options {
        env: HashMap::new(),
        registry: prometheus::Registry::new(),
        metrics_listener: Some(metrics),
        load_gate: async move {
            let _ = gate.await;
        },
        listeners: HashMap::new(),
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve_with::<EchoStage, _>(EchoConfig::default(), listener, shutdown.clone(), opts));
    let ready = get(probes, "/readyz").await;
    assert!(ready.starts_with("HTTP/1.1 503") && ready.ends_with("NOT_SERVING\n"), "{ready}");
    assert!(get(probes, "/livez").await.starts_with("HTTP/1.1 200"), "alive while loading");
    open.send(()).unwrap();
    vidmesh_runtime::health::wait_serving(addr, EchoStage::SERVICE).await.unwrap();
    let ready = get(probes, "/readyz").await;
    assert!(ready.starts_with("HTTP/1.1 200") && ready.ends_with("SERVING\n"), "{ready}");
    assert!(get(probes, "/metrics").await.starts_with("HTTP/1.1 200"));
    assert!(get(probes, "/other").await.starts_with("HTTP/1.1 404"));
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), task).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn a_config_built_in_code_is_validated_before_serving() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = EchoConfig { repeat: 0, ..Default::default() };
    let err = serve_with::<EchoStage, _>(config, listener, CancellationToken::new(), Options::local()).await;
    assert!(matches!(&err, Err(StartError::Config(e)) if e.to_string().contains("repeat")), "{err:?}");
}

#[tokio::test]
async fn a_taken_port_is_a_start_up_error_naming_its_key() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = EchoConfig::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.metrics_listen = taken.local_addr().unwrap();
    let Err(err) = vidmesh_runtime::stage::bind::<EchoStage>(&config, HashMap::new()).await else {
        panic!("bound a taken port")
    };
    assert!(matches!(err, StartError::Bind { key: "server.metrics_listen", .. }), "{err}");
    assert!(err.to_string().starts_with("cannot listen on server.metrics_listen = 127.0.0.1:"), "{err}");
}

/// The service names reflection lists, asked in `grpc.reflection.v1` or (as grpcio-reflection, Postman, Evans and
/// older grpcurl do) `grpc.reflection.v1alpha`.
async fn reflected_services(channel: tonic::transport::Channel, v1alpha: bool) -> Vec<String> {
    macro_rules! list {
        ($v:ident) => {{
            use tonic_reflection::pb::$v::ServerReflectionRequest;
            use tonic_reflection::pb::$v::server_reflection_client::ServerReflectionClient;
            use tonic_reflection::pb::$v::server_reflection_request::MessageRequest;
            use tonic_reflection::pb::$v::server_reflection_response::MessageResponse;
            let req = ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            };
            let mut client = ServerReflectionClient::new(channel);
            let mut stream = client.server_reflection_info(futures::stream::iter([req])).await.unwrap().into_inner();
            match stream.message().await.unwrap().unwrap().message_response {
                Some(MessageResponse::ListServicesResponse(l)) => l.service.into_iter().map(|s| s.name).collect(),
                other => panic!("no service list: {other:?}"),
            }
        }};
    }
    if v1alpha { list!(v1alpha) } else { list!(v1) }
}
