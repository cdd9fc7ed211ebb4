//! The cluster configuration file (TOML) written by `tangaroa keygen` and read by every
//! node and client: ids, addresses, public keys, certificates, registered clients, the
//! variant and the timeouts. Loading checks everything a running node relies on and says
//! what is wrong, field by field.

use crate::crypto::{Domain, Keyring, Principal};
use crate::protocol::{ClientId, NodeId, Timing, Variant};
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    pub cluster_id: String,
    pub variant: Variant,
    /// Wall-clock length of one protocol tick.
    pub tick_ms: u64,
    pub timing: Timing,
    /// Committed entries between two checkpoints: each node snapshots its state machine,
    /// and once q nodes sign the same checkpoint the log below it is dropped (README,
    /// "Checkpoints"). 0 turns checkpoints and compaction off: the log then grows for ever.
    #[serde(default = "default_checkpoint_interval")]
    pub checkpoint_interval: u64,
    #[serde(rename = "node")]
    pub nodes: Vec<NodeEntry>,
    #[serde(rename = "client", default)]
    pub clients: Vec<ClientEntry>,
}

/// A node as the configuration lists it. In the file, `address` is `IP:PORT` or
/// `HOSTNAME:PORT`; a hostname is resolved when the file is loaded (on every host that loads
/// it), and written back as the name.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(try_from = "RawNode", into = "RawNode")]
pub struct NodeEntry {
    pub id: NodeId,
    /// Where the node is reached (and, unless `tangaroa node --listen` says otherwise,
    /// where it binds): `host` resolved.
    pub address: SocketAddr,
    /// `address` as written in the file: an IP or a hostname, with the port.
    pub host: String,
    /// Ed25519 public key, hex.
    pub public_key: String,
    /// TLS certificate (PEM), relative to the config file's directory.
    pub cert: PathBuf,
}

impl NodeEntry {
    /// An entry for a node at a literal socket address.
    pub fn at(id: NodeId, address: SocketAddr, public_key: String, cert: PathBuf) -> NodeEntry {
        NodeEntry {
            id,
            address,
            host: address.to_string(),
            public_key,
            cert,
        }
    }
}

/// `[[node]]` as it is in the file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    id: NodeId,
    address: String,
    public_key: String,
    cert: PathBuf,
}

impl TryFrom<RawNode> for NodeEntry {
    type Error = String;

    fn try_from(raw: RawNode) -> Result<NodeEntry, String> {
        let address = resolve_address(&raw.address).map_err(|e| format!("node {}: {e}", raw.id))?;
        Ok(NodeEntry {
            id: raw.id,
            address,
            host: raw.address,
            public_key: raw.public_key,
            cert: raw.cert,
        })
    }
}

impl From<NodeEntry> for RawNode {
    fn from(n: NodeEntry) -> RawNode {
        RawNode {
            id: n.id,
            address: n.host,
            public_key: n.public_key,
            cert: n.cert,
        }
    }
}

/// `IP:PORT`, `[IPv6]:PORT` or `HOSTNAME:PORT` to one socket address (a name's first
/// resolved address). Port 0 is refused: peers must know where to dial.
pub fn resolve_address(text: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let text = text.trim();
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("address {text:?} needs a port: HOST:PORT"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("address {text:?}: {port:?} is not a port (1-65535)"))?;
    if port == 0 {
        return Err(format!(
            "address {text:?} has port 0; give the port the node listens on (1-65535)"
        ));
    }
    if host.is_empty() {
        return Err(format!("address {text:?} has no host"));
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let mut found = (host.trim_start_matches('[').trim_end_matches(']'), port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host:?}: {e}"))?;
    found
        .next()
        .ok_or_else(|| format!("{host:?} resolves to no address"))
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClientEntry {
    pub id: ClientId,
    pub public_key: String,
    pub cert: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// Largest configuration file read.
pub const MAX_CONFIG_FILE: u64 = 4 << 20;
/// Largest key or certificate file read (PEM or hex): a few KiB in practice.
pub const MAX_KEY_FILE: u64 = 64 << 10;
/// Timing bounds: large enough for any sane deployment, small enough that no
/// arithmetic on them (deadlines, doubled timeouts, tick counts) can overflow.
pub const MAX_ELECTION_TICKS: u32 = 1_000_000;
pub const MAX_REQUEST_TICKS: u32 = 10_000_000;
/// Longest wall-clock election timeout accepted (`election_ticks * tick_ms`): one hour.
pub const MAX_ELECTION_MS: u64 = 3_600_000;

/// Reads at most `limit` bytes of `path`; a longer file (or an endless one such as
/// /dev/zero) is an error, found after reading `limit + 1` bytes, never allocated whole.
pub fn read_bounded(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than the {limit}-byte limit for this file"),
        ));
    }
    Ok(bytes)
}

/// [`read_bounded`] for a UTF-8 text file.
pub fn read_bounded_string(path: &Path, limit: u64) -> std::io::Result<String> {
    String::from_utf8(read_bounded(path, limit)?)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))
}

fn default_checkpoint_interval() -> u64 {
    crate::protocol::node::DEFAULT_CHECKPOINT_INTERVAL
}

/// Largest `checkpoint_interval` accepted: a log of this many entries still restarts in
/// reasonable time.
pub const MAX_CHECKPOINT_INTERVAL: u64 = 10_000_000;

impl ClusterConfig {
    pub fn load(path: &Path) -> Result<ClusterConfig, ConfigError> {
        let text =
            read_bounded_string(path, MAX_CONFIG_FILE).map_err(|source| ConfigError::Read {
                path: path.into(),
                source,
            })?;
        let invalid = |reason: String| ConfigError::Invalid {
            path: path.into(),
            reason,
        };
        let cfg: ClusterConfig = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        cfg.validate().map_err(invalid)?;
        Ok(cfg)
    }

    /// Every check a node relies on: contiguous ids, distinct addresses, valid and
    /// non-weak keys, sane timing.
    pub fn validate(&self) -> Result<(), String> {
        if self.cluster_id.is_empty() || self.cluster_id.contains('/') {
            return Err("cluster_id must be non-empty and contain no '/'".into());
        }
        if self.nodes.is_empty() {
            return Err("no [[node]] entries".into());
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if n.id as usize != i {
                return Err(format!(
                    "node ids must be 0..{} in order; entry {i} has id {}",
                    self.nodes.len(),
                    n.id
                ));
            }
        }
        let addrs: BTreeSet<SocketAddr> = self.nodes.iter().map(|n| n.address).collect();
        if addrs.len() != self.nodes.len() {
            return Err("two nodes share an address".into());
        }
        let ids: BTreeSet<ClientId> = self.clients.iter().map(|c| c.id).collect();
        if ids.len() != self.clients.len() {
            return Err("two clients share an id".into());
        }
        if self.tick_ms == 0 || self.tick_ms > 10_000 {
            return Err("tick_ms must be between 1 and 10000".into());
        }
        if self.checkpoint_interval > MAX_CHECKPOINT_INTERVAL {
            return Err(format!(
                "checkpoint_interval must be at most {MAX_CHECKPOINT_INTERVAL} (0: never)"
            ));
        }
        // Ranges first, without arithmetic that can wrap, so the core's own checks and
        // everything after only ever see small numbers.
        let t = &self.timing;
        if !(4..=MAX_ELECTION_TICKS).contains(&t.election_ticks) {
            return Err(format!(
                "timing.election_ticks must be between 4 and {MAX_ELECTION_TICKS}"
            ));
        }
        if t.heartbeat_ticks == 0 || t.heartbeat_ticks > t.election_ticks / 2 {
            return Err("timing.heartbeat_ticks must be between 1 and election_ticks / 2".into());
        }
        if !(t.election_ticks..=MAX_REQUEST_TICKS).contains(&t.request_ticks) {
            return Err(format!(
                "timing.request_ticks must be between election_ticks and {MAX_REQUEST_TICKS}"
            ));
        }
        if u64::from(t.election_ticks).saturating_mul(self.tick_ms) > MAX_ELECTION_MS {
            return Err(format!(
                "election_ticks * tick_ms must be at most {MAX_ELECTION_MS} ms (one hour)"
            ));
        }
        if self.nodes.len() > 1024 || self.clients.len() > 1 << 20 {
            return Err("at most 1024 nodes and 2^20 clients".into());
        }
        self.timing.validate()?;
        self.keyring().map(|_| ())
    }

    /// The public keys of the cluster, parsed and checked for weakness.
    pub fn keyring(&self) -> Result<Keyring, String> {
        let nodes = self
            .nodes
            .iter()
            .map(|n| parse_public(Principal::Node(n.id), &n.public_key))
            .collect::<Result<Vec<_>, _>>()?;
        let clients = self
            .clients
            .iter()
            .map(|c| parse_public(Principal::Client(c.id), &c.public_key).map(|k| (c.id, k)))
            .collect::<Result<HashMap<_, _>, _>>()?;
        Keyring::new(Domain::new(self.variant, &self.cluster_id), nodes, clients)
            .map_err(|e| e.to_string())
    }
}

fn parse_public(who: Principal, hex_key: &str) -> Result<VerifyingKey, String> {
    let bytes = hex::decode(hex_key).map_err(|e| format!("{who:?}: public key is not hex: {e}"))?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| format!("{who:?}: public key must be 32 bytes"))?;
    Keyring::parse_key(who, &bytes).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keygen::{keygen, KeygenSpec};

    fn config() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = keygen(&KeygenSpec {
            nodes: 4,
            clients: 1,
            out: dir.path().into(),
            base_port: 7000,
            variant: crate::protocol::Variant::Bft,
            force: false,
        })
        .unwrap();
        (dir, path)
    }

    /// Values that wrapped (`heartbeat_ticks * 2`) or panicked later (a huge
    /// `election_ticks`) are refused at load with the field named; never a panic.
    #[test]
    fn timing_out_of_range_is_refused_not_wrapped() {
        let (_dir, path) = config();
        let good = ClusterConfig::load(&path).unwrap();
        let with = |f: &dyn Fn(&mut ClusterConfig)| {
            let mut c = good.clone();
            f(&mut c);
            c.validate()
        };
        assert!(with(&|_| {}).is_ok());
        for (what, bad) in [
            (
                "heartbeat",
                with(&|c| c.timing.heartbeat_ticks = 0x8000_0001),
            ),
            ("heartbeat", with(&|c| c.timing.heartbeat_ticks = u32::MAX)),
            (
                "election_ticks",
                with(&|c| c.timing.election_ticks = u32::MAX),
            ),
            (
                "request_ticks",
                with(&|c| c.timing.request_ticks = u32::MAX),
            ),
            (
                "tick_ms",
                with(&|c| {
                    c.tick_ms = 10_000;
                    c.timing.election_ticks = 1_000_000;
                    c.timing.request_ticks = 1_000_000;
                }),
            ),
        ] {
            let e = bad.expect_err(what);
            assert!(e.contains(what), "{what}: {e}");
        }
    }

    /// `cert = "/dev/zero"` read until a 16 GiB allocation failed; a config file, key or
    /// certificate is now read only up to its bound.
    #[test]
    fn endless_or_huge_files_are_refused_at_their_bound() {
        let e = read_bounded(Path::new("/dev/zero"), MAX_KEY_FILE).unwrap_err();
        assert!(e.to_string().contains("limit"), "{e}");
        let (dir, path) = config();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replacen("node-0.crt", "/dev/zero", 1)).unwrap();
        let cfg = ClusterConfig::load(&path).unwrap();
        let e = crate::transport::tls::Pins::load(&cfg, dir.path()).expect_err("refused");
        assert!(e.to_string().contains("limit"), "{e}");
        let e = ClusterConfig::load(Path::new("/dev/zero")).unwrap_err();
        assert!(e.to_string().contains("limit"), "{e}");
    }
}
