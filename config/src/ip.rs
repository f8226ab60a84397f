//! IP addresses and ranges as written in the config (trusted proxies) and in the data files it
//! names (threat lists, ASN ranges). IPv4 addresses live in the IPv4-mapped part of the IPv6
//! space, so every range is one `u128` interval whatever its family.

use std::net::{IpAddr, Ipv6Addr};

/// An address as a point on one line: IPv6 as is, IPv4 as `::ffff:a.b.c.d`.
pub fn key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(v4.to_ipv6_mapped()),
            None => u128::from(v6),
        },
    }
}

/// The address at a point of the line (IPv4 when it is in the mapped part).
pub fn address(k: u128) -> IpAddr {
    let v6 = Ipv6Addr::from(k);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// Parses one entry of a list: an address, a CIDR block or `first-last`; returns its inclusive
/// range on the line.
pub fn parse_range(s: &str) -> Result<(u128, u128), String> {
    if let Some((a, b)) = s.split_once('-') {
        let (a, b) = (parse_ip(a.trim())?, parse_ip(b.trim())?);
        let (a, b) = (key(a), key(b));
        return if a <= b { Ok((a, b)) } else { Err(format!("range {s:?} ends before it starts")) };
    }
    let Some((ip, len)) = s.split_once('/') else {
        let k = key(parse_ip(s)?);
        return Ok((k, k));
    };
    let ip = parse_ip(ip)?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len: u32 = len.parse().ok().filter(|l| *l <= max).ok_or_else(|| format!("{s:?}: prefix length must be 0 to {max}"))?;
    // Host bits are ignored, as routers and list tools do.
    let host_bits = max - len;
    let k = key(ip);
    let span = if host_bits == 128 { u128::MAX } else { (1u128 << host_bits) - 1 };
    Ok((k & !span, (k & !span) | span))
}

fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.parse().map_err(|_| format!("{s:?} is not an IP address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> u128 {
        key(s.parse().unwrap())
    }

    #[test]
    fn cidr_and_ranges_parse_to_their_bounds() {
        assert_eq!(parse_range("10.0.0.0/8").unwrap(), (k("10.0.0.0"), k("10.255.255.255")));
        assert_eq!(parse_range("10.1.2.3/8").unwrap().0, k("10.0.0.0"), "host bits are ignored");
        assert_eq!(parse_range("2001:db8::/32").unwrap(), (k("2001:db8::"), k("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")));
        assert_eq!(parse_range("1.2.3.4").unwrap(), (k("1.2.3.4"), k("1.2.3.4")));
        assert_eq!(parse_range("1.2.3.4 - 1.2.3.9").unwrap(), (k("1.2.3.4"), k("1.2.3.9")));
        assert_eq!(parse_range("::/0").unwrap(), (0, u128::MAX));
        assert!(parse_range("1.2.3.4/33").unwrap_err().contains("prefix length"));
        assert!(parse_range("1.2.3").unwrap_err().contains("not an IP"));
        assert!(parse_range("1.2.3.9-1.2.3.4").is_err());
        assert_eq!(k("::ffff:1.2.3.4"), k("1.2.3.4"), "mapped IPv6 is the IPv4 address");
        assert_eq!(address(k("1.2.3.4")).to_string(), "1.2.3.4");
    }
}
