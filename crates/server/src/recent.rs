//! Values read from the hot store lately, trusted for a while: capture policies, tenant settings,
//! unwrapped keys. A change made on another node of a shared database applies here once its
//! entry is older than the time given; the node that made it replaces or forgets it at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Values by name, each with when it was read. Bounded: when full it starts over (every entry
/// is a store read away).
#[derive(Debug)]
pub(crate) struct Recent<V> {
    entries: Mutex<HashMap<String, (V, Instant)>>,
    fresh_for: Duration,
    capacity: usize,
}

impl<V: Clone> Recent<V> {
    pub(crate) fn new(fresh_millis: u64, capacity: usize) -> Self {
        Recent {
            entries: Mutex::new(HashMap::new()),
            fresh_for: Duration::from_millis(fresh_millis),
            capacity,
        }
    }

    /// The value of `name`, if it was read less than the time given ago.
    pub(crate) fn get(&self, name: &str) -> Option<V> {
        self.entries
            .lock()
            .expect("cache lock poisoned")
            .get(name)
            .filter(|(_, read_at)| read_at.elapsed() < self.fresh_for)
            .map(|(value, _)| value.clone())
    }

    pub(crate) fn put(&self, name: String, value: V) {
        let mut entries = self.entries.lock().expect("cache lock poisoned");
        if entries.len() >= self.capacity {
            entries.clear();
        }
        entries.insert(name, (value, Instant::now()));
    }

    /// Drops every entry whose name starts with `prefix`.
    pub(crate) fn forget(&self, prefix: &str) {
        self.entries
            .lock()
            .expect("cache lock poisoned")
            .retain(|name, _| !name.starts_with(prefix));
    }
}
