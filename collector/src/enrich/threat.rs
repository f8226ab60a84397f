//! `threat.*`: what named IP lists (FireHOL/Spamhaus-style netsets, the Tor exit list),
//! GeoIP2 Anonymous-IP databases and lists of hosting or proxy AS numbers say about an address, and a
//! score that weighs them. All lists are flattened into one range map, so a lookup costs the
//! same for one list of ten entries or twenty lists of 100k ranges.

use super::mmdb::{first_record, DataError, Database};
use super::ranges::{key, parse_range, union_of_sets, RangeMap};
use maxminddb::geoip2::AnonymousIp;
use sentinel_config::{ThreatIntel, ThreatKind, ThreatWeights};
use sentinel_wire::event::Threat;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

/// The loaded lists and databases.
#[derive(Debug)]
pub struct ThreatLookup {
    lists: Vec<(String, ThreatKind)>,
    ranges: RangeMap<u64>,
    anonymous: Vec<Database>,
    /// What lists of AS numbers say about each listed one.
    asns: HashMap<u32, AsnFlags>,
    weights: ThreatWeights,
}

/// What the AS-number lists say about one AS.
#[derive(Debug, Default, Clone, Copy)]
struct AsnFlags {
    hosting: bool,
    proxy: bool,
}

impl ThreatLookup {
    pub fn load(cfg: &ThreatIntel) -> Result<ThreatLookup, DataError> {
        if let Some(extra) = cfg.lists.get(64) {
            return Err(DataError::new(&extra.path, "at most 64 threat lists"));
        }
        let sets = cfg.lists.iter().map(|l| read_list(&l.path)).collect::<Result<Vec<_>, _>>()?;
        let anonymous = cfg.anonymous_ip.iter().map(|p| Database::open(p)).collect::<Result<Vec<_>, _>>()?;
        let mut asns = HashMap::new();
        for p in &cfg.hosting_asns {
            read_asns(p, &mut asns, |f| f.hosting = true)?;
        }
        for p in &cfg.proxy_asns {
            read_asns(p, &mut asns, |f| f.proxy = true)?;
        }
        Ok(ThreatLookup {
            lists: cfg.lists.iter().map(|l| (l.name.clone(), l.kind)).collect(),
            ranges: union_of_sets(&sets),
            anonymous,
            asns,
            weights: cfg.weights,
        })
    }

    /// `threat.*` of `ip` (whose AS number, if known, is `asn`). Always returns the record: a
    /// clean address says so with `score` 0.
    pub fn lookup(&self, ip: IpAddr, asn: Option<u32>) -> Result<Threat, maxminddb::MaxMindDbError> {
        let mut t = Threat::default();
        if let Some(&mask) = self.ranges.get(key(ip)) {
            for (i, (name, kind)) in self.lists.iter().enumerate() {
                if mask & (1 << i) != 0 {
                    t.lists.push(name.clone());
                    match kind {
                        ThreatKind::KnownBad => t.known_bad = true,
                        ThreatKind::TorExit => t.tor_exit = true,
                        ThreatKind::Proxy => t.proxy = true,
                        ThreatKind::Hosting => t.hosting = true,
                    }
                }
            }
        }
        if let Some(a) = first_record::<AnonymousIp>(&self.anonymous, ip)? {
            let yes = |v: Option<bool>| v == Some(true);
            t.tor_exit |= yes(a.is_tor_exit_node);
            t.proxy |= yes(a.is_public_proxy) || yes(a.is_anonymous_vpn) || yes(a.is_residential_proxy);
            t.hosting |= yes(a.is_hosting_provider);
        }
        if let Some(f) = asn.and_then(|n| self.asns.get(&n)) {
            t.hosting |= f.hosting;
            t.proxy |= f.proxy;
        }
        let w = &self.weights;
        let points = [(t.known_bad, w.known_bad), (t.tor_exit, w.tor_exit), (t.proxy, w.proxy), (t.hosting, w.hosting)];
        t.score = points.iter().filter(|(on, _)| *on).map(|(_, w)| w).sum::<u32>().min(100);
        Ok(t)
    }
}

/// One list file: an address, CIDR or range a line; `#` and `;` start comments (FireHOL,
/// Spamhaus DROP); Tor's `ExitAddress <ip> <date>` lines are read too.
fn read_list(path: &Path) -> Result<Vec<(u128, u128)>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::new(path, format!("cannot read: {e}")))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split(['#', ';']).next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut words = line.split_whitespace();
        let entry = match words.next() {
            Some("ExitAddress") => words.next().unwrap_or(""),
            // TorDNSEL's other lines (ExitNode, Published, LastStatus) carry no address.
            Some("ExitNode" | "Published" | "LastStatus") => continue,
            // `first - last` keeps its spaces; anything else is its first word.
            _ if line.contains('-') => line,
            Some(w) => w,
            None => continue,
        };
        out.push(parse_range(entry).map_err(|e| DataError::new(path, format!("line {}: {e}", n + 1)))?);
    }
    Ok(out)
}

/// AS numbers, one a line (`AS` prefix allowed), `#` comments; `mark` records the file's
/// meaning for each.
fn read_asns(path: &Path, into: &mut HashMap<u32, AsnFlags>, mark: impl Fn(&mut AsnFlags)) -> Result<(), DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::new(path, format!("cannot read: {e}")))?;
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let digits = line.trim_start_matches("AS").trim_start_matches("as");
        let asn = digits.parse().map_err(|_| DataError::new(path, format!("line {}: {line:?} is not an AS number", n + 1)))?;
        mark(into.entry(asn).or_default());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::mmdb::tests::data;
    use sentinel_config::ThreatList;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn lists_flags_and_score() {
        let dir = tempfile::tempdir().unwrap();
        let bad = write(dir.path(), "drop.txt", "; Spamhaus DROP\n192.0.2.0/24 ; SBL1\n# FireHOL style\n198.51.100.7\n2001:db8:bad::/48\n");
        let tor = write(dir.path(), "tor.txt", "ExitNode 0011\nPublished 2024-01-01\nExitAddress 203.0.113.5 2024-01-01 00:00:00\n203.0.113.6\n");
        let hosting = write(dir.path(), "hosting-asns.txt", "# clouds\nAS16509\n14061\n");
        let vpn = write(dir.path(), "proxy-asns.txt", "# VPN providers\nAS9009\nas14061\n");
        let cfg = ThreatIntel {
            lists: vec![
                ThreatList { name: "drop".into(), path: bad, kind: ThreatKind::KnownBad },
                ThreatList { name: "tor".into(), path: tor, kind: ThreatKind::TorExit },
            ],
            anonymous_ip: vec![],
            hosting_asns: vec![hosting],
            proxy_asns: vec![vpn],
            weights: ThreatWeights::default(),
        };
        let t = ThreatLookup::load(&cfg).unwrap();
        let clean = t.lookup("8.8.8.8".parse().unwrap(), Some(15169)).unwrap();
        assert_eq!(clean, Threat::default());
        let bad = t.lookup("192.0.2.77".parse().unwrap(), None).unwrap();
        assert!(bad.known_bad && !bad.tor_exit);
        assert_eq!((bad.lists.clone(), bad.score), (vec!["drop".to_string()], 60));
        let tor = t.lookup("203.0.113.5".parse().unwrap(), Some(16509)).unwrap();
        assert!(tor.tor_exit && tor.hosting && !tor.known_bad);
        assert_eq!(tor.score, 50);
        assert!(t.lookup("2001:db8:bad::1".parse().unwrap(), None).unwrap().known_bad);
        // AS lists: a VPN provider's AS is a proxy, not hosting; an AS on both lists is both.
        let vpn = t.lookup("8.8.8.8".parse().unwrap(), Some(9009)).unwrap();
        assert!(vpn.proxy && !vpn.hosting && vpn.lists.is_empty(), "{vpn:?}");
        assert_eq!(vpn.score, 25);
        let both = t.lookup("8.8.8.8".parse().unwrap(), Some(14061)).unwrap();
        assert!(both.proxy && both.hosting, "{both:?}");
        assert_eq!(both.score, 35);
    }

    #[test]
    fn anonymous_ip_database_sets_its_flags() {
        let cfg = ThreatIntel { lists: vec![], anonymous_ip: vec![data("maxmind-test/GeoIP2-Anonymous-IP-Test.mmdb")], hosting_asns: vec![], proxy_asns: vec![], weights: ThreatWeights::default() };
        let t = ThreatLookup::load(&cfg).unwrap();
        // MaxMind's test data: 1.2.0.0/16 is anonymous + VPN; 81.2.69.0/24 is every flag.
        let vpn = t.lookup("1.2.0.1".parse().unwrap(), None).unwrap();
        assert!(vpn.proxy && !vpn.tor_exit, "{vpn:?}");
        let all = t.lookup("81.2.69.1".parse().unwrap(), None).unwrap();
        assert!(all.tor_exit && all.proxy && all.hosting, "{all:?}");
        assert_eq!(all.score, 75);
    }

    #[test]
    fn a_bad_line_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "bad.txt", "192.0.2.1\n300.1.1.1\n");
        let cfg = ThreatIntel { lists: vec![ThreatList { name: "x".into(), path: p, kind: ThreatKind::KnownBad }], anonymous_ip: vec![], hosting_asns: vec![], proxy_asns: vec![], weights: ThreatWeights::default() };
        let e = ThreatLookup::load(&cfg).unwrap_err().to_string();
        assert!(e.contains("bad.txt: line 2") && e.contains("300.1.1.1"), "{e}");
    }

    #[test]
    fn a_hundred_thousand_ranges_load_and_answer() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::new();
        for i in 0..100_000u32 {
            let ip = std::net::Ipv4Addr::from(0x0b00_0000 + i * 256);
            text.push_str(&format!("{ip}/25\n"));
        }
        let p = write(dir.path(), "big.netset", &text);
        let cfg = ThreatIntel { lists: vec![ThreatList { name: "big".into(), path: p, kind: ThreatKind::KnownBad }], anonymous_ip: vec![], hosting_asns: vec![], proxy_asns: vec![], weights: ThreatWeights::default() };
        let t = ThreatLookup::load(&cfg).unwrap();
        assert!(t.lookup("11.0.5.7".parse().unwrap(), None).unwrap().known_bad);
        assert!(!t.lookup("11.0.5.200".parse().unwrap(), None).unwrap().known_bad);
    }
}
