//! The decoded forms of a text as a browser or client encodes it: `%XX` escapes (applied again
//! while they still decode, so `%2540` is `@`) and `+` for a space. Each decoded byte remembers
//! where it came from in the original text, so a span found in the decoded form can be replaced
//! in the stored one, which stays a valid (encoded) URL.

/// Most rounds of decoding: `%25` nested deeper than this is not what clients send.
const ROUNDS: usize = 3;

/// One decoded form: its bytes, and for each byte (and one past the end) the offset in the
/// original text where it starts.
#[derive(Debug, Default)]
pub struct Decoded {
    pub bytes: Vec<u8>,
    pub origin: Vec<usize>,
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Whether `t` holds anything a decoding would change.
pub fn is_encoded(t: &[u8]) -> bool {
    memchr::memchr2(b'%', b'+', t).is_some()
}

/// One round over `t`: `%XX` to its byte, `+` to a space when `plus`; `origin[i]` is where
/// byte `i` of the result starts in `t`.
fn round(t: &[u8], plus: bool, out: &mut Decoded) -> bool {
    out.bytes.clear();
    out.origin.clear();
    let mut changed = false;
    let mut i = 0;
    while i < t.len() {
        out.origin.push(i);
        match t[i] {
            b'%' if i + 2 < t.len() => match (hex(t[i + 1]), hex(t[i + 2])) {
                (Some(h), Some(l)) => {
                    out.bytes.push(h << 4 | l);
                    i += 3;
                    changed = true;
                    continue;
                }
                _ => out.bytes.push(b'%'),
            },
            b'+' if plus => {
                out.bytes.push(b' ');
                changed = true;
            }
            b => out.bytes.push(b),
        }
        i += 1;
    }
    out.origin.push(t.len());
    changed
}

/// Every distinct decoded form of `t` (none when it holds no escape): the first round with `+`
/// as a space, then further rounds of `%XX` while they change something. Origins point into
/// `t` itself.
pub fn forms(t: &[u8], out: &mut Vec<Decoded>) {
    out.clear();
    if !is_encoded(t) {
        return;
    }
    let mut first = Decoded::default();
    if !round(t, true, &mut first) {
        return;
    }
    out.push(first);
    for _ in 1..ROUNDS {
        let prev = out.last().unwrap_or_else(|| unreachable!("one form was pushed"));
        if memchr::memchr(b'%', &prev.bytes).is_none() {
            break;
        }
        let mut next = Decoded::default();
        if !round(&prev.bytes, false, &mut next) {
            break;
        }
        // Compose: a byte of this round starts where its source byte in the last round did.
        for o in next.origin.iter_mut() {
            *o = prev.origin[*o];
        }
        out.push(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(t: &str) -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::new();
        forms(t.as_bytes(), &mut out);
        out.into_iter().map(|d| (String::from_utf8_lossy(&d.bytes).into_owned(), d.origin)).collect()
    }

    #[test]
    fn each_round_decodes_and_remembers_where_bytes_came_from() {
        assert!(all("plain/text").is_empty());
        let f = all("a%40b+c");
        assert_eq!(f, [("a@b c".to_string(), vec![0, 1, 4, 5, 6, 7])]);
        let f = all("x%2540y");
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].0, "x%40y");
        assert_eq!(f[1], ("x@y".to_string(), vec![0, 1, 6, 7]));
        // A second round keeps `+` as it is: `%2B` is a plus sign that was meant.
        assert_eq!(all("%252B1")[1].0, "+1");
    }

    #[test]
    fn broken_escapes_stay_as_they_are() {
        assert!(all("100%").is_empty(), "a % that escapes nothing changes nothing");
        assert_eq!(all("%zz+%4")[0].0, "%zz %4");
        assert_eq!(all("%e2%82%ac")[0].0, "€");
        let f = all("%ff%fe");
        assert_eq!(f[0].1, vec![0, 3, 6]);
    }
}
