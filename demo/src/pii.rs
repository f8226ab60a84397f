//! The labelled personal-data corpus, in every form a client sends it: the bare values of
//! `collector/tests/data/pii-values.tsv` (each kind's positives with the part that must never
//! reach a sink, and look-alikes that must pass untouched) placed in a header as written, in a
//! query value percent-encoded, form-encoded (`+` for spaces) and double-encoded, in a path
//! segment, and inside a URL in `Referer`. [`Tally`] scores what came out: recall (the secret is
//! gone, in any decoding) and precision (what a `[REDACTED:kind]` mask covered was of that kind)
//! per kind and form.

use std::collections::BTreeMap;

const VALUES: &str = include_str!("../../collector/tests/data/pii-values.tsv");

/// One labelled value.
#[derive(Debug, Clone)]
pub struct Value {
    pub kind: String,
    /// True: the value holds data of `kind`; false: a look-alike that must stay.
    pub positive: bool,
    pub text: String,
    /// The part that must not reach a sink (for positives).
    pub secret: String,
    /// Other kinds the value holds too (an AWS key id beside its secret key).
    pub also: Vec<String>,
}

/// Where and how a value travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Form {
    /// As written, in a request header (`x-note`).
    Header,
    /// A query value, percent-encoded as `encodeURIComponent` does.
    Query,
    /// A query value, form-encoded: `+` for spaces, the rest as `application/x-www-form-urlencoded`.
    QueryPlus,
    /// A query value encoded twice (lower-case hex): `@` is `%2540`.
    QueryDouble,
    /// A path segment, percent-encoded.
    Path,
    /// Inside the query of a URL in `Referer`.
    Referer,
}

impl Form {
    pub const ALL: [Form; 6] = [Form::Header, Form::Query, Form::QueryPlus, Form::QueryDouble, Form::Path, Form::Referer];

    pub fn name(self) -> &'static str {
        match self {
            Form::Header => "header, raw",
            Form::Query => "query, %XX",
            Form::QueryPlus => "query, + for space",
            Form::QueryDouble => "query, double %XX",
            Form::Path => "path segment, %XX",
            Form::Referer => "URL in Referer",
        }
    }

    /// The event field the value lands in.
    pub fn field(self) -> &'static str {
        match self {
            Form::Header => "http.request.header.x-note",
            Form::Query | Form::QueryPlus | Form::QueryDouble => "url.query",
            Form::Path => "url.path",
            Form::Referer => "http.request.header.referer",
        }
    }
}

/// A value in one form.
#[derive(Debug, Clone)]
pub struct Case {
    pub value: Value,
    pub form: Form,
}

/// Every labelled value.
pub fn values() -> Vec<Value> {
    VALUES
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let mut f = l.split('\t');
            let (kind, label, text, secret) = (f.next()?, f.next()?, f.next()?, f.next()?);
            let also = f.next().unwrap_or("").split(',').filter(|k| !k.is_empty()).map(str::to_owned).collect();
            Some(Value { kind: kind.into(), positive: label == "1", text: text.replace("\\n", "\n"), secret: secret.replace("\\n", "\n"), also })
        })
        .collect()
}

/// Every value in every form it can travel in (a header carries no newline and, here, ASCII
/// only: such values travel encoded).
pub fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    for v in values() {
        for form in Form::ALL {
            if form == Form::Header && (v.text.contains('\n') || !v.text.is_ascii()) {
                continue;
            }
            out.push(Case { value: v.clone(), form });
        }
    }
    out
}

/// Percent-encodes as `encodeURIComponent` does (`plus`: spaces as `+`, as forms do).
pub fn percent(s: &str, plus: bool, lower: bool) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b'!' | b'*' | b'\'' | b'(' | b')' if !plus => out.push(b as char),
            b'*' if plus => out.push('*'),
            b' ' if plus => out.push('+'),
            _ if lower => out.push_str(&format!("%{b:02x}")),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

impl Case {
    /// The request target and headers that carry this case; `n` makes the path unique.
    pub fn request(&self, n: usize) -> (String, Vec<(&'static str, String)>) {
        let v = &self.value.text;
        match self.form {
            Form::Header => (format!("/pii/{n}"), vec![("x-note", v.clone())]),
            Form::Query => (format!("/pii/{n}?note={}&page=2", percent(v, false, false)), vec![]),
            Form::QueryPlus => (format!("/pii/{n}?note={}&page=2", percent(v, true, false)), vec![]),
            Form::QueryDouble => (format!("/pii/{n}?note={}&page=2", percent(&percent(v, false, false), false, true)), vec![]),
            Form::Path => (format!("/pii/{n}/{}/view", percent(v, false, false)), vec![]),
            Form::Referer => (format!("/pii/{n}"), vec![("referer", format!("https://shop.example/search?q={}&ref=nav", percent(v, false, false)))]),
        }
    }
}

/// `text` decoded as far as it goes: `%XX` (three rounds) and `+` as a space.
pub fn fully_decoded(text: &str) -> String {
    let mut bytes = text.replace('+', " ").into_bytes();
    for _ in 0..3 {
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if bytes[i] == b'%' && i + 2 < bytes.len() {
                if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
            }
            out.push(bytes[i]);
            i += 1;
        }
        if out == bytes {
            break;
        }
        bytes = out;
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Whether `secret` got through into `field`: any 10 consecutive letters and digits of it (all
/// of them when shorter) in the field's fully decoded letters and digits.
pub fn leaked(secret: &str, field: &str) -> bool {
    let norm = |s: &str| s.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect::<Vec<char>>();
    let (s, f) = (norm(secret), norm(&fully_decoded(field)));
    let w = s.len().min(10);
    if w == 0 {
        return false;
    }
    s.windows(w).any(|win| f.windows(w).any(|x| x == win))
}

/// The kinds named by `[REDACTED:kind]` masks in a field.
pub fn masks(field: &str) -> Vec<String> {
    field.split("[REDACTED:").skip(1).filter_map(|r| r.split_once(']').map(|(k, _)| k.to_string())).collect()
}

/// Counts per kind and form.
#[derive(Debug, Default, Clone, Copy)]
struct Count {
    positives: u32,
    caught: u32,
    /// Masks of this kind, and how many of them were on a value of this kind.
    flagged: u32,
    flagged_right: u32,
}

/// Scores of a run.
#[derive(Debug, Default)]
pub struct Tally {
    by: BTreeMap<(String, Form), Count>,
    /// Look-alikes changed, with what they became.
    pub touched_lookalikes: Vec<String>,
    /// Positives that got through, with what was written.
    pub missed: Vec<String>,
    pub cases: usize,
}

impl Tally {
    /// Scores one case by what its field holds in the output (`None`: the field is absent).
    pub fn add(&mut self, case: &Case, out: Option<&str>) {
        self.cases += 1;
        let v = &case.value;
        let field = out.unwrap_or("");
        let kinds = masks(field);
        if v.positive {
            let c = self.by.entry((v.kind.clone(), case.form)).or_default();
            c.positives += 1;
            if leaked(&v.secret, field) {
                self.missed.push(format!("{} / {}: {:?} -> {field:?}", v.kind, case.form.name(), v.text));
            } else {
                c.caught += 1;
            }
        } else if !kinds.is_empty() {
            self.touched_lookalikes.push(format!("{} / {}: {:?} -> {field:?}", v.kind, case.form.name(), v.text));
        }
        for k in kinds {
            let c = self.by.entry((k.clone(), case.form)).or_default();
            c.flagged += 1;
            c.flagged_right += u32::from(v.positive && (v.kind == k || v.also.contains(&k)));
        }
    }

    /// (kind, form, precision, recall) for every kind with positives, and the lowest of each.
    pub fn scores(&self) -> Vec<(String, Form, f64, f64)> {
        self.by
            .iter()
            .filter(|(_, c)| c.positives > 0 || c.flagged > 0)
            .map(|((k, f), c)| {
                let precision = if c.flagged == 0 { 1.0 } else { f64::from(c.flagged_right) / f64::from(c.flagged) };
                let recall = if c.positives == 0 { 1.0 } else { f64::from(c.caught) / f64::from(c.positives) };
                (k.clone(), *f, precision, recall)
            })
            .collect()
    }

    /// What falls short: cells under `floor` (precision or recall), the positives missed and
    /// the look-alikes changed; `None` when nothing does.
    pub fn shortfalls(&self, floor: f64) -> Option<String> {
        let low: Vec<String> = self
            .scores()
            .iter()
            .filter(|s| s.2 < floor || s.3 < floor)
            .map(|s| format!("{} / {}: precision {:.3}, recall {:.3}", s.0, s.1.name(), s.2, s.3))
            .collect();
        (!low.is_empty() || !self.touched_lookalikes.is_empty()).then(|| {
            format!("{}\nmissed:\n{}\nlook-alikes changed:\n{}", low.join("\n"), self.missed.join("\n"), self.touched_lookalikes.join("\n"))
        })
    }

    /// A Markdown table: one row per kind, precision / recall per form.
    pub fn table(&self) -> String {
        let mut out = String::from("| kind |");
        for f in Form::ALL {
            out.push_str(&format!(" {} |", f.name()));
        }
        out.push_str("\n| --- |");
        for _ in Form::ALL {
            out.push_str(" --- |");
        }
        let scores = self.scores();
        let mut kinds: Vec<&String> = scores.iter().map(|s| &s.0).collect();
        kinds.dedup();
        for k in kinds {
            out.push_str(&format!("\n| {k} |"));
            for f in Form::ALL {
                match scores.iter().find(|s| &s.0 == k && s.1 == f) {
                    Some((_, _, p, r)) => out.push_str(&format!(" {p:.3} / {r:.3} |")),
                    None => out.push_str(" – |"),
                }
            }
        }
        out.push('\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_corpus_is_wide_enough_and_its_encodings_decode_back() {
        let cases = cases();
        assert!(cases.len() >= 3000, "{} cases", cases.len());
        for c in &cases {
            let (target, headers) = c.request(0);
            assert!(target.bytes().all(|b| b.is_ascii_graphic()), "a request target must be ASCII without spaces: {target}");
            let decoded = match c.form {
                Form::Header => headers[0].1.clone(),
                Form::Referer => fully_decoded(&headers[0].1),
                _ => fully_decoded(&target),
            };
            assert!(decoded.contains(&c.value.text), "{:?} in {:?}", c.value.text, c.form);
        }
        assert_eq!(percent("a b+c@d", true, false), "a+b%2Bc%40d");
        assert_eq!(percent("%40", false, true), "%2540");
        assert!(leaked("4111 1111 1111 1111", "cc=4111%201111%201111%201111"));
        assert!(!leaked("4111 1111 1111 1111", "cc=[REDACTED:payment-card]"));
        assert_eq!(masks("a=[REDACTED:email]&b=[REDACTED:phone]"), ["email", "phone"]);
    }
}
