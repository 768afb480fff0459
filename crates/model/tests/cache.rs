//! `[dit.cache]` (step caching): the bundled model declares it and its split graphs are hash-checked; tiers are
//! resolved once for every service, refused when unknown or when the bundle has no split; a bad table is refused
//! at load, naming the key.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;

use vidmesh_model::{Ask, Bundle, CacheTier, Limits, Part, Plan};

fn bundle(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models").join(name)
}

const LIMITS: Limits = Limits { max_steps: 200, max_guidance: 30.0 };

fn plan(m: &vidmesh_model::Manifest, cache: &str) -> Result<Plan, String> {
    Plan::resolve(m, &Ask { cache: cache.into(), ..Ask::default() }, &LIMITS)
}

#[test]
fn the_bundled_model_serves_every_tier_and_defaults_to_off() {
    let b = Bundle::open(&bundle("vidmesh-tiny"), &[Part::Dit]).unwrap();
    let m = &b.manifest;
    assert_eq!(m.cache_tiers(), ["off", "balanced", "fast"]);
    assert_eq!(plan(m, "").unwrap().cache, CacheTier::Off);
    assert_eq!(plan(m, "fast").unwrap().cache, CacheTier::Fast);
    let c = m.dit.cache.as_ref().unwrap();
    assert!(c.fast.threshold > c.balanced.threshold, "fast skips more than balanced");
    let e = plan(m, "turbo").unwrap_err();
    assert!(e.contains("\"turbo\"") && e.contains("\"balanced\""), "{e}");
}

#[test]
fn a_bundle_without_a_split_serves_only_off() {
    let m = Bundle::manifest_only(&bundle("wan2.1-tiny")).unwrap().manifest;
    assert_eq!(m.cache_tiers(), ["off"]);
    assert_eq!(plan(&m, "off").unwrap().cache, CacheTier::Off);
    let e = plan(&m, "balanced").unwrap_err();
    assert!(e.contains("no step cache") && e.contains("\"off\""), "{e}");
}

/// A copy of vidmesh-tiny with `edit` applied to model.toml.
fn edited(edit: impl Fn(String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(bundle("vidmesh-tiny")).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    let toml = dir.path().join("model.toml");
    std::fs::write(&toml, edit(std::fs::read_to_string(&toml).unwrap())).unwrap();
    dir
}

#[test]
fn bad_cache_tables_and_tampered_split_graphs_are_refused() {
    let cases: [(&str, &str, &str); 4] = [
        ("threshold = 0.3", "threshold = -1", "dit.cache.fast.threshold must be a positive number"),
        ("max_skips = 6", "max_skips = 0", "dit.cache.fast.max_skips must be at least 1"),
        ("tail_output = ", "tail_outptu = ", "unknown field `tail_outptu`"),
        ("[dit.cache.fast]", "[dit.cache.fast]\nspeed = 3", "unknown field `speed`"),
    ];
    for (from, to, want) in cases {
        let dir = edited(|t| t.replacen(from, to, 1));
        let e = Bundle::open(dir.path(), &[]).unwrap_err().to_string();
        assert!(e.contains(want), "{to}: {e}");
    }
    let dir = edited(|t| t);
    let mut tail = std::fs::OpenOptions::new().append(true).open(dir.path().join("dit_tail.onnx")).unwrap();
    std::io::Write::write_all(&mut tail, b"x").unwrap();
    let e = Bundle::open(dir.path(), &[Part::Dit]).unwrap_err().to_string();
    assert!(e.contains("dit_tail.onnx"), "{e}");
}
