//! `tangaroa keygen`: key pairs for nodes and clients, TLS certificates for mutual TLS, and
//! the cluster configuration. Secrets are written with mode 0600 and never overwritten
//! unless asked.

use crate::config::{ClientEntry, ClusterConfig, NodeEntry};
use crate::protocol::{ClientId, NodeId, Timing, Variant};
use ed25519_dalek::SigningKey;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct KeygenSpec {
    pub nodes: usize,
    pub clients: usize,
    pub out: PathBuf,
    pub base_port: u16,
    pub variant: Variant,
    pub force: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum KeygenError {
    #[error("{0} already exists; pass --force to overwrite existing keys")]
    Exists(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// The files a principal gets: Ed25519 secret, TLS private key, TLS certificate.
fn file_names(prefix: &str) -> [String; 3] {
    [
        format!("{prefix}.key"),
        format!("{prefix}.tls.key"),
        format!("{prefix}.crt"),
    ]
}

/// Writes everything and returns the path of the cluster configuration. Node i gets the
/// address 127.0.0.1:(base_port + i).
pub fn keygen(spec: &KeygenSpec) -> Result<PathBuf, KeygenError> {
    keygen_at(spec, None)
}

/// Like [`keygen`], but node i gets `addresses[i]` (`IP:PORT` or `HOSTNAME:PORT`, kept as
/// written in the configuration) when given; `spec.nodes` must then be their number.
/// Every address must resolve here and have a port other than 0.
pub fn keygen_at(spec: &KeygenSpec, addresses: Option<&[String]>) -> Result<PathBuf, KeygenError> {
    let resolved = match addresses {
        None => None,
        Some(list) => {
            if list.len() != spec.nodes {
                return Err(KeygenError::Invalid(format!(
                    "{} addresses given for {} nodes",
                    list.len(),
                    spec.nodes
                )));
            }
            let mut out = Vec::with_capacity(list.len());
            for (i, text) in list.iter().enumerate() {
                let addr = crate::config::resolve_address(text)
                    .map_err(|e| KeygenError::Invalid(format!("--addresses, node {i}: {e}")))?;
                out.push((addr, text.trim().to_string()));
            }
            Some(out)
        }
    };
    if spec.nodes == 0 || spec.nodes > 64 {
        return Err(KeygenError::Invalid(format!(
            "--nodes must be between 1 and 64, got {}",
            spec.nodes
        )));
    }
    if spec.clients > 1024 {
        return Err(KeygenError::Invalid(
            "--clients must be at most 1024".into(),
        ));
    }
    if resolved.is_none() && spec.base_port as usize + spec.nodes > u16::MAX as usize {
        return Err(KeygenError::Invalid(
            "--base-port leaves no room for every node".into(),
        ));
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| KeygenError::Io {
            path: path.clone(),
            source,
        }
    };
    std::fs::create_dir_all(&spec.out).map_err(io(&spec.out))?;
    let config_path = spec.out.join("cluster.toml");
    let prefixes: Vec<String> = (0..spec.nodes)
        .map(|i| format!("node-{i}"))
        .chain((0..spec.clients).map(|c| format!("client-{c}")))
        .collect();
    if !spec.force {
        let mut targets = vec![config_path.clone()];
        for p in &prefixes {
            targets.extend(file_names(p).iter().map(|f| spec.out.join(f)));
        }
        if let Some(t) = targets.into_iter().find(|t| t.exists()) {
            return Err(KeygenError::Exists(t));
        }
    }
    let mut nodes = Vec::new();
    let mut clients = Vec::new();
    for (k, prefix) in prefixes.iter().enumerate() {
        let mut seed = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
        let key = SigningKey::from_bytes(&seed);
        let certified = rcgen::generate_simple_self_signed(vec![format!("{prefix}.tangaroa")])
            .map_err(|e| KeygenError::Invalid(format!("certificate generation failed: {e}")))?;
        let [secret, tls_key, cert] = file_names(prefix);
        write_secret(
            &spec.out.join(&secret),
            hex::encode(key.to_bytes()).as_bytes(),
        )?;
        write_secret(
            &spec.out.join(&tls_key),
            certified.key_pair.serialize_pem().as_bytes(),
        )?;
        std::fs::write(spec.out.join(&cert), certified.cert.pem())
            .map_err(io(&spec.out.join(&cert)))?;
        let public_key = hex::encode(key.verifying_key().to_bytes());
        if k < spec.nodes {
            let local = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), spec.base_port + k as u16);
            let mut entry = NodeEntry::at(k as NodeId, local, public_key, cert.into());
            if let Some((address, host)) = resolved.as_ref().map(|r| r[k].clone()) {
                entry.address = address;
                entry.host = host;
            }
            nodes.push(entry);
        } else {
            clients.push(ClientEntry {
                id: (k - spec.nodes) as ClientId,
                public_key,
                cert: cert.into(),
            });
        }
    }
    let mut id = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut id);
    let cluster_id = hex::encode(id);
    let config = ClusterConfig {
        cluster_id,
        variant: spec.variant,
        tick_ms: 10,
        timing: Timing::default(),
        checkpoint_interval: crate::protocol::node::DEFAULT_CHECKPOINT_INTERVAL,
        nodes,
        clients,
    };
    config.validate().map_err(KeygenError::Invalid)?;
    let text = toml::to_string_pretty(&config).map_err(|e| KeygenError::Invalid(e.to_string()))?;
    std::fs::write(&config_path, text).map_err(io(&config_path))?;
    Ok(config_path)
}

/// Creates a file readable by its owner only (0600), replacing any old one.
fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), KeygenError> {
    let err = |source| KeygenError::Io {
        path: path.to_path_buf(),
        source,
    };
    let _ = std::fs::remove_file(path);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)
}

/// Where `keygen` put a principal's secrets, in the configuration's folder: `prefix` is
/// `node-I` or `client-C`. Returns (Ed25519 secret, TLS private key).
pub fn secret_paths(dir: &Path, prefix: &str) -> (PathBuf, PathBuf) {
    let [secret, tls_key, _] = file_names(prefix);
    (dir.join(secret), dir.join(tls_key))
}

/// Reads a node's or client's Ed25519 secret key written by `keygen`.
pub fn read_secret(path: &Path) -> Result<SigningKey, KeygenError> {
    let text = crate::config::read_bounded_string(path, crate::config::MAX_KEY_FILE).map_err(
        |source| KeygenError::Io {
            path: path.into(),
            source,
        },
    )?;
    let bytes = hex::decode(text.trim())
        .map_err(|e| KeygenError::Invalid(format!("{}: not hex: {e}", path.display())))?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| {
        KeygenError::Invalid(format!("{}: a secret key is 32 bytes", path.display()))
    })?;
    Ok(SigningKey::from_bytes(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &Path) -> KeygenSpec {
        KeygenSpec {
            nodes: 4,
            clients: 2,
            out: dir.to_path_buf(),
            base_port: 7000,
            variant: Variant::Bft,
            force: false,
        }
    }

    #[test]
    fn writes_a_loadable_cluster_with_private_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let path = keygen(&spec(dir.path())).unwrap();
        let cfg = ClusterConfig::load(&path).unwrap();
        assert_eq!(cfg.nodes.len(), 4);
        assert_eq!(cfg.clients.len(), 2);
        assert_eq!(cfg.nodes[3].address.port(), 7003);
        let ring = cfg.keyring().unwrap();
        // The secret on disk matches the public key in the config.
        let secret = read_secret(&dir.path().join("node-2.key")).unwrap();
        assert_eq!(
            hex::encode(secret.verifying_key().to_bytes()),
            cfg.nodes[2].public_key
        );
        assert!(ring.has_client(1));
        for f in ["node-0.key", "node-0.tls.key", "client-1.key"] {
            let mode = std::fs::metadata(dir.path().join(f)).unwrap().permissions();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                assert_eq!(mode.mode() & 0o777, 0o600, "{f}");
            }
            let _ = mode;
        }
        assert!(std::fs::read_to_string(dir.path().join("node-0.crt"))
            .unwrap()
            .contains("BEGIN CERTIFICATE"));
    }

    #[test]
    fn never_overwrites_keys_without_force() {
        let dir = tempfile::tempdir().unwrap();
        keygen(&spec(dir.path())).unwrap();
        let before = std::fs::read(dir.path().join("node-0.key")).unwrap();
        let err = keygen(&spec(dir.path())).unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");
        assert_eq!(
            std::fs::read(dir.path().join("node-0.key")).unwrap(),
            before
        );
        keygen(&KeygenSpec {
            force: true,
            ..spec(dir.path())
        })
        .unwrap();
        assert_ne!(
            std::fs::read(dir.path().join("node-0.key")).unwrap(),
            before
        );
    }

    #[test]
    fn bad_configs_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        let path = keygen(&spec(dir.path())).unwrap();
        let good = std::fs::read_to_string(&path).unwrap();
        let cfg: ClusterConfig = toml::from_str(&good).unwrap();
        let mut weak = cfg.clone();
        let mut identity = [0u8; 32];
        identity[0] = 1;
        weak.nodes[1].public_key = hex::encode(identity);
        assert!(weak.validate().unwrap_err().contains("weak"));
        let mut gap = cfg.clone();
        gap.nodes[2].id = 7;
        assert!(gap.validate().unwrap_err().contains("ids"));
        let mut dup = cfg.clone();
        dup.nodes[1].address = dup.nodes[0].address;
        assert!(dup.validate().unwrap_err().contains("address"));
        std::fs::write(&path, good.replace("cluster_id", "clusterid")).unwrap();
        assert!(ClusterConfig::load(&path).is_err());
        assert!(ClusterConfig::load(&dir.path().join("missing.toml"))
            .unwrap_err()
            .to_string()
            .contains("cannot read"));
    }
}
