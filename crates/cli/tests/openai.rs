//! The official `openai` Python SDK (tests/openai/requirements.txt) against the gateway's HTTP API, with the five
//! services as processes: create_and_poll, download_content (MP4 checked by ffprobe, thumbnail, spritesheet),
//! list, delete, and the SDK's typed errors for a bad key and a refused size (tests/openai/sdk_check.py); and
//! conditioning (tests/openai/sdk_conditioning.py): image→video from an upload and a data URL, edits by id and by
//! upload, an extension, a remix and the typed refusals, against a gateway configured as `vidmesh serve all` is
//! (no tenants: any bearer key is the anonymous tenant).
//! The interpreter comes from VIDMESH_OPENAI_PYTHON (test.sh makes a venv with the SDK and sets it).
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::{Proc, Stages};

/// Runs `script` (in tests/openai) with the SDK's interpreter and `key` against a gateway (the four stages as
/// processes, SQLite) whose config ends with `admission`; returns its stdout after checking it exited 0.
async fn run_sdk(script: &str, key: &str, admission: &str) -> String {
    let python = std::env::var("VIDMESH_OPENAI_PYTHON").unwrap_or_else(|_| {
        panic!(
            "set VIDMESH_OPENAI_PYTHON to a python with `pip install -r tests/openai/requirements.txt` (test.sh does)"
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let stages = Stages::start(dir.path(), &root, None).await;
    let store = format!("sqlite://{}", dir.path().join("jobs.db").display());
    let config = stages.gateway_toml(&root, &store, None, 10) + admission;
    let gw = Proc::start("gateway", dir.path(), &config).await;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/openai").join(script);
    let base = format!("http://{}/v1", gw.http.unwrap());
    let args = [path.display().to_string(), base, key.to_string(), dir.path().display().to_string()];
    let out = tokio::task::spawn_blocking(move || std::process::Command::new(python).args(args).output())
        .await
        .unwrap()
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{script} failed:\n{stdout}");
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_openai_sdk_works_unmodified() {
    let key = "sk-vidmesh-test";
    let digest = vidmesh_storage_digest(key);
    let admission = format!(
        "[admission]\nanonymous_tenant = \"\"\n\n[[admission.tenants]]\nname = \"sdk\"\nkey_sha256 = [\"{digest}\"]\n"
    );
    let stdout = run_sdk("sdk_check.py", key, &admission).await;
    assert!(stdout.contains("ok: video_"), "{stdout}");
}

fn vidmesh_storage_digest(key: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(key.as_bytes()))
}

/// Conditioned generation through the SDK, against a gateway with no tenants (no `[admission]`, as `vidmesh serve
/// all` runs): an arbitrary API key is accepted as the anonymous tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_openai_sdk_conditions_videos_with_any_key_in_development_mode() {
    let stdout = run_sdk("sdk_conditioning.py", "sk-anything", "").await;
    assert!(stdout.contains("openai SDK conditioning ok"), "{stdout}");
}
