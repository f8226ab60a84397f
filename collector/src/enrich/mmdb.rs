//! MaxMind DB files: opening them with a clear error, looking an address up in several files
//! (DB-IP ships IPv4 and IPv6 apart), and reading records that are flat maps (DB-IP and other
//! generic databases) in one pass without building a tree.

use maxminddb::{LookupResult, MaxMindDbError, Reader};
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Why a database could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct DataError {
    pub path: PathBuf,
    pub message: String,
}

impl DataError {
    pub fn new(path: &Path, message: impl fmt::Display) -> Self {
        DataError { path: path.to_path_buf(), message: message.to_string() }
    }
}

/// One opened database.
pub struct Database {
    pub path: PathBuf,
    reader: Reader<Vec<u8>>,
    ipv6: bool,
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Database").field("path", &self.path).field("type", &self.reader.metadata().database_type).finish()
    }
}

impl Database {
    /// Reads and checks a file: the metadata, then every network of the search tree with each
    /// distinct record decoded once, so a corrupt file is refused here rather than failing
    /// lookups later (~0.5 s for a 63 MB city database, off the event path). The crate's own
    /// `verify` does more but refuses DB-IP's files for their empty description.
    pub fn open(path: &Path) -> Result<Database, DataError> {
        let bytes = std::fs::read(path).map_err(|e| DataError::new(path, format!("cannot read: {e}")))?;
        let reader = Reader::from_source(bytes).map_err(|e| DataError::new(path, format!("not a valid MaxMind DB file: {e}")))?;
        let ipv6 = reader.metadata().ip_version == 6;
        let db = Database { path: path.to_path_buf(), reader, ipv6 };
        db.walk().map_err(|e| DataError::new(path, format!("corrupt MaxMind DB file: {e}")))?;
        Ok(db)
    }

    /// Walks every network of the search tree and decodes each distinct record once.
    fn walk(&self) -> Result<(), MaxMindDbError> {
        let mut seen = std::collections::HashSet::new();
        for net in self.reader.networks(maxminddb::WithinOptions::default())? {
            let r = net?;
            if let Some(off) = r.offset() {
                if seen.insert(off) {
                    r.decode::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    /// The database type its metadata names (`GeoIP2-City`, `GeoLite2-ASN`, `dbip-city-lite`…).
    pub fn kind(&self) -> &str {
        &self.reader.metadata().database_type
    }

    /// The record for `ip`, if this database covers it.
    pub fn lookup(&self, ip: IpAddr) -> Result<Option<LookupResult<'_, Vec<u8>>>, MaxMindDbError> {
        if ip.is_ipv6() && !self.ipv6 {
            return Ok(None);
        }
        let r = self.reader.lookup(ip)?;
        Ok(r.has_data().then_some(r))
    }
}

/// Looks `ip` up in each database in turn; the first record found wins.
pub fn first_record<'a, T: Deserialize<'a>>(dbs: &'a [Database], ip: IpAddr) -> Result<Option<T>, MaxMindDbError> {
    for db in dbs {
        if let Some(r) = db.lookup(ip)? {
            if let Some(v) = r.decode::<T>()? {
                return Ok(Some(v));
            }
        }
    }
    Ok(None)
}

/// A scalar of a flat record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar<'a> {
    Str(&'a str),
    Num(f64),
    Bool(bool),
}

impl<'a> Scalar<'a> {
    pub fn as_str(&self) -> Option<std::borrow::Cow<'a, str>> {
        match *self {
            Scalar::Str(s) if !s.is_empty() => Some(s.into()),
            Scalar::Num(n) => Some(n.to_string().into()),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Scalar::Num(n) => Some(n),
            Scalar::Str(s) => s.parse().ok(),
            Scalar::Bool(_) => None,
        }
    }
}

/// The top-level scalars of a record, in file order; nested maps and arrays are skipped.
#[derive(Debug, Default)]
pub struct FlatRecord<'a>(pub Vec<(&'a str, Scalar<'a>)>);

impl<'a> FlatRecord<'a> {
    pub fn get(&self, key: &str) -> Option<Scalar<'a>> {
        self.0.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for FlatRecord<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Record<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for Record<'a> {
            type Value = FlatRecord<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(8).min(32));
                while let Some(k) = map.next_key::<&'de str>()? {
                    if let Some(v) = map.next_value::<Value<'de>>()?.0 {
                        out.push((k, v));
                    }
                }
                Ok(FlatRecord(out))
            }
        }
        d.deserialize_map(Record(std::marker::PhantomData))
    }
}

/// A value of a flat record: a scalar, or `None` for anything nested (skipped, not built).
struct Value<'a>(Option<Scalar<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for Value<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Value<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Value(Some(Scalar::Str(v))))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Value(None))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Value(Some(Scalar::Num(v))))
            }
            fn visit_f32<E>(self, v: f32) -> Result<Self::Value, E> {
                // Through its shortest decimal form, so 51.5143f32 is written 51.5143, not
                // 51.51430130004883.
                Ok(Value(Some(Scalar::Num(v.to_string().parse().unwrap_or(f64::from(v))))))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Value(Some(Scalar::Num(v as f64))))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Value(Some(Scalar::Num(v as f64))))
            }
            fn visit_u128<E>(self, v: u128) -> Result<Self::Value, E> {
                Ok(Value(Some(Scalar::Num(v as f64))))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Value(Some(Scalar::Bool(v))))
            }
            fn visit_bytes<E>(self, _: &[u8]) -> Result<Self::Value, E> {
                Ok(Value(None))
            }
            fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> Result<Self::Value, M::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Value(None))
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut s: S) -> Result<Self::Value, S::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Value(None))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Where `scripts/fetch-data.sh` puts the data the tests read.
    pub fn data(rel: &str) -> PathBuf {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/data").join(rel);
        assert!(p.exists(), "{} is missing: run scripts/fetch-data.sh (make test does)", p.display());
        p
    }

    #[test]
    fn corrupt_and_missing_files_are_refused_with_their_path() {
        let missing = Database::open(Path::new("/nonexistent/GeoLite2-City.mmdb")).unwrap_err();
        assert!(missing.to_string().starts_with("/nonexistent/GeoLite2-City.mmdb: cannot read"), "{missing}");
        let broken = data("maxmind-test/MaxMind-DB-test-broken-search-tree-24.mmdb");
        let e = Database::open(&broken).unwrap_err().to_string();
        assert!(e.contains("broken-search-tree") && e.contains("MaxMind DB"), "{e}");
        let text = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(text.path(), "not a database").unwrap();
        assert!(Database::open(text.path()).unwrap_err().to_string().contains("not a valid MaxMind DB file"));
    }

    #[test]
    fn the_corrupt_test_files_are_refused() {
        // MaxMind's corrupt files; two of libmaxminddb's (an empty metadata container, a search
        // tree only its C reader trips on) read fine with this crate and are left out.
        let mut refused = 0;
        for dir in ["maxmind-test/bad-data/libmaxminddb", "maxmind-test/bad-data/maxminddb-golang", "maxmind-test/bad-data/maxminddb-python"] {
            for f in std::fs::read_dir(data(dir)).unwrap() {
                let p = f.unwrap().path();
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                if !name.ends_with(".mmdb") || name.contains("last-in-metadata") || name.contains("corrupt-search-tree") {
                    continue;
                }
                let e = Database::open(&p).expect_err(&name).to_string();
                assert!(e.contains(&name), "{e}");
                refused += 1;
            }
        }
        assert_eq!(refused, 18);
        for good in ["GeoIP2-City-Test.mmdb", "GeoLite2-ASN-Test.mmdb", "GeoIP2-Anonymous-IP-Test.mmdb", "MaxMind-DB-test-mixed-32.mmdb"] {
            Database::open(&data(&format!("maxmind-test/{good}"))).unwrap();
        }
    }

    #[test]
    fn flat_records_keep_top_level_scalars() {
        let db = Database::open(&data("maxmind-test/MaxMind-DB-test-decoder.mmdb")).unwrap();
        let r: FlatRecord = first_record(std::slice::from_ref(&db), "1.1.1.1".parse().unwrap()).unwrap().unwrap();
        assert_eq!(r.get("utf8_string"), Some(Scalar::Str("unicode! ☯ - ♫")));
        assert_eq!(r.get("boolean"), Some(Scalar::Bool(true)));
        assert_eq!(r.get("uint16").and_then(|v| v.as_f64()), Some(100.0));
        assert!(r.get("map").is_none() && r.get("array").is_none(), "nested values are skipped");
    }
}
