//! Which address the enrichers look up: the proxy's peer, or, when that peer is a trusted proxy,
//! the first untrusted hop of the forwarded chain read from the right (what nginx's
//! `real_ip_recursive` and Envoy's trusted hops do). `X-Forwarded-For` is never trusted unless
//! trusted proxies are configured: anybody can write one.

use super::ranges::{key, parse_range, RangeMap};
use sentinel_config::ClientIp;
use std::net::{IpAddr, SocketAddr};

/// The configured trust.
#[derive(Debug, Default)]
pub struct ClientResolver {
    trusted: RangeMap<()>,
    pub header: String,
}

impl ClientResolver {
    pub fn new(cfg: &ClientIp) -> ClientResolver {
        // The config crate validated every entry.
        let ranges = cfg.trusted_proxies.iter().filter_map(|s| parse_range(s).ok()).map(|(a, b)| (a, b, ())).collect();
        ClientResolver { trusted: RangeMap::build(ranges), header: cfg.header.clone() }
    }

    /// True when no proxy is trusted: the peer is always the client, and nothing changes.
    pub fn trusts_nobody(&self) -> bool {
        self.trusted.is_empty()
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted.get(key(ip)).is_some()
    }

    /// The client address for a peer and its forwarded chain, with the chain entry's text when
    /// it came from the chain; `None` when the peer is not an IP address.
    pub fn resolve<'c>(&self, peer: &str, chain: Option<&'c str>) -> Option<(IpAddr, Option<&'c str>)> {
        let peer = parse_hop(peer)?;
        if self.trusted.is_empty() || !self.trusts(peer) {
            return Some((peer, None));
        }
        let Some(chain) = chain else { return Some((peer, None)) };
        let (mut client, mut text) = (peer, None);
        for hop in chain.rsplit(',') {
            // A hop that is not an address ends the walk: what is left of it cannot be trusted.
            let hop = hop.trim();
            let Some(ip) = parse_hop(hop) else { break };
            (client, text) = (ip, Some(hop));
            if !self.trusts(ip) {
                break;
            }
        }
        Some((client, text.filter(|_| client != peer)))
    }
}

/// An address as proxies write it: bare, with a port (`1.2.3.4:80`, `[2001:db8::1]:80`).
fn parse_hop(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>().ok().or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolver(trusted: &[&str]) -> ClientResolver {
        ClientResolver::new(&ClientIp { trusted_proxies: trusted.iter().map(|s| s.to_string()).collect(), header: "x-forwarded-for".into() })
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn by_default_the_header_is_ignored() {
        let r = resolver(&[]);
        assert_eq!(r.resolve("10.0.0.5", Some("203.0.113.9")).map(|c| c.0), ip("10.0.0.5"));
        assert_eq!(r.resolve("unix:/tmp/sock", Some("203.0.113.9")).map(|c| c.0), None);
    }

    #[test]
    fn the_chain_is_walked_past_trusted_hops_only() {
        let r = resolver(&["10.0.0.0/8", "2001:db8::/32"]);
        // An untrusted peer: its header could be forged.
        assert_eq!(r.resolve("198.51.100.1", Some("203.0.113.9")).map(|c| c.0), ip("198.51.100.1"));
        // Trusted peer, one hop.
        assert_eq!(r.resolve("10.0.0.5", Some("203.0.113.9")).map(|c| c.0), ip("203.0.113.9"));
        // The client forged a left entry; the rightmost untrusted hop wins.
        assert_eq!(r.resolve("10.0.0.5", Some("1.1.1.1, 203.0.113.9, 10.2.3.4")).map(|c| c.0), ip("203.0.113.9"));
        // Ports and IPv6 brackets.
        assert_eq!(r.resolve("[2001:db8::1]:443", Some("[2001:db8::7]:80, 192.0.2.4:5555")).map(|c| c.0), ip("192.0.2.4"));
        // Every hop trusted: the leftmost.
        assert_eq!(r.resolve("10.0.0.5", Some("10.9.9.9, 10.0.0.1")).map(|c| c.0), ip("10.9.9.9"));
        // Garbage stops the walk at the last address read.
        assert_eq!(r.resolve("10.0.0.5", Some("203.0.113.9, unknown, 10.0.0.2")).map(|c| c.0), ip("10.0.0.2"));
        assert_eq!(r.resolve("10.0.0.5", None).map(|c| c.0), ip("10.0.0.5"));
        // The chain entry's text comes with an address from the chain, trimmed, port and all.
        assert_eq!(r.resolve("10.0.0.5", Some("1.1.1.1,  203.0.113.9 , 10.2.3.4")).and_then(|c| c.1), Some("203.0.113.9"));
        assert_eq!(r.resolve("10.0.0.5", Some("192.0.2.4:5555")).and_then(|c| c.1), Some("192.0.2.4:5555"));
        assert_eq!(r.resolve("198.51.100.1", Some("203.0.113.9")).and_then(|c| c.1), None);
        assert_eq!(r.resolve("10.0.0.5", Some("203.0.113.9")), Some(("203.0.113.9".parse().unwrap(), Some("203.0.113.9"))));
        assert_eq!(r.resolve("198.51.100.1", Some("203.0.113.9")), Some(("198.51.100.1".parse().unwrap(), None)));
    }
}
