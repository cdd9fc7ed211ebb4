//! Mutual TLS 1.3 with pinned certificates.
//!
//! There is no certificate authority: the cluster configuration lists every node's and
//! every registered client's certificate, and a peer is accepted only if it presents one of
//! those exact certificates (and proves it holds the key, which TLS's handshake signature
//! does). A dialing node additionally requires the certificate configured for the id it
//! dialed. Everything else is refused during the handshake, before any frame is read.

use crate::config::ClusterConfig;
use crate::crypto::Principal;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Application protocol name, so a tangaroa endpoint never talks to anything else.
pub const ALPN: &[u8] = b"tangaroa/1";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// A certificate and its private key: who we are on the wire.
pub struct Identity {
    pub cert: CertificateDer<'static>,
    pub key: PrivateKeyDer<'static>,
}

impl Identity {
    pub fn load(cert: &Path, key: &Path) -> Result<Identity, TlsError> {
        Ok(Identity {
            cert: load_cert(cert)?,
            key: PrivateKeyDer::from_pem_slice(&read_pem(key)?).map_err(|e| TlsError::Pem {
                path: key.into(),
                reason: e.to_string(),
            })?,
        })
    }
}

/// A PEM file, read only up to `MAX_KEY_FILE` (a path such as /dev/zero would
/// otherwise be read until memory runs out).
fn read_pem(path: &Path) -> Result<Vec<u8>, TlsError> {
    crate::config::read_bounded(path, crate::config::MAX_KEY_FILE).map_err(|e| TlsError::Pem {
        path: path.into(),
        reason: e.to_string(),
    })
}

pub fn load_cert(path: &Path) -> Result<CertificateDer<'static>, TlsError> {
    CertificateDer::from_pem_slice(&read_pem(path)?).map_err(|e| TlsError::Pem {
        path: path.into(),
        reason: e.to_string(),
    })
}

/// Every certificate the cluster configuration names, and whose it is.
#[derive(Clone, Debug, Default)]
pub struct Pins {
    by_cert: HashMap<Vec<u8>, Principal>,
    nodes: Vec<CertificateDer<'static>>,
}

impl Pins {
    /// Loads the certificates of `cfg`; paths are relative to `base` (the config's folder).
    pub fn load(cfg: &ClusterConfig, base: &Path) -> Result<Pins, TlsError> {
        let mut pins = Pins::default();
        for n in &cfg.nodes {
            let cert = load_cert(&base.join(&n.cert))?;
            pins.insert(Principal::Node(n.id), cert.clone())?;
            pins.nodes.push(cert);
        }
        for c in &cfg.clients {
            let cert = load_cert(&base.join(&c.cert))?;
            pins.insert(Principal::Client(c.id), cert)?;
        }
        Ok(pins)
    }

    fn insert(&mut self, who: Principal, cert: CertificateDer<'static>) -> Result<(), TlsError> {
        if let Some(other) = self.by_cert.insert(cert.to_vec(), who) {
            return Err(TlsError::Config(format!(
                "{who:?} and {other:?} have the same certificate"
            )));
        }
        Ok(())
    }

    /// Whose certificate this is, if anyone's.
    pub fn principal(&self, cert: &[u8]) -> Option<Principal> {
        self.by_cert.get(cert).copied()
    }

    pub fn node_cert(&self, id: usize) -> Option<&CertificateDer<'static>> {
        self.nodes.get(id)
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn refused() -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
}

/// The handshake-signature half of a verifier, the same for both sides: pinning decides
/// which certificate is acceptable, and the provider's algorithms check that the peer
/// holds its key.
macro_rules! handshake_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.algs.supported_schemes()
        }
    };
}

/// Accepts exactly one certificate: the one configured for the node being dialed.
#[derive(Debug)]
struct PinnedServer {
    expected: CertificateDer<'static>,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if intermediates.is_empty() && end_entity.as_ref() == self.expected.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(refused())
        }
    }

    handshake_signatures!();
}

/// Requires a client certificate, and accepts only the configured ones.
#[derive(Debug)]
struct PinnedClients {
    pins: Arc<Pins>,
    algs: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for PinnedClients {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match self.pins.principal(end_entity) {
            Some(_) if intermediates.is_empty() => Ok(ClientCertVerified::assertion()),
            _ => Err(refused()),
        }
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    handshake_signatures!();
}

fn clone_key(k: &PrivateKeyDer<'static>) -> PrivateKeyDer<'static> {
    k.clone_key()
}

/// The server side of a node: TLS 1.3 only, client certificate required and pinned.
pub fn server_config(me: &Identity, pins: Arc<Pins>) -> Result<rustls::ServerConfig, TlsError> {
    let provider = provider();
    let algs = provider.signature_verification_algorithms;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(Arc::new(PinnedClients { pins, algs }))
        .with_single_cert(vec![me.cert.clone()], clone_key(&me.key))
        .map_err(|e| TlsError::Config(e.to_string()))?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Ok(cfg)
}

/// The dialing side: presents our certificate, accepts only `expected` from the server.
pub fn client_config(
    me: &Identity,
    expected: CertificateDer<'static>,
) -> Result<rustls::ClientConfig, TlsError> {
    let provider = provider();
    let algs = provider.signature_verification_algorithms;
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedServer { expected, algs }))
        .with_client_auth_cert(vec![me.cert.clone()], clone_key(&me.key))
        .map_err(|e| TlsError::Config(e.to_string()))?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Ok(cfg)
}
