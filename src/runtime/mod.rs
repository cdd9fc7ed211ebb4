//! The real runtime around the sans-IO core: a node process (`node`) and a client
//! session (`client`), over the QUIC transport and durable storage.

pub mod client;
pub mod local;
pub(crate) mod metrics;
/// How far behind the highest commit index it has heard of a node may be and still be
/// ready (`/readyz`).
pub use metrics::CAUGHT_UP_LAG;
pub(crate) mod node;

use crate::config::ClusterConfig;
use crate::crypto::Principal;
use crate::keygen::{read_secret, secret_paths};
use crate::protocol::ClientId;
use crate::transport::tls::{Identity, Pins};
use ed25519_dalek::SigningKey;
use std::path::{Path, PathBuf};

/// Why a node or client could not start: each cause keeps its own type, so callers (and
/// tests) can tell a bad configuration from a missing key or a certificate problem.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A key file that cannot be read or is not a key.
    #[error(transparent)]
    Key(#[from] crate::keygen::KeygenError),
    /// A certificate or TLS key that cannot be loaded or used.
    #[error(transparent)]
    Tls(#[from] crate::transport::tls::TlsError),
    /// The configuration's keys do not make a keyring (e.g. a small-order key).
    #[error("the configuration's keys: {0}")]
    Keyring(String),
    #[error("the configuration registers no clients")]
    NoClients,
    #[error("{path}: this key is not registered as a client of the cluster")]
    UnregisteredKey { path: PathBuf },
    #[error("no {who} in the configuration")]
    NotConfigured { who: String },
    #[error(
        "{path}: this secret key is not {who}'s (its public key differs from the configuration)"
    )]
    NotItsKey { path: PathBuf, who: String },
    /// The metrics endpoint cannot listen where it was asked to.
    #[error("{0}")]
    Metrics(String),
    /// A request the configuration or this build cannot honour (an option's value).
    #[error("{0}")]
    Unsupported(String),
}

/// SIGINT and SIGTERM, installed at once (so a signal that arrives before anyone waits
/// is not the default "die now", which would skip every clean-up).
pub struct StopSignals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Must be called inside a tokio runtime.
    pub fn install() -> std::io::Result<StopSignals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(StopSignals {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(StopSignals {})
    }

    /// The next SIGINT or SIGTERM, by name.
    pub async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.int.recv() => "SIGINT",
                _ = self.term.recv() => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

/// A loaded cluster configuration and the folder its relative paths start from.
pub struct Loaded {
    pub cfg: ClusterConfig,
    pub dir: PathBuf,
    pub pins: Pins,
}

impl Loaded {
    pub fn load(path: &Path) -> Result<Loaded, SetupError> {
        let cfg = ClusterConfig::load(path)?;
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let pins = Pins::load(&cfg, &dir)?;
        Ok(Loaded { cfg, dir, pins })
    }

    /// The registered client whose secret key is at `secret` (default: the first client).
    pub fn client_id(&self, secret: Option<&Path>) -> Result<ClientId, SetupError> {
        let Some(path) = secret else {
            return self
                .cfg
                .clients
                .first()
                .map(|c| c.id)
                .ok_or(SetupError::NoClients);
        };
        let key = read_secret(path)?;
        let public = hex::encode(key.verifying_key().to_bytes());
        self.cfg
            .clients
            .iter()
            .find(|c| c.public_key == public)
            .map(|c| c.id)
            .ok_or_else(|| SetupError::UnregisteredKey {
                path: path.to_path_buf(),
            })
    }

    /// The Ed25519 key and TLS identity of `who`, from the files `keygen` wrote next to the
    /// configuration (or `secret`, if given), checked against the configured public key.
    pub fn credentials(
        &self,
        who: Principal,
        secret: Option<&Path>,
    ) -> Result<(SigningKey, Identity), SetupError> {
        let (prefix, public, cert) =
            match who {
                Principal::Node(i) => {
                    let n = self.cfg.nodes.get(i as usize).ok_or_else(|| {
                        SetupError::NotConfigured {
                            who: format!("node {i} (it has nodes 0..{})", self.cfg.nodes.len()),
                        }
                    })?;
                    (format!("node-{i}"), &n.public_key, &n.cert)
                }
                Principal::Client(c) => {
                    let e = self.cfg.clients.iter().find(|e| e.id == c).ok_or_else(|| {
                        SetupError::NotConfigured {
                            who: format!("client {c}"),
                        }
                    })?;
                    (format!("client-{c}"), &e.public_key, &e.cert)
                }
            };
        let (default_secret, default_tls) = secret_paths(&self.dir, &prefix);
        let secret_path = secret.map(Path::to_path_buf).unwrap_or(default_secret);
        let tls_path = match secret {
            // `--key some/client-3.key` finds `some/client-3.tls.key` and `.crt` beside it.
            Some(p) => p.with_extension("tls.key"),
            None => default_tls,
        };
        let key = read_secret(&secret_path)?;
        if hex::encode(key.verifying_key().to_bytes()) != *public {
            return Err(SetupError::NotItsKey {
                path: secret_path,
                who: format!("{who:?}"),
            });
        }
        let cert_path = match secret {
            Some(p) => p.with_extension("crt"),
            None => self.dir.join(cert),
        };
        let identity = Identity::load(&cert_path, &tls_path)?;
        Ok((key, identity))
    }
}

/// The (term, leader) that most reporting nodes name, preferring higher terms on ties.
/// For display and for addressing a Revolution: nodes' reports are hints, not proofs.
pub fn agreed_leader(
    reports: &[Option<crate::transport::NodeReport>],
) -> Option<(crate::protocol::Term, crate::protocol::NodeId)> {
    let mut counts: std::collections::BTreeMap<_, usize> = Default::default();
    for r in reports.iter().flatten() {
        if let Some(l) = r.leader {
            *counts.entry(l).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .max_by_key(|&(l, c)| (c, l))
        .map(|(l, _)| l)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keygen::{keygen, KeygenSpec};
    use crate::protocol::Variant;

    fn cluster(dir: &Path, clients: usize) -> Loaded {
        let spec = KeygenSpec {
            nodes: 4,
            clients,
            out: dir.into(),
            base_port: 9,
            variant: Variant::Bft,
            force: false,
        };
        let config = keygen(&spec).expect("keygen");
        Loaded::load(&config).expect("fresh keys load")
    }

    /// The error of a result whose success holds secrets (and so has no `Debug`).
    fn failure<T>(r: Result<T, SetupError>) -> SetupError {
        match r {
            Ok(_) => panic!("expected an error"),
            Err(e) => e,
        }
    }

    /// Each way credentials can be wrong is its own error, not one string.
    #[test]
    fn setup_errors_keep_their_cause() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = cluster(dir.path(), 1);
        assert!(loaded.credentials(Principal::Node(0), None).is_ok());
        let other = dir.path().join("node-1.key");
        let err = failure(loaded.credentials(Principal::Node(0), Some(&other)));
        assert!(matches!(err, SetupError::NotItsKey { .. }), "{err}");
        let missing = dir.path().join("nowhere.key");
        let err = failure(loaded.credentials(Principal::Node(0), Some(&missing)));
        assert!(matches!(err, SetupError::Key(_)), "{err}");
        let err = failure(loaded.credentials(Principal::Node(9), None));
        assert!(matches!(err, SetupError::NotConfigured { .. }), "{err}");
        let err = loaded.client_id(Some(&other)).unwrap_err();
        assert!(matches!(err, SetupError::UnregisteredKey { .. }), "{err}");
        let empty = tempfile::tempdir().unwrap();
        let err = cluster(empty.path(), 0).client_id(None).unwrap_err();
        assert!(matches!(err, SetupError::NoClients), "{err}");
    }
}
