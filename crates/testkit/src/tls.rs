//! A test CA for TLS between the services: [`TestCa`] issues server certificates (for names and IP addresses) and
//! client certificates, each written as cert-manager lays a `kubernetes.io/tls` Secret out (`tls.crt`, `tls.key`,
//! `ca.crt`), so a test configures `[server.tls]` and `[stages.tls]` exactly as a cluster does.
//!
//! Invariant: a certificate verifies only against the CA that issued it; two `TestCa`s never trust each other.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

/// A CA that keeps its key, to issue as many certificates as a test needs.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// The files of one issued certificate, laid out like a cert-manager Secret.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate (PEM): `tls.crt`.
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS#8): `tls.key`.
    pub key: PathBuf,
    /// The issuing CA's certificate (PEM): `ca.crt`.
    pub ca: PathBuf,
}

impl TlsFiles {
    /// `[server.tls]` requiring client certificates from this CA (mutual TLS).
    pub fn server_toml(&self) -> String {
        format!(
            "[server.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\nclient_ca_file = \"{}\"\n\n",
            self.cert.display(),
            self.key.display(),
            self.ca.display()
        )
    }

    /// A gateway's `[stages.tls]` presenting this certificate and trusting this CA.
    pub fn stages_toml(&self) -> String {
        format!(
            "[stages.tls]\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n\n",
            self.ca.display(),
            self.cert.display(),
            self.key.display()
        )
    }

    /// A tonic client config presenting this certificate and trusting this CA, for the server name `domain`.
    pub fn client(&self, domain: &str) -> tonic::transport::ClientTlsConfig {
        let read = |p: &Path| std::fs::read(p).expect("read PEM");
        tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(read(&self.ca)))
            .identity(tonic::transport::Identity::from_pem(read(&self.cert), read(&self.key)))
            .domain_name(domain)
    }
}

impl TestCa {
    /// A fresh CA named `name`.
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, format!("{name} CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        Self { issuer: CertifiedIssuer::self_signed(params, key).expect("CA certificate") }
    }

    /// The CA certificate (PEM).
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for `name` (common name), valid as a server for `sans` (DNS names or IP addresses) and as a
    /// client, written into `dir/<name>/` with this CA's certificate beside it.
    pub fn issue(&self, name: &str, sans: &[&str], dir: &Path) -> TlsFiles {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.subject_alt_names = sans
            .iter()
            .map(|s| match s.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*s).try_into().expect("a DNS name")),
            })
            .collect();
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign the leaf");
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).expect("create the certificate's folder");
        let write = |file: &str, pem: String| {
            let p = dir.join(file);
            std::fs::write(&p, pem).expect("write PEM");
            p
        };
        TlsFiles {
            cert: write("tls.crt", cert.pem()),
            key: write("tls.key", key.serialize_pem()),
            ca: write("ca.crt", self.pem()),
        }
    }
}
