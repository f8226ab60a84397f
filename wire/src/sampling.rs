//! Consistent head sampling by request id, shared by the filter and the collector.
//!
//! The decision is a pure function of the request id and the rate: every component that samples
//! the same request at the same (or a higher) rate keeps it, so an event kept at the edge is never
//! dropped again for rate further down. The id is hashed with FNV-1a 64 followed by the
//! SplitMix64 finalizer (FNV alone spreads short, similar ids poorly in its high bits).

/// Where a request id falls in `[0, 2^64)`.
pub fn point(request_id: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in request_id {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// True when a request with this id is kept at `rate` (a fraction in `[0, 1]`).
pub fn keep(request_id: &[u8], rate: f64) -> bool {
    if rate >= 1.0 {
        return true;
    }
    if rate.is_nan() || rate <= 0.0 {
        return false;
    }
    // rate < 1, so the product is below 2^64 and the cast cannot saturate wrongly.
    let threshold = (rate * 18_446_744_073_709_551_616.0) as u64;
    point(request_id) < threshold
}

/// Why an event was kept; written as `sampling.reason`.
pub mod reason {
    /// Sampling rate 1: every request is kept.
    pub const ALL: &str = "all";
    /// Kept by the consistent head-sampling rate.
    pub const HEAD_RATE: &str = "head_rate";
    /// Kept whatever the rate, because the response was an error.
    pub const ERROR: &str = "error";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_is_respected_and_monotone() {
        let ids: Vec<String> = (0..100_000).map(|i| format!("req-{i:08}")).collect();
        for rate in [0.01, 0.1, 0.25, 0.5, 0.9] {
            let kept = ids.iter().filter(|id| keep(id.as_bytes(), rate)).count() as f64;
            let frac = kept / ids.len() as f64;
            assert!((frac - rate).abs() < 0.01, "rate {rate}: kept {frac}");
        }
        // a request kept at 0.1 is kept at every higher rate
        for id in ids.iter().filter(|id| keep(id.as_bytes(), 0.1)) {
            assert!(keep(id.as_bytes(), 0.25) && keep(id.as_bytes(), 0.9));
        }
    }

    #[test]
    fn edge_rates() {
        assert!(keep(b"x", 1.0) && keep(b"x", 7.0));
        assert!(!keep(b"x", 0.0) && !keep(b"x", -1.0) && !keep(b"x", f64::NAN));
    }
}
