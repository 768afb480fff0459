//! Local defaults for running on one machine: libonnxruntime, the bundled model, the watermark key.
//!
//! Invariants: nothing here mutates the process environment; the environment map handed to the engines gets
//! `ORT_DYLIB_PATH` filled in when it was missing. The watermark key file is created once (mode 0600) and reused,
//! so `vidmesh detect` recognises what `vidmesh generate` made on the same machine.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The repository this binary was built from (for the bundled model and the fetch script).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `~/.cache/vidmesh` (or `$VIDMESH_CACHE`).
pub fn cache_dir(env: &HashMap<String, String>) -> PathBuf {
    if let Some(d) = env.get("VIDMESH_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let home = env.get("HOME").cloned().unwrap_or_else(|| ".".into());
    Path::new(&home).join(".cache/vidmesh")
}

/// The bundled vidmesh-tiny model.
pub fn default_bundle() -> PathBuf {
    repo_root().join("models/vidmesh-tiny")
}

/// Returns `env` with `ORT_DYLIB_PATH` set: as given, or the cached wheel's library, or fetched now with
/// scripts/fetch-onnxruntime.sh (pip, once).
pub fn with_onnxruntime(mut env: HashMap<String, String>) -> Result<HashMap<String, String>> {
    if env.get("ORT_DYLIB_PATH").is_some_and(|p| !p.is_empty()) {
        return Ok(env);
    }
    let cached = cache_dir(&env).join("onnxruntime-cpu-1.31.1/libonnxruntime.so.1.31.1");
    let path = if cached.is_file() {
        cached
    } else {
        let script = repo_root().join("scripts/fetch-onnxruntime.sh");
        eprintln!("fetching ONNX Runtime 1.31.1 (once) with {}", script.display());
        let out = std::process::Command::new(&script)
            .stderr(std::process::Stdio::inherit())
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        if !out.status.success() {
            bail!("{} failed; set ORT_DYLIB_PATH to a libonnxruntime 1.31 library", script.display());
        }
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    };
    env.insert("ORT_DYLIB_PATH".into(), path.display().to_string());
    Ok(env)
}

/// This machine's watermark key (64 hex digits): `VIDMESH_WATERMARK_KEY_HEX`, or the key file in the cache
/// directory, created from /dev/urandom on first use.
pub fn watermark_key(env: &HashMap<String, String>) -> Result<String> {
    if let Some(k) = env.get("VIDMESH_WATERMARK_KEY_HEX").filter(|k| !k.is_empty()) {
        return Ok(k.clone());
    }
    let path = cache_dir(env).join("watermark.key");
    if let Ok(k) = std::fs::read_to_string(&path) {
        return Ok(k.trim().to_string());
    }
    let mut key = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .context("reading /dev/urandom for a new watermark key")?;
    let hex = hex::encode(key);
    std::fs::create_dir_all(path.parent().context("cache dir")?)?;
    // Written whole under a name of this process's, then linked into place: processes starting side by side
    // (`vidmesh serve` of the decoder and the classifier) agree on one key, and none reads a half-written file.
    let tmp = path.with_extension(format!("key.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    write_private(&tmp, &hex).with_context(|| format!("writing {}", tmp.display()))?;
    let linked = std::fs::hard_link(&tmp, &path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            eprintln!("created this machine's watermark key at {}", path.display());
            Ok(hex)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?
            .trim()
            .to_string()),
        Err(e) => Err(e).with_context(|| format!("writing {}", path.display())),
    }
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(text.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}
