//! A bounded cache for one pipeline worker: two generations, the older dropped whole when the
//! newer fills, so what is used often stays, memory is capped at twice `capacity` entries, and
//! there is no per-entry bookkeeping. Used for parsed user agents, address lookups and texts
//! redaction found clean (real traffic repeats all three heavily). Hashed with foldhash (seeded per process): SipHash
//! cost a user agent's lookup more than the lookup itself.

use std::borrow::Borrow;
use std::hash::Hash;

type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

#[derive(Debug)]
pub struct Cache<K, V> {
    new: HashMap<K, V>,
    old: HashMap<K, V>,
    capacity: usize,
    pub hits: u64,
    pub misses: u64,
}

impl<K: Hash + Eq, V: Clone> Cache<K, V> {
    pub fn new(capacity: usize) -> Self {
        Cache { new: HashMap::default(), old: HashMap::default(), capacity, hits: 0, misses: 0 }
    }

    /// The value for `key`, from the cache or made by `make` (and remembered).
    pub fn get_or_insert<Q>(&mut self, key: &Q, make: impl FnOnce() -> V) -> V
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if let Some(v) = self.new.get(key) {
            self.hits += 1;
            return v.clone();
        }
        let v = match self.old.remove(key) {
            Some(v) => {
                self.hits += 1;
                v
            }
            None => {
                self.misses += 1;
                make()
            }
        };
        if self.capacity > 0 {
            if self.new.len() >= self.capacity {
                self.old = std::mem::take(&mut self.new);
            }
            self.new.insert(key.to_owned(), v.clone());
        }
        v
    }

    /// Forgets one key.
    pub fn remove<Q>(&mut self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.new.remove(key);
        self.old.remove(key);
    }

    /// Forgets everything (the data behind the values changed).
    pub fn clear(&mut self, capacity: usize) {
        self.new.clear();
        self.old.clear();
        self.capacity = capacity;
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.new.len() + self.old.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes the hit and miss counts, for publishing.
    pub fn take_counts(&mut self) -> (u64, u64) {
        (std::mem::take(&mut self.hits), std::mem::take(&mut self.misses))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hot_keys_stay_and_size_is_bounded() {
        let mut c: Cache<String, u32> = Cache::new(4);
        let mut made = 0;
        for round in 0..3 {
            for k in ["a", "b", "c"] {
                assert_eq!(c.get_or_insert(k, || { made += 1; round }), 0);
            }
        }
        assert_eq!((made, c.hits, c.misses), (3, 6, 3));
        for i in 0..20 {
            c.get_or_insert(&format!("cold{i}"), || 9);
        }
        assert!(c.len() <= 8);
        c.clear(4);
        assert!(c.is_empty());
        let mut off: Cache<u128, u32> = Cache::new(0);
        off.get_or_insert(&1, || 1);
        assert!(off.is_empty(), "capacity 0 caches nothing");
    }
}
