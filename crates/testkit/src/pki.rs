//! A development PKI for C2PA: a CA and a leaf with exactly the extensions c2pa requires of a signer (CA-issued —
//! c2pa refuses self-signed leaves —, authority key identifier, EKU emailProtection, an organisation name).

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

/// PEM texts of a development signer.
pub struct DevPki {
    /// The leaf certificate (the chain c2pa signs with; the CA is the trust anchor, not part of it).
    pub chain: String,
    /// The leaf's PKCS#8 private key.
    pub key: String,
    /// The CA certificate: the trust anchor.
    pub anchor: String,
}

/// Paths of a [`DevPki`] written to disk, as service configs take them.
pub struct DevPkiFiles {
    /// Leaf certificate chain.
    pub chain: String,
    /// Leaf private key.
    pub key: String,
    /// Trust anchors.
    pub anchors: String,
}

impl DevPki {
    /// A fresh CA named `name` and a leaf it issued.
    pub fn new(name: &str) -> Self {
        let ca_key = KeyPair::generate().expect("generate CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.distinguished_name.push(DnType::CommonName, format!("{name} development CA"));
        ca.distinguished_name.push(DnType::OrganizationName, "vidmesh tests");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca_cert = ca.self_signed(&ca_key).expect("self-sign CA");
        let leaf_key = KeyPair::generate().expect("generate leaf key");
        let mut leaf = CertificateParams::new(Vec::<String>::new()).expect("leaf params");
        leaf.distinguished_name.push(DnType::CommonName, format!("{name} signer"));
        leaf.distinguished_name.push(DnType::OrganizationName, "vidmesh tests");
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::EmailProtection];
        leaf.use_authority_key_identifier_extension = true;
        let leaf_cert = leaf.signed_by(&leaf_key, &Issuer::new(ca, ca_key)).expect("issue leaf");
        Self { chain: leaf_cert.pem(), key: leaf_key.serialize_pem(), anchor: ca_cert.pem() }
    }

    /// Writes chain.pem, key.pem and anchors.pem into `dir`.
    pub fn write(&self, dir: &Path) -> DevPkiFiles {
        let write = |name: &str, pem: &str| {
            let p = dir.join(name);
            std::fs::write(&p, pem).expect("write PEM");
            p.display().to_string()
        };
        DevPkiFiles {
            chain: write("chain.pem", &self.chain),
            key: write("key.pem", &self.key),
            anchors: write("anchors.pem", &self.anchor),
        }
    }
}
