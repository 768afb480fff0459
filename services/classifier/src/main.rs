//! vidmesh-classifier: telemetry → config → serve → drain on SIGTERM.
//! Usage: vidmesh-classifier [CONFIG.toml]   (environment: VIDMESH__SECTION__KEY)

use std::collections::HashMap;
use std::path::PathBuf;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env: HashMap<String, String> = std::env::vars().collect();
    let file = std::env::args().nth(1).map(PathBuf::from);
    let config: vidmesh_classifier::Config = vidmesh_runtime::config::load(file.as_deref(), &env)?;
    let telemetry = vidmesh_runtime::telemetry::init("vidmesh-classifier", &config.telemetry, &env)?;
    let listener = tokio::net::TcpListener::bind(config.server.listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "classifier listening");
    let result = vidmesh_classifier::serve(config, listener, vidmesh_runtime::shutdown::on_signals()).await;
    telemetry.shutdown();
    Ok(result?)
}
