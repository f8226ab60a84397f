//! The event schema, version 1: one event per request, with the dotted names of the design
//! (`http.request.method`, `client.address`, ...) as nested maps.
//!
//! An event travels as a MessagePack map whose keys are this type's serde field names (the filter
//! writes it by hand in one pass; serde's derived form is the reference): field names travel with
//! the values, so filters and collectors of different versions can read each other (unknown
//! fields are ignored, missing optional ones are `None`). Strings are `Cow` so the collector
//! decodes without copying. The collector reads frames with a schema-aware reader (`decode`,
//! serde decides whatever it leaves) and writes NDJSON with `json`, byte for byte serde_json's
//! rendering of the same event; a collector that only forwards writes the same line straight
//! from the frame ([`transcode`]).

/// `"name":`, the way a key is written in JSON (schema names never need escaping).
macro_rules! k {
    ($name:literal) => {
        concat!("\"", $name, "\":").as_bytes()
    };
}

mod decode;
mod json;
pub use json::parts;
pub mod transcode;
#[cfg(test)]
mod random;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// Written into every event as `schema_version`; major.minor (a new field is a minor version).
pub const SCHEMA_VERSION: &str = "1.1";

/// How deep the serde path follows nested values before refusing a frame.
const MAX_DEPTH: usize = 64;

/// One request, as it leaves the proxy (and, later, as the collector enriches it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Event<'a> {
    #[serde(borrow)]
    pub schema_version: Cow<'a, str>,
    #[serde(borrow)]
    pub event: EventInfo<'a>,
    #[serde(borrow)]
    pub http: Http<'a>,
    #[serde(borrow)]
    pub url: Url<'a>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network<'a>>,
    #[serde(borrow)]
    pub client: Client<'a>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls<'a>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<Upstream<'a>>,
    #[serde(default)]
    pub timing: Timing,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub sentinel: Option<Sentinel<'a>>,
    // The collector's enrichment: shared (`Arc`) because one lookup answers many events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geo: Option<Arc<Geo>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asn: Option<Arc<Asn>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<Arc<Device>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<UserAgent<'a>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<Arc<Os>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threat: Option<Arc<Threat>>,
    #[serde(borrow)]
    pub sampling: Sampling<'a>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redaction: Option<Redaction>,
    #[serde(borrow)]
    pub filter: FilterInfo<'a>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub collector: Option<CollectorInfo<'a>>,
}

/// `event.*`: identity and time span of the request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventInfo<'a> {
    /// The request id; unique per request, stable across retries of delivery (for dedupe).
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    pub start_ns: u64,
    pub end_ns: u64,
}

/// `http.*`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Http<'a> {
    #[serde(borrow)]
    pub request: HttpRequest<'a>,
    #[serde(borrow)]
    pub response: HttpResponse<'a>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub route: Option<Cow<'a, str>>,
}

/// `http.request.*`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HttpRequest<'a> {
    #[serde(borrow)]
    pub method: Cow<'a, str>,
    #[serde(borrow, default, skip_serializing_if = "Headers::is_empty")]
    pub header: Headers<'a>,
    #[serde(borrow, default)]
    pub body: Body<'a>,
}

/// `http.response.*`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HttpResponse<'a> {
    pub status_code: u16,
    #[serde(borrow, default, skip_serializing_if = "Headers::is_empty")]
    pub header: Headers<'a>,
    #[serde(borrow, default)]
    pub body: Body<'a>,
}

/// `http.{request,response}.body.*`: size always; content only when capture is on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Body<'a> {
    pub size: u64,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// `url.*`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Url<'a> {
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub path: Cow<'a, str>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub query: Option<Cow<'a, str>>,
}

/// `network.*`: `protocol.version` (e.g. `1.1` or `2`) and the direct peer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Network<'a> {
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol<'a>>,
    /// `network.peer.address`: the proxy's direct peer, set by the collector when a trusted
    /// `X-Forwarded-For` chain moved `client.address` to the address behind it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<Peer>,
}

/// `network.peer`: the other end of the proxy's client connection.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Peer {
    pub address: String,
}

/// A `{version}` map, used by `network.protocol` and `tls.protocol`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Protocol<'a> {
    #[serde(borrow)]
    pub version: Cow<'a, str>,
}

/// `client.*`: the peer the proxy saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Client<'a> {
    #[serde(borrow)]
    pub address: Cow<'a, str>,
    #[serde(default)]
    pub port: u16,
}

/// `tls.*`, present when the client connection used TLS.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tls<'a> {
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol<'a>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub cipher: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<Cow<'a, str>>,
}

/// `upstream.*`, present when the proxy contacted an upstream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Upstream<'a> {
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Cow<'a, str>>,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
}

/// `timing.*`, in milliseconds (fractional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttfb_ms: Option<f64>,
    pub total_ms: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_connect_ms: Option<f64>,
}

/// `sentinel.*`: what the proxy and its agents decided.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sentinel<'a> {
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk_score: Option<f32>,
    #[serde(borrow, default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<AgentVerdict<'a>>,
}

/// One agent that ran on the request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentVerdict<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(borrow)]
    pub verdict: Cow<'a, str>,
    pub duration_ms: f64,
}

/// `geo.*`: where the client address is, from a GeoIP database (collector enrichment).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Geo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continent: Option<Code>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<Place>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<Place>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality: Option<Named>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
}

impl Geo {
    /// True when no field is set (the lookup found nothing worth writing).
    pub fn is_empty(&self) -> bool {
        *self == Geo::default()
    }
}

/// `geo.continent`: a two-letter code.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Code {
    pub code: String,
}

/// `geo.country` and `geo.region`: an ISO code and an English name, each optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Place {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iso_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `geo.locality`: a city name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Named {
    pub name: String,
}

/// `geo.location`: latitude and longitude in degrees.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Location {
    pub lat: f64,
    pub lon: f64,
}

/// `asn.*`: the autonomous system announcing the client address.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Asn {
    pub number: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
}

/// `device.*`: the kind of device the user agent names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Device {
    /// desktop, mobile, tablet, tv, console, wearable, bot or other.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// `user_agent.*`: the browser or client, parsed from the User-Agent header.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserAgent<'a> {
    #[serde(borrow)]
    pub original: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Arc<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<Arc<str>>,
    pub is_bot: bool,
}

/// `os.*`: the operating system the user agent names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Os {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// `threat.*`: what the configured IP lists and databases say about the client address.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Threat {
    pub known_bad: bool,
    pub tor_exit: bool,
    pub proxy: bool,
    pub hosting: bool,
    /// Names of the lists that matched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lists: Vec<String>,
    /// 0 to 100: the configured weights of what matched, summed and capped.
    pub score: u32,
}

/// `redaction.*`: which fields the collector's redaction changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Redaction {
    pub fields: Vec<String>,
}

/// `sampling.*`: how many requests this event stands for, and why it was kept.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sampling<'a> {
    pub rate: f64,
    #[serde(borrow)]
    pub reason: Cow<'a, str>,
}

/// `filter.*`: which filter build shaped the event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FilterInfo<'a> {
    #[serde(borrow)]
    pub version: Cow<'a, str>,
}

/// `collector.*`: which collector wrote the event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CollectorInfo<'a> {
    #[serde(borrow)]
    pub host: Cow<'a, str>,
}

/// Header name → value pairs, in order, encoded as a map. Names are lower case; repeated names
/// are joined with `, ` by the filter, so each name appears once.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Headers<'a>(pub Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'a> Headers<'a> {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value of header `name` (lower case), if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_ref())
    }
}

impl Serialize for Headers<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k.as_ref(), v.as_ref())?;
        }
        m.end()
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Headers<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Headers<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of header names to string values")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
                while let Some((k, v)) = map.next_entry::<CowStr<'a>, CowStr<'a>>()? {
                    out.push((k.0, v.0));
                }
                Ok(Headers(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// A string that borrows from the input when the format allows it.
struct CowStr<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for CowStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = CowStr<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

/// Why an event could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("cannot encode event: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    #[error("not a valid event: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
}

impl<'a> Event<'a> {
    /// Appends this event as a MessagePack map to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), EventError> {
        let mut ser = rmp_serde::Serializer::new(out).with_struct_map();
        self.serialize(&mut ser)?;
        Ok(())
    }

    /// Decodes an event from a MessagePack frame, borrowing strings from it. The schema-aware
    /// reader (the `decode` module) reads what filters write; whatever it leaves, serde decides.
    pub fn decode(frame: &'a [u8]) -> Result<Event<'a>, EventError> {
        match Self::decode_fast(frame) {
            Some(event) => Ok(event),
            None => Self::decode_reference(frame),
        }
    }

    /// The fast reader alone: `None` when it leaves the frame to serde (see [`Event::decode`]). Public
    /// so the filter's tests can show that what it writes takes the fast way.
    pub fn decode_fast(frame: &'a [u8]) -> Option<Event<'a>> {
        decode::decode(frame)
    }

    /// Decodes with serde alone: the reference the fast reader is held to (tests, benchmarks).
    /// Nesting is capped well below rmp-serde's default of 1024, which a hostile frame could use
    /// to exhaust a worker's stack (an event nests five deep).
    pub fn decode_reference(frame: &'a [u8]) -> Result<Event<'a>, EventError> {
        let mut de = rmp_serde::Deserializer::from_read_ref(frame);
        de.set_max_depth(MAX_DEPTH);
        Ok(Event::deserialize(&mut de)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Event<'static> {
        Event {
            schema_version: SCHEMA_VERSION.into(),
            event: EventInfo { id: "0192-abc".into(), start_ns: 1, end_ns: 2_000_001 },
            http: Http {
                request: HttpRequest {
                    method: "GET".into(),
                    header: Headers(vec![("user-agent".into(), "curl/8".into())]),
                    body: Body { size: 0, content: None, truncated: false },
                },
                response: HttpResponse { status_code: 200, ..Default::default() },
                route: None,
            },
            url: Url { path: "/x".into(), query: Some("a=1".into()), ..Default::default() },
            client: Client { address: "203.0.113.7".into(), port: 5555 },
            timing: Timing { total_ms: 2.0, ..Default::default() },
            sampling: Sampling { rate: 1.0, reason: "all".into() },
            filter: FilterInfo { version: "test".into() },
            ..Default::default()
        }
    }

    #[test]
    fn messagepack_round_trip_borrows_strings() {
        let ev = sample();
        let mut buf = Vec::new();
        ev.encode_into(&mut buf).unwrap();
        let back = Event::decode(&buf).unwrap();
        assert_eq!(back, ev);
        assert!(matches!(back.url.path, Cow::Borrowed(_)));
        assert!(matches!(back.http.request.header.0[0].1, Cow::Borrowed(_)));
    }

    #[test]
    fn json_nests_on_the_dots() {
        let v = serde_json::to_value(sample()).unwrap();
        assert_eq!(v["http"]["request"]["method"], "GET");
        assert_eq!(v["http"]["request"]["header"]["user-agent"], "curl/8");
        assert_eq!(v["http"]["response"]["status_code"], 200);
        assert_eq!(v["client"]["address"], "203.0.113.7");
        assert_eq!(v["schema_version"], SCHEMA_VERSION);
        assert!(v.get("tls").is_none());
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(Event::decode(b"\x92\x01").is_err());
        assert!(Event::decode(b"").is_err());
        assert!(Event::decode(&[0xc1; 16]).is_err());
    }

    #[test]
    fn unknown_fields_from_newer_filters_are_ignored() {
        #[derive(Serialize)]
        struct Newer<'a> {
            #[serde(flatten)]
            ev: Event<'a>,
            brand_new: u32,
        }
        let mut buf = Vec::new();
        let mut ser = rmp_serde::Serializer::new(&mut buf).with_struct_map();
        Newer { ev: sample(), brand_new: 7 }.serialize(&mut ser).unwrap();
        assert_eq!(Event::decode(&buf).unwrap(), sample());
    }
}
