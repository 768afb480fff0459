//! vidmesh-gateway: telemetry → config → serve → drain on SIGTERM.
//! Usage: vidmesh-gateway [CONFIG.toml]   (environment: VIDMESH__SECTION__KEY)

use std::collections::HashMap;
use std::path::PathBuf;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env: HashMap<String, String> = std::env::vars().collect();
    let file = std::env::args().nth(1).map(PathBuf::from);
    let config: vidmesh_gateway::Config = vidmesh_runtime::config::load(file.as_deref(), &env)?;
    let telemetry = vidmesh_runtime::telemetry::init("vidmesh-gateway", &config.telemetry, &env)?;
    let listener = tokio::net::TcpListener::bind(config.server.listen).await?;
    tracing::info!(grpc = %listener.local_addr()?, http = %config.http.listen, "gateway listening");
    let result = vidmesh_gateway::serve(config, listener, vidmesh_runtime::shutdown::on_signals()).await;
    telemetry.shutdown();
    Ok(result?)
}
