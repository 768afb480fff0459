//! A development PKI for C2PA: [`vidmesh_provenance::Chain`] (a CA and a leaf it issued), written where service
//! configs read it.

use std::path::Path;

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
    /// A fresh CA named after `name` and a leaf it issued ([`vidmesh_provenance::Chain::issue`]).
    pub fn new(name: &str) -> Self {
        let c = vidmesh_provenance::Chain::issue(&format!("{name} signer"), "vidmesh tests").expect("issue a chain");
        Self { chain: c.chain, key: c.key, anchor: c.anchor }
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
