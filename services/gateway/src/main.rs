//! vidmesh-gateway, served through the shared stage shell: config → telemetry → bind → serve → drain on SIGTERM.
//! Usage: vidmesh-gateway [CONFIG.toml]   (environment: VIDMESH__SECTION__KEY, HOSTNAME)

fn main() -> std::process::ExitCode {
    vidmesh_runtime::stage::main::<vidmesh_gateway::Gateway>()
}
