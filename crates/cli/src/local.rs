//! Local defaults for running on one machine: libonnxruntime, the bundled model, the watermark key and the C2PA
//! signing chain.
//!
//! Invariants: nothing here mutates the process environment; the environment map handed to the engines gets
//! `ORT_DYLIB_PATH` filled in when it was missing. The watermark key file and the signing chain are created once
//! (private keys mode 0600) and reused, so `vidmesh detect` recognises and trusts what `vidmesh generate` made on
//! the same machine; processes starting side by side agree on one of each.

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

/// Where this machine's C2PA signing chain lives (see [`signing_chain`]).
#[derive(Debug, Clone)]
pub struct SigningFiles {
    /// The leaf certificate (PEM).
    pub chain: PathBuf,
    /// The leaf's private key (PKCS#8 PEM, mode 0600).
    pub key: PathBuf,
    /// The local CA's certificate: the trust anchor for this machine's outputs.
    pub anchor: PathBuf,
}

/// This machine's C2PA signing chain in `c2pa/` of the cache directory (chain.pem, key.pem, ca.pem), created on
/// first use: a local CA and a leaf it issued, named after the host ([`vidmesh_provenance::Chain::issue`]).
pub fn signing_chain(env: &HashMap<String, String>) -> Result<SigningFiles> {
    let dir = cache_dir(env).join("c2pa");
    let files =
        |d: &Path| SigningFiles { chain: d.join("chain.pem"), key: d.join("key.pem"), anchor: d.join("ca.pem") };
    if files(&dir).key.is_file() {
        return Ok(files(&dir));
    }
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    let name = if host.is_empty() { "vidmesh local signer".to_string() } else { format!("vidmesh on {host}") };
    let chain = vidmesh_provenance::Chain::issue(&name, "vidmesh (local, self-managed)")?;
    // Written whole into a directory of this process's, then renamed into place: a directory rename either
    // lands whole or finds the winner's chain there.
    let parent = cache_dir(env);
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let tmp = parent.join(format!("c2pa.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let f = files(&tmp);
    std::fs::write(&f.chain, &chain.chain)?;
    std::fs::write(&f.anchor, &chain.anchor)?;
    write_private(&f.key, &chain.key).with_context(|| format!("writing {}", f.key.display()))?;
    match std::fs::rename(&tmp, &dir) {
        Ok(()) => eprintln!(
            "created this machine's C2PA signing chain in {} (trust ca.pem to trust its videos)",
            dir.display()
        ),
        Err(_) if files(&dir).key.is_file() => {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e).with_context(|| format!("moving the signing chain into {}", dir.display()));
        }
    }
    Ok(files(&dir))
}

impl SigningFiles {
    /// A C2PA signer over these files (checked by signing a probe video).
    pub fn signer(&self) -> Result<vidmesh_provenance::Signer> {
        let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
        Ok(vidmesh_provenance::Signer::new(&read(&self.chain)?, &read(&self.key)?, &read(&self.anchor)?)?)
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
