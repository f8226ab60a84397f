//! `device.*`, `user_agent.*` and `os.*` from the User-Agent header, with uap-core's regexes and
//! the `ua-parser` engine (~20 µs a parse measured here, against ~500 µs for `uaparser`; see
//! `benches/pipeline.rs`). Real traffic repeats a few user agents heavily, so each worker keeps
//! a bounded cache of parsed agents ([`super::cache`]).

use super::mmdb::DataError;
use sentinel_config::DeviceDetection;
use sentinel_wire::event::{Device, Os, UserAgent};
use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;

/// What one user agent parses to (without `user_agent.original`, which is the key), shared by
/// every event with that agent.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub device: Arc<Device>,
    pub name: Option<Arc<str>>,
    pub version: Option<Arc<str>>,
    pub os: Option<Arc<Os>>,
    pub is_bot: bool,
}

/// The compiled regexes.
pub struct DeviceParser {
    extractor: ua_parser::Extractor<'static>,
    pub cache_size: usize,
}

impl std::fmt::Debug for DeviceParser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceParser").field("cache_size", &self.cache_size).finish()
    }
}

impl DeviceParser {
    pub fn load(cfg: &DeviceDetection) -> Result<DeviceParser, DataError> {
        let path: &Path = &cfg.regexes;
        let file = std::fs::File::open(path).map_err(|e| DataError::new(path, format!("cannot read: {e}")))?;
        let regexes: ua_parser::Regexes<'static> =
            serde_yaml::from_reader(std::io::BufReader::new(file)).map_err(|e| DataError::new(path, format!("not a uap-core regexes.yaml: {e}")))?;
        let extractor = ua_parser::Extractor::try_from(regexes).map_err(|e| DataError::new(path, format!("cannot compile the regexes: {e}")))?;
        Ok(DeviceParser { extractor, cache_size: cfg.cache_size })
    }

    /// Parses one user agent (no cache).
    pub fn parse(&self, ua: &str) -> Parsed {
        let (agent, os, dev) = self.extractor.extract(ua);
        let name = agent.as_ref().map(|a| a.family.to_string()).filter(|f| f != "Other");
        let version = agent.as_ref().and_then(|a| {
            let mut v = a.major?.to_string();
            for part in [a.minor, a.patch].into_iter().map_while(|p| p) {
                v.push('.');
                v.push_str(part);
            }
            Some(v)
        });
        let os = os.map(|o| Os {
            name: o.os.to_string(),
            version: o.major.as_ref().map(|m| {
                let mut v = m.to_string();
                for part in [&o.minor, &o.patch].into_iter().map_while(|p| p.as_ref()) {
                    v.push('.');
                    v.push_str(part);
                }
                v
            }),
        });
        let family = dev.as_ref().map(|d| d.device.to_string()).unwrap_or_default();
        let brand = dev.as_ref().and_then(|d| d.brand.as_ref().map(|b| b.to_string()));
        let model = dev.as_ref().and_then(|d| d.model.as_ref().map(|m| m.to_string()));
        let kind = classify(ua, &family, brand.as_deref(), model.as_deref(), os.as_ref().map(|o| o.name.as_str()));
        Parsed {
            is_bot: kind == "bot",
            device: Arc::new(Device { kind: kind.to_owned(), brand, model }),
            name: name.map(Arc::from),
            version: version.map(Arc::from),
            os: os.filter(|o| o.name != "Other").map(Arc::new),
        }
    }
}

/// `device.type` from what uap-core found, with the usual rules where it says nothing: Android
/// without "Mobile" is a tablet, desktop systems with no device are desktops.
pub fn classify(ua: &str, family: &str, brand: Option<&str>, model: Option<&str>, os: Option<&str>) -> &'static str {
    let has = |needle: &str| ua.contains(needle);
    let model = model.unwrap_or("");
    if family == "Spider" || has("bot") || has("Bot") || has("crawler") || has("spider") || has("HeadlessChrome") {
        return "bot";
    }
    if has("Watch") || has("; wv; Wear") || model.contains("Watch") || os == Some("watchOS") || os == Some("Wear OS") {
        return "wearable";
    }
    if has("PlayStation") || has("Xbox") || has("Nintendo") || family.contains("PlayStation") || family.contains("Xbox") || family.contains("Nintendo") {
        return "console";
    }
    if has("SmartTV") || has("SMART-TV") || has("Smart-TV") || has("HbbTV") || has("AppleTV") || has("GoogleTV") || has("CrKey") || has("Roku") || has("BRAVIA") || has("AFTB") || has("AFTS") || has("AFTM") || has("Tizen TV") || has("Web0S") || family.contains("TV") {
        return "tv";
    }
    if family == "iPad" || model.contains("iPad") || family.contains("Kindle") || has("Tablet") || has("tablet") || (has("Android") && !has("Mobile") && brand.is_some()) {
        return "tablet";
    }
    if matches!(os, Some("iOS" | "Android" | "Windows Phone" | "BlackBerry OS" | "Symbian OS" | "KaiOS" | "Firefox OS")) || has("Mobile") || family == "iPhone" {
        return "mobile";
    }
    if matches!(os, Some("Windows" | "Mac OS X" | "Linux" | "Ubuntu" | "Chrome OS" | "ChromeOS" | "Fedora" | "FreeBSD" | "OpenBSD" | "Debian" | "macOS")) {
        return "desktop";
    }
    "other"
}

/// `user_agent.*` for an event.
pub fn user_agent<'a>(original: Cow<'a, str>, p: &Parsed) -> UserAgent<'a> {
    UserAgent { original, name: p.name.clone(), version: p.version.clone(), is_bot: p.is_bot }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::mmdb::tests::data;

    fn parser() -> DeviceParser {
        DeviceParser::load(&DeviceDetection { regexes: data("uap-core/regexes.yaml"), cache_size: 4 }).unwrap()
    }

    /// A labelled set: user agent, expected device.type, browser, OS.
    const AGENTS: &[(&str, &str, &str, &str)] = &[
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36", "desktop", "Chrome", "Windows"),
        ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15", "desktop", "Safari", "Mac OS X"),
        ("Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0", "desktop", "Firefox", "Linux"),
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1", "mobile", "Mobile Safari", "iOS"),
        ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36", "mobile", "Chrome Mobile", "Android"),
        ("Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1", "tablet", "Mobile Safari", "iOS"),
        ("Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36", "tablet", "Chrome", "Android"),
        ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "bot", "Googlebot", ""),
        ("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 Safari/537.36", "bot", "bingbot", ""),
        ("Mozilla/5.0 (PlayStation; PlayStation 5/2.26) AppleWebKit/605.1.15 (KHTML, like Gecko)", "console", "", ""),
        ("Mozilla/5.0 (SMART-TV; Linux; Tizen 6.0) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/4.0 Chrome/76.0.3809.146 TV Safari/537.36", "tv", "", ""),
        ("Mozilla/5.0 (Linux; Android 11; SAMSUNG SM-R890; wv; Wear OS) AppleWebKit/537.36 (KHTML, like Gecko) Watch", "wearable", "", ""),
        ("curl/8.5.0", "other", "curl", ""),
    ];

    #[test]
    fn labelled_agents_get_their_type_browser_and_os() {
        let p = parser();
        for (ua, kind, browser, os) in AGENTS {
            let got = p.parse(ua);
            assert_eq!(got.device.kind, *kind, "{ua}");
            if !browser.is_empty() {
                assert_eq!(got.name.as_deref(), Some(*browser), "{ua}");
            }
            if !os.is_empty() {
                assert_eq!(got.os.as_ref().map(|o| o.name.as_str()), Some(*os), "{ua}");
            }
            assert_eq!(got.is_bot, *kind == "bot", "{ua}");
        }
        let chrome = p.parse(AGENTS[0].0);
        assert_eq!(chrome.version.as_deref(), Some("124.0.0"));
        let iphone = p.parse(AGENTS[3].0);
        assert_eq!(iphone.device.brand.as_deref(), Some("Apple"));
        assert_eq!(iphone.os.as_ref().unwrap().version.as_deref(), Some("17.4"));
    }

    #[test]
    fn a_broken_regexes_file_is_refused_with_its_path() {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), "user_agent_parsers: [{regex: '('}]\nos_parsers: []\ndevice_parsers: []\n").unwrap();
        let e = DeviceParser::load(&DeviceDetection { regexes: f.path().into(), cache_size: 1 }).unwrap_err().to_string();
        assert!(e.contains("cannot compile"), "{e}");
        let e = DeviceParser::load(&DeviceDetection { regexes: "/nonexistent/regexes.yaml".into(), cache_size: 1 }).unwrap_err().to_string();
        assert!(e.starts_with("/nonexistent/regexes.yaml: cannot read"), "{e}");
    }
}
