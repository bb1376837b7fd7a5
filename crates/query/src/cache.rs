//! The query result cache: answers computed before, kept in a bounded LRU and looked up by a
//! key that names everything the answer was computed from.
//!
//! A key is the question (route, tenant, parameters or SQL text) and the stamp of the data it
//! can read: the archived files it would scan (a file never changes once written; the lifecycle
//! and retention replace or delete whole files) and the revisions of the scopes it depends on
//! ([`sealtrail_hot::SummaryStore::revisions`], moved in the transaction of every commit to a
//! month or to the directory). So a hit is only possible when nothing the answer depends on
//! changed: an answer over the hot tier's open head is reused only until the next commit to
//! that month, while one over past months or archived files is reused for as long as they stay
//! as they are.
//!
//! The stamp MUST be read before the answer is computed: a commit landing in between then
//! makes the stored answer fresher than its key says, never staler.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use hashlink::LruCache;
use sealtrail_model::limits::{QUERY_CACHE_BYTES_MAX, QUERY_CACHE_ENTRY_BYTES_MAX};

/// A bounded, least-recently-used map from a key to a serialized answer.
#[derive(Debug)]
pub struct ResultCache {
    entries: Mutex<Entries>,
    capacity_bytes: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

#[derive(Debug)]
struct Entries {
    lru: LruCache<String, Bytes>,
    /// Key and answer bytes of every entry.
    bytes: usize,
}

impl Default for ResultCache {
    fn default() -> Self {
        ResultCache::new(QUERY_CACHE_BYTES_MAX)
    }
}

impl ResultCache {
    /// A cache holding at most `capacity_bytes` of keys and answers.
    pub fn new(capacity_bytes: usize) -> Self {
        ResultCache {
            entries: Mutex::new(Entries {
                lru: LruCache::new_unbounded(),
                bytes: 0,
            }),
            capacity_bytes,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        // A panic while holding the lock leaves the map consistent (each step is one call).
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The answer stored under `key`, now the most recently used.
    pub fn get(&self, key: &str) -> Option<Bytes> {
        let found = self.entries().lru.get(key).cloned();
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Stores `answer` under `key`, evicting the least recently used entries until it fits. An
    /// answer over [`QUERY_CACHE_ENTRY_BYTES_MAX`] is not stored: it would push out many smaller
    /// ones, and computing it costs far more than the lookup saves.
    pub fn put(&self, key: String, answer: Bytes) {
        let size = key.len() + answer.len();
        if answer.len() > QUERY_CACHE_ENTRY_BYTES_MAX || size > self.capacity_bytes {
            return;
        }
        let mut entries = self.entries();
        if let Some(previous) = entries.lru.remove(&key) {
            entries.bytes -= key.len() + previous.len();
        }
        while entries.bytes + size > self.capacity_bytes {
            let Some((old_key, old)) = entries.lru.remove_lru() else {
                break;
            };
            entries.bytes -= old_key.len() + old.len();
        }
        entries.bytes += size;
        entries.lru.insert(key, answer);
    }

    /// Lookups answered from the cache, and not, since start.
    pub fn hits_and_misses(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    /// Key and answer bytes held now.
    pub fn bytes(&self) -> usize {
        self.entries().bytes
    }
}

/// Builds a key from its parts, each length-prefixed so no two different part lists give the
/// same key (a `\0` or a `|` inside SQL text cannot shift a boundary).
#[derive(Debug, Default)]
pub struct KeyBuilder(String);

impl KeyBuilder {
    /// A key for answers of `kind` (a route) about `tenant_id`.
    pub fn new(kind: &str, tenant_id: &str) -> Self {
        KeyBuilder::default().part(kind).part(tenant_id)
    }

    /// Adds one part.
    pub fn part(mut self, part: &str) -> Self {
        use std::fmt::Write;
        let _ = write!(self.0, "{}:{part};", part.len());
        self
    }

    /// Adds an optional part (absent and empty differ).
    pub fn option(self, part: Option<&str>) -> Self {
        match part {
            Some(part) => self.part("some").part(part),
            None => self.part("none"),
        }
    }

    /// Adds the revisions of scopes, in the order given.
    pub fn revisions<'a>(mut self, revisions: impl IntoIterator<Item = (&'a str, u64)>) -> Self {
        for (scope, revision) in revisions {
            self = self.part(scope).part(&revision.to_string());
        }
        self.part("end")
    }

    pub fn build(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(bytes: usize) -> Bytes {
        Bytes::from(vec![b'x'; bytes])
    }

    #[test]
    fn evicts_the_least_recently_used_to_stay_within_its_bytes() {
        let cache = ResultCache::new(300);
        cache.put("a".into(), answer(99));
        cache.put("b".into(), answer(99));
        cache.put("c".into(), answer(99));
        assert_eq!(cache.bytes(), 300);
        // Using `a` makes `b` the oldest: the next answer pushes `b` out.
        assert!(cache.get("a").is_some());
        cache.put("d".into(), answer(99));
        assert!(cache.get("b").is_none());
        for kept in ["a", "c", "d"] {
            assert_eq!(cache.get(kept).unwrap().len(), 99, "{kept}");
        }
        assert_eq!(cache.bytes(), 300);
        assert_eq!(cache.hits_and_misses(), (4, 1));
    }

    #[test]
    fn replacing_an_entry_counts_its_bytes_once() {
        let cache = ResultCache::new(1_000);
        cache.put("k".into(), answer(10));
        cache.put("k".into(), answer(20));
        assert_eq!(cache.bytes(), 21);
        assert_eq!(cache.get("k").unwrap().len(), 20);
    }

    #[test]
    fn an_answer_larger_than_an_entry_may_be_is_not_stored() {
        let cache = ResultCache::new(QUERY_CACHE_BYTES_MAX);
        cache.put("big".into(), answer(QUERY_CACHE_ENTRY_BYTES_MAX + 1));
        assert!(cache.get("big").is_none());
        assert_eq!(cache.bytes(), 0);
        let small = ResultCache::new(10);
        small.put("key".into(), answer(8));
        assert!(small.get("key").is_none(), "larger than the whole cache");
    }

    #[test]
    fn keys_of_different_parts_differ() {
        let one = KeyBuilder::new("sql", "acme").part("a;b").build();
        let two = KeyBuilder::new("sql", "acme").part("a").part("b").build();
        assert_ne!(one, two);
        assert_ne!(
            KeyBuilder::new("x", "t").option(None).build(),
            KeyBuilder::new("x", "t").option(Some("")).build()
        );
        assert_ne!(
            KeyBuilder::new("x", "t")
                .revisions([("2026-01", 1)])
                .build(),
            KeyBuilder::new("x", "t")
                .revisions([("2026-01", 2)])
                .build()
        );
    }
}
