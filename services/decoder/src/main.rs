//! vidmesh-decoder: telemetry → config → serve → drain on SIGTERM.
//! Usage: vidmesh-decoder [CONFIG.toml]   (environment: VIDMESH__SECTION__KEY, ORT_DYLIB_PATH)

use std::collections::HashMap;
use std::path::PathBuf;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env: HashMap<String, String> = std::env::vars().collect();
    let file = std::env::args().nth(1).map(PathBuf::from);
    let config: vidmesh_decoder::Config = vidmesh_runtime::config::load(file.as_deref(), &env)?;
    let telemetry = vidmesh_runtime::telemetry::init("vidmesh-decoder", &config.telemetry, &env)?;
    let listener = tokio::net::TcpListener::bind(config.server.listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "decoder listening");
    let result = vidmesh_decoder::serve(config, listener, vidmesh_runtime::shutdown::on_signals()).await;
    telemetry.shutdown();
    Ok(result?)
}
