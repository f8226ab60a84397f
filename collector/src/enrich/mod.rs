//! The enrichment stage: adds `geo.*`, `asn.*`, `device.*`/`user_agent.*`/`os.*` and
//! `threat.*` to each event from local data files, after the client address is settled
//! ([`client_ip`]). Each enricher is on or off in the config and reads its own files; the
//! loaded data is immutable and shared by the pipeline workers, and replaced as a whole when a
//! file or the config changes ([`EnrichmentHandle`]), so a lookup never sees half-loaded data
//! and no event waits for a reload.

pub mod asn;
pub mod client_ip;
pub mod device;
pub mod geo;
pub mod mmdb;
pub mod ranges;
pub mod threat;

use crate::metrics::{CacheKind, EnrichMetrics, Enricher};
use arc_swap::ArcSwap;
use asn::AsnLookup;
use client_ip::ClientResolver;
use crate::cache::Cache;
use device::DeviceParser;
use geo::GeoLookup;
pub use mmdb::DataError;
use sentinel_config::Enrichment;
use sentinel_wire::event::{parts, Asn, Event, Geo, Network, Peer, Threat};
use std::net::IpAddr;
use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;
use threat::ThreatLookup;

/// The loaded data of every enricher that is on.
#[derive(Debug, Default)]
pub struct Enrichers {
    pub geo: Option<Arc<GeoLookup>>,
    pub asn: Option<Arc<AsnLookup>>,
    pub device: Option<Arc<DeviceParser>>,
    pub threat: Option<Arc<ThreatLookup>>,
    pub client: ClientResolver,
    /// Distinct client addresses each worker remembers the answers for.
    pub address_cache_size: usize,
}

/// What the address-based enrichers say about one address; cached per worker, since a client
/// sends many requests.
#[derive(Debug, Default)]
pub struct AddressFacts {
    geo: Option<Arc<Geo>>,
    asn: Option<Arc<Asn>>,
    threat: Option<Arc<Threat>>,
    /// Their JSON, made the first time a line needs it.
    json: OnceLock<AddressJson>,
}

/// An address's facts as JSON members ([`parts`]): `geo` and `asn`, and `threat`.
#[derive(Debug)]
struct AddressJson {
    geo_asn: Box<[u8]>,
    threat: Box<[u8]>,
}

impl AddressFacts {
    /// The members `geo` and `asn`, and the member `threat`, as an event enriched from these
    /// facts writes them: rendered once per address and worker, copied after.
    pub fn json(&self) -> (&[u8], &[u8]) {
        let j = self.json.get_or_init(|| {
            let (mut geo_asn, mut threat) = (Vec::new(), Vec::new());
            parts::geo_asn(self.geo.as_deref(), self.asn.as_deref(), &mut geo_asn);
            parts::threat(self.threat.as_deref(), &mut threat);
            AddressJson { geo_asn: geo_asn.into(), threat: threat.into() }
        });
        (&j.geo_asn, &j.threat)
    }
}

/// What one worker keeps between events: its caches and counts not yet published.
#[derive(Debug)]
pub struct Scratch {
    agents: Cache<String, Arc<device::Parsed>>,
    addresses: Cache<u128, Arc<AddressFacts>>,
    /// The data the caches were filled from (held, so it cannot be confused with new data at
    /// the same address); new data empties them.
    filled_from: Option<Arc<Enrichers>>,
    counts: [[u64; 3]; 4],
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch { agents: Cache::new(0), addresses: Cache::new(0), filled_from: None, counts: [[0; 3]; 4] }
    }
}

/// The counts of a [`Scratch`] at one point (see [`Scratch::mark`]).
#[derive(Debug, Clone, Copy)]
pub struct CountsMark {
    counts: [[u64; 3]; 4],
    agents: (u64, u64),
    addresses: (u64, u64),
}

const HIT: usize = 0;
const MISS: usize = 1;
const ERROR: usize = 2;

impl Scratch {
    /// Adds this worker's counts to the shared metrics and starts counting again.
    pub fn publish(&mut self, m: &EnrichMetrics) {
        for (e, counts) in self.counts.iter_mut().enumerate() {
            m.add(Enricher::ALL[e], counts);
            *counts = [0; 3];
        }
        let (h, miss) = self.agents.take_counts();
        m.add_cache(CacheKind::UserAgent, h, miss);
        let (h, miss) = self.addresses.take_counts();
        m.add_cache(CacheKind::Address, h, miss);
    }

    /// Where the counts stand, so an event whose enrichment must run again is counted once.
    pub fn mark(&self) -> CountsMark {
        CountsMark { counts: self.counts, agents: (self.agents.hits, self.agents.misses), addresses: (self.addresses.hits, self.addresses.misses) }
    }

    /// Puts the counts back where `mark` found them.
    pub fn undo(&mut self, mark: &CountsMark) {
        self.counts = mark.counts;
        (self.agents.hits, self.agents.misses) = mark.agents;
        (self.addresses.hits, self.addresses.misses) = mark.addresses;
    }

    /// One event's result for an enricher: an error, else data found or not.
    fn count<T>(&mut self, e: Enricher, found: &Option<T>, failed: bool) {
        let slot = if failed { ERROR } else if found.is_some() { HIT } else { MISS };
        self.counts[e as usize][slot] += 1;
    }

    /// Empties the caches when the data changed since they were filled.
    fn follow(&mut self, data: &Arc<Enrichers>) {
        if !self.filled_from.as_ref().is_some_and(|d| Arc::ptr_eq(d, data)) {
            self.agents.clear(data.device.as_ref().map_or(0, |d| d.cache_size));
            self.addresses.clear(data.address_cache_size);
            self.filled_from = Some(data.clone());
        }
    }
}

impl Enrichers {
    /// Loads every enricher that is on.
    pub fn load(cfg: &Enrichment) -> Result<Enrichers, DataError> {
        Ok(Enrichers {
            geo: cfg.geoip.as_ref().map(GeoLookup::load).transpose()?.map(Arc::new),
            asn: cfg.asn.as_ref().map(AsnLookup::load).transpose()?.map(Arc::new),
            device: cfg.device_detection.as_ref().map(DeviceParser::load).transpose()?.map(Arc::new),
            threat: cfg.threat_intel.as_ref().map(ThreatLookup::load).transpose()?.map(Arc::new),
            client: ClientResolver::new(&cfg.client_ip),
            address_cache_size: cfg.address_cache_size,
        })
    }

    /// True when enriching changes no event: no enricher is on and no proxy is trusted (a
    /// forwarding collector's batches then skip decoding, see [`crate::pipeline`]).
    pub fn is_inert(&self) -> bool {
        self.geo.is_none() && self.asn.is_none() && self.device.is_none() && self.threat.is_none() && self.client.trusts_nobody()
    }

    /// Looks an address up in every address-based enricher. Errors are counted; facts with an
    /// error are not cached, so the next event tries again.
    fn address_facts(&self, ip: IpAddr, errors: &mut [bool; 4]) -> (AddressFacts, bool) {
        let mut failed = false;
        let geo = self.geo.as_ref().and_then(|g| settle(Enricher::Geo, g.lookup(ip), errors, &mut failed));
        let asn = self.asn.as_ref().and_then(|a| settle(Enricher::Asn, a.lookup(ip), errors, &mut failed));
        let asn_number = asn.as_ref().map(|a| a.number);
        let threat = self.threat.as_ref().and_then(|t| settle(Enricher::Threat, t.lookup(ip, asn_number).map(Some), errors, &mut failed));
        (AddressFacts { geo: geo.map(Arc::new), asn: asn.map(Arc::new), threat: threat.map(Arc::new), json: OnceLock::new() }, failed)
    }

    /// Enriches one event in place.
    pub fn enrich<'a>(self: &Arc<Self>, ev: &mut Event<'a>, scratch: &mut Scratch) {
        let header = |name: &str| ev.http.request.header.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        let (chain, ua) = (header(&self.client.header), header("user-agent"));
        self.enrich_from(ev, chain, ua, scratch);
    }

    /// Enriches one event in place from its client and, read before any redaction, the first
    /// request header named as the trusted chain and the first `User-Agent` (what a one-pass
    /// line meets on its way, see [`crate::pipeline`]).
    ///
    /// Returns the address facts the event was given, when the address-based enrichers ran
    /// (their `geo`, `asn` and `threat` are the event's).
    pub fn enrich_from<'a>(self: &Arc<Self>, ev: &mut Event<'a>, chain: Option<Cow<'a, str>>, ua: Option<Cow<'a, str>>, scratch: &mut Scratch) -> Option<Arc<AddressFacts>> {
        scratch.follow(self);
        let (ip, hop) = self.client.resolve(&ev.client.address, chain.as_deref())?;
        if let Some(hop) = hop {
            // The chain entry's own text when it is how the address is written (IPv4 without a
            // port; parsing refused leading zeros) and the header borrows from the frame: no
            // formatting, no allocation. Otherwise the address, formatted.
            let address: Cow<'a, str> = match chain {
                Some(Cow::Borrowed(all)) if ip.is_ipv4() && !hop.contains(':') => {
                    let at = hop.as_ptr() as usize - all.as_ptr() as usize;
                    all.get(at..at + hop.len()).map_or_else(|| Cow::Owned(ip.to_string()), Cow::Borrowed)
                }
                _ => Cow::Owned(ip.to_string()),
            };
            let peer = std::mem::replace(&mut ev.client.address, address);
            ev.client.port = 0;
            ev.network.get_or_insert_with(Network::default).peer = Some(Peer { address: peer.into_owned() });
        }
        let mut address_facts = None;
        if self.geo.is_some() || self.asn.is_some() || self.threat.is_some() {
            let mut errors = [false; 4];
            let mut uncached = false;
            let key = ranges::key(ip);
            let facts = scratch.addresses.get_or_insert(&key, || {
                let (facts, failed) = self.address_facts(ip, &mut errors);
                uncached = failed;
                Arc::new(facts)
            });
            if uncached {
                // Drop the entry just made, so a transient failure is not remembered.
                scratch.addresses.remove(&key);
            }
            if self.geo.is_some() {
                scratch.count(Enricher::Geo, &facts.geo, errors[Enricher::Geo as usize]);
                ev.geo = facts.geo.clone();
            }
            if self.asn.is_some() {
                scratch.count(Enricher::Asn, &facts.asn, errors[Enricher::Asn as usize]);
                ev.asn = facts.asn.clone();
            }
            if self.threat.is_some() {
                scratch.count(Enricher::Threat, &facts.threat, errors[Enricher::Threat as usize]);
                ev.threat = facts.threat.clone();
            }
            address_facts = Some(facts);
        }
        if let Some(d) = &self.device {
            let parsed = ua.filter(|ua| !ua.is_empty()).map(|ua| {
                let p = scratch.agents.get_or_insert(ua.as_ref(), || Arc::new(d.parse(&ua)));
                ev.user_agent = Some(device::user_agent(ua, &p));
                p
            });
            scratch.count(Enricher::Device, &parsed, false);
            if let Some(p) = parsed {
                ev.device = Some(p.device.clone());
                ev.os = p.os.clone();
            }
        }
        address_facts
    }
}

/// A lookup's answer, with a failure counted for its enricher and noted in `failed`.
fn settle<T>(e: Enricher, r: Result<Option<T>, maxminddb::MaxMindDbError>, errors: &mut [bool; 4], failed: &mut bool) -> Option<T> {
    r.unwrap_or_else(|err| {
        tracing::debug!(enricher = e.name(), "lookup failed: {err}");
        errors[e as usize] = true;
        *failed = true;
        None
    })
}

/// A data file as last loaded: changed when its modification time or size differ.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    path: PathBuf,
    seen: Option<(SystemTime, u64)>,
}

impl Stamp {
    fn of(path: &PathBuf) -> Stamp {
        let seen = std::fs::metadata(path).ok().and_then(|m| Some((m.modified().ok()?, m.len())));
        Stamp { path: path.clone(), seen }
    }
}

/// Every data file a config reads.
fn data_files(cfg: &Enrichment) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(g) = &cfg.geoip {
        files.extend(g.databases.iter().cloned());
    }
    if let Some(a) = &cfg.asn {
        files.extend(a.databases.iter().chain(&a.csv).cloned());
    }
    if let Some(d) = &cfg.device_detection {
        files.push(d.regexes.clone());
    }
    if let Some(t) = &cfg.threat_intel {
        files.extend(t.lists.iter().map(|l| l.path.clone()).chain(t.anonymous_ip.iter().cloned()).chain(t.hosting_asns.iter().cloned()).chain(t.proxy_asns.iter().cloned()));
    }
    files
}

/// The enrichment in force: read by every worker per batch, replaced when the config or a
/// data file changes. A replacement that fails to load leaves the current one serving.
pub struct EnrichmentHandle {
    current: ArcSwap<Enrichers>,
    state: Mutex<(Enrichment, Vec<Stamp>)>,
    metrics: Arc<EnrichMetrics>,
}

impl EnrichmentHandle {
    /// Loads the first enrichment; an error here stops the daemon from starting.
    pub fn start(cfg: &Enrichment, metrics: Arc<EnrichMetrics>) -> Result<EnrichmentHandle, DataError> {
        let stamps = data_files(cfg).iter().map(Stamp::of).collect();
        let loaded = Enrichers::load(cfg)?;
        Ok(EnrichmentHandle { current: ArcSwap::from_pointee(loaded), state: Mutex::new((cfg.clone(), stamps)), metrics })
    }

    /// The enrichment to use for the next batch.
    pub fn current(&self) -> Arc<Enrichers> {
        self.current.load_full()
    }

    /// Loads what a new config needs (on reload) without applying it; settings that did not
    /// change reuse their loaded data. Slow (files are read): call off the reactor.
    pub fn prepare(&self, cfg: &Enrichment) -> Result<Prepared, DataError> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.current();
        let next = Enrichers {
            geo: reuse(&state.0.geoip, &cfg.geoip, &old.geo, GeoLookup::load)?,
            asn: reuse(&state.0.asn, &cfg.asn, &old.asn, AsnLookup::load)?,
            device: reuse(&state.0.device_detection, &cfg.device_detection, &old.device, DeviceParser::load)?,
            threat: reuse(&state.0.threat_intel, &cfg.threat_intel, &old.threat, ThreatLookup::load)?,
            client: ClientResolver::new(&cfg.client_ip),
            address_cache_size: cfg.address_cache_size,
        };
        Ok(Prepared { cfg: cfg.clone(), next })
    }

    /// Puts a prepared enrichment in force: the next batch of every worker uses it.
    pub fn commit(&self, p: Prepared) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.current.store(Arc::new(p.next));
        *state = (p.cfg.clone(), data_files(&p.cfg).iter().map(Stamp::of).collect());
    }

    /// How often the data files are checked, as configured now.
    pub fn check_interval(&self) -> std::time::Duration {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).0.reload_interval
    }

    /// Reloads the data if any file changed since it was loaded; counted either way. On error
    /// the current data keeps serving and the file is tried again when it changes again.
    pub fn check_files(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now: Vec<Stamp> = state.1.iter().map(|s| Stamp::of(&s.path)).collect();
        if now == state.1 {
            return;
        }
        let changed: Vec<String> = now.iter().zip(&state.1).filter(|(a, b)| a != b).map(|(a, _)| a.path.display().to_string()).collect();
        // Whatever happens, do not retry the same content every interval.
        state.1 = now;
        match Enrichers::load(&state.0) {
            Ok(next) => {
                self.current.store(Arc::new(next));
                self.metrics.data_reloads_ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(files = ?changed, "enrichment data reloaded");
            }
            Err(e) => {
                self.metrics.data_reloads_failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::error!("enrichment data not reloaded, the previous data keeps serving: {e}");
            }
        }
    }
}

/// An enrichment loaded for a new config, not yet in force.
pub struct Prepared {
    cfg: Enrichment,
    next: Enrichers,
}

/// The loaded part for `new` settings: the old one when the settings are the same.
fn reuse<C: PartialEq, T>(old_cfg: &Option<C>, new_cfg: &Option<C>, old: &Option<Arc<T>>, load: impl Fn(&C) -> Result<T, DataError>) -> Result<Option<Arc<T>>, DataError> {
    match (new_cfg, old) {
        (Some(_), Some(loaded)) if old_cfg == new_cfg => Ok(Some(loaded.clone())),
        (Some(c), _) => load(c).map(|t| Some(Arc::new(t))),
        (None, _) => Ok(None),
    }
}

/// Checks the data files at the configured interval until `stop` turns true.
pub async fn watch_files(handle: Arc<EnrichmentHandle>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(handle.check_interval()) => {}
        }
        let h = handle.clone();
        let _ = tokio::task::spawn_blocking(move || h.check_files()).await;
    }
}
