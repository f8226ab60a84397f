//! The collector's fast way to read an event frame: a MessagePack reader that knows the schema's
//! field names and borrows every string from the frame (serde's derived decoder spent a fifth of
//! its time re-checking the UTF-8 of every map key, and most of the rest in generic dispatch).
//!
//! It answers only when it is sure. Anything it does not handle — a struct written as an array,
//! integer or binary keys, binary strings, integers where floats belong, extension types, the
//! collector's own fields, a missing required field, a duplicate field — makes it step aside,
//! and [`Event::decode`] takes the serde path, whose answer (and error message) is the reference.
//! The differential tests below hold the two to the same result on valid and damaged frames.

use super::*;
use crate::ascii;

/// Deeper nesting inside a value the schema does not know is left to the serde path.
const MAX_SKIP_DEPTH: u32 = 32;

/// The event in `frame`, or `None` when the serde path must decide.
pub(super) fn decode(frame: &[u8]) -> Option<Event<'_>> {
    Reader::new(frame).event()
}

/// Fills a field's slot once; a second value for the same field is serde's "duplicate field".
#[inline(always)]
fn set<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    match slot {
        Some(_) => None,
        None => {
            *slot = Some(value);
            Some(())
        }
    }
}

/// A cursor over one frame.
pub(super) struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(frame: &'a [u8]) -> Self {
        Reader { b: frame, pos: 0 }
    }

    /// Consumes the next value when it is `name` written as a fixstr (how every encoder writes
    /// the schema's short names) and says so; anything else is left in place.
    #[inline(always)]
    pub(super) fn key_is(&mut self, name: &[u8]) -> bool {
        let rest = &self.b[self.pos.min(self.b.len())..];
        let is = rest.first() == Some(&(0xa0 | name.len() as u8)) && rest[1..].starts_with(name);
        if is {
            self.pos += 1 + name.len();
        }
        is
    }

    #[inline(always)]
    fn byte(&mut self) -> Option<u8> {
        let v = *self.b.get(self.pos)?;
        self.pos += 1;
        Some(v)
    }

    #[inline(always)]
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.b.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    #[inline(always)]
    fn be<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    /// The length that follows an 8-, 16- or 32-bit length marker.
    #[inline(always)]
    fn len8(&mut self) -> Option<usize> {
        Some(self.byte()? as usize)
    }
    #[inline(always)]
    fn len16(&mut self) -> Option<usize> {
        Some(u16::from_be_bytes(self.be()?) as usize)
    }
    #[inline(always)]
    fn len32(&mut self) -> Option<usize> {
        Some(u32::from_be_bytes(self.be()?) as usize)
    }

    /// Consumes a nil and says so; anything else is left in place.
    #[inline(always)]
    fn nil(&mut self) -> bool {
        let is = self.b.get(self.pos) == Some(&0xc0);
        self.pos += usize::from(is);
        is
    }

    #[inline(always)]
    pub(super) fn map(&mut self) -> Option<usize> {
        match self.byte()? {
            m @ 0x80..=0x8f => Some((m & 0x0f) as usize),
            0xde => self.len16(),
            0xdf => self.len32(),
            _ => None,
        }
    }

    #[inline(always)]
    pub(super) fn array(&mut self) -> Option<usize> {
        match self.byte()? {
            m @ 0x90..=0x9f => Some((m & 0x0f) as usize),
            0xdc => self.len16(),
            0xdd => self.len32(),
            _ => None,
        }
    }

    /// The bytes of a string value (str markers only), not yet checked as text: map keys are
    /// compared as bytes, so only values pay for the check.
    #[inline(always)]
    pub(super) fn raw_str(&mut self) -> Option<&'a [u8]> {
        let n = match self.byte()? {
            m @ 0xa0..=0xbf => (m & 0x1f) as usize,
            0xd9 => self.len8()?,
            0xda => self.len16()?,
            0xdb => self.len32()?,
            _ => return None,
        };
        self.take(n)
    }

    #[inline(always)]
    fn str(&mut self) -> Option<Cow<'a, str>> {
        ascii::utf8(self.raw_str()?).map(Cow::Borrowed)
    }

    #[inline(always)]
    pub(super) fn uint(&mut self) -> Option<u64> {
        match self.byte()? {
            v @ 0x00..=0x7f => Some(v.into()),
            0xcc => Some(self.byte()?.into()),
            0xcd => Some(u16::from_be_bytes(self.be()?).into()),
            0xce => Some(u32::from_be_bytes(self.be()?).into()),
            0xcf => Some(u64::from_be_bytes(self.be()?)),
            _ => None,
        }
    }

    #[inline(always)]
    fn u16(&mut self) -> Option<u16> {
        self.uint()?.try_into().ok()
    }

    #[inline(always)]
    fn u32(&mut self) -> Option<u32> {
        self.uint()?.try_into().ok()
    }

    #[inline(always)]
    pub(super) fn f64(&mut self) -> Option<f64> {
        match self.byte()? {
            0xcb => Some(f64::from_be_bytes(self.be()?)),
            0xca => Some(f32::from_be_bytes(self.be()?).into()),
            _ => None,
        }
    }

    #[inline(always)]
    pub(super) fn f32(&mut self) -> Option<f32> {
        match self.byte()? {
            0xca => Some(f32::from_be_bytes(self.be()?)),
            0xcb => Some(f64::from_be_bytes(self.be()?) as f32),
            _ => None,
        }
    }

    #[inline(always)]
    pub(super) fn bool(&mut self) -> Option<bool> {
        match self.byte()? {
            0xc2 => Some(false),
            0xc3 => Some(true),
            _ => None,
        }
    }

    /// An optional value: nil is `None`, anything else is read by `read`.
    #[inline(always)]
    fn opt<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.nil() {
            Some(None)
        } else {
            read(self).map(Some)
        }
    }

    /// Passes over one well-formed value of a field the schema does not know (a newer filter's).
    fn skip(&mut self, depth: u32) -> Option<()> {
        if depth > MAX_SKIP_DEPTH {
            return None;
        }
        let (pairs, items, bytes) = match self.byte()? {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0, 0),
            m @ 0x80..=0x8f => ((m & 0x0f) as usize, 0, 0),
            m @ 0x90..=0x9f => (0, (m & 0x0f) as usize, 0),
            m @ 0xa0..=0xbf => (0, 0, (m & 0x1f) as usize),
            0xc4 | 0xd9 => (0, 0, self.len8()?),
            0xc5 | 0xda => (0, 0, self.len16()?),
            0xc6 | 0xdb => (0, 0, self.len32()?),
            0xcc | 0xd0 => (0, 0, 1),
            0xcd | 0xd1 => (0, 0, 2),
            0xca | 0xce | 0xd2 => (0, 0, 4),
            0xcb | 0xcf | 0xd3 => (0, 0, 8),
            0xdc => (0, self.len16()?, 0),
            0xdd => (0, self.len32()?, 0),
            0xde => (self.len16()?, 0, 0),
            0xdf => (self.len32()?, 0, 0),
            // 0xc1 (never used) and the extension types.
            _ => return None,
        };
        self.take(bytes)?;
        // Every value is at least one byte, so these loops end with the frame.
        for _ in 0..items {
            self.skip(depth + 1)?;
        }
        for _ in 0..pairs {
            self.skip(depth + 1)?;
            self.skip(depth + 1)?;
        }
        Some(())
    }

    fn event(&mut self) -> Option<Event<'a>> {
        let (mut schema_version, mut event, mut http, mut url, mut network, mut client) = (None, None, None, None, None, None);
        let (mut tls, mut upstream, mut timing, mut sentinel, mut sampling, mut filter) = (None, None, None, None, None, None);
        for _ in 0..self.map()? {
            match self.raw_str()? {
                b"schema_version" => set(&mut schema_version, self.str()?)?,
                b"event" => set(&mut event, self.event_info()?)?,
                b"http" => set(&mut http, self.http()?)?,
                b"url" => set(&mut url, self.url()?)?,
                b"network" => set(&mut network, self.opt(Self::network)?)?,
                b"client" => set(&mut client, self.client()?)?,
                b"tls" => set(&mut tls, self.opt(Self::tls)?)?,
                b"upstream" => set(&mut upstream, self.opt(Self::upstream)?)?,
                b"timing" => set(&mut timing, self.timing()?)?,
                b"sentinel" => set(&mut sentinel, self.opt(Self::sentinel)?)?,
                b"sampling" => set(&mut sampling, self.sampling()?)?,
                b"filter" => set(&mut filter, self.filter()?)?,
                // What the collector adds; a frame carrying it is left to the serde path.
                b"geo" | b"asn" | b"device" | b"user_agent" | b"os" | b"threat" | b"redaction" | b"collector" => return None,
                _ => self.skip(0)?,
            }
        }
        Some(Event {
            schema_version: schema_version?,
            event: event?,
            http: http?,
            url: url?,
            network: network.flatten(),
            client: client?,
            tls: tls.flatten(),
            upstream: upstream.flatten(),
            timing: timing.unwrap_or_default(),
            sentinel: sentinel.flatten(),
            sampling: sampling?,
            filter: filter?,
            ..Default::default()
        })
    }

    fn event_info(&mut self) -> Option<EventInfo<'a>> {
        let (mut id, mut start_ns, mut end_ns) = (None, None, None);
        for _ in 0..self.map()? {
            match self.raw_str()? {
                b"id" => set(&mut id, self.str()?)?,
                b"start_ns" => set(&mut start_ns, self.uint()?)?,
                b"end_ns" => set(&mut end_ns, self.uint()?)?,
                _ => self.skip(0)?,
            }
        }
        Some(EventInfo { id: id?, start_ns: start_ns?, end_ns: end_ns? })
    }

    fn http(&mut self) -> Option<Http<'a>> {
        let (mut request, mut response, mut route) = (None, None, None);
        for _ in 0..self.map()? {
            match self.raw_str()? {
                b"request" => set(&mut request, self.request()?)?,
                b"response" => set(&mut response, self.response()?)?,
                b"route" => set(&mut route, self.opt(Self::str)?)?,
                _ => self.skip(0)?,
            }
        }
        Some(Http { request: request?, response: response?, route: route.flatten() })
    }

    fn request(&mut self) -> Option<HttpRequest<'a>> {
        let (mut method, mut header, mut body) = (None, None, None);
        for _ in 0..self.map()? {
            match self.raw_str()? {
                b"method" => set(&mut method, self.str()?)?,
                b"header" => set(&mut header, self.headers()?)?,
                b"body" => set(&mut body, self.body()?)?,
                _ => self.skip(0)?,
            }
        }
        Some(HttpRequest { method: method?, header: header.unwrap_or_default(), body: body.unwrap_or_default() })
    }

    fn response(&mut self) -> Option<HttpResponse<'a>> {
        let (mut status_code, mut header, mut body) = (None, None, None);
        for _ in 0..self.map()? {
            match self.raw_str()? {
                b"status_code" => set(&mut status_code, self.u16()?)?,
                b"header" => set(&mut header, self.headers()?)?,
                b"body" => set(&mut body, self.body()?)?,
                _ => self.skip(0)?,
            }
        }
        Some(HttpResponse { status_code: status_code?, header: header.unwrap_or_default(), body: body.unwrap_or_default() })
    }

    fn headers(&mut self) -> Option<Headers<'a>> {
        let n = self.map()?;
        // A claimed count is not trusted for the allocation: each pair takes two bytes at least.
        let mut out = Vec::with_capacity(n.min((self.b.len() - self.pos) / 2));
        for _ in 0..n {
            out.push((self.str()?, self.str()?));
        }
        Some(Headers(out))
    }

    fn body(&mut self) -> Option<Body<'a>> {
        let (mut size, mut content, mut truncated) = (None, None, None);
        for _ in 0..self.map()? {
            match self.raw_str()? {
                b"size" => set(&mut size, self.uint()?)?,
                b"content" => set(&mut content, self.opt(Self::str)?)?,
                b"truncated" => set(&mut truncated, self.bool()?)?,
                _ => self.skip(0)?,
            }
        }
        Some(Body { size: size?, content: content.flatten(), truncated: truncated.unwrap_or_default() })
    }

    fn url(&mut self) -> Option<Url<'a>> {
        let (mut scheme, mut domain, mut path, mut query) = (None, None, None, None);
        for _ in 0..self.map()? {
            match self.raw_str()? {
                b"scheme" => set(&mut scheme, self.opt(Self::str)?)?,
                b"domain" => set(&mut domain, self.opt(Self::str)?)?,
                b"path" => set(&mut path, self.str()?)?,
                b"query" => set(&mut query, self.opt(Self::str)?)?,
                _ => self.skip(0)?,
            }
        }
        Some(Url { scheme: scheme.flatten(), domain: domain.flatten(), path: path?, query: query.flatten() })
    }

    fn network(&mut self) -> Option<Network<'a>> {
        let (mut protocol, mut peer) = (None, None);
        for _ in 0..self.map()? {
            match self.raw_str()? {
                b"protocol" => set(&mut protocol, self.opt(Self::protocol)?)?,
                b"peer" => set(&mut peer, self.opt(Self::peer)?)?,
                _ => self.skip(0)?,
            }
        }
        Some(Network { protocol: protocol.flatten(), peer: peer.flatten() })
    }

    fn peer(&mut self) -> Option<Peer> {
        let mut address = None;
        for _ in 0..self.map()? {
            match self.raw_str()? {
                b"address" => set(&mut address, self.str()?.into_owned())?,
                _ => self.skip(0)?,
            }
        }
        Some(Peer { address: address? })
    }

    /// A `{version}` map: `network.protocol`, `tls.protocol` and `filter` alike.
    fn version(&mut self) -> Option<Cow<'a, str>> {
        let mut version = None;
        for _ in 0..self.map()? {
            match self.raw_str()? {
                b"version" => set(&mut version, self.str()?)?,
                _ => self.skip(0)?,
            }
        }
        version
    }

    fn protocol(&mut self) -> Option<Protocol<'a>> {
        Some(Protocol { version: self.version()? })
    }

    fn client(&mut self) -> Option<Client<'a>> {
        let (mut address, mut port) = (None, None);
        for _ in 0..self.map()? {
            match self.raw_str()? {
                b"address" => set(&mut address, self.str()?)?,
                b"port" => set(&mut port, self.u16()?)?,
                _ => self.skip(0)?,
            }
        }
        Some(Client { address: address?, port: port.unwrap_or_default() })
    }

    fn tls(&mut self) -> Option<Tls<'a>> {
        let (mut protocol, mut cipher, mut server_name) = (None, None, None);
        for _ in 0..self.map()? {
            match self.raw_str()? {
                b"protocol" => set(&mut protocol, self.opt(Self::protocol)?)?,
                b"cipher" => set(&mut cipher, self.opt(Self::str)?)?,
                b"server_name" => set(&mut server_name, self.opt(Self::str)?)?,
                _ => self.skip(0)?,
            }
        }
        Some(Tls { protocol: protocol.flatten(), cipher: cipher.flatten(), server_name: server_name.flatten() })
    }

    fn upstream(&mut self) -> Option<Upstream<'a>> {
        let (mut address, mut attempts, mut status_code) = (None, None, None);
        for _ in 0..self.map()? {
            match self.raw_str()? {
                b"address" => set(&mut address, self.opt(Self::str)?)?,
                b"attempts" => set(&mut attempts, self.u32()?)?,
                b"status_code" => set(&mut status_code, self.opt(Self::u16)?)?,
                _ => self.skip(0)?,
            }
        }
        Some(Upstream { address: address.flatten(), attempts: attempts?, status_code: status_code.flatten() })
    }

    fn timing(&mut self) -> Option<Timing> {
        let (mut ttfb_ms, mut total_ms, mut upstream_ms, mut upstream_connect_ms) = (None, None, None, None);
        for _ in 0..self.map()? {
            match self.raw_str()? {
                b"ttfb_ms" => set(&mut ttfb_ms, self.opt(Self::f64)?)?,
                b"total_ms" => set(&mut total_ms, self.f64()?)?,
                b"upstream_ms" => set(&mut upstream_ms, self.opt(Self::f64)?)?,
                b"upstream_connect_ms" => set(&mut upstream_connect_ms, self.opt(Self::f64)?)?,
                _ => self.skip(0)?,
            }
        }
        Some(Timing {
            ttfb_ms: ttfb_ms.flatten(),
            total_ms: total_ms?,
            upstream_ms: upstream_ms.flatten(),
            upstream_connect_ms: upstream_connect_ms.flatten(),
        })
    }

    fn sentinel(&mut self) -> Option<Sentinel<'a>> {
        let (mut decision, mut risk_score, mut rules, mut agents) = (None, None, None, None);
        for _ in 0..self.map()? {
            match self.raw_str()? {
                b"decision" => set(&mut decision, self.opt(Self::str)?)?,
                b"risk_score" => set(&mut risk_score, self.opt(Self::f32)?)?,
                b"rules" => {
                    let n = self.array()?;
                    let mut v = Vec::with_capacity(n.min(self.b.len() - self.pos));
                    for _ in 0..n {
                        v.push(self.str()?);
                    }
                    set(&mut rules, v)?
                }
                b"agents" => {
                    let n = self.array()?;
                    let mut v = Vec::with_capacity(n.min(self.b.len() - self.pos));
                    for _ in 0..n {
                        v.push(self.agent()?);
                    }
                    set(&mut agents, v)?
                }
                _ => self.skip(0)?,
            }
        }
        Some(Sentinel {
            decision: decision.flatten(),
            risk_score: risk_score.flatten(),
            rules: rules.unwrap_or_default(),
            agents: agents.unwrap_or_default(),
        })
    }

    fn agent(&mut self) -> Option<AgentVerdict<'a>> {
        let (mut name, mut verdict, mut duration_ms) = (None, None, None);
        for _ in 0..self.map()? {
            match self.raw_str()? {
                b"name" => set(&mut name, self.str()?)?,
                b"verdict" => set(&mut verdict, self.str()?)?,
                b"duration_ms" => set(&mut duration_ms, self.f64()?)?,
                _ => self.skip(0)?,
            }
        }
        Some(AgentVerdict { name: name?, verdict: verdict?, duration_ms: duration_ms? })
    }

    fn sampling(&mut self) -> Option<Sampling<'a>> {
        let (mut rate, mut reason) = (None, None);
        for _ in 0..self.map()? {
            match self.raw_str()? {
                b"rate" => set(&mut rate, self.f64()?)?,
                b"reason" => set(&mut reason, self.str()?)?,
                _ => self.skip(0)?,
            }
        }
        Some(Sampling { rate: rate?, reason: reason? })
    }

    fn filter(&mut self) -> Option<FilterInfo<'a>> {
        Some(FilterInfo { version: self.version()? })
    }
}

#[cfg(test)]
mod tests {
    use super::super::random::{damaged_frames, random_event, Rng};
    use super::*;
    use serde::Serialize;

    fn reference(frame: &[u8]) -> Result<Event<'_>, rmp_serde::decode::Error> {
        rmp_serde::from_slice(frame)
    }

    /// Where the fast path answers, it answers as serde does.
    fn agrees(frame: &[u8]) -> bool {
        match decode(frame) {
            Some(fast) => {
                // Compared as text: a damaged float may be NaN, which equals nothing.
                let serde = reference(frame).map(|e| format!("{e:?}")).map_err(|e| e.to_string());
                assert_eq!(Ok(format!("{fast:?}")), serde, "frame {frame:02x?}");
                true
            }
            None => false,
        }
    }

    #[test]
    fn every_valid_event_takes_the_fast_path_and_decodes_as_serde_does() {
        let mut rng = Rng(1);
        for _ in 0..2000 {
            let ev = random_event(&mut rng);
            let mut frame = Vec::new();
            ev.encode_into(&mut frame).unwrap();
            assert_eq!(decode(&frame).as_ref(), Some(&ev));
            assert!(agrees(&frame));
        }
    }

    #[test]
    fn damaged_frames_never_decode_differently_from_serde() {
        let (fast, cases) = damaged_frames(&mut Rng(2), 20, agrees);
        // A damaged frame often stays a valid event (a changed letter in a value): those must
        // have gone the fast way and agreed; the rest were left to serde.
        assert!(fast > cases / 10, "{fast} of {cases} damaged frames decoded by the fast path");
    }

    #[test]
    fn fields_of_newer_filters_are_skipped_and_odd_encodings_left_to_serde() {
        type Unknown<'a> = (u32, Vec<Option<bool>>, std::collections::BTreeMap<String, f32>, &'a [u8]);
        #[derive(Serialize)]
        struct Newer<'a> {
            #[serde(flatten)]
            ev: Event<'a>,
            brand_new: Unknown<'a>,
        }
        let ev = random_event(&mut Rng(3));
        let nested = [("k".to_string(), 1.5f32)].into_iter().collect();
        let mut frame = Vec::new();
        let mut ser = rmp_serde::Serializer::new(&mut frame).with_struct_map();
        Newer { ev: ev.clone(), brand_new: (7, vec![None, Some(true)], nested, b"\xff\x00") }.serialize(&mut ser).unwrap();
        assert_eq!(decode(&frame), Some(ev.clone()));
        assert!(agrees(&frame));

        // An integer where the schema has a float is valid to serde (it widens): left to it.
        #[derive(Serialize)]
        struct IntTiming {
            total_ms: u32,
        }
        #[derive(Serialize)]
        struct Minimal<'a> {
            schema_version: &'a str,
            event: &'a EventInfo<'a>,
            http: &'a Http<'a>,
            url: &'a Url<'a>,
            client: &'a Client<'a>,
            timing: IntTiming,
            sampling: &'a Sampling<'a>,
            filter: &'a FilterInfo<'a>,
        }
        let minimal = Minimal {
            schema_version: "1.1",
            event: &ev.event,
            http: &ev.http,
            url: &ev.url,
            client: &ev.client,
            timing: IntTiming { total_ms: 5 },
            sampling: &ev.sampling,
            filter: &ev.filter,
        };
        let mut frame = Vec::new();
        minimal.serialize(&mut rmp_serde::Serializer::new(&mut frame).with_struct_map()).unwrap();
        assert_eq!(decode(&frame), None);
        assert_eq!(Event::decode(&frame).unwrap().timing.total_ms, 5.0);

        // Fields the collector adds are read by serde alone.
        let mut enriched = ev.clone();
        enriched.collector = Some(CollectorInfo { host: "h".into() });
        let mut frame = Vec::new();
        enriched.encode_into(&mut frame).unwrap();
        assert_eq!(decode(&frame), None);
        assert_eq!(Event::decode(&frame).unwrap(), enriched);
    }

    #[test]
    fn deep_unknown_values_and_huge_counts_end_without_panic() {
        let mut frame = vec![0x81, 0xa3, b'z', b'z', b'z'];
        frame.extend(std::iter::repeat_n(0x91, 10_000));
        frame.push(0xc0);
        assert_eq!(decode(&frame), None);
        assert!(Event::decode(&frame).is_err());
        // A map claiming four billion entries in a few bytes.
        assert_eq!(decode(&[0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, b'x', 0xc0]), None);
        let headers = [0x81, 0xa4, b'h', b't', b't', b'p', 0x81, 0xa7, b'r', b'e', b'q', b'u', b'e', b's', b't', 0x82, 0xa6, b'h', b'e', b'a', b'd', b'e', b'r', 0xdf, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(decode(&headers), None);
    }
}
