//! A local signing chain: a CA and an ES256 leaf it issued, with exactly what c2pa requires of a signer (a
//! CA-issued leaf — c2pa refuses self-signed ones —, the digitalSignature key usage, the emailProtection EKU, an
//! authority key identifier and an organisation name).
//!
//! Invariants: the CA's key is never kept (it signs the one leaf and is dropped), so a local CA cannot issue
//! anything else; the leaf is valid for ten years from its creation.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

use crate::ProvenanceError;

/// PEM texts of a signing chain.
#[derive(Debug, Clone)]
pub struct Chain {
    /// The leaf certificate: the chain a [`crate::Signer`] signs with (the CA is the trust anchor, not part of it).
    pub chain: String,
    /// The leaf's PKCS#8 ES256 private key.
    pub key: String,
    /// The CA certificate: the trust anchor that makes this signer's manifests TRUSTED.
    pub anchor: String,
}

impl Chain {
    /// A fresh CA named "`name` CA" and a leaf "`name`" it issued, both with organisation `organisation`.
    pub fn issue(name: &str, organisation: &str) -> Result<Self, ProvenanceError> {
        let err = |what: &str, e: rcgen::Error| ProvenanceError::Config(format!("making the local {what}: {e}"));
        let now = std::time::SystemTime::now();
        let until = now + std::time::Duration::from_secs(10 * 365 * 24 * 3600);
        let ca_key = KeyPair::generate().map_err(|e| err("CA key", e))?;
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(|e| err("CA", e))?;
        ca.distinguished_name.push(DnType::CommonName, format!("{name} CA"));
        ca.distinguished_name.push(DnType::OrganizationName, organisation);
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        (ca.not_before, ca.not_after) = (now.into(), until.into());
        let ca_cert = ca.self_signed(&ca_key).map_err(|e| err("CA", e))?;
        let leaf_key = KeyPair::generate().map_err(|e| err("signing key", e))?;
        let mut leaf = CertificateParams::new(Vec::<String>::new()).map_err(|e| err("signer", e))?;
        leaf.distinguished_name.push(DnType::CommonName, name);
        leaf.distinguished_name.push(DnType::OrganizationName, organisation);
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::EmailProtection];
        leaf.use_authority_key_identifier_extension = true;
        (leaf.not_before, leaf.not_after) = (now.into(), until.into());
        let leaf_cert = leaf.signed_by(&leaf_key, &Issuer::new(ca, ca_key)).map_err(|e| err("signer", e))?;
        Ok(Self { chain: leaf_cert.pem(), key: leaf_key.serialize_pem(), anchor: ca_cert.pem() })
    }
}
