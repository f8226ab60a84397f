//! Content detectors: each finds the spans of one kind of personal or secret data in a text, by
//! hand-written scanning with the checks that keep ordinary traffic out (Luhn for cards, mod-97
//! for IBANs, issuer prefixes, word boundaries). No regex engine: every detector is one pass
//! over the bytes, and most texts are rejected by a cheap first-byte test.

/// The kinds of data detected, as written in config and in `redaction.fields` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Email,
    Card,
    Jwt,
    Credential,
    AwsKey,
    GithubToken,
    SlackToken,
    StripeKey,
    UsSsn,
    Iban,
    Phone,
    GoogleKey,
    AwsSecret,
    PrivateKey,
    Password,
}

impl Kind {
    pub const ALL: [Kind; 15] = [
        Kind::Email,
        Kind::Card,
        Kind::Jwt,
        Kind::Credential,
        Kind::AwsKey,
        Kind::GithubToken,
        Kind::SlackToken,
        Kind::StripeKey,
        Kind::UsSsn,
        Kind::Iban,
        Kind::Phone,
        Kind::GoogleKey,
        Kind::AwsSecret,
        Kind::PrivateKey,
        Kind::Password,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Email => "email",
            Kind::Card => "payment-card",
            Kind::Jwt => "jwt",
            Kind::Credential => "bearer-basic",
            Kind::AwsKey => "aws-access-key",
            Kind::GithubToken => "github-token",
            Kind::SlackToken => "slack-token",
            Kind::StripeKey => "stripe-key",
            Kind::UsSsn => "us-ssn",
            Kind::Iban => "iban",
            Kind::Phone => "phone",
            Kind::GoogleKey => "google-api-key",
            Kind::AwsSecret => "aws-secret-key",
            Kind::PrivateKey => "private-key",
            Kind::Password => "password",
        }
    }

    pub fn of(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// A detected span: bytes `start..end` of the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
    pub kind: Kind,
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// True when `i..j` is not glued to word characters on either side.
fn bounded(t: &[u8], i: usize, j: usize) -> bool {
    (i == 0 || !is_word(t[i - 1])) && (j >= t.len() || !is_word(t[j]))
}

/// What one pass over a text says about which detectors can match at all: most header values
/// and paths have no `@`, no 13-digit run, no `AA00` pair, so most detectors never scan them.
#[derive(Debug, Default)]
struct Profile {
    at: bool,
    plus: bool,
    dash: bool,
    space: bool,
    /// `=` or `:` after a name that may be a password's (see [`Profile::assign_at`]).
    assign: bool,
    /// Longest run of digits joined by one or two separators (` `, `-`, `.`, `(`, `)`).
    digit_run: usize,
    /// Longest run of upper-case letters and digits.
    upper_run: usize,
    /// Longest run of base64 characters (letters, digits, `+`, `/`).
    b64_run: usize,
    /// Two letters followed by two digits somewhere (an IBAN's start).
    iban_start: bool,
    /// `eyJ` (a JWT's start).
    jwt_start: bool,
    /// `gh?_` / `github_pat_`, `xox?-` / `xapp-`, `_live_` / `_test_`, `AIza`: the token prefixes.
    github: bool,
    slack: bool,
    stripe: bool,
    google: bool,
}

/// Byte classes for [`Profile::of`]: one table lookup a byte instead of a chain of comparisons.
const DIGIT: u16 = 1;
/// A letter of either case (`DIGIT` and `LETTER` are the low two bits: an IBAN's shape).
const LETTER: u16 = 2;
const UPPER: u16 = 4;
/// Joins digit groups: ` `, `-`, `.`, `(`, `)`.
const SEP: u16 = 8;
const AT: u16 = 16;
const PLUS: u16 = 32;
const DASH: u16 = 64;
const SPACE: u16 = 128;
/// The last byte of a token prefix (`J` of `eyJ`, `_` of `ghp_`, `-` of `xoxb-`, `z` of `AIza`).
const PREFIX_END: u16 = 256;
/// Base64's alphabet: letters, digits, `+`, `/`.
const B64: u16 = 512;
/// `=` and `:`.
const ASSIGN: u16 = 1024;

static CLASS: [u16; 256] = {
    let mut t = [0u16; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = match b as u8 {
            b'0'..=b'9' => DIGIT | B64,
            b'J' => UPPER | LETTER | PREFIX_END | B64,
            b'A'..=b'Z' => UPPER | LETTER | B64,
            b'z' => LETTER | PREFIX_END | B64,
            b'a'..=b'y' => LETTER | B64,
            b' ' => SEP | SPACE,
            b'-' => SEP | DASH | PREFIX_END,
            b'.' | b'(' | b')' => SEP,
            b'@' => AT,
            b'+' => PLUS | B64,
            b'/' => B64,
            b'_' => PREFIX_END,
            b'=' | b':' => ASSIGN,
            _ => 0,
        };
        b += 1;
    }
    t
};

impl Profile {
    fn of(t: &[u8]) -> Profile {
        let mut p = Profile::default();
        let (mut run, mut seps, mut up, mut b64, mut seen) = (0usize, 0u8, 0usize, 0usize, 0u16);
        // The classes of the last four bytes, two bits each (digit 01, letter 10), newest
        // lowest: letter, letter, digit, digit is an IBAN's start.
        const IBAN_START: u32 = 0b10_10_01_01;
        let mut recent = 0u32;
        for (i, &b) in t.iter().enumerate() {
            let c = CLASS[b as usize];
            seen |= c;
            if c & DIGIT != 0 {
                run += 1;
                seps = 0;
                p.digit_run = p.digit_run.max(run);
            } else if c & SEP != 0 && seps < 2 {
                // `) ` joins groups too, so two separators in a row keep the run.
                seps += 1;
            } else {
                (run, seps) = (0, 0);
            }
            // Branch-free: runs grow or restart on every byte.
            up = (up + 1) * usize::from(c & (UPPER | DIGIT) != 0);
            b64 = (b64 + 1) * usize::from(c & B64 != 0);
            p.upper_run = p.upper_run.max(up);
            p.b64_run = p.b64_run.max(b64);
            recent = (recent << 2) | u32::from(c & (LETTER | DIGIT));
            p.iban_start |= recent & 0xff == IBAN_START;
            if c & PREFIX_END != 0 {
                p.prefix_at(t, i);
            }
            if c & ASSIGN != 0 && !p.assign {
                p.assign = Profile::assign_at(t, i);
            }
        }
        p.at = seen & AT != 0;
        p.plus = seen & PLUS != 0;
        p.dash = seen & DASH != 0;
        p.space = seen & SPACE != 0;
        p
    }

    /// Whether the `=` or `:` at `t[i]` can end a password field's name: the name's last
    /// letter (past closing quotes, a bracket or a space) is one a password name ends with
    /// (see [`secret_name`]), and it is not a URL's scheme (`https://`).
    #[inline]
    fn assign_at(t: &[u8], i: usize) -> bool {
        if t[i] == b':' && t.get(i + 1) == Some(&b'/') {
            return false;
        }
        let mut j = i;
        while j > 0 && i - j < 3 && matches!(t[j - 1], b'"' | b'\'' | b']' | b' ') {
            j -= 1;
        }
        j > 0 && matches!(t[j - 1].to_ascii_lowercase(), b'd' | b's' | b'e' | b't')
    }

    /// The detectors that can match a text of `len` bytes with this profile, one bit each (bit
    /// `k as u32`): computed once, straight-line, instead of a branch per detector.
    fn mask(&self, len: usize) -> u32 {
        let bit = |k: Kind, on: bool| u32::from(on) << (k as u32);
        bit(Kind::Email, self.at)
            | bit(Kind::Card, self.digit_run >= 13)
            | bit(Kind::Jwt, self.jwt_start && len >= 30)
            | bit(Kind::Credential, self.space)
            | bit(Kind::AwsKey, self.upper_run >= 20)
            | bit(Kind::GithubToken, self.github)
            | bit(Kind::SlackToken, self.slack)
            | bit(Kind::StripeKey, self.stripe)
            | bit(Kind::UsSsn, self.dash && self.digit_run >= 9)
            | bit(Kind::Iban, self.iban_start && len >= 15)
            | bit(Kind::Phone, self.plus || self.digit_run >= 10)
            | bit(Kind::GoogleKey, self.google)
            | bit(Kind::AwsSecret, self.b64_run >= 40)
            | bit(Kind::PrivateKey, self.dash && len >= 40)
            | bit(Kind::Password, self.assign)
    }

    /// Token prefixes, recognised at their last byte `t[i]`.
    #[inline]
    fn prefix_at(&mut self, t: &[u8], i: usize) {
        match t[i] {
            b'J' if i >= 2 && &t[i - 2..i] == b"ey" => self.jwt_start = true,
            b'_' if (i >= 3 && &t[i - 3..i - 1] == b"gh") || (i >= 6 && &t[i - 6..i] == b"github") => self.github = true,
            b'_' if i >= 4 && (&t[i - 4..i] == b"live" || &t[i - 4..i] == b"test") => self.stripe = true,
            b'-' if i >= 4 && (&t[i - 4..i - 1] == b"xox" || &t[i - 4..i] == b"xapp") => self.slack = true,
            b'z' if i >= 2 && &t[i - 2..i] == b"AI" && t.get(i + 1) == Some(&b'a') => self.google = true,
            _ => {}
        }
    }
}

/// Every span of the enabled kinds in `text`, sorted and without overlaps (the earlier, then the
/// longer, wins). Spans start and end at ASCII bytes or the text's ends.
pub fn find(text: &[u8], kinds: &[Kind], out: &mut Vec<Span>) {
    scan(text, kinds, true, out);
}

/// [`find`], with the profile's prefilter or (`profiled` false, for tests) every detector run.
fn scan(t: &[u8], kinds: &[Kind], profiled: bool, out: &mut Vec<Span>) {
    out.clear();
    if t.len() < 8 {
        return;
    }
    let allowed = if profiled { Profile::of(t).mask(t.len()) } else { u32::MAX };
    if allowed == 0 {
        return;
    }
    for &k in kinds {
        if allowed & (1 << (k as u32)) == 0 {
            continue;
        }
        match k {
            Kind::Email => emails(t, out),
            Kind::Card => cards(t, out),
            Kind::Jwt => jwts(t, out),
            Kind::Credential => credentials(t, out),
            Kind::AwsKey => prefixed(t, &[b"AKIA", b"ASIA", b"AGPA", b"AIDA", b"AROA", b"AIPA", b"ANPA", b"ANVA"], 16, 16, |b| b.is_ascii_uppercase() || b.is_ascii_digit(), k, out),
            Kind::GithubToken => {
                prefixed(t, &[b"ghp_", b"gho_", b"ghu_", b"ghs_", b"ghr_"], 36, 36, |b| b.is_ascii_alphanumeric(), k, out);
                prefixed(t, &[b"github_pat_"], 82, 82, |b| b.is_ascii_alphanumeric() || b == b'_', k, out);
            }
            Kind::SlackToken => prefixed(t, &[b"xoxb-", b"xoxa-", b"xoxp-", b"xoxr-", b"xoxs-", b"xapp-"], 10, 250, |b| b.is_ascii_alphanumeric() || b == b'-', k, out),
            Kind::StripeKey => prefixed(t, &[b"sk_live_", b"sk_test_", b"rk_live_", b"rk_test_"], 16, 247, |b| b.is_ascii_alphanumeric(), k, out),
            Kind::UsSsn => ssns(t, out),
            Kind::Iban => ibans(t, out),
            Kind::Phone => phones(t, out),
            Kind::GoogleKey => prefixed(t, &[b"AIza"], 35, 35, b64url, k, out),
            Kind::AwsSecret => aws_secrets(t, out),
            Kind::PrivateKey => private_keys(t, out),
            Kind::Password => passwords(t, out),
        }
    }
    if out.len() > 1 {
        out.sort_by_key(|s| (s.start, std::cmp::Reverse(s.end)));
        let mut end = 0;
        out.retain(|s| {
            let keep = s.start >= end;
            if keep {
                end = s.end;
            }
            keep
        });
    }
}

/// `prefix` + `min..=max` bytes of `body`, bounded on both sides.
fn prefixed(t: &[u8], prefixes: &[&[u8]], min: usize, max: usize, body: impl Fn(u8) -> bool, kind: Kind, out: &mut Vec<Span>) {
    for p in prefixes {
        let mut from = 0;
        while let Some(i) = memfind(&t[from..], p).map(|i| i + from) {
            from = i + 1;
            if i > 0 && is_word(t[i - 1]) {
                continue;
            }
            let s = i + p.len();
            let n = t[s..].iter().take(max + 1).take_while(|b| body(**b)).count();
            if n >= min && n <= max && (s + n >= t.len() || !is_word(t[s + n]) || !body(t[s + n])) && bounded(t, i, s + n) {
                out.push(Span { start: i, end: s + n, kind });
            }
        }
    }
}

fn memfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        match hay[i..hay.len() - needle.len() + 1].iter().position(|b| *b == first) {
            None => return None,
            Some(p) => {
                i += p;
                if &hay[i..i + needle.len()] == needle {
                    return Some(i);
                }
                i += 1;
            }
        }
    }
    None
}

/// Bytes of an e-mail's local part: letters, digits and the specials RFC 5322 allows in an
/// unquoted local part, but for the ones that delimit URLs and JSON (`/ = ? & { }`), so an
/// address inside `?email=a@b.c` or `{"e":"a@b.c"}` is found without its surroundings. UTF-8
/// (RFC 6531) counts as letters.
fn email_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80 || b"._+-!#$'*^`|~".contains(&b)
}

fn email_domain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80 || b == b'.' || b == b'-'
}

fn emails(t: &[u8], out: &mut Vec<Span>) {
    for at in memchr::memchr_iter(b'@', t) {
        let start = at - t[..at].iter().rev().take_while(|b| email_local(**b)).count();
        let mut end = at + 1 + t[at + 1..].iter().take_while(|b| email_domain(**b)).count();
        while end > at + 1 && matches!(t[end - 1], b'.' | b'-') {
            end -= 1;
        }
        // A UTF-8 letter split by the decoder's cut is not the domain's end.
        if start == at || t[start] == b'.' || (end < t.len() && t[end] >= 0x80) {
            continue;
        }
        let host = &t[at + 1..end];
        let Some(dot) = host.iter().rposition(|b| *b == b'.') else { continue };
        let tld = &host[dot + 1..];
        let tld_ok = (tld.len() >= 2 && tld.iter().all(|b| b.is_ascii_alphabetic() || *b >= 0x80)) || (tld.len() > 4 && tld[..4].eq_ignore_ascii_case(b"xn--"));
        if dot == 0 || matches!(host[0], b'.' | b'-') || !tld_ok || host.windows(2).any(|w| w == b"..") {
            continue;
        }
        out.push(Span { start, end, kind: Kind::Email });
    }
}

/// Digits of a candidate number from `start`: runs of digits joined by single spaces, dashes or
/// dots; with each digit, the offset just past it.
fn digit_run(t: &[u8], start: usize, max_digits: usize, digits: &mut Vec<(u8, usize)>) -> usize {
    digits.clear();
    let mut i = start;
    while i < t.len() && digits.len() <= max_digits {
        if t[i].is_ascii_digit() {
            digits.push((t[i] - b'0', i + 1));
            i += 1;
        } else if matches!(t[i], b' ' | b'-' | b'.') && i + 1 < t.len() && t[i + 1].is_ascii_digit() && !digits.is_empty() {
            i += 1;
        } else {
            break;
        }
    }
    i
}

fn luhn(d: &[u8]) -> bool {
    let sum: u32 = d.iter().rev().enumerate().map(|(i, &x)| {
        let x = u32::from(x);
        if i % 2 == 1 { if x * 2 > 9 { x * 2 - 9 } else { x * 2 } } else { x }
    }).sum();
    sum.is_multiple_of(10)
}

/// The issuer ranges of the major card brands and their lengths: Visa, Mastercard (and its
/// 2-series), Mir, American Express, Diners, JCB, Discover, UnionPay, Maestro, RuPay, Troy.
fn card_issuer(d: &[u8]) -> bool {
    let n = d.len();
    let p = |k: usize| d.iter().take(k).fold(0u32, |a, &x| a * 10 + u32::from(x));
    let long = (16..=19).contains(&n);
    match d[0] {
        4 => matches!(n, 13 | 16 | 19),
        5 => ((51..=55).contains(&p(2)) && n == 16) || ((p(2) == 50 || (56..=58).contains(&p(2))) && long),
        2 => ((2221..=2720).contains(&p(4)) && n == 16) || ((2200..=2204).contains(&p(4)) && long),
        3 => (matches!(p(2), 34 | 37) && n == 15) || ((3528..=3589).contains(&p(4)) && long) || ((matches!(p(2), 36 | 38 | 39) || (300..=305).contains(&p(3)) || p(4) == 3095) && (14..=19).contains(&n)),
        6 => long,
        8 => matches!(p(2), 81 | 82) && n == 16,
        9 => p(4) == 9792 && n == 16,
        _ => false,
    }
}

fn cards(t: &[u8], out: &mut Vec<Span>) {
    let mut digits: Vec<(u8, usize)> = Vec::with_capacity(20);
    let mut plain = [0u8; 19];
    let mut i = 0;
    while i < t.len() {
        if !t[i].is_ascii_digit() || (i > 0 && (is_word(t[i - 1]) || t[i - 1] == b'-' || t[i - 1] == b'.')) {
            i += 1;
            continue;
        }
        let end = digit_run(t, i, 19, &mut digits);
        let n = digits.len();
        let at = end;
        // A decimal point and cents after the digits make it an amount, not a card.
        let cents = t.get(at + 1..).map_or(0, |r| r.iter().take_while(|b| b.is_ascii_digit()).count());
        let decimal = t.get(at) == Some(&b'.') && (1..=2).contains(&cents);
        for (k, d) in digits.iter().take(19).enumerate() {
            plain[k] = d.0;
        }
        let found = ((13..=19).contains(&n) && !decimal && bounded(t, i, at) && card_issuer(&plain[..n]) && luhn(&plain[..n])).then_some(at);
        match found {
            Some(at) => {
                out.push(Span { start: i, end: at, kind: Kind::Card });
                i = at;
            }
            None => i = end.max(i + 1),
        }
    }
}

fn b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

fn jwts(t: &[u8], out: &mut Vec<Span>) {
    let mut from = 0;
    while let Some(i) = memfind(&t[from..], b"eyJ").map(|i| i + from) {
        from = i + 3;
        if i > 0 && b64url(t[i - 1]) {
            continue;
        }
        let mut j = i;
        let mut parts = 0;
        loop {
            let n = t[j..].iter().take_while(|b| b64url(**b)).count();
            if n < 4 && parts < 2 {
                break;
            }
            j += n;
            parts += 1;
            if parts == 3 || j >= t.len() || t[j] != b'.' {
                break;
            }
            j += 1;
        }
        if parts == 3 && j - i >= 30 {
            out.push(Span { start: i, end: j, kind: Kind::Jwt });
            from = j;
        }
    }
}

/// The token after `Bearer ` / `Basic ` (any case): the scheme is kept, the credential is the
/// span. A bearer token must look like one (12+ characters with a digit, mixed case or token
/// punctuation: "Bearer authentication" is prose); a basic credential must decode to `user:pass`.
fn credentials(t: &[u8], out: &mut Vec<Span>) {
    // Only spaces can end a scheme: look back from each one.
    for (sp, _) in t.iter().enumerate().filter(|(_, b)| **b == b' ') {
        let (basic, start) = if sp >= 6 && t[sp - 6..sp].eq_ignore_ascii_case(b"bearer") {
            (false, sp - 6)
        } else if sp >= 5 && t[sp - 5..sp].eq_ignore_ascii_case(b"basic") {
            (true, sp - 5)
        } else {
            continue;
        };
        if start > 0 && is_word(t[start - 1]) {
            continue;
        }
        let s = sp + 1;
        let n = t[s..].iter().take_while(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(b)).count();
        let tok = &t[s..s + n];
        let ok = if basic { basic_credential(tok) } else { bearer_token(tok) };
        if ok && (s + n >= t.len() || !is_word(t[s + n])) {
            out.push(Span { start: s, end: s + n, kind: Kind::Credential });
        }
    }
}

fn bearer_token(tok: &[u8]) -> bool {
    let digit = tok.iter().any(u8::is_ascii_digit);
    let mixed = tok.iter().any(u8::is_ascii_uppercase) && tok.iter().any(u8::is_ascii_lowercase);
    let punct = tok.iter().any(|b| b"-._~+/=".contains(b));
    tok.len() >= 12 && (digit || mixed || punct)
}

/// Standard base64 that decodes to printable `user:password`.
fn basic_credential(tok: &[u8]) -> bool {
    if tok.len() < 8 || !tok.len().is_multiple_of(4) {
        return false;
    }
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let body = tok.iter().rposition(|c| *c != b'=').map_or(&tok[..0], |p| &tok[..=p]);
    if tok.len() - body.len() > 2 {
        return false;
    }
    let mut bits = 0u32;
    let mut nbits = 0;
    let mut decoded = Vec::with_capacity(tok.len());
    for &c in body {
        let Some(v) = val(c) else { return false };
        bits = bits << 6 | u32::from(v);
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            decoded.push((bits >> nbits) as u8);
        }
    }
    decoded.contains(&b':') && decoded.iter().all(|b| (0x20..0x7f).contains(b))
}

fn ssns(t: &[u8], out: &mut Vec<Span>) {
    if t.len() < 11 {
        return;
    }
    for i in 0..=t.len() - 11 {
        let w = &t[i..i + 11];
        let shape = w.iter().enumerate().all(|(k, b)| if k == 3 || k == 6 { *b == b'-' } else { b.is_ascii_digit() });
        if !shape || !bounded(t, i, i + 11) || (i > 0 && t[i - 1] == b'-') || (i + 11 < t.len() && t[i + 11] == b'-') {
            continue;
        }
        let num = |r: std::ops::Range<usize>| w[r].iter().fold(0u32, |a, b| a * 10 + u32::from(b - b'0'));
        let (area, group, serial) = (num(0..3), num(4..6), num(7..11));
        if area != 0 && area != 666 && area < 900 && group != 0 && serial != 0 {
            out.push(Span { start: i, end: i + 11, kind: Kind::UsSsn });
        }
    }
}

/// IBAN lengths by country (the registry's), for the countries that use IBAN.
fn iban_length(cc: &[u8]) -> Option<usize> {
    const L: &[(&[u8; 2], usize)] = &[
        (b"AD", 24), (b"AE", 23), (b"AL", 28), (b"AT", 20), (b"AZ", 28), (b"BA", 20), (b"BE", 16), (b"BG", 22), (b"BH", 22), (b"BR", 29),
        (b"CH", 21), (b"CR", 22), (b"CY", 28), (b"CZ", 24), (b"DE", 22), (b"DK", 18), (b"DO", 28), (b"EE", 20), (b"EG", 29), (b"ES", 24),
        (b"FI", 18), (b"FO", 18), (b"FR", 27), (b"GB", 22), (b"GE", 22), (b"GI", 23), (b"GL", 18), (b"GR", 27), (b"GT", 28), (b"HR", 21),
        (b"HU", 28), (b"IE", 22), (b"IL", 23), (b"IS", 26), (b"IT", 27), (b"JO", 30), (b"KW", 30), (b"KZ", 20), (b"LB", 28), (b"LI", 21),
        (b"LT", 20), (b"LU", 20), (b"LV", 21), (b"MC", 27), (b"MD", 24), (b"ME", 22), (b"MK", 19), (b"MR", 27), (b"MT", 31), (b"MU", 30),
        (b"NL", 18), (b"NO", 15), (b"PK", 24), (b"PL", 28), (b"PS", 29), (b"PT", 25), (b"QA", 29), (b"RO", 24), (b"RS", 22), (b"SA", 24),
        (b"SE", 24), (b"SI", 19), (b"SK", 24), (b"SM", 27), (b"TN", 24), (b"TR", 26), (b"UA", 29), (b"VG", 24), (b"XK", 20),
    ];
    L.iter().find(|(c, _)| &c[..] == cc).map(|(_, n)| *n)
}

/// IBANs compact or printed in groups of four, in either case (`gb82west...` is typed too).
fn ibans(t: &[u8], out: &mut Vec<Span>) {
    let mut i = 0;
    let mut chars = Vec::with_capacity(34);
    while i + 15 <= t.len() {
        let cc = [t[i].to_ascii_uppercase(), t[i + 1].to_ascii_uppercase()];
        let Some(len) = (cc[0].is_ascii_uppercase() && cc[1].is_ascii_uppercase() && t[i + 2].is_ascii_digit() && t[i + 3].is_ascii_digit() && (i == 0 || !is_word(t[i - 1])))
            .then(|| iban_length(&cc))
            .flatten()
        else {
            i += 1;
            continue;
        };
        chars.clear();
        let mut j = i;
        while j < t.len() && chars.len() < len {
            if t[j].is_ascii_alphanumeric() {
                chars.push(t[j].to_ascii_uppercase());
                j += 1;
            } else if t[j] == b' ' && chars.len() % 4 == 0 && j + 1 < t.len() && t[j + 1].is_ascii_alphanumeric() {
                j += 1;
            } else {
                break;
            }
        }
        if chars.len() == len && (j >= t.len() || !is_word(t[j])) && mod97(&chars) == 1 {
            out.push(Span { start: i, end: j, kind: Kind::Iban });
            i = j;
        } else {
            i += 1;
        }
    }
}

fn mod97(chars: &[u8]) -> u32 {
    let rotated = chars[4..].iter().chain(&chars[..4]);
    let mut r = 0u32;
    for &c in rotated {
        let v = if c.is_ascii_digit() { u32::from(c - b'0') } else { u32::from(c - b'A') + 10 };
        r = if v >= 10 { (r * 100 + v) % 97 } else { (r * 10 + v) % 97 };
    }
    r
}

/// Phone numbers: international (`+` or `00`, then 8–15 digits in groups joined by spaces,
/// dashes, dots or parentheses), North American (`(212) 555-0147`, `212-555-0147`,
/// `212.555.0147`, `212 555 0147`, with or without a leading `1`), and national numbers with a
/// trunk `0` in groups (`020 7946 0958`, `01 23 45 67 89`, `030 1234 5678`, `090-1234-5678`).
fn phones(t: &[u8], out: &mut Vec<Span>) {
    let mut i = 0;
    while i < t.len() {
        if i > 0 && (is_word(t[i - 1]) || t[i - 1] == b'+') {
            i += 1;
            continue;
        }
        let end = international(t, i).or_else(|| nanp(t, i)).or_else(|| national(t, i));
        match end {
            Some(end) => {
                out.push(Span { start: i, end, kind: Kind::Phone });
                i = end;
            }
            None => i += 1,
        }
    }
}

/// The groups of a number from `i`: digit runs joined by one of ` -.` or by parentheses
/// around a group; returns the end and each group's length. Stops before a separator that
/// is not followed by a digit (or `(`).
fn groups(t: &[u8], mut i: usize, lens: &mut Vec<usize>) -> usize {
    lens.clear();
    let mut end = i;
    loop {
        let open = t.get(i) == Some(&b'(');
        let s = i + usize::from(open);
        let n = t.get(s..).map_or(0, |r| r.iter().take_while(|b| b.is_ascii_digit()).count());
        if n == 0 || (open && t.get(s + n) != Some(&b')')) {
            break;
        }
        lens.push(n);
        end = s + n + usize::from(open);
        let mut j = end;
        if j < t.len() && matches!(t[j], b' ' | b'-' | b'.') {
            j += 1;
        }
        // The next group follows a separator, or is parenthesised, or follows a `)` directly.
        let next = t.get(j).is_some_and(|b| b.is_ascii_digit() || *b == b'(');
        if next && (j > end || t[j] == b'(' || open) {
            i = j;
        } else {
            break;
        }
    }
    end
}

/// Whether a number ending at `end` is bounded: no word character, no further `-`/`.` digits,
/// no `:` digits (a time) after it.
fn number_ends(t: &[u8], end: usize) -> bool {
    end >= t.len() || !(is_word(t[end]) || matches!(t[end], b'-' | b'.' | b':' | b'/') && t.get(end + 1).is_some_and(u8::is_ascii_digit))
}

fn international(t: &[u8], i: usize) -> Option<usize> {
    let start = if t[i] == b'+' {
        i + 1
    } else if t[i..].starts_with(b"00") && t.get(i + 2).is_some_and(|b| (b'1'..=b'9').contains(b)) {
        i + 2
    } else {
        return None;
    };
    let mut lens = Vec::new();
    let end = groups(t, start, &mut lens);
    let digits: usize = lens.iter().sum();
    // `00` numbers must be written in groups: an unbroken `0049301234567` is any number.
    let ok = (8..=15).contains(&digits) && (t[i] == b'+' || lens.len() >= 2) && lens.first().is_some_and(|&n| n <= 4 || lens.len() == 1);
    (ok && number_ends(t, end)).then_some(end)
}

fn nanp(t: &[u8], i: usize) -> Option<usize> {
    if i > 0 && matches!(t[i - 1], b'-' | b'.' | b':') {
        return None;
    }
    // An optional country code `1` and one separator.
    let i = if t[i] == b'1' && matches!(t.get(i + 1), Some(b' ' | b'-' | b'.')) { i + 2 } else { i };
    let d = |k: usize, n: usize| t.get(k..k + n).filter(|s| s.iter().all(u8::is_ascii_digit)).is_some();
    let (area_end, sep) = if t.get(i) == Some(&b'(') && d(i + 1, 3) && t.get(i + 4) == Some(&b')') {
        let sep = if t.get(i + 5) == Some(&b' ') { i + 6 } else { i + 5 };
        (sep, None)
    } else if d(i, 3) && matches!(t.get(i + 3), Some(b'-' | b'.' | b' ')) {
        (i + 4, t.get(i + 3).copied())
    } else {
        return None;
    };
    let area = if t[i] == b'(' { &t[i + 1..i + 4] } else { &t[i..i + 3] };
    // Area and exchange codes never start with 0 or 1.
    if area[0] < b'2' || !d(area_end, 3) || t[area_end] < b'2' {
        return None;
    }
    let want = sep.unwrap_or(b'-');
    let sep_ok = t.get(area_end + 3).is_some_and(|&b| b == want || (sep.is_none() && b == b' '));
    if !sep_ok || !d(area_end + 4, 4) {
        return None;
    }
    let end = area_end + 8;
    number_ends(t, end).then_some(end)
}

/// A national number: trunk `0`, then 9–10 more digits in two or more groups (the first of 2–5
/// digits with its `0`, the others of 2–8), not shaped like a date (`06-12-2026`).
fn national(t: &[u8], i: usize) -> Option<usize> {
    if t[i] != b'0' || !t.get(i + 1).is_some_and(|b| (b'1'..=b'9').contains(b)) {
        return None;
    }
    if i > 0 && matches!(t[i - 1], b'-' | b'.' | b':') {
        return None;
    }
    let mut lens = Vec::new();
    let end = groups(t, i, &mut lens);
    let digits: usize = lens.iter().sum();
    let date = lens.len() >= 3 && lens[0] <= 2 && lens[1] <= 2 && lens[2] == 4;
    // The North American shape with a leading 0 (`012-555-0147`) is a near miss, not a
    // national number: no country writes its numbers 3-3-4 with a trunk 0.
    let nanp_shape = lens == [3, 3, 4];
    let ok = (10..=11).contains(&digits) && lens.len() >= 2 && (2..=5).contains(&lens[0]) && lens[1..].iter().all(|n| (2..=8).contains(n)) && !date && !nanp_shape;
    (ok && number_ends(t, end)).then_some(end)
}

/// AWS secret access keys: 40 characters of base64 (with upper, lower case and a digit) in a
/// text that names one (`aws_secret_access_key`, `SecretAccessKey`) or carries its key id.
fn aws_secrets(t: &[u8], out: &mut Vec<Span>) {
    let labelled = ascii_find(t, b"secretaccesskey").is_some() || ascii_find(t, b"secret_access_key").is_some() || ascii_find(t, b"secret-access-key").is_some();
    let key_id = || [&b"AKIA"[..], b"ASIA"].iter().any(|p| memchr::memmem::find(t, p).is_some());
    if !labelled && !key_id() {
        return;
    }
    let b64 = |b: u8| b.is_ascii_alphanumeric() || b == b'+' || b == b'/';
    let mut i = 0;
    while i < t.len() {
        if !b64(t[i]) {
            i += 1;
            continue;
        }
        let n = t[i..].iter().take_while(|b| b64(**b)).count();
        let tok = &t[i..i + n];
        let mixed = tok.iter().any(u8::is_ascii_uppercase) && tok.iter().any(u8::is_ascii_lowercase) && tok.iter().any(u8::is_ascii_digit);
        if n == 40 && mixed && t.get(i + n) != Some(&b'=') {
            out.push(Span { start: i, end: i + n, kind: Kind::AwsSecret });
        }
        i += n;
    }
}

/// Case-insensitive search for `needle` (lower case ASCII).
fn ascii_find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w.eq_ignore_ascii_case(needle))
}

/// PEM private keys, from `-----BEGIN ... PRIVATE KEY-----` to the matching end line (or the
/// text's end, when a capture was cut).
fn private_keys(t: &[u8], out: &mut Vec<Span>) {
    let mut from = 0;
    while let Some(b) = memchr::memmem::find(&t[from..], b"-----BEGIN ").map(|b| b + from) {
        let head_end = memchr::memmem::find(&t[b + 11..], b"-----").map(|e| b + 11 + e);
        let Some(head_end) = head_end.filter(|&e| e - b < 60) else {
            from = b + 11;
            continue;
        };
        if !t[b + 11..head_end].ends_with(b"PRIVATE KEY") {
            from = head_end;
            continue;
        }
        let end = memchr::memmem::find(&t[head_end + 5..], b"-----END ")
            .and_then(|e| {
                let e = head_end + 5 + e;
                memchr::memmem::find(&t[e + 9..], b"-----").map(|x| e + 9 + x + 5)
            })
            .unwrap_or(t.len());
        out.push(Span { start: b, end, kind: Kind::PrivateKey });
        from = end;
    }
}

/// Whether a field name names a password or secret (`password`, `new_password`, `passwd`,
/// `pwd`, `pass`, `passphrase`, `client_secret`, ...), in any case.
pub fn secret_name(name: &[u8]) -> bool {
    let mut buf = [0u8; 64];
    // Every name it takes ends in `d`, `s`, `e` or `t`: most names are refused by that alone.
    let Some(last) = name.last().map(u8::to_ascii_lowercase) else { return false };
    if !matches!(last, b'd' | b's' | b'e' | b't') || name.len() < 3 || name.len() > buf.len() {
        return false;
    }
    let n = &mut buf[..name.len()];
    n.copy_from_slice(name);
    n.make_ascii_lowercase();
    let n = &*n;
    n == b"pass" || n.ends_with(b"password") || n.ends_with(b"passwd") || n.ends_with(b"passphrase") || n.ends_with(b"pwd") || n.ends_with(b"secret")
}

/// The values of password-like fields: `"password": "..."` in JSON, `password=...` in forms and
/// queries, `Password: ...` in text. The value is the span; the name stays.
fn passwords(t: &[u8], out: &mut Vec<Span>) {
    for eq in memchr::memchr2_iter(b'=', b':', t) {
        if !Profile::assign_at(t, eq) {
            continue;
        }
        // The name before it: up to three closing quotes, brackets and spaces skipped.
        let mut e = eq;
        while e > 0 && eq - e < 3 && matches!(t[e - 1], b'"' | b'\'' | b']' | b' ') {
            e -= 1;
        }
        let name_len = t[..e].iter().rev().take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-')).count();
        if name_len == 0 || !secret_name(&t[e - name_len..e]) {
            continue;
        }
        // The value after it: quoted to its closing quote, or bare to a delimiter.
        let mut v = eq + 1;
        while v < t.len() && t[v] == b' ' {
            v += 1;
        }
        let (start, end) = match t.get(v) {
            Some(&q @ (b'"' | b'\'')) => {
                let mut j = v + 1;
                while j < t.len() && t[j] != q {
                    j += if t[j] == b'\\' { 2 } else { 1 };
                }
                (v + 1, j.min(t.len()))
            }
            Some(_) => (v, v + t[v..].iter().take_while(|b| !matches!(b, b'&' | b',' | b';' | b'}' | b' ' | b'\r' | b'\n' | b'"')).count()),
            None => continue,
        };
        let value = &t[start..end];
        let masked = value.starts_with(b"***") || value.starts_with(b"[REDACTED") || value.starts_with(b"hmac:");
        if value.is_empty() || masked || value == b"null" || value == b"true" || value == b"false" {
            continue;
        }
        out.push(Span { start, end, kind: Kind::Password });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds_in(text: &str) -> Vec<(Kind, &str)> {
        let mut spans = Vec::new();
        find(text.as_bytes(), &Kind::ALL, &mut spans);
        spans.iter().map(|s| (s.kind, &text[s.start..s.end])).collect()
    }

    /// The profile only skips detectors: with it or without, the same spans.
    #[test]
    fn the_profile_never_hides_a_match() {
        let corpus: Vec<&str> = include_str!("../../tests/data/redaction-corpus.tsv")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.splitn(3, '\t').nth(2))
            .collect();
        let mut texts: Vec<String> = corpus.iter().map(|t| t.to_string()).collect();
        for (i, a) in corpus.iter().enumerate() {
            let b = corpus[(i * 7 + 3) % corpus.len()];
            texts.push(format!("{a} {b}"));
            texts.push(format!("x{a}-{b})"));
        }
        // Random text from the bytes the detectors and the profile care about.
        let alphabet = b"0123456789 -.()@+_JeyAKIAGBDEghpxoblivetst/=:ZzaSRP\"";
        let mut x = 9u64;
        for _ in 0..20_000 {
            let len = 8 + (x % 60) as usize;
            let t: String = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    alphabet[((x >> 33) % alphabet.len() as u64) as usize] as char
                })
                .collect();
            texts.push(t);
        }
        let (mut with, mut without) = (Vec::new(), Vec::new());
        let mut matched = 0;
        for t in &texts {
            scan(t.as_bytes(), &Kind::ALL, true, &mut with);
            scan(t.as_bytes(), &Kind::ALL, false, &mut without);
            assert_eq!(with, without, "{t:?}");
            matched += usize::from(!with.is_empty());
        }
        assert!(matched > 500, "the texts exercise the detectors: {matched} matched");
    }

    #[test]
    fn each_detector_finds_its_kind_in_context() {
        assert_eq!(kinds_in("mail jane.doe+x@example.co.uk now"), vec![(Kind::Email, "jane.doe+x@example.co.uk")]);
        assert_eq!(kinds_in("card 4111 1111 1111 1111."), vec![(Kind::Card, "4111 1111 1111 1111")]);
        assert_eq!(kinds_in("pan=5500-0000-0000-0004&x=1"), vec![(Kind::Card, "5500-0000-0000-0004")]);
        assert_eq!(kinds_in("Authorization: Bearer abcDEF123456xyz"), vec![(Kind::Credential, "abcDEF123456xyz")]);
        assert_eq!(kinds_in("id AKIAIOSFODNN7EXAMPLE ok"), vec![(Kind::AwsKey, "AKIAIOSFODNN7EXAMPLE")]);
        assert_eq!(kinds_in("ssn 123-45-6789"), vec![(Kind::UsSsn, "123-45-6789")]);
        assert_eq!(kinds_in("to GB82 WEST 1234 5698 7654 32 please"), vec![(Kind::Iban, "GB82 WEST 1234 5698 7654 32")]);
        assert_eq!(kinds_in("DE89370400440532013000"), vec![(Kind::Iban, "DE89370400440532013000")]);
        assert_eq!(kinds_in("call +44 20 7946 0958 or (212) 555-0147"), vec![(Kind::Phone, "+44 20 7946 0958"), (Kind::Phone, "(212) 555-0147")]);
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        assert_eq!(kinds_in(&format!("t={jwt}&a=1")), vec![(Kind::Jwt, jwt)]);
    }

    #[test]
    fn the_widened_detectors_find_what_real_data_carries() {
        assert_eq!(kinds_in("card 4111.1111.1111.1111 ok"), vec![(Kind::Card, "4111.1111.1111.1111")]);
        assert_eq!(kinds_in("mir 2200 0000 0000 0004"), vec![(Kind::Card, "2200 0000 0000 0004")]);
        assert_eq!(kinds_in("iban gb82west12345698765432 ok"), vec![(Kind::Iban, "gb82west12345698765432")]);
        assert_eq!(kinds_in("mail o'brien!x#y@example.org"), vec![(Kind::Email, "o'brien!x#y@example.org")]);
        assert_eq!(kinds_in("?email=jane@example.org&x"), vec![(Kind::Email, "jane@example.org")]);
        assert_eq!(kinds_in("uk 020 7946 0958 fr 01 23 45 67 89"), vec![(Kind::Phone, "020 7946 0958"), (Kind::Phone, "01 23 45 67 89")]);
        assert_eq!(kinds_in("call 0044 20 7946 0958"), vec![(Kind::Phone, "0044 20 7946 0958")]);
        assert_eq!(kinds_in("call 1-212-555-0147 or 212 555 0147"), vec![(Kind::Phone, "1-212-555-0147"), (Kind::Phone, "212 555 0147")]);
        assert_eq!(kinds_in("k=AIzaSyD-1234567890abcdefghijklmnopqrstu"), vec![(Kind::GoogleKey, "AIzaSyD-1234567890abcdefghijklmnopqrstu")]);
        let aws = "AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        assert_eq!(kinds_in(aws), vec![(Kind::AwsKey, "AKIAIOSFODNN7EXAMPLE"), (Kind::AwsSecret, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")]);
        let pem = "x -----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY----- y";
        assert_eq!(kinds_in(pem), vec![(Kind::PrivateKey, &pem[2..pem.len() - 2])]);
        assert_eq!(kinds_in("{\"user\":\"a\",\"password\": \"hunter2!\"}"), vec![(Kind::Password, "hunter2!")]);
        assert_eq!(kinds_in("user=a&pwd=hunter2&x=1"), vec![(Kind::Password, "hunter2")]);
        assert_eq!(kinds_in("user[new_password]=hunter2"), vec![(Kind::Password, "hunter2")]);
    }

    #[test]
    fn ordinary_traffic_is_left_alone() {
        for text in [
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
            "2026-11-22T10:47:02.123Z",
            "0192f0c4-7c1a-7d5e-9f00-0000000001a2",
            "order ORD-2024-000123 shipped",
            "/api/orders/4111111111111112",
            "version 1.2.3-beta.4",
            "user@localhost",
            "page=2&sort=desc&per_page=50",
            "1700000000000",
            "10.0.0.1:8080",
            "Bearer x",
            "due 06-12-2026 12:30",
            "total 4111111111111.11 EUR",
            "sha1 da39a3ee5e6b4b0d3255bfef95601890afd80709",
            "{\"password\": null, \"pwd\": \"***\"}",
            "-----BEGIN PUBLIC KEY----- MIIBIjAN",
        ] {
            assert_eq!(kinds_in(text), vec![], "{text}");
        }
    }

    #[test]
    fn checks_reject_near_misses() {
        assert!(kinds_in("4111 1111 1111 1112").is_empty(), "Luhn fails");
        assert!(kinds_in("GB82 WEST 1234 5698 7654 33").is_empty(), "mod 97 fails");
        assert!(kinds_in("000-12-3456 666-12-3456 900-12-3456 123-00-4567").is_empty(), "impossible SSNs");
        assert!(kinds_in("(112) 555-0147").is_empty(), "area codes never start with 1");
    }
}
