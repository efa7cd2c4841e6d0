//! TLS 1.3 for peer links: a cluster CA, or an insecure dev mode.
//!
//! **CA mode** (`ca_cert`, `cert` and `key` all given): every peer presents its certificate
//! chain (`cert`, signed by the cluster CA) and verifies the other side's against `ca_cert`, in
//! both directions (mutual TLS). Peers dial each other by IP address, so hostnames are not
//! bound: the client always asks for the fixed server name [`SERVER_NAME`], and **every peer
//! certificate must carry the DNS subject alternative name `shoal-peer`**. Trust therefore
//! means "holds a key certified by the cluster CA".
//!
//! **Dev mode** (none given): a self-signed certificate is generated at start and the client
//! accepts any server certificate (handshake signatures are still checked, but anyone can
//! impersonate a peer). Links are encrypted, not authenticated: for local use and tests only.
//! A warning is logged once per process.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use serde::Deserialize;

/// The server name clients ask for and peer certificates must carry (as a DNS SAN).
pub const SERVER_NAME: &str = "shoal-peer";

/// ALPN protocol id of peer protocol version 1.
pub(crate) const ALPN: &[u8] = b"shoal-peer/1";

/// PEM files of the cluster CA mode; leave all three unset for the dev mode (see the module
/// docs of [`crate::tls`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// The cluster CA certificate(s) that peer certificates must chain to.
    pub ca_cert: Option<PathBuf>,
    /// This peer's certificate chain, leaf first, with the DNS SAN `shoal-peer`.
    pub cert: Option<PathBuf>,
    /// This peer's private key (PKCS#8, PKCS#1 or SEC1 PEM).
    pub key: Option<PathBuf>,
}

impl TlsConfig {
    /// Whether this is the insecure dev mode (no files given).
    pub fn is_dev_mode(&self) -> bool {
        self.ca_cert.is_none() && self.cert.is_none() && self.key.is_none()
    }
}

/// Why TLS could not be set up. Fatal: the transport does not start.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Only some of `ca_cert`, `cert` and `key` were given.
    #[error("tls.ca_cert, tls.cert and tls.key must be given together (or none, for dev mode)")]
    Incomplete,
    /// A PEM file could not be read or parsed.
    #[error("cannot read {path}: {source}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// Why.
        source: rustls::pki_types::pem::Error,
    },
    /// A PEM file holds no certificate.
    #[error("{0} holds no certificate")]
    NoCertificate(PathBuf),
    /// A file could not be written (test PKI generation).
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// rustls refused the material (e.g. a key that does not match the certificate).
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client-certificate verifier could not be built from the CA.
    #[error("tls client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// Certificate generation failed.
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    /// The TLS configuration is unusable for QUIC.
    #[error("tls config unusable for QUIC: {0}")]
    Quic(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
}

/// The QUIC crypto configs built from a [`TlsConfig`].
pub(crate) struct Crypto {
    pub(crate) server: Arc<QuicServerConfig>,
    pub(crate) client: Arc<QuicClientConfig>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub(crate) fn build(cfg: &TlsConfig) -> Result<Crypto, TlsError> {
    let (server, client) = match (&cfg.ca_cert, &cfg.cert, &cfg.key) {
        (Some(ca), Some(cert), Some(key)) => ca_mode(ca, cert, key)?,
        (None, None, None) => dev_mode()?,
        _ => return Err(TlsError::Incomplete),
    };
    Ok(Crypto {
        server: Arc::new(QuicServerConfig::try_from(server)?),
        client: Arc::new(QuicClientConfig::try_from(client)?),
    })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |source| TlsError::Pem {
        path: path.to_owned(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_owned()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| TlsError::Pem {
        path: path.to_owned(),
        source,
    })
}

fn ca_mode(
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> Result<(rustls::ServerConfig, rustls::ClientConfig), TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in read_certs(ca)? {
        roots.add(c)?;
    }
    let roots = Arc::new(roots);
    let chain = read_certs(cert)?;
    let key = read_key(key)?;

    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .build()?;
    let mut server = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain.clone(), key.clone_key())?;
    server.alpn_protocols = vec![ALPN.to_vec()];

    let mut client = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    client.alpn_protocols = vec![ALPN.to_vec()];
    Ok((server, client))
}

fn dev_mode() -> Result<(rustls::ServerConfig, rustls::ClientConfig), TlsError> {
    static WARN: Once = Once::new();
    WARN.call_once(|| {
        tracing::warn!(
            "peer TLS is in dev mode (no tls.ca_cert/cert/key): links are encrypted but peers \
             are NOT authenticated; use a cluster CA outside local testing"
        );
    });
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_owned()])?;
    let key = PrivateKeyDer::try_from(signing_key.serialize_der())
        .map_err(|e| rustls::Error::General(e.to_owned()))?;
    let mut server = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)?;
    server.alpn_protocols = vec![ALPN.to_vec()];

    let mut client = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert(provider())))
        .with_no_client_auth();
    client.alpn_protocols = vec![ALPN.to_vec()];
    Ok((server, client))
}

/// Dev mode only: accepts any server certificate, but still checks handshake signatures.
#[derive(Debug)]
struct AcceptAnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Writes a fresh cluster CA (`ca.pem`) and `peers` leaf certificates signed by it
/// (`peer<i>.pem`, `peer<i>.key`, each with the SAN `shoal-peer`) into `dir`, and returns one
/// CA-mode [`TlsConfig`] per peer.
///
/// For tests and local clusters: the CA key is thrown away, and keys are written with the
/// process's default permissions.
pub fn write_test_pki(dir: &Path, peers: usize) -> Result<Vec<TlsConfig>, TlsError> {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    let write = |name: &str, contents: String| {
        let path = dir.join(name);
        std::fs::write(&path, contents).map_err(|source| TlsError::Write {
            path: path.clone(),
            source,
        })?;
        Ok::<_, TlsError>(path)
    };

    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "shoal test cluster CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    let ca_path = write("ca.pem", ca.pem())?;

    (0..peers)
        .map(|i| {
            let mut params = CertificateParams::new(vec![SERVER_NAME.to_owned()])?;
            params
                .distinguished_name
                .push(DnType::CommonName, format!("shoal test peer {i}"));
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            let key = KeyPair::generate()?;
            let cert = params.signed_by(&key, &ca)?;
            Ok(TlsConfig {
                ca_cert: Some(ca_path.clone()),
                cert: Some(write(&format!("peer{i}.pem"), cert.pem())?),
                key: Some(write(&format!("peer{i}.key"), key.serialize_pem())?),
            })
        })
        .collect()
}
