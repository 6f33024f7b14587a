//! chitchat's UDP transport, guarded: only member hosts are talked to or heard, and, with a
//! cluster key, only datagrams carrying a valid HMAC are accepted.
//!
//! chitchat's own `cluster_id` check is no protection: the id travels in clear in every SYN, so
//! anyone who can send a datagram can learn it and join. chitchat (0.11) lets the application
//! bring its own transport and exposes its message encoding, so this module is that transport:
//!
//! - **Peer-address check** (always): a datagram from an address that is not a member (or this
//!   host) is dropped unread, and nothing is ever sent to a non-member, so an outsider on the
//!   vSwitch can neither read nor write the catalog through a member. The agent also opens the
//!   port in the firewall to member addresses only; this check holds when that rule is missing.
//! - **Cluster key** (optional): every datagram ends with HMAC-SHA256 over a domain-separation
//!   prefix and the chitchat message, keyed with a secret shared by the fleet; a datagram whose
//!   tag does not verify (wrong key, no key, altered) is dropped. This defends against a host
//!   that can forge a member's source address (source/destination check off). Replaying an old
//!   datagram is harmless: chitchat applies state by version, so an old delta changes nothing.
//!   Keyed and unkeyed hosts do not understand each other.
//!
//! chitchat sizes a datagram up to the 65,507-byte UDP limit itself; a datagram that the 32-byte
//! tag would push over the limit is dropped and counted (`oversize`). chitchat compresses its
//! deltas, so this needs a catalog far beyond the default bounds.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use anyhow::Context;
use async_trait::async_trait;
use chitchat::transport::{Socket, Transport};
use chitchat::{ChitchatMessage, Deserializable, Serializable};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::CatalogError;

/// The largest UDP payload over IPv4.
pub const MAX_DATAGRAM: usize = 65_507;
/// Length of the HMAC-SHA256 tag.
pub const TAG_LEN: usize = 32;
const DOMAIN: &[u8] = b"crossdock-catalog-v1\0";

/// The fleet's shared secret for the catalog exchange (at least 16 bytes). Never printed.
#[derive(Clone)]
pub struct ClusterKey(Arc<[u8]>);

impl ClusterKey {
    /// The shortest key accepted.
    pub const MIN_LEN: usize = 16;

    /// A key from its bytes.
    pub fn new(bytes: &[u8]) -> Result<Self, CatalogError> {
        if bytes.len() < Self::MIN_LEN {
            return Err(CatalogError::KeyTooShort { len: bytes.len() });
        }
        Ok(Self(bytes.into()))
    }

    // HMAC takes keys of any length: `new_from_slice` cannot fail here.
    #[allow(clippy::expect_used)]
    fn mac(&self) -> Hmac<Sha256> {
        let mut m = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        m.update(DOMAIN);
        m
    }

    /// `payload` with its tag appended.
    pub fn seal(&self, mut payload: Vec<u8>) -> Vec<u8> {
        let mut m = self.mac();
        m.update(&payload);
        payload.extend_from_slice(&m.finalize().into_bytes());
        payload
    }

    /// The payload of a sealed datagram, if its tag verifies.
    pub fn open<'a>(&self, datagram: &'a [u8]) -> Option<&'a [u8]> {
        let split = datagram.len().checked_sub(TAG_LEN)?;
        let (payload, tag) = datagram.split_at(split);
        let mut m = self.mac();
        m.update(payload);
        m.verify_slice(tag).ok().map(|()| payload)
    }
}

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(<redacted>)")
    }
}

/// The addresses allowed to talk to this host: the members' and its own.
#[derive(Debug, Default)]
pub struct PeerSet(RwLock<HashSet<IpAddr>>);

impl PeerSet {
    /// Replaces the allowed addresses.
    pub fn set(&self, ips: impl IntoIterator<Item = IpAddr>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = ips.into_iter().collect();
    }

    /// Whether `ip` may talk to this host.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&ip.to_canonical())
    }

    /// The allowed addresses.
    pub fn ips(&self) -> HashSet<IpAddr> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// What the transport dropped or failed to do.
#[derive(Debug, Default)]
pub struct WireStats {
    /// Datagrams received from non-members.
    pub rejected_peer: AtomicU64,
    /// Datagrams whose tag did not verify (or had none while a key is set).
    pub rejected_tag: AtomicU64,
    /// Datagrams that did not decode.
    pub malformed: AtomicU64,
    /// Sends skipped because the destination is no member.
    pub blocked_send: AtomicU64,
    /// Datagrams too large once tagged.
    pub oversize: AtomicU64,
    /// Sends the kernel refused.
    pub send_errors: AtomicU64,
    /// Datagrams accepted.
    pub received: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// chitchat's transport with the module's checks.
#[derive(Debug, Clone)]
pub struct GuardedTransport {
    /// The cluster key, if any.
    pub key: Option<ClusterKey>,
    /// The allowed peers.
    pub peers: Arc<PeerSet>,
    /// Counters.
    pub stats: Arc<WireStats>,
}

#[async_trait]
impl Transport for GuardedTransport {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let socket = tokio::net::UdpSocket::bind(listen_addr)
            .await
            .with_context(|| format!("cannot bind the catalog port {listen_addr}/udp"))?;
        Ok(Box::new(GuardedSocket {
            socket,
            guard: self.clone(),
            buf: vec![0u8; MAX_DATAGRAM + 1],
        }))
    }
}

struct GuardedSocket {
    socket: tokio::net::UdpSocket,
    guard: GuardedTransport,
    buf: Vec<u8>,
}

impl GuardedSocket {
    /// The message in a datagram from `from`, if it passes every check.
    fn accept(&self, from: SocketAddr, datagram: &[u8]) -> Option<ChitchatMessage> {
        let stats = &self.guard.stats;
        if !self.guard.peers.allows(from.ip()) {
            bump(&stats.rejected_peer);
            return None;
        }
        let mut payload = match &self.guard.key {
            Some(key) => match key.open(datagram) {
                Some(p) => p,
                None => {
                    bump(&stats.rejected_tag);
                    return None;
                }
            },
            None => datagram,
        };
        match ChitchatMessage::deserialize(&mut payload) {
            Ok(msg) => {
                bump(&stats.received);
                Some(msg)
            }
            Err(_) => {
                bump(&stats.malformed);
                None
            }
        }
    }
}

#[async_trait]
impl Socket for GuardedSocket {
    async fn send(&mut self, to: SocketAddr, msg: ChitchatMessage) -> anyhow::Result<()> {
        let stats = &self.guard.stats;
        if !self.guard.peers.allows(to.ip()) {
            bump(&stats.blocked_send);
            return Ok(());
        }
        let payload = msg.serialize_to_vec();
        let datagram = match &self.guard.key {
            Some(key) => key.seal(payload),
            None => payload,
        };
        if datagram.len() > MAX_DATAGRAM {
            bump(&stats.oversize);
            return Ok(());
        }
        // A refused send (peer unreachable, buffer full) is not fatal: the next round retries.
        if let Err(e) = self.socket.send_to(&datagram, to).await {
            bump(&stats.send_errors);
            tracing::debug!(peer = %to, error = %e, "catalog datagram not sent");
        }
        Ok(())
    }

    async fn recv(&mut self) -> anyhow::Result<(SocketAddr, ChitchatMessage)> {
        loop {
            let (n, from) = match self.socket.recv_from(&mut self.buf).await {
                Ok(r) => r,
                // ICMP errors of earlier sends surface here on Linux; they are not fatal.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(e).context("the catalog socket failed"),
            };
            if let Some(msg) = self.accept(from, &self.buf[..n]) {
                return Ok((from, msg));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_payload_opens_only_with_the_same_key_and_unaltered() {
        let k = ClusterKey::new(b"0123456789abcdef").unwrap();
        let other = ClusterKey::new(b"0123456789abcdeX").unwrap();
        let sealed = k.seal(b"hello".to_vec());
        assert_eq!(sealed.len(), 5 + TAG_LEN);
        assert_eq!(k.open(&sealed), Some(&b"hello"[..]));
        assert_eq!(other.open(&sealed), None);
        let mut altered = sealed.clone();
        altered[0] ^= 1;
        assert_eq!(k.open(&altered), None);
        assert_eq!(k.open(b"short"), None);
    }

    #[test]
    fn keys_are_long_enough_and_never_printed() {
        assert!(ClusterKey::new(b"short").is_err());
        let k = ClusterKey::new(b"a very secret key!").unwrap();
        assert!(!format!("{k:?}").contains("secret"));
    }

    #[test]
    fn the_peer_set_matches_exact_addresses() {
        let p = PeerSet::default();
        p.set(["127.0.0.1".parse().unwrap()]);
        assert!(p.allows("127.0.0.1".parse().unwrap()));
        assert!(p.allows("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!p.allows("127.0.0.2".parse().unwrap()));
    }
}
