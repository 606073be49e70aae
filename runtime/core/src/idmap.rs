//! A map for keys handed out in increasing order.
//!
//! The machines number their inputs and operations from counters, so a new entry's key is almost always larger than
//! every key present, while removals hit any entry (an operation ends whenever its job does). A `BTreeMap` serves
//! that pattern poorly when the values are large: it moves whole values inside its nodes on every insert and
//! removal, and frees and allocates nodes as the window of live keys slides forward.
//!
//! [`IdMap`] keeps its entries in key order in one ring buffer. Inserting the largest key pushes at the back;
//! removing leaves a hole that is dropped once it reaches either end, or by a compaction once holes outnumber the
//! entries (so the buffer stays within twice the entries, plus a small slack, and no long-lived entry at the front
//! can make it grow without bound). Once a burst has drained, the buffer gives half its room back whenever it is
//! under a quarter full. Lookups are binary searches. A key smaller than the largest one present is
//! still accepted, at the cost of a move inside the buffer.
//!
//! Equality, hashing, `Debug` and serde see only the entries, in key order, never the holes: two maps with the
//! same entries are equal whatever their history, as a `BTreeMap` would be.

use std::collections::VecDeque;
use std::fmt;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Holes tolerated before a compaction, whatever the number of entries.
const HOLES_SLACK: usize = 16;
/// Slots of capacity kept however empty the map gets; above it, a buffer used to under a quarter gives half back.
const CAPACITY_FLOOR: usize = 16;

/// A map of keys in increasing order, mostly appended; see the module documentation.
#[derive(Clone)]
pub(crate) struct IdMap<K, V> {
    /// Key order, strictly increasing; `None` is a hole left by a removal.
    slots: VecDeque<(K, Option<V>)>,
    /// Entries, that is slots that are not holes.
    len: usize,
}

impl<K, V> Default for IdMap<K, V> {
    fn default() -> Self {
        IdMap { slots: VecDeque::new(), len: 0 }
    }
}

impl<K: Ord + Copy, V> IdMap<K, V> {
    /// An empty map.
    pub(crate) fn new() -> Self {
        IdMap::default()
    }

    /// How many entries.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn position(&self, key: &K) -> Result<usize, usize> {
        // The newest key is the one most often asked for; look at the back first.
        match self.slots.back() {
            Some((last, _)) if last == key => Ok(self.slots.len() - 1),
            Some((last, _)) if last < key => Err(self.slots.len()),
            _ => self.slots.binary_search_by(|(k, _)| k.cmp(key)),
        }
    }

    /// The value of `key`.
    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        let at = self.position(key).ok()?;
        self.slots[at].1.as_ref()
    }

    /// The value of `key`, to change.
    pub(crate) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let at = self.position(key).ok()?;
        self.slots[at].1.as_mut()
    }

    /// Sets the value of `key`, returning the one it replaced.
    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.position(&key) {
            Ok(at) => {
                let previous = self.slots[at].1.replace(value);
                if previous.is_none() {
                    self.len += 1;
                }
                previous
            }
            Err(at) => {
                self.slots.insert(at, (key, Some(value)));
                self.len += 1;
                None
            }
        }
    }

    /// Removes `key`, returning its value.
    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        let at = self.position(key).ok()?;
        let value = self.slots[at].1.take()?;
        self.len -= 1;
        self.trim();
        Some(value)
    }

    /// Keeps only the entries for which `keep` is true.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        self.slots.retain_mut(|(key, value)| value.as_mut().is_some_and(|value| keep(key, value)));
        self.len = self.slots.len();
    }

    /// The entries in key order.
    pub(crate) fn iter(&self) -> Iter<'_, K, V> {
        self.slots.iter().filter_map(entry)
    }

    /// The keys in order.
    pub(crate) fn keys(&self) -> impl DoubleEndedIterator<Item = &K> + '_ {
        self.iter().map(|(key, _)| key)
    }

    /// The values in key order.
    pub(crate) fn values(&self) -> impl DoubleEndedIterator<Item = &V> + '_ {
        self.iter().map(|(_, value)| value)
    }

    /// Whether `key` has a value.
    pub(crate) fn contains_key(&self, key: &K) -> bool {
        self.get(key).is_some()
    }

    /// Drops holes at both ends, and every hole once they outnumber the entries; gives memory back once a burst has
    /// drained, so a session that once held thousands of inputs does not keep their room while idle.
    fn trim(&mut self) {
        while self.slots.front().is_some_and(|(_, value)| value.is_none()) {
            self.slots.pop_front();
        }
        while self.slots.back().is_some_and(|(_, value)| value.is_none()) {
            self.slots.pop_back();
        }
        if self.slots.len() > 2 * self.len + HOLES_SLACK {
            self.slots.retain(|(_, value)| value.is_some());
        }
        let capacity = self.slots.capacity();
        if capacity > CAPACITY_FLOOR && self.slots.len() < capacity / 4 {
            self.slots.shrink_to((capacity / 2).max(CAPACITY_FLOOR));
        }
    }

    /// Slots held, holes included (for the bound's test).
    #[cfg(test)]
    fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Slots the buffer has room for (for the memory test).
    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.slots.capacity()
    }
}

/// The entries of an [`IdMap`] in key order.
pub(crate) type Iter<'a, K, V> = std::iter::FilterMap<
    std::collections::vec_deque::Iter<'a, (K, Option<V>)>,
    fn(&'a (K, Option<V>)) -> Option<(&'a K, &'a V)>,
>;

fn entry<K, V>((key, value): &(K, Option<V>)) -> Option<(&K, &V)> {
    value.as_ref().map(|value| (key, value))
}

impl<'a, K: Ord + Copy, V> IntoIterator for &'a IdMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = Iter<'a, K, V>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<K: Ord + Copy, V> std::ops::Index<&K> for IdMap<K, V> {
    type Output = V;

    /// # Panics
    ///
    /// If `key` has no value.
    fn index(&self, key: &K) -> &V {
        self.get(key).expect("no entry for the key")
    }
}

impl<K: Ord + Copy + PartialEq, V: PartialEq> PartialEq for IdMap<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl<K: Ord + Copy + Eq, V: Eq> Eq for IdMap<K, V> {}

impl<K: Ord + Copy + Hash, V: Hash> Hash for IdMap<K, V> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_usize(self.len);
        for (key, value) in self.iter() {
            key.hash(state);
            value.hash(state);
        }
    }
}

impl<K: Ord + Copy + fmt::Debug, V: fmt::Debug> fmt::Debug for IdMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Ord + Copy + Serialize, V: Serialize> Serialize for IdMap<K, V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de, K: Ord + Copy + Deserialize<'de>, V: Deserialize<'de>> Deserialize<'de> for IdMap<K, V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let sorted = std::collections::BTreeMap::<K, V>::deserialize(deserializer)?;
        let len = sorted.len();
        Ok(IdMap { slots: sorted.into_iter().map(|(key, value)| (key, Some(value))).collect(), len })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::{CAPACITY_FLOOR, HOLES_SLACK, IdMap};

    /// A small deterministic generator, so the test needs no dependency.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self, below: u64) -> u64 {
            self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % below
        }
    }

    fn same(map: &IdMap<u64, u64>, model: &BTreeMap<u64, u64>) {
        assert_eq!(map.len(), model.len());
        let entries: Vec<(u64, u64)> = map.iter().map(|(k, v)| (*k, *v)).collect();
        let expected: Vec<(u64, u64)> = model.iter().map(|(k, v)| (*k, *v)).collect();
        assert_eq!(entries, expected);
        assert!(map.slots() <= 2 * map.len() + HOLES_SLACK + 1, "{} slots for {} entries", map.slots(), map.len());
    }

    #[test]
    fn behaves_as_a_btree_map_under_random_operations() {
        for seed in 0..200 {
            let mut rng = Lcg(seed);
            let mut map = IdMap::new();
            let mut model = BTreeMap::new();
            let mut next = 0u64;
            for _ in 0..400 {
                match rng.next(10) {
                    0..=3 => {
                        // Mostly the next key; sometimes an older one.
                        let key = if rng.next(5) == 0 { rng.next(next + 1) } else { next };
                        next = next.max(key + 1);
                        let value = rng.next(1_000);
                        assert_eq!(map.insert(key, value), model.insert(key, value));
                    }
                    4..=7 => {
                        let key = rng.next(next + 1);
                        assert_eq!(map.remove(&key), model.remove(&key));
                    }
                    8 => {
                        let key = rng.next(next + 1);
                        assert_eq!(map.get(&key), model.get(&key));
                        if let (Some(a), Some(b)) = (map.get_mut(&key), model.get_mut(&key)) {
                            *a += 1;
                            *b += 1;
                        }
                    }
                    _ => {
                        let odd = rng.next(2);
                        map.retain(|k, _| k % 2 != odd || k % 3 == 0);
                        model.retain(|k, _| k % 2 != odd || k % 3 == 0);
                    }
                }
                same(&map, &model);
            }
        }
    }

    #[test]
    fn a_long_lived_first_entry_does_not_let_holes_grow() {
        // Key 0 lives throughout; each newer entry lives until the next one arrives, so every removal leaves its
        // hole between two live entries, where trimming the ends cannot reach it.
        let mut map = IdMap::new();
        map.insert(0u64, 0u64);
        for key in 1..100_000u64 {
            map.insert(key, key);
            if key > 1 {
                assert_eq!(map.remove(&(key - 1)), Some(key - 1));
            }
            assert_eq!(map.len(), 2);
            assert!(map.slots() <= 2 * 2 + HOLES_SLACK + 1, "{} slots at key {key}", map.slots());
        }
        assert_eq!(map.get(&0), Some(&0));
        assert_eq!(map.keys().copied().collect::<Vec<_>>(), vec![0, 99_999]);
    }

    #[test]
    fn a_drained_burst_gives_its_memory_back() {
        let mut map = IdMap::new();
        for key in 0..4_096u64 {
            map.insert(key, key);
        }
        assert!(map.capacity() >= 4_096);
        // Oldest first, as a queue drains, and then the other way round, as ends can come in any order.
        for key in 0..2_048u64 {
            map.remove(&key);
        }
        for key in (2_048..4_096u64).rev() {
            map.remove(&key);
        }
        assert_eq!(map.len(), 0);
        assert!(map.capacity() <= 2 * CAPACITY_FLOOR, "{} slots kept by an empty map", map.capacity());
        // And it is still a working map.
        map.insert(5_000, 1);
        assert_eq!(map.get(&5_000), Some(&1));
    }

    #[test]
    fn equality_hash_and_serde_ignore_holes() {
        use std::hash::{BuildHasher, RandomState};
        let mut churned = IdMap::new();
        for key in 0..10u64 {
            churned.insert(key, key * 10);
        }
        for key in [1u64, 3, 4, 8] {
            churned.remove(&key);
        }
        let mut fresh = IdMap::new();
        for key in [0u64, 2, 5, 6, 7, 9] {
            fresh.insert(key, key * 10);
        }
        assert_eq!(churned, fresh);
        let hasher = RandomState::new();
        assert_eq!(hasher.hash_one(&churned), hasher.hash_one(&fresh));
        assert_eq!(format!("{churned:?}"), format!("{fresh:?}"));
        let json = serde_json::to_string(&churned).expect("serializes");
        assert_eq!(json, serde_json::to_string(&fresh).expect("serializes"));
        let back: IdMap<u64, u64> = serde_json::from_str(&json).expect("deserializes");
        assert_eq!(back, fresh);
        fresh.remove(&9);
        assert_ne!(churned, fresh);
    }
}
