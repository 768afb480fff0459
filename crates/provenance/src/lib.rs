//! C2PA provenance for vidmesh videos (the `c2pa` crate, pure-Rust crypto).
//!
//! [`Signer::sign_mp4`] embeds a signed manifest in an MP4: the generator (vidmesh and its version), a
//! `c2pa.created` action with IPTC's `trainedAlgorithmicMedia` source type, and an `org.vidmesh.generation`
//! assertion with the model, its bundle version, the generation parameters and the SHA-256 of the prompt (never the
//! prompt itself). The signing certificate chain and key come from configuration; c2pa refuses self-signed leaves,
//! so a signer always needs a CA: [`Chain::issue`] makes a local one and a leaf it issued (what `vidmesh` creates
//! on a machine's first use, and what tests use).
//!
//! [`verify_mp4`] reads it back against configured trust anchors: [`Provenance::Trusted`] (valid, chains to an
//! anchor), [`Provenance::Valid`] (valid, unknown signer), [`Provenance::Invalid`] (tampered: hash or signature
//! fails) or [`Provenance::Absent`] (no manifest, e.g. after a remux that drops it). Valid manifests name their
//! signer (the certificate's common name and organisation).

mod chain;

pub use chain::Chain;

use std::io::Cursor;
use std::sync::Arc;

use c2pa::crypto::raw_signature::SigningAlg;
use c2pa::validation_results::ValidationState;
use c2pa::{Builder, Context, Reader};
use serde::{Deserialize, Serialize};

/// Label of vidmesh's own assertion.
pub const ASSERTION: &str = "org.vidmesh.generation";

/// Why signing failed.
#[derive(Debug, thiserror::Error)]
pub enum ProvenanceError {
    /// The certificate, key or trust anchors are unusable.
    #[error("C2PA signing configuration: {0}")]
    Config(String),
    /// Signing failed.
    #[error("C2PA signing: {0}")]
    Sign(String),
}

/// What vidmesh records about a generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claim {
    /// Model name.
    pub model: String,
    /// Bundle version.
    pub model_version: String,
    /// Generation parameters (seed, steps, guidance, size, …).
    pub parameters: serde_json::Value,
    /// Lowercase hex SHA-256 of the prompt.
    pub prompt_sha256: String,
}

/// The verdict on an MP4's provenance.
#[derive(Debug, Clone, PartialEq)]
pub enum Provenance {
    /// No C2PA manifest.
    Absent,
    /// A manifest whose signature or hash binding fails; the reasons are C2PA status codes.
    Invalid(Vec<String>),
    /// Valid, but the signer does not chain to a configured trust anchor.
    Valid(Signed),
    /// Valid and signed by a certificate that chains to a configured trust anchor.
    Trusted(Signed),
}

/// What a valid manifest says.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Signed {
    /// vidmesh's generation assertion, when the manifest carries one.
    pub claim: Option<Claim>,
    /// The signing certificate's subject: "common name (organisation)", as far as the certificate has them.
    pub signer: Option<String>,
}

fn context(trust_anchors_pem: Option<&[u8]>) -> Result<Context, ProvenanceError> {
    let mut settings = serde_json::json!({ "verify": { "verify_trust": true, "verify_after_sign": true } });
    if let Some(pem) = trust_anchors_pem {
        let pem = std::str::from_utf8(pem).map_err(|e| ProvenanceError::Config(format!("trust anchors: {e}")))?;
        settings["trust"] = serde_json::json!({ "trust_anchors": pem });
    }
    Context::new().with_settings(settings).map_err(|e| ProvenanceError::Config(e.to_string()))
}

/// Signs MP4s with one certificate chain.
pub struct Signer {
    context: Arc<Context>,
}

impl Signer {
    /// A signer from a PEM certificate chain (leaf first, then intermediates; not the root), its PKCS#8 PEM ES256
    /// private key, and the trust anchors used to verify right after signing.
    pub fn new(
        cert_chain_pem: &[u8],
        private_key_pem: &[u8],
        trust_anchors_pem: &[u8],
    ) -> Result<Self, ProvenanceError> {
        let signer = c2pa::create_signer::from_keys(cert_chain_pem, private_key_pem, SigningAlg::Es256, None)
            .map_err(|e| ProvenanceError::Config(format!("certificate/key: {e}")))?;
        let context = context(Some(trust_anchors_pem))?.with_signer(signer).into_shared();
        let this = Self { context };
        // Fail at start-up, not on the first video: sign a one-frame probe.
        let probe = vidmesh_video::Video { width: 16, height: 16, fps: 1.0, frames: vec![vec![128; 16 * 16 * 3]] };
        let probe = vidmesh_video::encode_mp4(&probe, &vidmesh_video::EncodeOptions::default())
            .map_err(|e| ProvenanceError::Config(format!("probe video: {e}")))?;
        let claim = Claim {
            model: "probe".into(),
            model_version: "0".into(),
            parameters: serde_json::Value::Null,
            prompt_sha256: String::new(),
        };
        this.sign_mp4(&probe, "probe.mp4", &claim).map_err(|e| {
            ProvenanceError::Config(format!(
                "the certificate or key was refused ({e}); C2PA needs a CA-issued leaf (not self-signed) with a subject \
                 organization (O), the digitalSignature key usage, an allowed EKU such as emailProtection or documentSigning, and an \
                 authority key identifier, plus its ES256 PKCS#8 private key"
            ))
        })?;
        Ok(this)
    }

    /// Returns `mp4` with a signed C2PA manifest for `claim`.
    pub fn sign_mp4(&self, mp4: &[u8], title: &str, claim: &Claim) -> Result<Vec<u8>, ProvenanceError> {
        let definition = serde_json::json!({
            "title": title,
            "format": "video/mp4",
            "claim_generator_info": [{ "name": "vidmesh", "version": env!("CARGO_PKG_VERSION") }],
            "assertions": [
                {
                    "label": "c2pa.actions",
                    "data": { "actions": [{
                        "action": "c2pa.created",
                        "digitalSourceType": "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia",
                        "softwareAgent": { "name": "vidmesh", "version": env!("CARGO_PKG_VERSION") }
                    }]}
                },
                { "label": ASSERTION, "data": claim }
            ]
        });
        let mut builder = Builder::from_shared_context(&self.context)
            .with_definition(definition.to_string())
            .map_err(|e| ProvenanceError::Sign(e.to_string()))?;
        let mut source = Cursor::new(mp4);
        let mut dest = Cursor::new(Vec::with_capacity(mp4.len() + (32 << 10)));
        builder
            .save_to_stream("video/mp4", &mut source, &mut dest)
            .map_err(|e| ProvenanceError::Sign(e.to_string()))?;
        Ok(dest.into_inner())
    }
}

/// Whether `bytes` are an ISO BMFF file (MP4, MOV: the video containers a C2PA manifest is embedded in), by the
/// type of the first box.
fn is_bmff(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && matches!(&bytes[4..8], b"ftyp" | b"moov" | b"mdat" | b"wide" | b"free" | b"skip")
}

/// Reads and validates the C2PA manifest of `mp4` against `trust_anchors_pem` (empty: no anchors, so a valid
/// manifest is at most [`Provenance::Valid`]). Any other container (Matroska, WebM) has no place for an embedded
/// manifest: [`Provenance::Absent`].
pub fn verify_mp4(mp4: &[u8], trust_anchors_pem: &[u8]) -> Provenance {
    if !is_bmff(mp4) {
        return Provenance::Absent;
    }
    let context = match context((!trust_anchors_pem.is_empty()).then_some(trust_anchors_pem)) {
        Ok(c) => c.into_shared(),
        Err(e) => return Provenance::Invalid(vec![e.to_string()]),
    };
    let reader = match Reader::from_shared_context(&context).with_stream("video/mp4", Cursor::new(mp4)) {
        Ok(r) => r,
        Err(c2pa::Error::JumbfNotFound) | Err(c2pa::Error::ProvenanceMissing) => return Provenance::Absent,
        Err(e) => return Provenance::Invalid(vec![e.to_string()]),
    };
    let manifest = reader.active_manifest();
    let claim = manifest
        .and_then(|m| m.find_assertion::<serde_json::Value>(ASSERTION).ok())
        .and_then(|v| serde_json::from_value(v).ok());
    let signer = manifest.and_then(|m| m.signature_info()).and_then(|s| match (&s.common_name, &s.issuer) {
        (Some(cn), Some(o)) => Some(format!("{cn} ({o})")),
        (Some(name), None) | (None, Some(name)) => Some(name.clone()),
        (None, None) => None,
    });
    let signed = Signed { claim, signer };
    match reader.validation_state() {
        ValidationState::Trusted => Provenance::Trusted(signed),
        ValidationState::Valid => Provenance::Valid(signed),
        _ => Provenance::Invalid(
            reader
                .validation_status()
                .unwrap_or_default()
                .iter()
                .filter(|s| !s.passed())
                .map(|s| s.code().to_string())
                .collect(),
        ),
    }
}
