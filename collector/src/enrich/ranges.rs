//! IP ranges to values, looked up by binary search: the structure behind ASN range files and
//! threat lists. Addresses are points on one `u128` line ([`sentinel_config::ip::key`]), so
//! one table serves IPv4 and IPv6 and a lookup is ~20 comparisons even for a million ranges.

pub use sentinel_config::ip::{key, parse_range};

/// Disjoint inclusive ranges, sorted, each with a value.
#[derive(Debug, Clone)]
pub struct RangeMap<V> {
    starts: Vec<u128>,
    ends: Vec<u128>,
    values: Vec<V>,
}

impl<V> Default for RangeMap<V> {
    fn default() -> Self {
        RangeMap { starts: Vec::new(), ends: Vec::new(), values: Vec::new() }
    }
}

impl<V> RangeMap<V> {
    /// Builds the map from ranges in any order. Where ranges overlap, the one that starts first
    /// keeps the overlap (files that overlap are rare and this keeps the build linear).
    pub fn build(mut ranges: Vec<(u128, u128, V)>) -> Self {
        ranges.sort_by_key(|r| (r.0, r.1));
        let mut m = RangeMap { starts: Vec::with_capacity(ranges.len()), ends: Vec::with_capacity(ranges.len()), values: Vec::with_capacity(ranges.len()) };
        for (s, e, v) in ranges {
            let s = match m.ends.last() {
                Some(&last) if s <= last => match last.checked_add(1) {
                    Some(next) if next <= e => next,
                    _ => continue,
                },
                _ => s,
            };
            m.starts.push(s);
            m.ends.push(e);
            m.values.push(v);
        }
        m
    }

    /// The value of the range holding `k`, if any.
    pub fn get(&self, k: u128) -> Option<&V> {
        let i = self.starts.partition_point(|s| *s <= k).checked_sub(1)?;
        (self.ends[i] >= k).then(|| &self.values[i])
    }

    pub fn len(&self) -> usize {
        self.starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }
}

/// Up to 64 named sets of ranges flattened into one map of disjoint pieces, each carrying the
/// bit of every set that covers it: one lookup answers for all the lists at once.
pub fn union_of_sets(sets: &[Vec<(u128, u128)>]) -> RangeMap<u64> {
    assert!(sets.len() <= 64, "at most 64 sets");
    // Boundaries: where a set's coverage starts and where it stops (one past its end).
    let mut points: Vec<(u128, u64, bool)> = Vec::new();
    for (bit, ranges) in sets.iter().enumerate() {
        for (s, e) in merge(ranges.clone()) {
            points.push((s, 1 << bit, true));
            if let Some(after) = e.checked_add(1) {
                points.push((after, 1 << bit, false));
            }
        }
    }
    points.sort_by_key(|p| p.0);
    let mut pieces = Vec::new();
    let mut mask = 0u64;
    let mut i = 0;
    while i < points.len() {
        let at = points[i].0;
        while i < points.len() && points[i].0 == at {
            let (_, bit, on) = points[i];
            if on { mask |= bit } else { mask &= !bit }
            i += 1;
        }
        if mask != 0 {
            let end = points.get(i).map_or(u128::MAX, |p| p.0 - 1);
            pieces.push((at, end, mask));
        }
    }
    RangeMap::build(pieces)
}

/// Sorts ranges and joins the ones that touch or overlap.
fn merge(mut r: Vec<(u128, u128)>) -> Vec<(u128, u128)> {
    r.sort_unstable();
    let mut out: Vec<(u128, u128)> = Vec::with_capacity(r.len());
    for (s, e) in r {
        match out.last_mut() {
            Some(last) if s <= last.1.saturating_add(1) => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> u128 {
        key(s.parse().unwrap())
    }

    #[test]
    fn lookup_finds_the_range_and_nothing_between() {
        let m = RangeMap::build(vec![(k("1.0.4.0"), k("1.0.7.255"), 2), (k("1.0.0.0"), k("1.0.0.255"), 1)]);
        assert_eq!(m.get(k("1.0.0.7")), Some(&1));
        assert_eq!(m.get(k("1.0.5.1")), Some(&2));
        assert_eq!(m.get(k("1.0.1.0")), None);
        assert_eq!(m.get(k("0.255.255.255")), None);
        assert_eq!(m.get(k("9.9.9.9")), None);
    }

    #[test]
    fn sets_overlapping_give_every_bit_that_covers() {
        let a = vec![parse_range("10.0.0.0/8").unwrap()];
        let b = vec![parse_range("10.1.0.0/16").unwrap(), parse_range("10.1.0.5").unwrap(), parse_range("192.0.2.1").unwrap()];
        let m = union_of_sets(&[a, b]);
        assert_eq!(m.get(k("10.0.0.1")), Some(&0b01));
        assert_eq!(m.get(k("10.1.0.5")), Some(&0b11));
        assert_eq!(m.get(k("10.1.255.255")), Some(&0b11));
        assert_eq!(m.get(k("10.2.0.0")), Some(&0b01));
        assert_eq!(m.get(k("192.0.2.1")), Some(&0b10));
        assert_eq!(m.get(k("192.0.2.2")), None);
        let all = union_of_sets(&[vec![(0, u128::MAX)]]);
        assert_eq!(all.get(u128::MAX), Some(&1));
    }
}
