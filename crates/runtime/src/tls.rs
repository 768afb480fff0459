//! TLS on the gRPC hops between vidmesh processes, from PEM files: [`ServerTls`] is every service's `[server.tls]`
//! (mutual TLS unless client authentication is turned off explicitly), [`ClientTls`] what a process that dials a
//! stage presents and trusts (the gateway's `[stages.tls]`).
//!
//! Invariants:
//! - a config that validates names no TLS file at all, or a coherent set: a certificate with its key, and on a
//!   server a client CA unless `require_client_cert = false`;
//! - the files are read once, when the process starts ([`ServerTls::load`], [`ClientTls::load`]): a file that is
//!   missing, unreadable, holds no PEM object of the expected kind, or a key that is not the certificate's, is a
//!   [`ConfigError`] naming its key; nothing is re-read later (a rotated certificate needs a restart);
//! - a server with `client_ca_file` and `require_client_cert = true` completes no handshake with a client that
//!   presents no certificate, or one that `client_ca_file` did not sign;
//! - rustls runs on ring, installed as the process's default provider unless another one already is.

use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::config::{Checks, ConfigError, Validate};

/// A client that connects but does not finish its TLS handshake is dropped after this long.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// `[server.tls]`: TLS on a service's gRPC port. Off while `cert_file` is empty (the default: plaintext gRPC).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerTls {
    /// PEM certificate chain the server presents, leaf first (cert-manager's `tls.crt`); empty = no TLS.
    pub cert_file: String,
    /// PEM private key of the leaf in `cert_file` (PKCS#8, PKCS#1 or SEC1; cert-manager's `tls.key`).
    pub key_file: String,
    /// PEM certificate(s) of the CA that signs the clients' certificates (cert-manager's `ca.crt`). Required while
    /// `require_client_cert` is true.
    pub client_ca_file: String,
    /// Mutual TLS: refuse every client that does not present a certificate signed by `client_ca_file`. `false` =
    /// TLS without client authentication (a client certificate, when presented and `client_ca_file` is set, must
    /// still verify); for a port that callers without certificates reach, never for stage-to-stage traffic.
    pub require_client_cert: bool,
}

impl Default for ServerTls {
    fn default() -> Self {
        Self {
            cert_file: String::new(),
            key_file: String::new(),
            client_ca_file: String::new(),
            require_client_cert: true,
        }
    }
}

/// What a process that dials TLS servers trusts and presents (the gateway's `[stages.tls]`). Off while `ca_file` is
/// empty (the default).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClientTls {
    /// PEM certificate(s) of the CA the servers' certificates must chain to (cert-manager's `ca.crt`); the only
    /// roots trusted. Empty = no TLS.
    pub ca_file: String,
    /// PEM certificate chain presented to servers that ask for one (mutual TLS; cert-manager's `tls.crt`). Empty =
    /// no client certificate: servers with `require_client_cert` refuse the connection.
    pub cert_file: String,
    /// PEM private key of the leaf in `cert_file` (cert-manager's `tls.key`).
    pub key_file: String,
}

/// `cert_file` and `key_file` are both set or both empty.
fn check_pair(prefix: &str, cert: &str, key: &str, checks: &mut Checks) {
    checks
        .require(
            cert.is_empty() || !key.is_empty(),
            format_args!("{prefix}key_file"),
            format_args!("must be set with {prefix}cert_file"),
        )
        .require(
            key.is_empty() || !cert.is_empty(),
            format_args!("{prefix}cert_file"),
            format_args!("must be set with {prefix}key_file"),
        );
}

impl Validate for ServerTls {
    fn check(&self, prefix: &str, checks: &mut Checks) {
        check_pair(prefix, &self.cert_file, &self.key_file, checks);
        checks
            .require(
                self.client_ca_file.is_empty() || !self.cert_file.is_empty(),
                format_args!("{prefix}client_ca_file"),
                format_args!(
                    "needs {prefix}cert_file and {prefix}key_file (client certificates are verified only over TLS)"
                ),
            )
            .require(
                !self.enabled() || !self.require_client_cert || !self.client_ca_file.is_empty(),
                format_args!("{prefix}client_ca_file"),
                format_args!(
                    "must name the CA that signs client certificates while {prefix}require_client_cert is true \
                     (set it to false for TLS without client authentication)"
                ),
            );
    }
}

impl Validate for ClientTls {
    fn check(&self, prefix: &str, checks: &mut Checks) {
        check_pair(prefix, &self.cert_file, &self.key_file, checks);
        checks.require(
            self.cert_file.is_empty() || self.enabled(),
            format_args!("{prefix}ca_file"),
            format_args!("must be set with {prefix}cert_file (the CA that signed the servers' certificates)"),
        );
    }
}

impl ServerTls {
    /// Whether the server speaks TLS.
    pub fn enabled(&self) -> bool {
        !self.cert_file.is_empty()
    }

    /// Reads and checks the files (see the module invariants); `None` when TLS is off. `prefix` is the section's
    /// key (`server.tls.`), for the messages.
    pub fn load(&self, prefix: &str) -> Result<Option<ServerTlsConfig>, ConfigError> {
        if !self.enabled() {
            return Ok(None);
        }
        install_provider();
        let (chain, chain_pem) = certificates(&format!("{prefix}cert_file"), &self.cert_file)?;
        let (key, key_pem) = private_key(&format!("{prefix}key_file"), &self.key_file)?;
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| mismatch(prefix, &e))?;
        let mut tls =
            ServerTlsConfig::new().identity(Identity::from_pem(chain_pem, key_pem)).timeout(HANDSHAKE_TIMEOUT);
        if !self.client_ca_file.is_empty() {
            let pem = roots(&format!("{prefix}client_ca_file"), &self.client_ca_file)?;
            tls = tls.client_ca_root(Certificate::from_pem(pem)).client_auth_optional(!self.require_client_cert);
        }
        Ok(Some(tls))
    }
}

impl ClientTls {
    /// Whether servers are dialled over TLS.
    pub fn enabled(&self) -> bool {
        !self.ca_file.is_empty()
    }

    /// Reads and checks the files (see the module invariants); `None` when TLS is off. `prefix` is the section's
    /// key (`stages.tls.`), for the messages. Each connection adds the server's name
    /// ([`ClientTlsConfig::domain_name`]) its certificate must carry.
    pub fn load(&self, prefix: &str) -> Result<Option<ClientTlsConfig>, ConfigError> {
        if !self.enabled() {
            return Ok(None);
        }
        install_provider();
        let pem = roots(&format!("{prefix}ca_file"), &self.ca_file)?;
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)).timeout(HANDSHAKE_TIMEOUT);
        if !self.cert_file.is_empty() {
            let (chain, chain_pem) = certificates(&format!("{prefix}cert_file"), &self.cert_file)?;
            let (key, key_pem) = private_key(&format!("{prefix}key_file"), &self.key_file)?;
            rustls::ClientConfig::builder()
                .with_root_certificates(RootCertStore::empty())
                .with_client_auth_cert(chain, key)
                .map_err(|e| mismatch(prefix, &e))?;
            tls = tls.identity(Identity::from_pem(chain_pem, key_pem));
        }
        Ok(Some(tls))
    }
}

/// Makes ring the process's rustls provider unless one is installed (a build with both ring and aws-lc-rs has no
/// implicit default, and tonic's server asks for it).
pub fn install_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: a provider is installed either way.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

fn read(key: &str, path: &str) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| ConfigError::new(format!("{key}: cannot read {path}: {e}")))
}

/// The PEM certificates in `path` (at least one), and the file's text.
fn certificates(key: &str, path: &str) -> Result<(Vec<CertificateDer<'static>>, Vec<u8>), ConfigError> {
    let pem = read(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ConfigError::new(format!("{key}: {path} is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(ConfigError::new(format!("{key}: {path} holds no PEM certificate")));
    }
    Ok((certs, pem))
}

/// The PEM private key in `path`, and the file's text.
fn private_key(key: &str, path: &str) -> Result<(PrivateKeyDer<'static>, Vec<u8>), ConfigError> {
    let pem = read(key, path)?;
    let private = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        ConfigError::new(format!("{key}: {path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"))
    })?;
    Ok((private, pem))
}

/// The file's text once at least one of its certificates is a usable trust anchor.
fn roots(key: &str, path: &str) -> Result<Vec<u8>, ConfigError> {
    let (certs, pem) = certificates(key, path)?;
    let mut store = RootCertStore::empty();
    store.add_parsable_certificates(certs);
    if store.is_empty() {
        return Err(ConfigError::new(format!("{key}: {path} holds no certificate usable as a CA")));
    }
    Ok(pem)
}

fn mismatch(prefix: &str, e: &rustls::Error) -> ConfigError {
    ConfigError::new(format!("{prefix}key_file: cannot be used with {prefix}cert_file: {e}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn problems(check: impl Fn(&mut Checks)) -> String {
        let mut checks = Checks::default();
        check(&mut checks);
        checks.finish().err().map(|e| e.to_string()).unwrap_or_default()
    }

    fn server(cert: &str, key: &str, ca: &str, require: bool) -> ServerTls {
        ServerTls {
            cert_file: cert.into(),
            key_file: key.into(),
            client_ca_file: ca.into(),
            require_client_cert: require,
        }
    }

    #[test]
    fn incoherent_sets_of_files_name_their_keys() {
        let p = "server.tls.";
        let err = problems(|c| server("c.pem", "", "", true).check(p, c));
        assert!(err.contains("server.tls.key_file: must be set with server.tls.cert_file"), "{err}");
        assert!(err.contains("server.tls.client_ca_file: must name the CA that signs client certificates"), "{err}");
        let err = problems(|c| server("", "k.pem", "ca.pem", true).check(p, c));
        assert!(err.contains("server.tls.cert_file: must be set with server.tls.key_file"), "{err}");
        assert!(err.contains("server.tls.client_ca_file: needs server.tls.cert_file"), "{err}");
        assert_eq!(problems(|c| server("c.pem", "k.pem", "", false).check(p, c)), "", "TLS without client auth");
        assert_eq!(problems(|c| server("c.pem", "k.pem", "ca.pem", true).check(p, c)), "");
        assert_eq!(problems(|c| ServerTls::default().check(p, c)), "", "off by default");
        let client = ClientTls { cert_file: "c.pem".into(), ..Default::default() };
        let err = problems(|c| client.check("stages.tls.", c));
        assert!(err.contains("stages.tls.key_file: must be set with stages.tls.cert_file"), "{err}");
        assert!(err.contains("stages.tls.ca_file: must be set with stages.tls.cert_file"), "{err}");
    }

    #[test]
    fn files_are_read_at_load_and_each_problem_names_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p.display().to_string()
        };
        let a = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let (cert, key) = (write("a.crt", &a.cert.pem()), write("a.key", &a.signing_key.serialize_pem()));
        let other_key = write("b.key", &b.signing_key.serialize_pem());
        let junk = write("junk.pem", "not a certificate\n");
        let p = "server.tls.";

        assert!(server(&cert, &key, &cert, true).load(p).unwrap().is_some());
        assert!(ServerTls::default().load(p).unwrap().is_none());
        let err = server(&cert, &key, "/nonexistent/ca.crt", true).load(p).unwrap_err().to_string();
        assert!(err.contains("server.tls.client_ca_file: cannot read /nonexistent/ca.crt"), "{err}");
        let err = server(&junk, &key, &cert, true).load(p).unwrap_err().to_string();
        assert!(err.contains("server.tls.cert_file:") && err.contains("holds no PEM certificate"), "{err}");
        let err = server(&cert, &junk, &cert, true).load(p).unwrap_err().to_string();
        assert!(err.contains("server.tls.key_file:") && err.contains("holds no PEM private key"), "{err}");
        let err = server(&cert, &other_key, &cert, true).load(p).unwrap_err().to_string();
        assert!(err.contains("server.tls.key_file: cannot be used with server.tls.cert_file"), "{err}");

        let client =
            |ca: &str, key: &str| ClientTls { ca_file: ca.into(), cert_file: cert.clone(), key_file: key.into() };
        assert!(client(&cert, &key).load("stages.tls.").unwrap().is_some());
        let err = client(&junk, &key).load("stages.tls.").unwrap_err().to_string();
        assert!(err.contains("stages.tls.ca_file:") && err.contains("holds no PEM certificate"), "{err}");
        let err = client(&cert, &other_key).load("stages.tls.").unwrap_err().to_string();
        assert!(err.contains("stages.tls.key_file: cannot be used with stages.tls.cert_file"), "{err}");
    }
}
