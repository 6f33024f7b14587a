//! One host's side of the exchange: publish this host's records, learn everyone else's.
//!
//! Each agent runs a chitchat node whose key-values are its record set ([`crate::encode`]).
//! chitchat's scuttlebutt gossip carries only what a peer lacks (an update is one key), its
//! anti-entropy gives a restarted agent (a new generation) the whole catalog from any live peer,
//! and its phi-accrual failure detector says which hosts are alive. A sync task reads chitchat's
//! state into the `crossdock-names` [`Catalog`] (merge by version, whole-host replacement) and
//! applies the catalog's expiry with the failure detector as the "heard" signal: a host the
//! detector holds dead is withdrawn after `silent_timeout`, or after `member_grace` while it is
//! still a member. Every change publishes a new catalog snapshot on a watch channel.
//!
//! Seeds are the members' gossip addresses given by the caller (the fleet members' private IPs,
//! or in per-host mode the hosts behind crossdock's routes); [`Exchange::set_members`] replaces
//! them as membership changes, which is also the set of addresses allowed to talk to this host
//! ([`crate::transport`]). A local change is pushed at once: this host starts a gossip round
//! with every live member instead of waiting for its next random round.
//!
//! Beside the records each agent publishes its version (`agent`, [`crate::agents`]); the sync task
//! also notes every host's version and heartbeat, so [`Exchange::agents`] tells when each peer's
//! agent was last heard and what it runs (the fleet view).
//!
//! Memory: the catalog's bounds ([`crossdock_names::CatalogLimits`]) hold for the catalog;
//! chitchat keeps the raw key-values of the same hosts, plus tombstones of removed records for
//! `tombstone_grace` and dead hosts' states until `member_grace` has passed, so it is bounded by
//! the same caps (only members can write, see the transport).
//!
//! Limitation: a host that restarts while a peer is dead learns the dead peer's records only if
//! the peer comes back: only live hosts' sets are taken into a catalog that does not hold them.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chitchat::{
    spawn_chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig,
    ListenerHandle,
};
use tokio::sync::{watch, Mutex, Notify};
use tokio::task::JoinHandle;

use crossdock_names::{
    Catalog, CatalogLimits, ContainerRecord, Expiry, HostId, HostRecords, Label, MergeOutcome,
    RecordVersion,
};

use crate::agents::{AgentBook, AgentDirectory, AgentVersion, Sighting};
use crate::encode::{from_key_values, to_key_values, AGENT_KEY, HOST_KEY, RECORD_PREFIX};
use crate::transport::{ClusterKey, GuardedTransport, PeerSet, WireStats};
use crate::CatalogError;

/// How one host takes part in the exchange.
#[derive(Debug, Clone)]
pub struct ExchangeConfig {
    /// This host's identity (stable across restarts, unique in the fleet).
    pub host_id: HostId,
    /// This host's label in `<container>.<host>.<zone>`.
    pub host_label: Label,
    /// Where the gossip socket binds (UDP).
    pub listen: SocketAddr,
    /// The address peers reach this host at (its private IP and the port).
    pub advertise: SocketAddr,
    /// The members' gossip addresses (seeds; also the allowed peers).
    pub members: Vec<SocketAddr>,
    /// chitchat's cluster id: separates fleets, is no secret.
    pub cluster_id: String,
    /// Optional shared secret authenticating every datagram.
    pub key: Option<ClusterKey>,
    /// chitchat's gossip round interval.
    pub gossip_interval: Duration,
    /// How often the sync task reads chitchat's state when nothing wakes it.
    pub sync_interval: Duration,
    /// How long removed records' tombstones are kept.
    pub tombstone_grace: Duration,
    /// Bounds on the catalog.
    pub limits: CatalogLimits,
    /// When silent hosts are withdrawn.
    pub expiry: Expiry,
    /// The version this host's agent publishes (the only fact besides the records that leaves the
    /// host); `None` publishes none.
    pub agent_version: Option<AgentVersion>,
}

impl ExchangeConfig {
    /// A configuration with the defaults: gossip every 500 ms, sync every 250 ms, tombstones kept
    /// 10 minutes, the catalog's default bounds and expiry.
    pub fn new(
        host_id: HostId,
        host_label: Label,
        listen: SocketAddr,
        members: Vec<SocketAddr>,
    ) -> Self {
        Self {
            host_id,
            host_label,
            listen,
            advertise: listen,
            members,
            cluster_id: "crossdock".into(),
            key: None,
            gossip_interval: Duration::from_millis(500),
            sync_interval: Duration::from_millis(250),
            tombstone_grace: Duration::from_secs(600),
            limits: CatalogLimits::default(),
            expiry: Expiry::default(),
            agent_version: None,
        }
    }
}

/// Counters of the exchange (for `/status` and `/metrics`).
#[derive(Debug, Default)]
pub struct ExchangeStats {
    /// What the transport dropped.
    pub wire: Arc<WireStats>,
    /// Peer entries that did not parse.
    pub malformed_entries: AtomicU64,
    /// Sets taken into the catalog (added or replaced).
    pub sets_merged: AtomicU64,
    /// Hosts withdrawn by expiry.
    pub hosts_withdrawn: AtomicU64,
    /// Local publications that changed something.
    pub publications: AtomicU64,
}

/// State shared between the handle and the sync task.
struct Shared {
    config: ExchangeConfig,
    origin: Instant,
    peers: Arc<PeerSet>,
    catalog: Mutex<SyncState>,
    stats: Arc<ExchangeStats>,
    tx: watch::Sender<Arc<Catalog>>,
    wake: Arc<Notify>,
    agents: Arc<std::sync::Mutex<AgentBook>>,
}

struct SyncState {
    catalog: Catalog,
    /// The (generation, max version) last read per host, to skip unchanged states.
    seen: HashMap<HostId, RecordVersion>,
    /// Each host's gossip address, for the membership test.
    addrs: HashMap<HostId, SocketAddr>,
    /// The members' addresses.
    members: Vec<SocketAddr>,
}

/// A running exchange.
pub struct Exchange {
    handle: ChitchatHandle,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
    _on_change: ListenerHandle,
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchange")
            .field("host_id", &self.shared.config.host_id)
            .finish_non_exhaustive()
    }
}

fn generation_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Exchange {
    /// Binds the gossip socket and joins the fleet through the members.
    pub async fn start(config: ExchangeConfig) -> Result<Self, CatalogError> {
        let stats = Arc::new(ExchangeStats::default());
        let peers = Arc::new(PeerSet::default());
        let transport = GuardedTransport {
            key: config.key.clone(),
            peers: peers.clone(),
            stats: stats.wire.clone(),
        };
        let chitchat_id =
            ChitchatId::new(config.host_id.0.clone(), generation_now(), config.advertise);
        let cc_config = chitchat_config(&config, chitchat_id);
        let mut initial = vec![(HOST_KEY.to_string(), config.host_label.to_string())];
        if let Some(v) = &config.agent_version {
            initial.push((AGENT_KEY.to_string(), v.to_string()));
        }
        let handle = spawn_chitchat(cc_config, initial, &transport)
            .await
            .map_err(|e| CatalogError::Start {
                listen: config.listen,
                message: format!("{e:#}"),
            })?;
        let catalog = Catalog::new(config.host_id.clone(), config.limits);
        let (tx, _) = watch::channel(Arc::new(catalog.clone()));
        let shared = Arc::new(Shared {
            origin: Instant::now(),
            peers,
            stats,
            tx,
            wake: Arc::new(Notify::new()),
            agents: Arc::default(),
            catalog: Mutex::new(SyncState {
                catalog,
                seen: HashMap::new(),
                addrs: HashMap::new(),
                members: Vec::new(),
            }),
            config,
        });
        let members = shared.config.members.clone();
        set_peers(&shared, &members).await;
        // A peer's new key wakes the sync at once (chitchat does not notify deletions: those
        // wait for the next tick).
        let wake = shared.wake.clone();
        let on_change = handle
            .chitchat()
            .lock()
            .await
            .subscribe_event(RECORD_PREFIX, move |_| wake.notify_one());
        let task = tokio::spawn(sync_loop(shared.clone(), handle.chitchat()));
        Ok(Self {
            handle,
            shared,
            task,
            _on_change: on_change,
        })
    }

    /// Publishes this host's records (its whole current set); pushes the change to every live
    /// member at once. Returns whether anything changed.
    pub async fn publish(&self, records: &[ContainerRecord]) -> bool {
        let max = self.shared.config.limits.max_records_per_host;
        let mut records = records.to_vec();
        records.sort();
        records.truncate(max);
        let wanted = to_key_values(&records);
        let cc = self.handle.chitchat();
        let mut guard = cc.lock().await;
        let state = guard.self_node_state();
        let current: BTreeMap<String, String> = state
            .key_values()
            .filter(|(k, _)| k.starts_with(RECORD_PREFIX))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut changed = false;
        for k in current.keys().filter(|k| !wanted.contains_key(*k)) {
            state.delete(k);
            changed = true;
        }
        for (k, v) in wanted.iter().filter(|(k, v)| current.get(*k) != Some(v)) {
            state.set(k, v);
            changed = true;
        }
        let live: Vec<SocketAddr> = guard
            .live_nodes()
            .filter(|id| id.node_id.as_ref() != self.shared.config.host_id.0)
            .map(|id| id.gossip_advertise_addr)
            .collect();
        drop(guard);
        if changed {
            self.shared
                .stats
                .publications
                .fetch_add(1, Ordering::Relaxed);
            for addr in live {
                let _ = self.handle.gossip(addr);
            }
            self.shared.wake.notify_one();
        }
        changed
    }

    /// Replaces the members' gossip addresses: the allowed peers and the membership test of
    /// the expiry. New members are gossiped with at once.
    pub async fn set_members(&self, members: Vec<SocketAddr>) {
        set_peers(&self.shared, &members).await;
        for m in &members {
            let _ = self.handle.gossip(*m);
        }
        self.shared.wake.notify_one();
    }

    /// Gossips with every member chitchat does not hold live; returns how many were asked.
    ///
    /// chitchat retries only its seed nodes, fixed at start; a member learnt later whose first
    /// datagrams were lost (its firewall did not admit this host yet, it was restarting) would
    /// otherwise wait until it contacts this host itself, and two such hosts never meet. The
    /// caller calls this on a timer; members that are live cost nothing.
    pub async fn reach_out(&self) -> usize {
        let members = self.shared.catalog.lock().await.members.clone();
        let cc = self.handle.chitchat();
        let live: Vec<SocketAddr> = cc
            .lock()
            .await
            .live_nodes()
            .map(|id| id.gossip_advertise_addr)
            .collect();
        let silent: Vec<SocketAddr> = members.into_iter().filter(|m| !live.contains(m)).collect();
        for m in &silent {
            let _ = self.handle.gossip(*m);
        }
        silent.len()
    }

    /// The catalog, updated on every change.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Catalog>> {
        self.shared.tx.subscribe()
    }

    /// The current catalog.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.shared.tx.borrow().clone()
    }

    /// Every host's agent (this one included): its version and when it was last heard, read live.
    pub fn agents(&self) -> AgentDirectory {
        AgentDirectory {
            origin: self.shared.origin,
            book: self.shared.agents.clone(),
        }
    }

    /// The exchange's clock: the origin of the catalog's `last_heard` offsets.
    pub fn now(&self) -> Duration {
        self.shared.origin.elapsed()
    }

    /// The counters.
    pub fn stats(&self) -> Arc<ExchangeStats> {
        self.shared.stats.clone()
    }

    /// The allowed peer addresses (members and this host).
    pub fn allowed_peers(&self) -> Vec<std::net::IpAddr> {
        self.shared.peers.ips().into_iter().collect()
    }

    /// Leaves: stops gossiping and syncing (peers will see this host go silent).
    pub async fn shutdown(self) -> Result<(), CatalogError> {
        self.task.abort();
        self.handle
            .shutdown()
            .await
            .map_err(|e| CatalogError::Stop(format!("{e:#}")))
    }
}

fn chitchat_config(config: &ExchangeConfig, chitchat_id: ChitchatId) -> ChitchatConfig {
    let failure = FailureDetectorConfig {
        // Dead hosts' states are kept as long as the catalog may keep their records.
        dead_node_grace_period: config.expiry.member_grace.max(config.expiry.silent_timeout)
            + Duration::from_secs(60),
        initial_interval: config.gossip_interval * 2,
        max_interval: config.gossip_interval * 10,
        ..FailureDetectorConfig::default()
    };
    ChitchatConfig {
        chitchat_id,
        cluster_id: config.cluster_id.clone(),
        gossip_interval: config.gossip_interval,
        listen_addr: config.listen,
        seed_nodes: config.members.iter().map(ToString::to_string).collect(),
        failure_detector_config: failure,
        marked_for_deletion_grace_period: config.tombstone_grace,
        catchup_callback: None,
        extra_liveness_predicate: None,
    }
}

async fn set_peers(shared: &Shared, members: &[SocketAddr]) {
    let own = [shared.config.advertise.ip(), shared.config.listen.ip()];
    shared.peers.set(members.iter().map(|m| m.ip()).chain(own));
    shared.catalog.lock().await.members = members.to_vec();
}

async fn sync_loop(shared: Arc<Shared>, cc: Arc<Mutex<chitchat::Chitchat>>) {
    let mut tick = tokio::time::interval(shared.config.sync_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shared.wake.notified() => {}
        }
        sync_once(&shared, &cc).await;
    }
}

/// One host's state as chitchat holds it now.
struct PeerState {
    addr: SocketAddr,
    version: RecordVersion,
    live: bool,
    kvs: Vec<(String, String)>,
    /// Its heartbeat and agent version, for the agent book.
    sighting: Sighting,
}

/// Reads chitchat's state: the newest generation of every host, whether any of its generations
/// is live, and its key-values when its version moved since the last read.
async fn read_states(
    cc: &Mutex<chitchat::Chitchat>,
    seen: &HashMap<HostId, RecordVersion>,
) -> BTreeMap<HostId, PeerState> {
    let guard = cc.lock().await;
    let live: Vec<&ChitchatId> = guard.live_nodes().collect();
    let mut newest: BTreeMap<HostId, &ChitchatId> = BTreeMap::new();
    for id in guard.node_states().keys() {
        let host = HostId(id.node_id.to_string());
        let slot = newest.entry(host).or_insert(id);
        if id.generation_id > slot.generation_id {
            *slot = id;
        }
    }
    newest
        .into_iter()
        .filter_map(|(host, id)| {
            let state = guard.node_state(id)?;
            let version = RecordVersion {
                incarnation: id.generation_id,
                counter: state.max_version(),
            };
            let kvs = if seen.get(&host) == Some(&version) {
                Vec::new()
            } else {
                state
                    .key_values()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            };
            let is_live = live.iter().any(|l| l.node_id == id.node_id);
            let sighting = Sighting {
                ip: id.gossip_advertise_addr.ip(),
                generation: id.generation_id,
                heartbeat: u64::from(state.heartbeat()),
                live: is_live,
                version: state.get(AGENT_KEY).map(str::to_string),
            };
            let peer = PeerState {
                addr: id.gossip_advertise_addr,
                version,
                live: is_live,
                kvs,
                sighting,
            };
            Some((host, peer))
        })
        .collect()
}

async fn sync_once(shared: &Shared, cc: &Mutex<chitchat::Chitchat>) {
    let mut st = shared.catalog.lock().await;
    let states = read_states(cc, &st.seen).await;
    let now = shared.origin.elapsed();
    let before = st.catalog.changes();
    note_agents(shared, &states, now);
    for (host, peer) in states {
        st.addrs.insert(host.clone(), peer.addr);
        if peer.live {
            st.catalog.heard(&host, now);
        }
        if st.seen.get(&host) == Some(&peer.version) {
            continue;
        }
        // Only a live host's set is taken in unless the catalog holds the host already: a dead
        // host that was withdrawn must not come back from chitchat's memory.
        if !peer.live && st.catalog.get(&host).is_none() {
            continue;
        }
        take_set(shared, &mut st, host, peer, now);
    }
    let SyncState {
        catalog,
        addrs,
        members,
        ..
    } = &mut *st;
    let withdrawn = catalog.expire(now, &shared.config.expiry, |h| {
        addrs
            .get(h)
            .is_some_and(|a| members.iter().any(|m| m.ip() == a.ip()))
    });
    for h in &withdrawn {
        st.seen.remove(h);
    }
    shared
        .stats
        .hosts_withdrawn
        .fetch_add(withdrawn.len() as u64, Ordering::Relaxed);
    if st.catalog.changes() != before {
        shared.tx.send_replace(Arc::new(st.catalog.clone()));
    }
}

/// Notes every host's heartbeat and version in the agent book; forgets hosts chitchat forgot.
fn note_agents(shared: &Shared, states: &BTreeMap<HostId, PeerState>, now: Duration) {
    let mut book = shared.agents.lock().unwrap_or_else(|p| p.into_inner());
    let mut malformed = 0u64;
    for (host, peer) in states {
        malformed += u64::from(book.observe(host, peer.sighting.clone(), now));
    }
    book.retain(|h| states.contains_key(h));
    shared
        .stats
        .malformed_entries
        .fetch_add(malformed, Ordering::Relaxed);
}

fn take_set(shared: &Shared, st: &mut SyncState, host: HostId, peer: PeerState, now: Duration) {
    let max = shared.config.limits.max_records_per_host;
    let kvs = peer.kvs.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    let (set, malformed) = from_key_values(kvs, peer.version, max);
    shared
        .stats
        .malformed_entries
        .fetch_add(malformed as u64, Ordering::Relaxed);
    let Some(set) = set else { return };
    let outcome = merge(&mut st.catalog, host.clone(), set, now);
    if outcome.changed() {
        shared.stats.sets_merged.fetch_add(1, Ordering::Relaxed);
    }
    if outcome != MergeOutcome::TooManyHosts {
        st.seen.insert(host, peer.version);
    }
}

/// Merges by version; a set whose incarnation differs from the held one while the held one's
/// generation is gone from chitchat (only the newest generation is read) replaces it whatever
/// the versions (a clock that stepped back across a restart).
fn merge(catalog: &mut Catalog, host: HostId, set: HostRecords, now: Duration) -> MergeOutcome {
    let held = catalog.get(&host).map(|s| s.version.incarnation);
    match catalog.merge(host.clone(), set.clone(), now) {
        MergeOutcome::Stale if held != Some(set.version.incarnation) => {
            catalog.replace(host, set, now)
        }
        other => other,
    }
}
