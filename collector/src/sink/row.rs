//! One event as one flat row: the shape of the ClickHouse table (`clickhouse/table.sql`) and of
//! the Parquet schema (`parquet/schema.txt`), borrowing from the parsed event. Dotted names
//! become `_`-joined columns; headers become parallel name/value lists.

use clickhouse::Row;
use sentinel_wire::event::{Event, Headers};
use serde::Serialize;

/// The columns, in the table's and the schema's order.
#[derive(Debug, Row, Serialize)]
pub struct EventRow<'a> {
    pub event_date: u16,
    pub timestamp: u32,
    pub event_id: &'a str,
    pub event_start_ns: u64,
    pub event_end_ns: u64,
    pub schema_version: &'a str,
    pub http_request_method: &'a str,
    pub url_scheme: &'a str,
    pub url_domain: &'a str,
    pub url_path: &'a str,
    pub url_query: &'a str,
    pub http_route: &'a str,
    pub network_protocol_version: &'a str,
    pub network_peer_address: &'a str,
    pub http_request_header_names: Vec<&'a str>,
    pub http_request_header_values: Vec<&'a str>,
    pub http_request_body_size: u64,
    pub http_request_body_content: &'a str,
    pub http_request_body_truncated: u8,
    pub http_response_status_code: u16,
    pub http_response_header_names: Vec<&'a str>,
    pub http_response_header_values: Vec<&'a str>,
    pub http_response_body_size: u64,
    pub http_response_body_content: &'a str,
    pub http_response_body_truncated: u8,
    pub client_address: &'a str,
    pub client_port: u16,
    pub tls_protocol_version: &'a str,
    pub tls_cipher: &'a str,
    pub tls_server_name: &'a str,
    pub upstream_address: &'a str,
    pub upstream_attempts: u32,
    pub upstream_status_code: Option<u16>,
    pub timing_ttfb_ms: Option<f64>,
    pub timing_total_ms: f64,
    pub timing_upstream_ms: Option<f64>,
    pub timing_upstream_connect_ms: Option<f64>,
    pub sentinel_decision: &'a str,
    pub sentinel_risk_score: Option<f32>,
    pub sentinel_rules: Vec<&'a str>,
    pub sentinel_agent_names: Vec<&'a str>,
    pub sentinel_agent_verdicts: Vec<&'a str>,
    pub sentinel_agent_duration_ms: Vec<f64>,
    pub geo_continent_code: &'a str,
    pub geo_country_iso_code: &'a str,
    pub geo_country_name: &'a str,
    pub geo_region_iso_code: &'a str,
    pub geo_region_name: &'a str,
    pub geo_locality_name: &'a str,
    pub geo_postal_code: &'a str,
    pub geo_timezone: &'a str,
    pub geo_location_lat: Option<f64>,
    pub geo_location_lon: Option<f64>,
    pub asn_number: Option<u32>,
    pub asn_organization: &'a str,
    pub device_type: &'a str,
    pub device_brand: &'a str,
    pub device_model: &'a str,
    pub user_agent_original: &'a str,
    pub user_agent_name: &'a str,
    pub user_agent_version: &'a str,
    pub user_agent_is_bot: u8,
    pub os_name: &'a str,
    pub os_version: &'a str,
    pub threat_known_bad: u8,
    pub threat_tor_exit: u8,
    pub threat_proxy: u8,
    pub threat_hosting: u8,
    pub threat_lists: Vec<&'a str>,
    pub threat_score: u32,
    pub sampling_rate: f64,
    pub sampling_reason: &'a str,
    pub redaction_fields: Vec<&'a str>,
    pub filter_version: &'a str,
    pub collector_host: &'a str,
}

fn names<'a>(h: &'a Headers<'_>) -> Vec<&'a str> {
    h.0.iter().map(|(k, _)| k.as_ref()).collect()
}

fn values<'a>(h: &'a Headers<'_>) -> Vec<&'a str> {
    h.0.iter().map(|(_, v)| v.as_ref()).collect()
}

fn s(v: &Option<impl AsRef<str>>) -> &str {
    v.as_ref().map_or("", AsRef::as_ref)
}

impl<'a> EventRow<'a> {
    pub fn from_event(e: &'a Event<'a>) -> EventRow<'a> {
        let secs = e.event.start_ns / 1_000_000_000;
        let geo = e.geo.as_deref();
        let sentinel = e.sentinel.as_ref();
        let agents = sentinel.map(|s| s.agents.as_slice()).unwrap_or_default();
        EventRow {
            event_date: (secs / 86_400).min(u64::from(u16::MAX)) as u16,
            timestamp: secs.min(u64::from(u32::MAX)) as u32,
            event_id: &e.event.id,
            event_start_ns: e.event.start_ns,
            event_end_ns: e.event.end_ns,
            schema_version: &e.schema_version,
            http_request_method: &e.http.request.method,
            url_scheme: s(&e.url.scheme),
            url_domain: s(&e.url.domain),
            url_path: &e.url.path,
            url_query: s(&e.url.query),
            http_route: s(&e.http.route),
            network_protocol_version: e.network.as_ref().and_then(|n| n.protocol.as_ref()).map_or("", |p| &p.version),
            network_peer_address: e.network.as_ref().and_then(|n| n.peer.as_ref()).map_or("", |p| &p.address),
            http_request_header_names: names(&e.http.request.header),
            http_request_header_values: values(&e.http.request.header),
            http_request_body_size: e.http.request.body.size,
            http_request_body_content: s(&e.http.request.body.content),
            http_request_body_truncated: u8::from(e.http.request.body.truncated),
            http_response_status_code: e.http.response.status_code,
            http_response_header_names: names(&e.http.response.header),
            http_response_header_values: values(&e.http.response.header),
            http_response_body_size: e.http.response.body.size,
            http_response_body_content: s(&e.http.response.body.content),
            http_response_body_truncated: u8::from(e.http.response.body.truncated),
            client_address: &e.client.address,
            client_port: e.client.port,
            tls_protocol_version: e.tls.as_ref().and_then(|t| t.protocol.as_ref()).map_or("", |p| &p.version),
            tls_cipher: e.tls.as_ref().map_or("", |t| s(&t.cipher)),
            tls_server_name: e.tls.as_ref().map_or("", |t| s(&t.server_name)),
            upstream_address: e.upstream.as_ref().map_or("", |u| s(&u.address)),
            upstream_attempts: e.upstream.as_ref().map_or(0, |u| u.attempts),
            upstream_status_code: e.upstream.as_ref().and_then(|u| u.status_code),
            timing_ttfb_ms: e.timing.ttfb_ms,
            timing_total_ms: e.timing.total_ms,
            timing_upstream_ms: e.timing.upstream_ms,
            timing_upstream_connect_ms: e.timing.upstream_connect_ms,
            sentinel_decision: sentinel.map_or("", |s2| s(&s2.decision)),
            sentinel_risk_score: sentinel.and_then(|s| s.risk_score),
            sentinel_rules: sentinel.map(|s| s.rules.iter().map(AsRef::as_ref).collect()).unwrap_or_default(),
            sentinel_agent_names: agents.iter().map(|a| a.name.as_ref()).collect(),
            sentinel_agent_verdicts: agents.iter().map(|a| a.verdict.as_ref()).collect(),
            sentinel_agent_duration_ms: agents.iter().map(|a| a.duration_ms).collect(),
            geo_continent_code: geo.and_then(|g| g.continent.as_ref()).map_or("", |c| &c.code),
            geo_country_iso_code: geo.and_then(|g| g.country.as_ref()).map_or("", |p| s(&p.iso_code)),
            geo_country_name: geo.and_then(|g| g.country.as_ref()).map_or("", |p| s(&p.name)),
            geo_region_iso_code: geo.and_then(|g| g.region.as_ref()).map_or("", |p| s(&p.iso_code)),
            geo_region_name: geo.and_then(|g| g.region.as_ref()).map_or("", |p| s(&p.name)),
            geo_locality_name: geo.and_then(|g| g.locality.as_ref()).map_or("", |n| &n.name),
            geo_postal_code: geo.map_or("", |g| s(&g.postal_code)),
            geo_timezone: geo.map_or("", |g| s(&g.timezone)),
            geo_location_lat: geo.and_then(|g| g.location.as_ref()).map(|l| l.lat),
            geo_location_lon: geo.and_then(|g| g.location.as_ref()).map(|l| l.lon),
            asn_number: e.asn.as_ref().map(|a| a.number),
            asn_organization: e.asn.as_deref().map_or("", |a| s(&a.organization)),
            device_type: e.device.as_deref().map_or("", |d| &d.kind),
            device_brand: e.device.as_deref().map_or("", |d| s(&d.brand)),
            device_model: e.device.as_deref().map_or("", |d| s(&d.model)),
            user_agent_original: e.user_agent.as_ref().map_or("", |u| &u.original),
            user_agent_name: e.user_agent.as_ref().map_or("", |u| s(&u.name)),
            user_agent_version: e.user_agent.as_ref().map_or("", |u| s(&u.version)),
            user_agent_is_bot: e.user_agent.as_ref().map_or(0, |u| u8::from(u.is_bot)),
            os_name: e.os.as_deref().map_or("", |o| &o.name),
            os_version: e.os.as_deref().map_or("", |o| s(&o.version)),
            threat_known_bad: e.threat.as_deref().map_or(0, |t| u8::from(t.known_bad)),
            threat_tor_exit: e.threat.as_deref().map_or(0, |t| u8::from(t.tor_exit)),
            threat_proxy: e.threat.as_deref().map_or(0, |t| u8::from(t.proxy)),
            threat_hosting: e.threat.as_deref().map_or(0, |t| u8::from(t.hosting)),
            threat_lists: e.threat.as_deref().map(|t| t.lists.iter().map(String::as_str).collect()).unwrap_or_default(),
            threat_score: e.threat.as_deref().map_or(0, |t| t.score),
            sampling_rate: e.sampling.rate,
            sampling_reason: &e.sampling.reason,
            redaction_fields: e.redaction.as_ref().map(|r| r.fields.iter().map(String::as_str).collect()).unwrap_or_default(),
            filter_version: &e.filter.version,
            collector_host: e.collector.as_ref().map_or("", |c| &c.host),
        }
    }
}

/// The events of a batch's NDJSON lines; a line that does not parse (it cannot happen for what
/// the collector wrote itself) is logged and skipped.
pub fn parse_lines<'a>(lines: impl Iterator<Item = &'a [u8]>, sink: &str) -> Vec<Event<'a>> {
    lines
        .filter_map(|line| match serde_json::from_slice::<Event<'_>>(line) {
            Ok(e) => Some(e),
            Err(e) => {
                tracing::warn!("an event the {sink} sink cannot read was skipped: {e}");
                None
            }
        })
        .collect()
}
