//! Which of a bundle's files each part uses, and their sha256 (the bundle and its S3 fetch both check them).

use std::io::Read as _;
use std::path::Path;

use sha2::{Digest as _, Sha256};

use crate::manifest::Manifest;

/// Which of the bundle's files a service needs (only those are hashed and opened).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The text encoder and its tokenizer (and `[text_encoder_2]`'s when the bundle has one).
    TextEncoder,
    /// The DiT (and the second transformer when the bundle has one): the whole graph and its split graphs.
    Dit,
    /// The DiT as the host loop runs it: a transformer's split graphs (`[dit.cache]`) where it has them, else its
    /// whole graph (the whole graph is then neither fetched nor hashed).
    DitSplit,
    /// The VAE encoder (nothing when the bundle has none).
    VaeEncoder,
    /// The VAE decoder (and its step graph when stateful).
    VaeDecoder,
    /// The passive detector (nothing when the bundle has none).
    Passive,
}

/// (file, sha256) of every file the given parts use: graphs, their external data, tokenizer.
pub(crate) fn files_of(m: &Manifest, parts: &[Part]) -> Vec<(String, String)> {
    let of = |c: &crate::manifest::Component| -> Vec<(String, String)> {
        c.files().map(|(f, s)| (f.to_string(), s.to_string())).collect()
    };
    parts
        .iter()
        .flat_map(|p| match p {
            Part::TextEncoder => {
                let mut v = of(&m.text_encoder.component);
                v.push((m.text_encoder.tokenizer.clone(), m.text_encoder.tokenizer_sha256.clone()));
                if let Some(t2) = &m.text_encoder_2 {
                    v.extend(of(&t2.component));
                    v.push((t2.tokenizer.clone(), t2.tokenizer_sha256.clone()));
                }
                v
            }
            Part::Dit | Part::DitSplit => m
                .dits()
                .into_iter()
                .flat_map(|(_, d)| {
                    let split =
                        d.cache.iter().flat_map(|c| c.graphs().map(|(_, g)| (g.file.clone(), g.sha256.clone())));
                    let whole = if *p == Part::DitSplit && d.cache.is_some() { Vec::new() } else { of(&d.component) };
                    whole.into_iter().chain(split).collect::<Vec<_>>()
                })
                .collect(),
            Part::VaeEncoder => m.vae.encoder.iter().flat_map(of).collect(),
            Part::VaeDecoder => of(&m.vae.decoder).into_iter().chain(m.vae.decoder_step.iter().flat_map(of)).collect(),
            Part::Passive => m.passive.iter().flat_map(|p| of(&p.component)).collect(),
        })
        .collect()
}

/// Lowercase hex sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}
