//! The emulator's core: the state behind one lock, its persistence, the clock that moves routes from
//! `Pending` to `Available`, and the runtime bookkeeping that is not persisted (call log, nonces, rate
//! limits, metadata tokens, injected faults).
//!
//! One `std::sync::Mutex` guards the state: every operation is short (no awaits inside), so a plain lock
//! keeps the logic sequential and easy to reason about, and each change is persisted before the lock is
//! released, so what a client was told has always reached the state file.

use crate::admin::{CallLog, CallRecord, DataplaneStatus, Faults, Settings};
use crate::dataplane::{Dataplane, Desired, PortPolicy, TablePlane, KERNEL_TABLE_BASE};
use crate::model::{now_ms, AccessKey, EntryType, RouteStatus, State};
use anyhow::Context as _;
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// How often the data plane is re-applied even when nothing changed (repairs hand edits).
const RESYNC: Duration = Duration::from_secs(10);
/// How many call records are kept (older ones are dropped; counters keep counting).
const CALL_LOG_CAP: usize = 20_000;
/// How many nonces are remembered at most.
const NONCE_CAP: usize = 200_000;
/// How many ClientToken answers are kept.
const IDEMPOTENCY_CAP: usize = 2_000;

/// State plus the runtime knobs that change with it.
#[derive(Debug)]
pub struct Core {
    pub state: State,
    pub faults: Faults,
    pub settings: Settings,
    /// A route write is being processed (between its checks and its commit).
    pub route_write_in_flight: bool,
}

#[derive(Debug, Default)]
struct Calls {
    records: VecDeque<CallRecord>,
    total: u64,
    writes: u64,
    next_seq: u64,
}

/// Nonces seen recently, with their expiry, oldest first (bounded).
#[derive(Debug, Default)]
struct NonceCache {
    seen: HashMap<String, i64>,
    order: VecDeque<(i64, String)>,
}

impl NonceCache {
    fn use_nonce(&mut self, nonce: &str, now: i64, window_ms: i64) -> bool {
        while let Some((exp, _)) = self.order.front() {
            if *exp > now && self.order.len() < NONCE_CAP {
                break;
            }
            let (exp, old) = self.order.pop_front().expect("non-empty");
            if self.seen.get(&old) == Some(&exp) {
                self.seen.remove(&old);
            }
        }
        if self.seen.get(nonce).is_some_and(|exp| *exp > now) {
            return false;
        }
        let exp = now.saturating_add(window_ms);
        self.seen.insert(nonce.to_string(), exp);
        self.order.push_back((exp, nonce.to_string()));
        true
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// A refused request's rate-limit hint.
#[derive(Debug, Clone, PartialEq)]
pub struct ThrottleHint {
    /// `user-api` (the per-action limit) or `user` (the account limit).
    pub scope: &'static str,
    pub limit: u32,
    pub time_left_ms: u64,
}

#[derive(Debug)]
pub struct Sim {
    core: Mutex<Core>,
    state_file: Option<PathBuf>,
    tick: Notify,
    dp_generation: watch::Sender<u64>,
    dp_status: Mutex<DataplaneStatus>,
    calls: Mutex<Calls>,
    nonces: Mutex<NonceCache>,
    rng: Mutex<StdRng>,
    buckets: Mutex<HashMap<String, Bucket>>,
    metadata_tokens: Mutex<HashMap<String, (Ipv4Addr, i64)>>,
    /// Endpoints actually bound (for `/info`).
    pub endpoints: Mutex<(Vec<String>, Vec<String>)>,
}

impl Sim {
    /// Loads the state file, or bootstraps a new VPC (and writes it) when there is none.
    pub fn open(
        state_file: Option<&Path>,
        bootstrap: &crate::model::Bootstrap,
        settings: Settings,
    ) -> anyhow::Result<Arc<Sim>> {
        let state = match state_file {
            Some(p) if p.exists() => crate::store::load(p)?,
            _ => State::bootstrap(bootstrap),
        };
        let sim = Arc::new(Sim {
            core: Mutex::new(Core {
                state,
                faults: Faults::default(),
                settings,
                route_write_in_flight: false,
            }),
            state_file: state_file.map(Path::to_path_buf),
            tick: Notify::new(),
            dp_generation: watch::channel(1).0,
            dp_status: Mutex::new(DataplaneStatus::default()),
            calls: Mutex::new(Calls::default()),
            nonces: Mutex::new(NonceCache::default()),
            rng: Mutex::new(StdRng::seed_from_u64(bootstrap.seed)),
            buckets: Mutex::new(HashMap::new()),
            metadata_tokens: Mutex::new(HashMap::new()),
            endpoints: Mutex::new((vec![], vec![])),
        });
        {
            let core = sim.lock();
            sim.persist(&core.state)?;
        }
        Ok(sim)
    }

    pub fn state_file(&self) -> Option<&Path> {
        self.state_file.as_deref()
    }

    fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn persist(&self, state: &State) -> anyhow::Result<()> {
        if let Some(path) = &self.state_file {
            crate::store::save(path, state)
                .with_context(|| format!("cannot write the state file {}", path.display()))?;
        }
        Ok(())
    }

    /// Reads the core.
    pub fn read<R>(&self, f: impl FnOnce(&Core) -> R) -> R {
        let core = self.lock();
        f(&core)
    }

    /// Changes the core; the state is persisted, timers re-armed and the data plane told, before the lock
    /// is released. Transitions that are due are applied first, so `f` sees the present.
    pub fn mutate<R>(&self, f: impl FnOnce(&mut Core) -> R) -> R {
        let mut core = self.lock();
        advance_core(&mut core, now_ms());
        let r = f(&mut core);
        if let Err(e) = self.persist(&core.state) {
            tracing::error!("{e:#}");
        }
        drop(core);
        self.changed();
        r
    }

    /// Wakes the timer and the data plane after a change.
    fn changed(&self) {
        self.tick.notify_one();
        self.dp_generation.send_modify(|g| *g += 1);
    }

    /// Marks a route write as started (false if one is already in flight, or a TaskConflict storm
    /// is on). Runtime only: nothing is persisted or re-applied.
    pub fn begin_route_write(&self) -> bool {
        let mut core = self.lock();
        if core.faults.task_conflict_storm || core.route_write_in_flight {
            return false;
        }
        core.route_write_in_flight = true;
        true
    }

    pub fn end_route_write(&self) {
        self.lock().route_write_in_flight = false;
    }

    /// Applies due transitions; returns the next deadline.
    pub fn advance(&self, now: i64) -> Option<i64> {
        let mut core = self.lock();
        let changed = advance_core(&mut core, now);
        if changed {
            if let Err(e) = self.persist(&core.state) {
                tracing::error!("{e:#}");
            }
        }
        let next = core
            .state
            .entries
            .iter()
            .filter_map(|e| e.status_until_ms)
            .min();
        drop(core);
        if changed {
            self.dp_generation.send_modify(|g| *g += 1);
        }
        next
    }

    /// Runs the route timers until the process ends.
    pub async fn run_timers(self: Arc<Self>) {
        loop {
            let now = now_ms();
            let next = self.advance(now);
            let wait = next
                .map(|t| Duration::from_millis((t - now).clamp(1, 3_600_000) as u64))
                .unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.tick.notified() => {}
            }
        }
    }

    /// What the data plane should look like: the vSwitch's table's `Available` custom entries whose next
    /// hop resolves to an instance, and every instance port.
    pub fn desired_dataplane(&self) -> Desired {
        self.read(|core| desired_of(&core.state))
    }

    /// Keeps the data plane converged until the process ends: applies on every change of what it
    /// should be, and every [`RESYNC`] anyway, so that a hand edit in the namespace is repaired.
    pub async fn run_dataplane(self: Arc<Self>, dp: Arc<dyn Dataplane>) {
        let mut rx = self.dp_generation.subscribe();
        {
            let mut st = self.dp_status.lock().unwrap_or_else(|p| p.into_inner());
            st.kind = dp.kind().to_string();
        }
        let mut last: Option<(Desired, Instant)> = None;
        loop {
            let generation = *rx.borrow_and_update();
            let desired = self.desired_dataplane();
            let fresh = last
                .as_ref()
                .is_some_and(|(d, at)| *d == desired && at.elapsed() < RESYNC);
            let failed = if fresh {
                self.dp_status
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .applied_generation = generation;
                false
            } else {
                let dp2 = dp.clone();
                let d2 = desired.clone();
                let result = tokio::task::spawn_blocking(move || dp2.apply(&d2))
                    .await
                    .map_err(|e| anyhow::anyhow!("data plane task failed: {e}"))
                    .and_then(|r| r);
                let mut st = self.dp_status.lock().unwrap_or_else(|p| p.into_inner());
                st.wanted_generation = generation;
                match result {
                    Ok(()) => {
                        st.applied_generation = generation;
                        st.last_error = None;
                        st.tables = desired.tables.clone();
                        st.ports = desired.ports.clone();
                        last = Some((desired, Instant::now()));
                        false
                    }
                    Err(e) => {
                        tracing::error!("applying the data plane failed: {e:#}");
                        st.last_error = Some(format!("{e:#}"));
                        last = None;
                        true
                    }
                }
            };
            let wait = if failed {
                Duration::from_secs(2)
            } else {
                RESYNC
            };
            // the next change, or a retry / resync after a while
            if let Ok(Err(_)) = tokio::time::timeout(wait, rx.changed()).await {
                return;
            }
        }
    }

    pub fn dataplane_status(&self) -> DataplaneStatus {
        let mut st = self
            .dp_status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        st.wanted_generation = *self.dp_generation.borrow();
        st
    }

    // ----- call log -----

    pub fn record_call(&self, mut rec: CallRecord) {
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        rec.seq = calls.next_seq;
        calls.next_seq += 1;
        calls.total += 1;
        if rec.write {
            calls.writes += 1;
        }
        calls.records.push_back(rec);
        while calls.records.len() > CALL_LOG_CAP {
            calls.records.pop_front();
        }
    }

    pub fn call_log(&self, since: Option<u64>) -> CallLog {
        let calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        CallLog {
            calls: calls
                .records
                .iter()
                .filter(|r| since.is_none_or(|s| r.seq >= s))
                .cloned()
                .collect(),
            total: calls.total,
            writes: calls.writes,
            next_seq: calls.next_seq,
        }
    }

    /// Clears the log and its counters (sequence numbers keep growing).
    pub fn reset_calls(&self) {
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        calls.records.clear();
        calls.total = 0;
        calls.writes = 0;
    }

    // ----- replay protection -----

    /// Remembers a nonce for `window_ms`; false when it was seen within that window.
    pub fn use_nonce(&self, nonce: &str, now: i64, window_ms: i64) -> bool {
        self.nonces
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .use_nonce(nonce, now, window_ms)
    }

    // ----- faults and limits -----

    /// Draws from the seeded generator: true with probability `rate`.
    pub fn chance(&self, rate: f64) -> bool {
        if rate <= 0.0 {
            return false;
        }
        if rate >= 1.0 {
            return true;
        }
        self.rng
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .gen_bool(rate)
    }

    /// Takes one token from the action's and the account's buckets.
    pub fn throttle(&self, action: &str) -> Result<(), ThrottleHint> {
        let (action_qps, account_qps) = self.read(|c| {
            let s = &c.settings;
            let a = s
                .action_qps
                .get(action)
                .or_else(|| s.action_qps.get("*"))
                .copied()
                .unwrap_or(0);
            (a, s.account_qps)
        });
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let mut take = |key: String, qps: u32, scope: &'static str| -> Result<(), ThrottleHint> {
            if qps == 0 {
                return Ok(());
            }
            let b = buckets.entry(key).or_insert(Bucket {
                tokens: qps as f64,
                last: now,
            });
            let elapsed = now.duration_since(b.last).as_secs_f64();
            b.tokens = (b.tokens + elapsed * qps as f64).min(qps as f64);
            b.last = now;
            if b.tokens >= 1.0 {
                b.tokens -= 1.0;
                Ok(())
            } else {
                let missing = 1.0 - b.tokens;
                Err(ThrottleHint {
                    scope,
                    limit: qps,
                    time_left_ms: ((missing / qps as f64) * 1000.0).ceil() as u64,
                })
            }
        };
        take(format!("action:{action}"), action_qps, "user-api")?;
        take("account".into(), account_qps, "user")
    }

    // ----- metadata tokens -----

    pub fn issue_metadata_token(&self, ip: Ipv4Addr, ttl_secs: u64) -> String {
        let token = crate::model::random_secret(40);
        let mut tokens = self
            .metadata_tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let now = now_ms();
        tokens.retain(|_, (_, exp)| *exp > now);
        tokens.insert(token.clone(), (ip, now + ttl_secs as i64 * 1000));
        token
    }

    pub fn check_metadata_token(&self, ip: Ipv4Addr, token: &str) -> bool {
        let tokens = self
            .metadata_tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        tokens
            .get(token)
            .is_some_and(|(owner, exp)| *owner == ip && *exp > now_ms())
    }

    // ----- STS credentials of instances -----

    /// The instance's current role credentials; a new set once half of the current one's lifetime has
    /// passed (the old set stays valid until it expires, as Alibaba's rotation does).
    pub fn role_credentials(&self, instance_id: &str, role: &str) -> AccessKey {
        self.mutate(|core| {
            let now = now_ms();
            let lifetime_ms = core.settings.credential_lifetime_secs.max(1) as i64 * 1000;
            // drop STS keys that expired more than an hour ago
            core.state.access_keys.retain(|k| {
                !(k.is_sts() && k.instance_id.is_some())
                    || k.expires_at_ms.is_none_or(|e| e + 3_600_000 > now)
            });
            let current = core
                .state
                .access_keys
                .iter()
                .filter(|k| {
                    k.is_sts()
                        && k.instance_id.as_deref() == Some(instance_id)
                        && k.role.as_deref() == Some(role)
                })
                .max_by_key(|k| k.created_at_ms)
                .cloned();
            if let Some(k) = current {
                let exp = k.expires_at_ms.unwrap_or(i64::MAX);
                let fresh_until = k.created_at_ms + (exp - k.created_at_ms) / 2;
                if now < fresh_until && now < exp {
                    return k;
                }
            }
            let id = format!("STS.{}", crate::model::random_secret(24));
            let key = AccessKey {
                access_key_id: id,
                access_key_secret: crate::model::random_secret(40),
                allowed_actions: None,
                security_token: Some(format!("CAIS{}", crate::model::random_secret(180))),
                expires_at_ms: Some(now + lifetime_ms),
                instance_id: Some(instance_id.to_string()),
                role: Some(role.to_string()),
                description: format!("role {role} of {instance_id}"),
                created_at_ms: now,
            };
            core.state.access_keys.push(key.clone());
            key
        })
    }

    /// Every STS credential expires now.
    pub fn expire_credentials(&self) -> usize {
        self.mutate(|core| {
            let now = now_ms();
            let mut n = 0;
            for k in core.state.access_keys.iter_mut().filter(|k| k.is_sts()) {
                k.expires_at_ms = Some(now - 1);
                n += 1;
            }
            n
        })
    }

    /// Remembers a ClientToken answer (bounded).
    pub fn trim_idempotency(core: &mut Core) {
        let len = core.state.idempotency.len();
        if len > IDEMPOTENCY_CAP {
            core.state.idempotency.drain(0..len - IDEMPOTENCY_CAP);
        }
    }
}

/// Applies due transitions: `Pending`/`Modifying` -> `Available`, `Deleting` -> gone.
pub fn advance_core(core: &mut Core, now: i64) -> bool {
    let mut changed = false;
    let entries = &mut core.state.entries;
    let before = entries.len();
    entries.retain(|e| {
        !(e.status == RouteStatus::Deleting && e.status_until_ms.is_some_and(|t| t <= now))
    });
    changed |= entries.len() != before;
    for e in entries.iter_mut() {
        if matches!(e.status, RouteStatus::Pending | RouteStatus::Modifying)
            && e.status_until_ms.is_some_and(|t| t <= now)
        {
            e.status = RouteStatus::Available;
            e.status_until_ms = None;
            e.modified_at_ms = now;
            changed = true;
        }
    }
    changed
}

/// The data plane a state asks for (see [`Sim::desired_dataplane`]): every vSwitch CIDR, and for each
/// route table bound to some vSwitch (the system table serves those bound to no custom table) its
/// kernel table number, its vSwitches and its `Available` custom entries whose next hop resolves to an
/// instance. Kernel table numbers follow the tables' creation order, so they are stable.
pub fn desired_of(state: &State) -> Desired {
    let mut d = Desired {
        vswitches: state.vswitches.iter().map(|v| v.cidr_block).collect(),
        ..Desired::default()
    };
    for (n, table) in state.route_tables.iter().enumerate() {
        let bound = state.vswitches_of_table(table);
        if bound.is_empty() {
            continue;
        }
        let vswitches = state
            .vswitches
            .iter()
            .filter(|v| bound.contains(&v.vswitch_id))
            .map(|v| v.cidr_block)
            .collect();
        let routes = state
            .entries
            .iter()
            .filter(|e| {
                e.route_table_id == table.route_table_id
                    && e.entry_type == EntryType::Custom
                    && e.status == RouteStatus::Available
            })
            .filter_map(|e| Some((e.destination_cidr_block, state.next_hop_ip(e)?)))
            .collect();
        d.tables.push(TablePlane {
            route_table_id: table.route_table_id.clone(),
            kernel_table: KERNEL_TABLE_BASE + n as u32,
            vswitches,
            routes,
        });
    }
    d.ports = state
        .instances
        .iter()
        .filter_map(|i| {
            i.port.as_ref().map(|p| PortPolicy {
                port: p.clone(),
                ip: i.private_ip,
                source_dest_check: i.source_dest_check,
            })
        })
        .collect();
    d.ports.sort();
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_are_refused_within_their_window_only() {
        let mut c = NonceCache::default();
        assert!(c.use_nonce("a", 0, 100));
        assert!(!c.use_nonce("a", 50, 100));
        assert!(c.use_nonce("b", 50, 100));
        assert!(c.use_nonce("a", 101, 100), "expired nonces may come again");
        assert!(!c.use_nonce("b", 120, 100));
        assert!(c.seen.len() <= 2);
    }

    #[test]
    fn the_data_plane_follows_the_vswitchs_table() {
        use crate::model::{Bootstrap, EntryType, Instance, RouteEntry, RouteTable};
        let mut s = State::bootstrap(&Bootstrap::default());
        let vsw = s.vswitches[0].vswitch_id.clone();
        s.instances.push(Instance {
            instance_id: "i-1".into(),
            hostname: "h1".into(),
            private_ip: "192.168.1.11".parse().unwrap(),
            port: Some("p-h1".into()),
            vswitch_id: vsw.clone(),
            zone_id: "z".into(),
            eni_id: "eni-1".into(),
            mac: "00:16:3e:00:00:01".into(),
            source_dest_check: true,
            ram_role: None,
            created_at_ms: 0,
            tags: vec![],
            status: Default::default(),
            seq: 0,
        });
        let entry = |table: &str, dst: &str, status: RouteStatus, hop: &str| RouteEntry {
            route_entry_id: format!("rte-{dst}"),
            route_table_id: table.into(),
            destination_cidr_block: dst.parse().unwrap(),
            entry_type: EntryType::Custom,
            status,
            next_hop_type: "Instance".into(),
            next_hop_id: hop.into(),
            route_entry_name: String::new(),
            description: String::new(),
            status_until_ms: None,
            seq: 0,
            created_at_ms: 0,
            modified_at_ms: 0,
        };
        let system = s.system_table_id().to_string();
        s.entries
            .push(entry(&system, "10.1.0.0/24", RouteStatus::Available, "i-1"));
        s.entries
            .push(entry(&system, "10.2.0.0/24", RouteStatus::Pending, "i-1"));
        s.entries.push(entry(
            &system,
            "10.3.0.0/24",
            RouteStatus::Available,
            "i-gone",
        ));
        let d = desired_of(&s);
        assert_eq!(d.tables.len(), 1, "one vSwitch, one table routing it");
        let routes = d.routes_of(&system);
        assert_eq!(
            routes.len(),
            1,
            "only Available entries with a live next hop"
        );
        assert_eq!(
            routes[&"10.1.0.0/24".parse().unwrap()],
            "192.168.1.11".parse::<Ipv4Addr>().unwrap()
        );
        assert_eq!(d.tables[0].kernel_table, KERNEL_TABLE_BASE);
        assert_eq!(d.tables[0].vswitches, vec![s.vswitches[0].cidr_block]);
        assert_eq!(d.ports.len(), 1);
        // associate the vSwitch with a custom table: its entries rule, the system table routes
        // nobody's traffic and leaves the data plane
        s.route_tables.push(RouteTable {
            route_table_id: "vtb-custom".into(),
            route_table_name: String::new(),
            route_table_type: "Custom".into(),
            vswitch_ids: vec![vsw.clone()],
            created_at_ms: 0,
        });
        s.entries.push(entry(
            "vtb-custom",
            "10.9.0.0/24",
            RouteStatus::Available,
            "i-1",
        ));
        let d = desired_of(&s);
        assert_eq!(d.tables.len(), 1);
        assert!(d.table(&system).is_none());
        assert_eq!(
            d.routes_of("vtb-custom")
                .keys()
                .map(|k| k.to_string())
                .collect::<Vec<_>>(),
            vec!["10.9.0.0/24"]
        );
        assert_eq!(
            d.table("vtb-custom").unwrap().kernel_table,
            KERNEL_TABLE_BASE + 1
        );
        // a second vSwitch stays on the system table: two tables, each with its own sources
        s.vswitches.push(crate::model::VSwitch {
            vswitch_id: "vsw-b".into(),
            vswitch_name: String::new(),
            cidr_block: "192.168.2.0/24".parse().unwrap(),
            zone_id: "z2".into(),
            created_at_ms: 0,
        });
        let d = desired_of(&s);
        assert_eq!(d.vswitches.len(), 2);
        assert_eq!(
            d.table(&system).unwrap().vswitches,
            vec!["192.168.2.0/24".parse::<ipnet::Ipv4Net>().unwrap()]
        );
        assert_eq!(d.routes_of(&system).len(), 1);
        assert_eq!(
            d.table("vtb-custom").unwrap().vswitches,
            vec![s.vswitches[0].cidr_block]
        );
        assert_eq!(
            s.vswitches_of_table(s.table(&system).unwrap()),
            vec!["vsw-b".to_string()]
        );
        assert_eq!(
            s.vswitches_of_table(s.table("vtb-custom").unwrap()),
            vec![vsw]
        );
    }
}
