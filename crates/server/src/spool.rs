//! The async spool: a local append-only log of accepted-but-uncommitted async requests.
//!
//! An async request is written here (a `write(2)` into the page cache) before it is
//! acknowledged, so a crashed or killed process loses none of them: on start, every segment is
//! replayed into the store, and replay is idempotent because every event already carries its
//! final `event_id`. Segments are fsynced every [`SPOOL_FSYNC_INTERVAL_MILLIS`]; a power loss can
//! therefore lose acknowledged async events from at most that last interval.
//!
//! Record framing: `u32` little-endian payload length, then the payload: a JSON array of events.
//! A torn final record (only possible on power loss) is detected by its length and skipped.
//!
//! [`SPOOL_FSYNC_INTERVAL_MILLIS`]: sealtrail_model::limits::SPOOL_FSYNC_INTERVAL_MILLIS

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sealtrail_model::limits::SPOOL_SEGMENT_BYTES_MAX;
use sealtrail_model::{ActorType, Event, Outcome, PendingEvent};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Segments left by an earlier process: each file with the requests it holds, in order.
pub(crate) type Leftovers = Vec<(PathBuf, Vec<Vec<PendingEvent>>)>;

/// The spool directory and its open segment.
#[derive(Debug)]
pub(crate) struct Spool {
    dir: PathBuf,
    state: Mutex<SpoolState>,
}

#[derive(Debug)]
struct SpoolState {
    file: File,
    segment: u64,
    bytes: u64,
    /// Records written and committed per live segment.
    segments: BTreeMap<u64, Counts>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    written: u64,
    committed: u64,
}

/// Identifies the segment an accepted request was spooled to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SpoolTicket {
    segment: u64,
}

impl Spool {
    /// Reads every leftover segment (requests accepted by an earlier process and perhaps not
    /// committed), then opens a fresh segment. The caller replays what is returned and then calls
    /// [`Spool::remove_replayed`].
    pub(crate) fn open(dir: &Path) -> Result<(Self, Leftovers)> {
        fs::create_dir_all(dir).map_err(|source| io_error(dir, source))?;
        let mut leftovers = Vec::new();
        let mut last_segment = 0;
        for (segment, path) in list_segments(dir)? {
            last_segment = last_segment.max(segment);
            leftovers.push((path.clone(), read_segment(&path)?));
        }
        let segment = last_segment + 1;
        let file = create_segment(dir, segment)?;
        let spool = Spool {
            dir: dir.to_owned(),
            state: Mutex::new(SpoolState {
                file,
                segment,
                bytes: 0,
                segments: BTreeMap::from([(segment, Counts::default())]),
            }),
        };
        Ok((spool, leftovers))
    }

    /// Deletes segments whose requests are now committed.
    pub(crate) fn remove_replayed(&self, paths: &[PathBuf]) -> Result<()> {
        for path in paths {
            fs::remove_file(path).map_err(|source| io_error(path, source))?;
        }
        sync_dir(&self.dir)
    }

    /// Appends one request. When this returns, the request survives a process crash.
    pub(crate) fn append(&self, events: &[PendingEvent]) -> Result<SpoolTicket> {
        let payload =
            serde_json::to_vec(&events.iter().map(SpooledEvent::from).collect::<Vec<_>>())
                .expect("spooled events always serialize");
        let length = u32::try_from(payload.len()).expect("request bodies are far below 4 GiB");
        let mut record = Vec::with_capacity(payload.len() + 4);
        record.extend_from_slice(&length.to_le_bytes());
        record.extend_from_slice(&payload);

        let mut state = self.state.lock().expect("spool lock poisoned");
        if state.bytes >= SPOOL_SEGMENT_BYTES_MAX {
            self.rotate(&mut state)?;
        }
        let segment = state.segment;
        state
            .file
            .write_all(&record)
            .map_err(|source| io_error(&self.dir, source))?;
        state.bytes += record.len() as u64;
        state.segments.entry(segment).or_default().written += 1;
        Ok(SpoolTicket { segment })
    }

    fn rotate(&self, state: &mut SpoolState) -> Result<()> {
        state
            .file
            .sync_data()
            .map_err(|source| io_error(&self.dir, source))?;
        let segment = state.segment + 1;
        state.file = create_segment(&self.dir, segment)?;
        state.segment = segment;
        state.bytes = 0;
        state.segments.insert(segment, Counts::default());
        let sealed = segment - 1;
        self.remove_if_done(state, sealed)
    }

    /// Records that a spooled request is committed to the store; deletes its segment once every
    /// record in it is committed and the segment is no longer written to.
    pub(crate) fn committed(&self, ticket: SpoolTicket) -> Result<()> {
        let mut state = self.state.lock().expect("spool lock poisoned");
        if let Some(counts) = state.segments.get_mut(&ticket.segment) {
            counts.committed += 1;
        }
        self.remove_if_done(&mut state, ticket.segment)
    }

    fn remove_if_done(&self, state: &mut SpoolState, segment: u64) -> Result<()> {
        let done = state
            .segments
            .get(&segment)
            .is_some_and(|counts| counts.committed >= counts.written);
        if done && segment != state.segment {
            state.segments.remove(&segment);
            let path = segment_path(&self.dir, segment);
            fs::remove_file(&path).map_err(|source| io_error(&path, source))?;
        }
        Ok(())
    }

    /// Flushes the open segment to disk. Called periodically; a cloned handle keeps the fsync
    /// outside the lock so appends are not blocked by it.
    pub(crate) fn sync(&self) -> Result<()> {
        let file = {
            let state = self.state.lock().expect("spool lock poisoned");
            state
                .file
                .try_clone()
                .map_err(|source| io_error(&self.dir, source))?
        };
        file.sync_data()
            .map_err(|source| io_error(&self.dir, source))
    }

    /// At shutdown, after the pipeline drained: removes the open segment if everything in it is
    /// committed. Returns how many spooled requests are still uncommitted (they replay on start).
    pub(crate) fn close(&self) -> Result<u64> {
        let state = self.state.lock().expect("spool lock poisoned");
        state
            .file
            .sync_data()
            .map_err(|source| io_error(&self.dir, source))?;
        let pending: u64 = state
            .segments
            .values()
            .map(|c| c.written.saturating_sub(c.committed))
            .sum();
        if pending == 0 {
            let path = segment_path(&self.dir, state.segment);
            fs::remove_file(&path).map_err(|source| io_error(&path, source))?;
        }
        Ok(pending)
    }
}

fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:012}.spool"))
}

fn create_segment(dir: &Path, segment: u64) -> Result<File> {
    let path = segment_path(dir, segment);
    let file = File::options()
        .create_new(true)
        .append(true)
        .open(&path)
        .map_err(|source| io_error(&path, source))?;
    sync_dir(dir)?;
    Ok(file)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(|source| io_error(dir, source))
}

fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir).map_err(|source| io_error(dir, source))? {
        let path = entry.map_err(|source| io_error(dir, source))?.path();
        let number = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.strip_suffix(".spool"))
            .and_then(|stem| stem.parse::<u64>().ok());
        if let Some(number) = number {
            segments.push((number, path));
        }
    }
    segments.sort();
    Ok(segments)
}

fn read_segment(path: &Path) -> Result<Vec<Vec<PendingEvent>>> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut file| file.read_to_end(&mut bytes))
        .map_err(|source| io_error(path, source))?;
    let mut requests = Vec::new();
    let mut rest = &bytes[..];
    while rest.len() >= 4 {
        let length = u32::from_le_bytes(rest[..4].try_into().expect("four bytes")) as usize;
        let Some(payload) = rest.get(4..4 + length) else {
            tracing::warn!(path = %path.display(), "spool ends in a torn record (power loss); skipping it");
            break;
        };
        match serde_json::from_slice::<Vec<SpooledEvent>>(payload) {
            Ok(events) => match events
                .into_iter()
                .map(SpooledEvent::into_pending)
                .collect::<Option<Vec<_>>>()
            {
                Some(request) => requests.push(request),
                None => {
                    tracing::warn!(path = %path.display(), "spool record has an unknown enum value; stopping replay of this segment");
                    break;
                }
            },
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "spool record unreadable; stopping replay of this segment");
                break;
            }
        }
        rest = &rest[4 + length..];
    }
    Ok(requests)
}

fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The spool's on-disk form of a pending event.
#[derive(Serialize, Deserialize)]
struct SpooledEvent {
    event_id: String,
    timestamp_ns: i64,
    timestamp_supplied: bool,
    received_at_ns: i64,
    tenant_id: String,
    actor_id: String,
    actor_type: String,
    action: String,
    resource_type: String,
    resource_id: Option<String>,
    outcome: String,
    ip_address: Option<String>,
    user_agent: Option<String>,
    request_id: Option<String>,
    changes: Option<String>,
    metadata: Option<String>,
}

impl From<&PendingEvent> for SpooledEvent {
    fn from(pending: &PendingEvent) -> Self {
        let event = &pending.event;
        SpooledEvent {
            event_id: event.event_id.clone(),
            timestamp_ns: event.timestamp_ns,
            timestamp_supplied: pending.timestamp_supplied,
            received_at_ns: pending.received_at_ns,
            tenant_id: event.tenant_id.clone(),
            actor_id: event.actor_id.clone(),
            actor_type: event.actor_type.as_str().to_owned(),
            action: event.action.clone(),
            resource_type: event.resource_type.clone(),
            resource_id: event.resource_id.clone(),
            outcome: event.outcome.as_str().to_owned(),
            ip_address: event.ip_address.clone(),
            user_agent: event.user_agent.clone(),
            request_id: event.request_id.clone(),
            changes: event.changes.clone(),
            metadata: event.metadata.clone(),
        }
    }
}

impl SpooledEvent {
    /// Back to a pending event; `None` if the record was altered on disk.
    fn into_pending(self) -> Option<PendingEvent> {
        let spooled = self;
        Some(PendingEvent {
            event: Event {
                event_id: spooled.event_id,
                timestamp_ns: spooled.timestamp_ns,
                tenant_id: spooled.tenant_id,
                actor_id: spooled.actor_id,
                actor_type: ActorType::parse(&spooled.actor_type)?,
                action: spooled.action,
                resource_type: spooled.resource_type,
                resource_id: spooled.resource_id,
                outcome: Outcome::parse(&spooled.outcome)?,
                ip_address: spooled.ip_address,
                user_agent: spooled.user_agent,
                request_id: spooled.request_id,
                changes: spooled.changes,
                metadata: spooled.metadata,
            },
            received_at_ns: spooled.received_at_ns,
            timestamp_supplied: spooled.timestamp_supplied,
        })
    }
}
