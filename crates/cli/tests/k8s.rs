//! What the Kubernetes manifests set is exactly what the services read, for every overlay (rendered with
//! `kubectl kustomize`): each Deployment's config files (ConfigMaps, in the order its command names them) and
//! environment load into its service's config type (unknown keys fail: every config struct denies them);
//! Secret-provided keys are present (a production config with one missing falls back to a dev default and fails
//! here); ports, probes, Prometheus annotations and the drain agree with the config; files the config names are
//! mounted; the gateway's stage endpoints are headless Services of the right ports, `https://` exactly when the
//! stages serve mutual TLS (whose certificates come from Secrets, and whose probes use the metrics port); GPU
//! Deployments ask for a GPU exactly when their config says CUDA; the mtls overlay changes nothing but TLS. And the
//! metric each HPA scales on is exported by that service, started here for real.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use vidmesh_runtime::ServerConfig;
use vidmesh_runtime::stage::Options;

/// Every overlay under k8s/overlays.
const OVERLAYS: [&str; 3] = ["cpu", "gpu", "mtls"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn render(overlay: &str) -> Vec<Value> {
    let out = std::process::Command::new("kubectl")
        .args(["kustomize", repo().join("k8s/overlays").join(overlay).to_str().unwrap()])
        .output()
        .expect("kubectl (with kustomize) is installed");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// One Deployment's container as the service will see it.
struct Pod<'a> {
    where_: String,
    dep: &'a Value,
    container: &'a Value,
    /// The config files, in the order the command names them (each over the ones before it).
    tomls: Vec<String>,
    env: HashMap<String, String>,
}

impl Pod<'_> {
    fn port(&self, name: &str) -> Option<u16> {
        self.container["ports"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| p["containerPort"].as_u64().unwrap() as u16)
    }

    fn load<T: vidmesh_runtime::StageConfig>(&self) -> T {
        self.try_load().unwrap_or_else(|e| panic!("{}: {e}", self.where_))
    }

    fn try_load<T: vidmesh_runtime::StageConfig>(&self) -> Result<T, vidmesh_runtime::config::ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<PathBuf> = (self.tomls.iter().enumerate())
            .map(|(i, toml)| {
                let file = dir.path().join(format!("config-{i}.toml"));
                std::fs::write(&file, toml).unwrap();
                file
            })
            .collect();
        let files: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
        vidmesh_runtime::config::load_files(&files, &self.env)
    }

    /// The mount a path lies under: (mountPath, read-only, volume).
    fn mount_of(&self, path: &str) -> Option<(String, bool, Value)> {
        let volumes = self.dep["spec"]["template"]["spec"]["volumes"].as_array().unwrap();
        self.container["volumeMounts"].as_array()?.iter().find_map(|m| {
            let at = m["mountPath"].as_str().unwrap();
            let inside = path == at || path.starts_with(&format!("{}/", at.trim_end_matches('/')));
            inside.then(|| {
                let volume = volumes.iter().find(|v| v["name"] == m["name"]).unwrap().clone();
                (at.to_string(), m["readOnly"].as_bool().unwrap_or(false), volume)
            })
        })
    }

    fn assert_secret_file(&self, what: &str, path: &str) {
        let (_, _, volume) =
            self.mount_of(path).unwrap_or_else(|| panic!("{}: {what} {path} is not mounted", self.where_));
        assert!(volume.get("secret").is_some(), "{}: {what} {path} is not from a Secret", self.where_);
    }

    fn check_server(&self, server: &ServerConfig) {
        let w = &self.where_;
        assert_eq!(Some(server.listen.port()), self.port("grpc"), "{w}: server.listen vs the grpc containerPort");
        assert_eq!(Some(server.metrics_listen.port()), self.port("metrics"), "{w}: metrics_listen vs containerPort");
        let annotations = &self.dep["spec"]["template"]["metadata"]["annotations"];
        assert_eq!(annotations["prometheus.io/port"], server.metrics_listen.port().to_string(), "{w}: scrape port");
        let tls = &server.tls;
        for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/livez")] {
            if tls.enabled() {
                // kubelet's gRPC probes present no client certificate: the metrics port answers them in HTTP.
                let get = &self.container[probe]["httpGet"];
                assert_eq!((get["port"].as_str(), get["path"].as_str()), (Some("metrics"), Some(path)), "{w}: {probe}");
            } else {
                assert_eq!(
                    self.container[probe]["grpc"]["port"].as_u64(),
                    Some(u64::from(server.listen.port())),
                    "{w}: {probe}"
                );
            }
        }
        if tls.enabled() {
            assert!(tls.require_client_cert && !tls.client_ca_file.is_empty(), "{w}: stages serve mutual TLS");
            for (key, path) in [("cert_file", &tls.cert_file), ("key_file", &tls.key_file), ("ca", &tls.client_ca_file)]
            {
                self.assert_secret_file(key, path);
            }
        }
        let grace = self.dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"].as_u64().unwrap();
        let pause = self.container["lifecycle"]["preStop"]["sleep"]["seconds"].as_u64().unwrap_or(0);
        assert!(
            server.drain_grace_secs + pause < grace,
            "{w}: drain {} + preStop {pause} >= grace {grace}",
            server.drain_grace_secs
        );
    }

    fn check_model(&self, model: &vidmesh_model::ModelConfig) {
        let w = &self.where_;
        assert!(
            model.bundle.starts_with("s3://") || model.bundle.starts_with("/opt/vidmesh/models/"),
            "{w}: bundle {}",
            model.bundle
        );
        let (_, read_only, _) = self.mount_of(&model.cache_dir).unwrap_or_else(|| panic!("{w}: cache_dir not mounted"));
        assert!(!read_only, "{w}: the bundle cache must be writable");
    }

    fn check_storage(&self, storage: &vidmesh_storage::StorageConfig) {
        assert_eq!(storage.backend, "s3", "{}: production storage is S3", self.where_);
        assert!(!storage.s3.bucket.is_empty(), "{}: storage.s3.bucket", self.where_);
        assert!(
            !storage.s3.access_key_id.is_empty() && !storage.s3.secret_access_key.is_empty(),
            "{}: S3 credentials",
            self.where_
        );
    }

    fn gpu(&self) -> bool {
        self.container["resources"]["limits"].get("nvidia.com/gpu").is_some()
    }
}

/// Placeholder values for Secret-provided variables, shaped like the real thing.
fn from_secret(var: &str) -> String {
    if var.ends_with("KEY_HEX") {
        "ab".repeat(32)
    } else if var.ends_with("STORE__URL") {
        "postgres://vidmesh@postgres.database/vidmesh".into()
    } else {
        "from-a-secret".into()
    }
}

fn pods<'a>(docs: &'a [Value], overlay: &str) -> Vec<(String, Pod<'a>)> {
    let configmaps: HashMap<&str, &Value> = docs
        .iter()
        .filter(|d| d["kind"] == "ConfigMap")
        .map(|d| (d["metadata"]["name"].as_str().unwrap(), d))
        .collect();
    docs.iter()
        .filter(|d| d["kind"] == "Deployment")
        .map(|dep| {
            let container = &dep["spec"]["template"]["spec"]["containers"][0];
            let binary = container["command"][0].as_str().unwrap().rsplit('/').next().unwrap().to_string();
            let volumes = dep["spec"]["template"]["spec"]["volumes"].as_array().unwrap();
            let mounts = container["volumeMounts"].as_array().unwrap();
            assert_eq!(container["command"][1], "/etc/vidmesh/config.toml");
            // Every argument is a config file: a ConfigMap key mounted at that path.
            let tomls = container["command"].as_array().unwrap()[1..]
                .iter()
                .map(|file| {
                    let mount = mounts.iter().find(|m| m["mountPath"] == *file).unwrap_or_else(|| panic!("{file}"));
                    let volume = volumes.iter().find(|v| v["name"] == mount["name"]).unwrap();
                    let cm = configmaps[volume["configMap"]["name"].as_str().unwrap()];
                    cm["data"][mount["subPath"].as_str().unwrap()].as_str().unwrap().to_string()
                })
                .collect();
            let env = container["env"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|e| {
                    let name = e["name"].as_str().unwrap().to_string();
                    let value = if let Some(v) = e["value"].as_str() {
                        v.to_string()
                    } else if e["valueFrom"].get("secretKeyRef").is_some() {
                        from_secret(&name)
                    } else {
                        "from-the-pod".into()
                    };
                    name.starts_with("VIDMESH__").then_some((name, value))
                })
                .collect();
            let where_ = format!("{overlay}/{}", dep["metadata"]["name"].as_str().unwrap());
            (binary, Pod { where_, dep, container, tomls, env })
        })
        .collect()
}

#[test]
fn what_the_manifests_set_is_what_the_services_read() {
    for overlay in OVERLAYS {
        let docs = render(overlay);
        let services: HashMap<&str, &Value> = docs
            .iter()
            .filter(|d| d["kind"] == "Service")
            .map(|d| (d["metadata"]["name"].as_str().unwrap(), d))
            .collect();
        let all = pods(&docs, overlay);
        assert_eq!(all.len(), 5, "{overlay}: five Deployments");
        // Deployment → whether its gRPC port serves TLS; stage → whether the gateway dials it over TLS.
        let (mut serves_tls, mut dials_tls) = (HashMap::new(), HashMap::new());
        for (binary, pod) in &all {
            let w = &pod.where_;
            match binary.as_str() {
                "vidmesh-gateway" => {
                    let c: vidmesh_gateway::Config = pod.load();
                    pod.check_server(&c.server);
                    serves_tls.insert(pod.dep["metadata"]["name"].as_str().unwrap(), c.server.tls.enabled());
                    pod.check_model(&c.model);
                    pod.check_storage(&c.storage);
                    assert_eq!(Some(c.http.listen.port()), pod.port("http"), "{w}: http.listen");
                    assert!(
                        c.store.url.starts_with("postgres://"),
                        "{w}: the job store must be PostgreSQL: {}",
                        c.store.url
                    );
                    assert!(c.admission.anonymous_tenant.is_empty(), "{w}: production needs API keys");
                    pod.assert_secret_file("admission.tenants_file", &c.admission.tenants_file);
                    let tls = &c.stages.tls;
                    if tls.enabled() {
                        assert!(!tls.cert_file.is_empty(), "{w}: the gateway presents a client certificate");
                        for (key, path) in [("ca_file", &tls.ca_file), ("cert_file", &tls.cert_file)] {
                            pod.assert_secret_file(key, path);
                        }
                        pod.assert_secret_file("key_file", &tls.key_file);
                    }
                    for (stage, cfg) in [
                        ("text-encoder", &c.stages.text_encoder),
                        ("denoiser", &c.stages.denoiser),
                        ("decoder", &c.stages.decoder),
                        ("classifier", &c.stages.classifier),
                    ] {
                        let uri: http::Uri = cfg.endpoints[0].parse().unwrap();
                        dials_tls.insert(stage, uri.scheme_str() == Some("https"));
                        let svc = services.get(uri.host().unwrap()).unwrap_or_else(|| panic!("{w}: no Service {uri}"));
                        assert_eq!(
                            svc["spec"]["clusterIP"], "None",
                            "{w}: {stage} must be headless for client-side balancing"
                        );
                        assert_eq!(
                            svc["spec"]["selector"]["app.kubernetes.io/name"], stage,
                            "{w}: {uri} selects {stage}"
                        );
                        let ports: Vec<u64> = svc["spec"]["ports"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|p| p["port"].as_u64().unwrap())
                            .collect();
                        assert!(
                            ports.contains(&u64::from(uri.port_u16().unwrap())),
                            "{w}: {uri} port not on the Service"
                        );
                    }
                }
                "vidmesh-text-encoder" => {
                    let c: vidmesh_text_encoder::Config = pod.load();
                    pod.check_server(&c.server);
                    serves_tls.insert(pod.dep["metadata"]["name"].as_str().unwrap(), c.server.tls.enabled());
                    pod.check_model(&c.model);
                    assert_eq!(
                        c.onnxruntime.execution_provider == vidmesh_model::ExecutionProvider::Cuda,
                        pod.gpu(),
                        "{w}"
                    );
                }
                "vidmesh-denoiser" => {
                    let c: vidmesh_denoiser::Config = pod.load();
                    pod.check_server(&c.server);
                    serves_tls.insert(pod.dep["metadata"]["name"].as_str().unwrap(), c.server.tls.enabled());
                    pod.check_model(&c.model);
                    assert_eq!(
                        c.onnxruntime.execution_provider == vidmesh_model::ExecutionProvider::Cuda,
                        pod.gpu(),
                        "{w}: CUDA iff a GPU"
                    );
                    assert_eq!(pod.gpu(), overlay == "gpu", "{w}: the denoiser runs on GPU nodes in the gpu overlay");
                }
                "vidmesh-decoder" => {
                    let c: vidmesh_decoder::Config = pod.load();
                    pod.check_server(&c.server);
                    serves_tls.insert(pod.dep["metadata"]["name"].as_str().unwrap(), c.server.tls.enabled());
                    pod.check_model(&c.model);
                    pod.check_storage(&c.storage);
                    assert_eq!(
                        c.onnxruntime.execution_provider == vidmesh_model::ExecutionProvider::Cuda,
                        pod.gpu(),
                        "{w}: CUDA iff a GPU"
                    );
                    assert_eq!(c.watermark.key_hex.len(), 64, "{w}: the watermark key comes from its Secret");
                    for (what, path) in
                        [("cert_chain_path", &c.c2pa.cert_chain_path), ("private_key_path", &c.c2pa.private_key_path)]
                    {
                        pod.assert_secret_file(what, path);
                    }
                }
                "vidmesh-classifier" => {
                    let c: vidmesh_classifier::Config = pod.load();
                    pod.check_server(&c.server);
                    serves_tls.insert(pod.dep["metadata"]["name"].as_str().unwrap(), c.server.tls.enabled());
                    pod.check_model(&c.model);
                    pod.check_storage(&c.storage);
                    assert_eq!(c.watermark.key_hex.len(), 64, "{w}: the watermark key comes from its Secret");
                    pod.assert_secret_file("trust_anchors_path", &c.c2pa.trust_anchors_path);
                }
                other => panic!("{w}: unknown binary {other}"),
            }
        }
        for (stage, tls) in dials_tls {
            assert_eq!(serves_tls.get(stage), Some(&tls), "{overlay}: the gateway dials {stage} with TLS = {tls}");
        }
        // An unknown key anywhere is refused by the service's config type, so this test would fail on it.
        let (_, gw) = all.iter().find(|(b, _)| b == "vidmesh-gateway").unwrap();
        let mut tomls = gw.tomls.clone();
        tomls[0].push_str("\n[http]\nlisten_adress = \"0.0.0.0:1\"\n");
        let typo = Pod { tomls, env: gw.env.clone(), where_: String::new(), ..*gw };
        assert!(typo.try_load::<vidmesh_gateway::Config>().is_err());
    }
}

/// The mtls overlay is the cpu overlay with TLS on: every service's config differs only in `server.tls`,
/// `stages.tls` and the scheme of the gateway's stage endpoints.
#[test]
fn the_mtls_overlay_changes_nothing_but_tls() {
    /// The config without its TLS settings, and whether it had any.
    fn config(binary: &str, pod: &Pod) -> (Value, bool) {
        let mut v = match binary {
            "vidmesh-gateway" => serde_json::to_value(pod.load::<vidmesh_gateway::Config>()),
            "vidmesh-text-encoder" => serde_json::to_value(pod.load::<vidmesh_text_encoder::Config>()),
            "vidmesh-denoiser" => serde_json::to_value(pod.load::<vidmesh_denoiser::Config>()),
            "vidmesh-decoder" => serde_json::to_value(pod.load::<vidmesh_decoder::Config>()),
            "vidmesh-classifier" => serde_json::to_value(pod.load::<vidmesh_classifier::Config>()),
            other => panic!("unknown binary {other}"),
        }
        .unwrap();
        let tls = v["server"]["tls"]["cert_file"] != ""
            || v["stages"]["tls"]["ca_file"].as_str().is_some_and(|f| !f.is_empty());
        v["server"]["tls"] = Value::Null;
        if let Some(stages) = v.get_mut("stages") {
            stages["tls"] = Value::Null;
            for stage in ["text_encoder", "denoiser", "decoder", "classifier"] {
                for e in stages[stage]["endpoints"].as_array_mut().unwrap() {
                    *e = Value::from(e.as_str().unwrap().replacen("https://", "http://", 1));
                }
            }
        }
        (v, tls)
    }
    let (cpu, mtls) = (render("cpu"), render("mtls"));
    let cpu: HashMap<String, (Value, bool)> =
        pods(&cpu, "cpu").iter().map(|(b, p)| (b.clone(), config(b, p))).collect();
    let mtls = pods(&mtls, "mtls");
    assert_eq!(mtls.len(), cpu.len());
    for (binary, pod) in &mtls {
        let (config, tls) = config(binary, pod);
        assert!(tls && !cpu[binary].1, "{binary}: TLS in mtls only");
        assert_eq!(config, cpu[binary].0, "{binary}: mtls differs from cpu beyond TLS");
    }
}

fn bundle() -> String {
    repo().join("models/vidmesh-tiny").display().to_string()
}

/// Starts `service` for real (bundled model, local storage under `root`) and returns its registry once SERVING.
async fn exported(service: &str, root: &Path, stop: &CancellationToken) -> prometheus::Registry {
    use vidmesh_testmesh::Kind;
    let registry = prometheus::Registry::new();
    let kind = match service {
        "text-encoder" => Kind::TextEncoder,
        "denoiser" => Kind::Denoiser,
        "decoder" => Kind::Decoder,
        "classifier" => Kind::Classifier,
        "gateway" => {
            let mut c = vidmesh_gateway::Config::default();
            c.model.bundle = bundle();
            c.storage.local_root = root.display().to_string();
            // A store of its own each time (a SQLite store has one replica, and earlier gateways still run).
            let db = tempfile::NamedTempFile::new_in(root).unwrap().into_temp_path().keep().unwrap();
            c.store.url = format!("sqlite://{}", db.display());
            let o = Options { registry: registry.clone(), ..Options::with_env(HashMap::new()) };
            vidmesh_testmesh::serve_stage::<vidmesh_gateway::Gateway>(c, o, stop).await.unwrap();
            return registry;
        }
        other => panic!("no service {other}"),
    };
    vidmesh_testmesh::serve(kind, &vidmesh_testmesh::Setup::new(root), &registry, stop).await.unwrap();
    registry
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hpa_scales_on_a_metric_its_service_exports() {
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    for overlay in ["cpu", "gpu"] {
        for hpa in render(overlay).iter().filter(|d| d["kind"] == "HorizontalPodAutoscaler") {
            let service = hpa["spec"]["scaleTargetRef"]["name"].as_str().unwrap();
            let metric = hpa["spec"]["metrics"][0]["pods"]["metric"]["name"].as_str().unwrap();
            let registry = exported(service, dir.path(), &stop).await;
            let names: Vec<String> = registry.gather().iter().map(|f| f.name().to_string()).collect();
            assert!(names.iter().any(|n| n == metric), "{overlay}: {service} does not export {metric}: {names:?}");
        }
    }
    stop.cancel();
}

/// The probes' assumption: while the model loads, readiness (overall health) is NOT_SERVING and liveness SERVING,
/// so Kubernetes holds traffic back without restarting the pod; after the drain starts, readiness drops again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_waits_for_the_model_while_liveness_holds() {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let (gate_tx, gate_rx) = tokio::sync::oneshot::channel::<()>();
    let mut c = vidmesh_denoiser::Config::default();
    c.model.bundle = bundle();
    let o = Options {
        env: std::env::vars().collect(),
        registry: prometheus::Registry::new(),
        metrics_listener: None,
        load_gate: async move {
            let _ = gate_rx.await;
        },
        listeners: HashMap::new(),
    };
    let task =
        tokio::spawn(vidmesh_runtime::stage::serve_with::<vidmesh_denoiser::Denoiser, _>(c, listener, stop.clone(), o));
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    let mut health = HealthClient::new(channel);
    let status = |s: &str| HealthCheckRequest { service: s.into() };
    assert_eq!(health.check(status("")).await.unwrap().into_inner().status, 2, "readiness: NOT_SERVING while loading");
    assert_eq!(health.check(status("liveness")).await.unwrap().into_inner().status, 1, "liveness: SERVING");
    gate_tx.send(()).unwrap();
    let mut watch = health.watch(status("")).await.unwrap().into_inner();
    while watch.message().await.unwrap().unwrap().status != 1 {}
    drop((watch, health));
    stop.cancel();
    task.await.unwrap().unwrap();
}

/// Every stage's built-in defaults load through the layered loader unchanged and pass its rules.
#[test]
fn every_stages_defaults_load_and_validate() {
    fn defaults<S: vidmesh_runtime::Stage>()
    where
        S::Config: PartialEq + std::fmt::Debug,
    {
        let loaded =
            vidmesh_runtime::config::load_vars::<S::Config>(&[]).unwrap_or_else(|e| panic!("{}: {e}", S::NAME));
        assert_eq!(loaded, S::Config::default(), "{}", S::NAME);
    }
    defaults::<vidmesh_text_encoder::TextEncoder>();
    defaults::<vidmesh_denoiser::Denoiser>();
    defaults::<vidmesh_decoder::Decoder>();
    defaults::<vidmesh_classifier::Classifier>();
    defaults::<vidmesh_gateway::Gateway>();
}
