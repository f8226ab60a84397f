//! The enrichment data loaders over any file: a MaxMind database, an ASN ranges CSV and the
//! threat lists (one address or network a line). Each loads or says why not, never panics, and
//! a loaded one answers lookups.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sentinel_collector::enrich::asn::AsnLookup;
use sentinel_collector::enrich::mmdb::Database;
use sentinel_collector::enrich::threat::ThreatLookup;
use sentinel_config::{AsnData, ThreatIntel, ThreatKind, ThreatList, ThreatWeights};
use std::net::IpAddr;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let path = dir.path().join("data");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let ips: [IpAddr; 4] = ["1.2.3.4".parse().unwrap(), "81.2.69.160".parse().unwrap(), "2001:db8::1".parse().unwrap(), "0.0.0.0".parse().unwrap()];
    if let Ok(db) = Database::open(&path) {
        for ip in ips {
            let _ = db.lookup(ip);
        }
    }
    if let Ok(asn) = AsnLookup::load(&AsnData { databases: vec![], csv: vec![path.clone()] }) {
        for ip in ips {
            let _ = asn.lookup(ip);
        }
    }
    let lists = vec![ThreatList { name: "fuzz".into(), path: path.clone(), kind: ThreatKind::KnownBad }];
    let cfg = ThreatIntel { lists, anonymous_ip: vec![], hosting_asns: vec![path.clone()], proxy_asns: vec![], weights: ThreatWeights::default() };
    if let Ok(t) = ThreatLookup::load(&cfg) {
        for ip in ips {
            let _ = t.lookup(ip, Some(13335));
        }
    }
});
