//! `asn.*`: the autonomous system announcing an address, from GeoLite2-ASN / GeoIP2-ISP
//! databases or from CSV range files (`start,end,asn,organization`), the way free ASN data ships.

use super::mmdb::{first_record, DataError, Database};
use super::ranges::{key, parse_range, RangeMap};
use sentinel_config::AsnData;
use sentinel_wire::event::Asn;
use serde::Deserialize;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

/// The loaded ASN data.
#[derive(Debug, Default)]
pub struct AsnLookup {
    dbs: Vec<Database>,
    /// Range → (AS number, index into `orgs`).
    ranges: RangeMap<(u32, u32)>,
    orgs: Vec<String>,
}

/// The fields GeoLite2-ASN and GeoIP2-ISP share.
#[derive(Deserialize)]
struct AsnRecord<'a> {
    autonomous_system_number: Option<u32>,
    #[serde(borrow)]
    autonomous_system_organization: Option<&'a str>,
}

impl AsnLookup {
    pub fn load(cfg: &AsnData) -> Result<AsnLookup, DataError> {
        let dbs = cfg.databases.iter().map(|p| Database::open(p)).collect::<Result<Vec<_>, _>>()?;
        let mut rows = Vec::new();
        let mut orgs = Vec::new();
        let mut org_index: HashMap<String, u32> = HashMap::new();
        for path in &cfg.csv {
            read_csv(path, &mut rows, &mut orgs, &mut org_index)?;
        }
        Ok(AsnLookup { dbs, ranges: RangeMap::build(rows), orgs })
    }

    /// `asn.*` of `ip`: the databases first, then the range files.
    pub fn lookup(&self, ip: IpAddr) -> Result<Option<Asn>, maxminddb::MaxMindDbError> {
        if let Some(r) = first_record::<AsnRecord>(&self.dbs, ip)? {
            if let Some(number) = r.autonomous_system_number {
                return Ok(Some(Asn { number, organization: r.autonomous_system_organization.map(str::to_owned) }));
            }
        }
        Ok(self.ranges.get(key(ip)).map(|&(number, org)| Asn {
            number,
            organization: self.orgs.get(org as usize).filter(|o| !o.is_empty()).cloned(),
        }))
    }

    /// Ranges read from CSV files.
    pub fn ranges(&self) -> usize {
        self.ranges.len()
    }
}

fn read_csv(path: &Path, rows: &mut Vec<(u128, u128, (u32, u32))>, orgs: &mut Vec<String>, index: &mut HashMap<String, u32>) -> Result<(), DataError> {
    let file = std::fs::File::open(path).map_err(|e| DataError::new(path, format!("cannot read: {e}")))?;
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(std::io::BufReader::new(file));
    let mut record = csv::StringRecord::new();
    loop {
        let line = reader.position().line();
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(DataError::new(path, format!("line {line}: {e}"))),
        }
        let bad = |what: String| DataError::new(path, format!("line {line}: {what} (expected start,end,asn,organization)"));
        if record.len() < 3 {
            return Err(bad(format!("{} columns", record.len())));
        }
        let (start, _) = parse_range(record[0].trim()).map_err(bad)?;
        let (_, end) = parse_range(record[1].trim()).map_err(bad)?;
        let asn: u32 = record[2].trim().trim_start_matches("AS").parse().map_err(|_| bad(format!("AS number {:?}", &record[2])))?;
        let org = record.get(3).unwrap_or("").trim();
        let id = match index.get(org) {
            Some(&id) => id,
            None => {
                let id = orgs.len() as u32;
                orgs.push(org.to_owned());
                index.insert(org.to_owned(), id);
                id
            }
        };
        if start <= end {
            rows.push((start, end, (asn, id)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::mmdb::tests::data;

    #[test]
    fn asn_test_database_gives_its_known_answer() {
        let a = AsnLookup::load(&AsnData { databases: vec![data("maxmind-test/GeoLite2-ASN-Test.mmdb")], csv: vec![] }).unwrap();
        let t = a.lookup("1.128.0.0".parse().unwrap()).unwrap().unwrap();
        assert_eq!(t.number, 1221);
        assert_eq!(t.organization.as_deref(), Some("Telstra Pty Ltd"));
        assert_eq!(a.lookup("10.0.0.1".parse().unwrap()).unwrap(), None);
        let isp = AsnLookup::load(&AsnData { databases: vec![data("maxmind-test/GeoIP2-ISP-Test.mmdb")], csv: vec![] }).unwrap();
        assert_eq!(isp.lookup("1.128.0.0".parse().unwrap()).unwrap().unwrap().number, 1221);
    }

    #[test]
    fn csv_ranges_with_quoted_names_and_ipv6() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("asn.csv");
        std::fs::write(&f, "1.0.0.0,1.0.0.255,13335,\"Cloudflare, Inc.\"\n1.0.4.0,1.0.7.255,38803,Gtelecom Pty Ltd\n2001:db8::,2001:db8::ffff,64500,\n").unwrap();
        let a = AsnLookup::load(&AsnData { databases: vec![], csv: vec![f.clone()] }).unwrap();
        let cf = a.lookup("1.0.0.1".parse().unwrap()).unwrap().unwrap();
        assert_eq!((cf.number, cf.organization.as_deref()), (13335, Some("Cloudflare, Inc.")));
        assert_eq!(a.lookup("1.0.6.1".parse().unwrap()).unwrap().unwrap().number, 38803);
        assert_eq!(a.lookup("1.0.2.1".parse().unwrap()).unwrap(), None);
        let v6 = a.lookup("2001:db8::1".parse().unwrap()).unwrap().unwrap();
        assert_eq!((v6.number, v6.organization), (64500, None));
        std::fs::write(&f, "1.0.0.0,1.0.0.255,13335,ok\n1.0.1.0,banana,1,x\n").unwrap();
        let e = AsnLookup::load(&AsnData { databases: vec![], csv: vec![f] }).unwrap_err().to_string();
        assert!(e.contains("asn.csv: line 2") && e.contains("banana"), "{e}");
    }

    #[test]
    fn real_asn_ranges_load_and_answer() {
        let a = AsnLookup::load(&AsnData { databases: vec![], csv: vec![data("asn/asn-ipv4.csv"), data("asn/asn-ipv6.csv")] }).unwrap();
        assert!(a.ranges() > 400_000, "{}", a.ranges());
        assert_eq!(a.lookup("1.1.1.1".parse().unwrap()).unwrap().unwrap().number, 13335);
        assert_eq!(a.lookup("8.8.8.8".parse().unwrap()).unwrap().unwrap().number, 15169);
    }
}
