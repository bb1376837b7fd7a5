//! The async spool: a local append-only log of accepted-but-uncommitted async requests.
//!
//! An async request is written here (a `write(2)` into the page cache) before it is
//! acknowledged, so a crashed or killed process loses none of them: on start, every segment is
//! replayed into the store, and replay is idempotent because every event already carries its
//! final `event_id`. Segments are fsynced every [`SPOOL_FSYNC_INTERVAL_MILLIS`]; a power loss can
//! therefore lose acknowledged async events from at most that last interval.
//!
//! # Segment format, version 1
//!
//! A segment is the file `<n>.spool` (`n` zero-padded to 12 digits). It starts with a 12-byte
//! header, then holds records back to back:
//!
//! ```text
//! header  0  8  magic  "SLTSPOOL"
//!         8  4  format version, u32 little-endian (1)
//! record  0  4  marker FF FE C1 F7
//!         4  8  record number in the segment, u64 LE: 0, 1, 2, …
//!        12  4  payload length in bytes, u32 LE
//!        16  4  payload checksum: the first 4 bytes of SHA-256(payload)
//!        20  4  header checksum: the first 4 bytes of SHA-256(bytes 0..20 of the record)
//!        24  …  payload: one request, a JSON array of events
//! ```
//!
//! The magic and the version field keep their place in every future version. A segment whose
//! magic is intact but whose version is not 1 is refused at start with an error naming the file,
//! and left untouched: it may hold a newer build's requests. The checksums are truncated SHA-256
//! because `sha2` is already compiled for the ledger (a CRC crate would be a new dependency);
//! four bytes catch random damage as well as a CRC-32 does.
//!
//! # Recovery
//!
//! Reading a segment keeps every intact record, in order. A record whose header or payload
//! checksum fails is skipped by *resynchronising*: the reader looks for the next offset holding
//! the marker and a header whose checksum holds (and whose record number is not behind), and
//! continues there. The length of a record whose payload is damaged is not trusted to skip it,
//! because a write that failed part-way leaves a short record directly followed by the next.
//! Resynchronising is safe because no payload can hold a false marker (JSON is UTF-8, and the
//! marker's bytes never occur in UTF-8), and a chance match must also pass a 32-bit checksum. A
//! number is used up even by a failed write, so numbers never repeat within a segment, and they
//! tell how many records the damage swallowed: the count of lost records is exact whenever an
//! intact record header follows the damage. A damaged *tail* (no intact header after it: a torn final write, or damage near
//! the end) counts one lost record, plus one for each further marker found in it; a record whose
//! marker itself was destroyed there merges with its neighbour and is not counted. Records cut
//! away entirely by a truncation leave no trace and cannot be counted.
//!
//! Lost records are logged at error level with the file and the count, and kept in
//! [`SpoolRecovery`] for `/metrics` ([`Spool::recovery`]). A segment with any damage (a damaged
//! header or a lost record) is never deleted: after its intact records are committed (or moved
//! to the new segment and synced), it is renamed to `<n>.spool.damaged` beside the live
//! segments, so an operator can inspect it; the server never reads `*.damaged` files again.
//! A segment shorter than its header that is a prefix of it (a creation torn by power loss)
//! holds no record and is deleted like an intact one.
//!
//! # Where fsync runs
//!
//! No fsync runs under the spool's lock. [`Spool::append`] runs on the async runtime's worker
//! threads and only writes into the page cache (the payload is serialized and checksummed
//! before the lock is taken), even when it seals a segment and starts the next; the sealed file and the directory entry are fsynced by [`Spool::sync`], which copies
//! the handles under the lock and syncs them after releasing it, and which the pipeline runs
//! on the blocking thread pool.
//!
//! [`SPOOL_FSYNC_INTERVAL_MILLIS`]: sealtrail_model::limits::SPOOL_FSYNC_INTERVAL_MILLIS

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sealtrail_model::limits::SPOOL_SEGMENT_BYTES_MAX;
use sealtrail_model::{ActorType, CaptureDecision, Event, Outcome, PendingEvent};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// The first bytes of every segment.
const SEGMENT_MAGIC: [u8; 8] = *b"SLTSPOOL";
/// The segment format this build writes and reads.
const FORMAT_VERSION: u32 = 1;
/// Magic and version.
const SEGMENT_HEADER_BYTES: usize = 12;
/// The first bytes of every record. None of them can occur in UTF-8, so never in a payload.
const RECORD_MARKER: [u8; 4] = [0xFF, 0xFE, 0xC1, 0xF7];
/// Marker, record number, payload length, payload checksum, header checksum.
const RECORD_HEADER_BYTES: usize = 24;
/// Bytes of a truncated SHA-256 checksum.
const CHECKSUM_BYTES: usize = 4;
/// The name a damaged segment gets once its intact records are committed: `<n>.spool.damaged`.
const DAMAGED_SUFFIX: &str = ".damaged";

/// A segment left by an earlier process: its requests in order, and whether any of it was
/// damaged (then it is renamed aside instead of deleted once the requests are committed).
#[derive(Debug)]
pub(crate) struct LeftoverSegment {
    pub(crate) path: PathBuf,
    pub(crate) requests: Vec<Vec<PendingEvent>>,
    pub(crate) damaged: bool,
}

/// Segments left by an earlier process, oldest first.
pub(crate) type Leftovers = Vec<LeftoverSegment>;

/// What reading the leftover segments at start found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SpoolRecovery {
    /// Leftover segments read.
    pub(crate) segments: u64,
    /// Records read intact (each one request), all of them replayed.
    pub(crate) intact: u64,
    /// Records that could not be read (see the module doc for how they are counted).
    pub(crate) lost: u64,
    /// Segments renamed aside to `*.spool.damaged` for inspection.
    pub(crate) damaged_segments: u64,
}

/// The spool directory and its open segment.
#[derive(Debug)]
pub(crate) struct Spool {
    dir: PathBuf,
    state: Mutex<SpoolState>,
    recovery: SpoolRecovery,
    /// [`SPOOL_SEGMENT_BYTES_MAX`]; smaller in tests, to rotate often.
    segment_bytes_max: u64,
}

#[derive(Debug)]
struct SpoolState {
    file: File,
    segment: u64,
    bytes: u64,
    /// The record number the next append gets in the open segment.
    next_record: u64,
    /// Records written and committed per live segment.
    segments: BTreeMap<u64, Counts>,
    /// Segments sealed since the last [`Spool::sync`]: their final fsync is still to run.
    sealed_unsynced: Vec<File>,
    /// A segment was created since the last [`Spool::sync`], so the directory needs an fsync.
    dir_unsynced: bool,
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
    /// [`Spool::retire_replayed`].
    ///
    /// Fails, naming the file, if a segment has a format version this build does not read; such
    /// a segment is left untouched.
    pub(crate) fn open(dir: &Path) -> Result<(Self, Leftovers)> {
        fs::create_dir_all(dir).map_err(|source| io_error(dir, source))?;
        let listing = list_segments(dir)?;
        let mut leftovers = Vec::new();
        let mut recovery = SpoolRecovery::default();
        for (_, path) in &listing.live {
            let read = read_segment(path)?;
            recovery.segments += 1;
            recovery.intact += read.requests.len() as u64;
            recovery.lost += read.lost;
            if read.damaged {
                recovery.damaged_segments += 1;
                tracing::error!(
                    path = %path.display(),
                    lost_records = read.lost,
                    intact_records = read.requests.len(),
                    "spool segment is damaged: its intact records are replayed, then it is \
                     renamed to *{DAMAGED_SUFFIX} for inspection"
                );
            }
            leftovers.push(LeftoverSegment {
                path: path.clone(),
                requests: read.requests,
                damaged: read.damaged,
            });
        }
        // Numbers of segments set aside are never reused, so a rename never replaces one.
        let segment = listing.last_number + 1;
        let file = create_segment(dir, segment)?;
        let spool = Spool {
            dir: dir.to_owned(),
            state: Mutex::new(SpoolState {
                file,
                segment,
                bytes: SEGMENT_HEADER_BYTES as u64,
                next_record: 0,
                segments: BTreeMap::from([(segment, Counts::default())]),
                sealed_unsynced: Vec::new(),
                dir_unsynced: true,
            }),
            recovery,
            segment_bytes_max: SPOOL_SEGMENT_BYTES_MAX,
        };
        Ok((spool, leftovers))
    }

    /// What reading the leftover segments found at start.
    pub(crate) fn recovery(&self) -> SpoolRecovery {
        self.recovery
    }

    /// Records of leftover segments that could not be read at start.
    pub(crate) fn lost_records(&self) -> u64 {
        self.recovery.lost
    }

    /// Retires leftover segments whose intact requests are now committed (or spooled again and
    /// synced): an intact segment is deleted; a damaged one is renamed to `*.spool.damaged`.
    pub(crate) fn retire_replayed(&self, segments: &[(PathBuf, bool)]) -> Result<()> {
        for (path, damaged) in segments {
            if *damaged {
                let mut aside = path.clone().into_os_string();
                aside.push(DAMAGED_SUFFIX);
                fs::rename(path, &aside).map_err(|source| io_error(path, source))?;
            } else {
                fs::remove_file(path).map_err(|source| io_error(path, source))?;
            }
        }
        sync_dir(&self.dir)
    }

    /// Appends one request. When this returns, the request survives a process crash. Only writes
    /// into the page cache (see the module doc): safe to call on an async worker thread.
    pub(crate) fn append(&self, events: &[PendingEvent]) -> Result<SpoolTicket> {
        // The payload and its checksum are made before taking the lock; only the header, which
        // holds the record number, is written under it.
        let mut record = vec![0; RECORD_HEADER_BYTES];
        serde_json::to_writer(
            &mut record,
            &events.iter().map(SpooledEvent::from).collect::<Vec<_>>(),
        )
        .expect("spooled events always serialize");
        let payload_checksum = checksum(&record[RECORD_HEADER_BYTES..]);

        let mut state = self.state.lock().expect("spool lock poisoned");
        if state.bytes >= self.segment_bytes_max {
            self.rotate(&mut state)?;
        }
        let segment = state.segment;
        // A number is used up even if the write fails: a partly written record must not share
        // its number with the next one, which recovery would then take for a stale copy.
        let record_number = state.next_record;
        state.next_record += 1;
        write_record_header(&mut record, record_number, payload_checksum);
        state
            .file
            .write_all(&record)
            .map_err(|source| io_error(&self.dir, source))?;
        state.bytes += record.len() as u64;
        state.segments.entry(segment).or_default().written += 1;
        Ok(SpoolTicket { segment })
    }

    /// Seals the open segment and starts the next. No fsync here: the sealed file and the new
    /// directory entry are synced by the next [`Spool::sync`], off the lock.
    fn rotate(&self, state: &mut SpoolState) -> Result<()> {
        let segment = state.segment + 1;
        let file = create_segment(&self.dir, segment)?;
        let sealed = std::mem::replace(&mut state.file, file);
        state.sealed_unsynced.push(sealed);
        state.dir_unsynced = true;
        state.segment = segment;
        state.bytes = SEGMENT_HEADER_BYTES as u64;
        state.next_record = 0;
        state.segments.insert(segment, Counts::default());
        self.remove_if_done(state, segment - 1)
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

    /// Flushes the open segment, any segment sealed since the last call, and the directory to
    /// disk. Blocks on fsync: call it from a blocking thread, not an async worker. The handles
    /// are copied under the lock and synced after releasing it, so appends never wait on it.
    pub(crate) fn sync(&self) -> Result<()> {
        let (open, sealed, dir_unsynced) = {
            let mut state = self.state.lock().expect("spool lock poisoned");
            let open = state
                .file
                .try_clone()
                .map_err(|source| io_error(&self.dir, source))?;
            let sealed = std::mem::take(&mut state.sealed_unsynced);
            let dir_unsynced = std::mem::take(&mut state.dir_unsynced);
            (open, sealed, dir_unsynced)
        };
        for file in sealed.iter().chain(std::iter::once(&open)) {
            file.sync_data()
                .map_err(|source| io_error(&self.dir, source))?;
        }
        if dir_unsynced {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// At shutdown, after the pipeline drained (or was abandoned at the shutdown deadline):
    /// syncs everything, then removes the open segment if everything in it is committed.
    /// Returns how many spooled requests are still uncommitted (they replay on start). Blocks
    /// on fsync, like [`Spool::sync`].
    pub(crate) fn close(&self) -> Result<u64> {
        self.sync()?;
        let state = self.state.lock().expect("spool lock poisoned");
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

/// Creates segment `segment` and writes its header (into the page cache; see [`Spool::sync`]).
fn create_segment(dir: &Path, segment: u64) -> Result<File> {
    let path = segment_path(dir, segment);
    let mut file = File::options()
        .create_new(true)
        .append(true)
        .open(&path)
        .map_err(|source| io_error(&path, source))?;
    file.write_all(&segment_header())
        .map_err(|source| io_error(&path, source))?;
    Ok(file)
}

fn segment_header() -> [u8; SEGMENT_HEADER_BYTES] {
    let mut header = [0; SEGMENT_HEADER_BYTES];
    header[..8].copy_from_slice(&SEGMENT_MAGIC);
    header[8..].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header
}

/// The first [`CHECKSUM_BYTES`] of SHA-256.
fn checksum(bytes: &[u8]) -> [u8; CHECKSUM_BYTES] {
    let digest = Sha256::digest(bytes);
    let mut truncated = [0; CHECKSUM_BYTES];
    truncated.copy_from_slice(&digest[..CHECKSUM_BYTES]);
    truncated
}

/// Fills in the header of `record` (header space, then the payload; see the module doc).
fn write_record_header(
    record: &mut [u8],
    record_number: u64,
    payload_checksum: [u8; CHECKSUM_BYTES],
) {
    let payload_bytes = record.len() - RECORD_HEADER_BYTES;
    let length = u32::try_from(payload_bytes).expect("request bodies are far below 4 GiB");
    record[..4].copy_from_slice(&RECORD_MARKER);
    record[4..12].copy_from_slice(&record_number.to_le_bytes());
    record[12..16].copy_from_slice(&length.to_le_bytes());
    record[16..20].copy_from_slice(&payload_checksum);
    let header_checksum = checksum(&record[..20]);
    record[20..24].copy_from_slice(&header_checksum);
    debug_assert!(
        record_header_at(record, 0).is_some_and(|header| header.record_number == record_number
            && header.payload_bytes == payload_bytes
            && checksum(&record[RECORD_HEADER_BYTES..]) == header.payload_checksum),
        "a record reads back as written"
    );
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(|source| io_error(dir, source))
}

/// The spool directory's contents.
struct Listing {
    /// `<n>.spool` files, by number.
    live: Vec<(u64, PathBuf)>,
    /// The highest segment number in use, live or set aside (0 when there is none).
    last_number: u64,
}

fn list_segments(dir: &Path) -> Result<Listing> {
    let mut live = Vec::new();
    let mut last_number = 0;
    for entry in fs::read_dir(dir).map_err(|source| io_error(dir, source))? {
        let path = entry.map_err(|source| io_error(dir, source))?.path();
        let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
            continue;
        };
        let (stem, is_live) = match name.strip_suffix(DAMAGED_SUFFIX) {
            Some(set_aside) => (set_aside, false),
            None => (name, true),
        };
        let number = stem
            .strip_suffix(".spool")
            .and_then(|stem| stem.parse::<u64>().ok());
        if let Some(number) = number {
            last_number = last_number.max(number);
            if is_live {
                live.push((number, path));
            }
        }
    }
    live.sort();
    Ok(Listing { live, last_number })
}

/// A leftover segment as read.
#[derive(Debug)]
struct ReadSegment {
    requests: Vec<Vec<PendingEvent>>,
    lost: u64,
    damaged: bool,
}

fn read_segment(path: &Path) -> Result<ReadSegment> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut file| file.read_to_end(&mut bytes))
        .map_err(|source| io_error(path, source))?;
    let scanned = scan_segment(&bytes).map_err(|version| {
        io_error(
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "spool segment format version {version} is not one this build reads (it \
                     reads version {FORMAT_VERSION}); the segment was left untouched: start the \
                     sealtrail version that wrote it to replay it, or move it out of the spool \
                     directory"
                ),
            ),
        )
    })?;
    let mut read = ReadSegment {
        requests: Vec::with_capacity(scanned.payloads.len()),
        lost: scanned.lost,
        damaged: scanned.damaged,
    };
    for payload in scanned.payloads {
        match decode_request(payload) {
            Some(request) => read.requests.push(request),
            None => {
                // The checksum held, so this build wrote something it cannot read back: keep
                // the segment for inspection like any damage.
                tracing::error!(path = %path.display(), "spool record passes its checksum but does not decode");
                read.lost += 1;
                read.damaged = true;
            }
        }
    }
    Ok(read)
}

fn decode_request(payload: &[u8]) -> Option<Vec<PendingEvent>> {
    serde_json::from_slice::<Vec<SpooledEvent>>(payload)
        .ok()?
        .into_iter()
        .map(SpooledEvent::into_pending)
        .collect()
}

/// The records of a segment's bytes, before decoding.
#[derive(Debug, PartialEq, Eq)]
struct ScannedSegment<'a> {
    /// Payloads of the intact records, in order.
    payloads: Vec<&'a [u8]>,
    /// Records that could not be read.
    lost: u64,
    /// Whether anything (header or record) was damaged.
    damaged: bool,
}

/// Reads a segment's bytes: every intact record in order, and how many were lost (module doc,
/// "Recovery"). `Err(version)` when the magic is intact and the version is not one this build
/// reads.
fn scan_segment(bytes: &[u8]) -> Result<ScannedSegment<'_>, u32> {
    let header = segment_header();
    let magic_intact = bytes.get(..SEGMENT_MAGIC.len()) == Some(&SEGMENT_MAGIC[..]);
    if let (true, Some(version)) = (magic_intact, bytes.get(8..SEGMENT_HEADER_BYTES)) {
        let version = u32::from_le_bytes(version.try_into().expect("four bytes"));
        if version != FORMAT_VERSION {
            return Err(version);
        }
    }
    let mut scanned = ScannedSegment {
        payloads: Vec::new(),
        lost: 0,
        damaged: false,
    };
    if bytes.len() < SEGMENT_HEADER_BYTES {
        // A creation torn before its header was whole holds no record.
        scanned.damaged = !header.starts_with(bytes);
        return Ok(scanned);
    }
    // A damaged header is damage too, but records carry their own checksums: read on.
    scanned.damaged = bytes[..SEGMENT_HEADER_BYTES] != header;

    let mut position = SEGMENT_HEADER_BYTES;
    let mut next_record = 0u64;
    while position < bytes.len() {
        let found = record_header_at(bytes, position).filter(|h| h.record_number >= next_record);
        let Some(record) = found else {
            scanned.damaged = true;
            match next_record_header(bytes, position + 1, next_record) {
                Some(resume) => {
                    position = resume;
                    continue;
                }
                None => {
                    scanned.lost += damaged_tail_records(&bytes[position..]);
                    break;
                }
            }
        };
        // Record numbers skipped over were swallowed by damage before this header.
        let skipped = record.record_number - next_record;
        scanned.lost += skipped;
        scanned.damaged |= skipped > 0;
        next_record = record.record_number + 1;
        let payload_start = position + RECORD_HEADER_BYTES;
        let Some(payload) = bytes.get(payload_start..payload_start + record.payload_bytes) else {
            // The record runs past the end of the file: a torn final write.
            scanned.lost += 1;
            scanned.damaged = true;
            break;
        };
        let payload_end = payload_start + record.payload_bytes;
        if checksum(payload) == record.payload_checksum {
            scanned.payloads.push(payload);
            position = payload_end;
        } else {
            scanned.lost += 1;
            scanned.damaged = true;
            // Its length is not trusted to skip it: a write that failed part-way leaves a short
            // record that later records follow directly. Resume at the next intact header after
            // this one's, wherever it is.
            position = next_record_header(bytes, payload_start, next_record).unwrap_or(payload_end);
        }
    }
    Ok(scanned)
}

/// A record header whose marker and checksum hold.
#[derive(Debug)]
struct RecordHeader {
    record_number: u64,
    payload_bytes: usize,
    payload_checksum: [u8; CHECKSUM_BYTES],
}

fn record_header_at(bytes: &[u8], position: usize) -> Option<RecordHeader> {
    let header = bytes.get(position..position.checked_add(RECORD_HEADER_BYTES)?)?;
    if header[..4] != RECORD_MARKER || checksum(&header[..20]) != header[20..24] {
        return None;
    }
    Some(RecordHeader {
        record_number: u64::from_le_bytes(header[4..12].try_into().expect("eight bytes")),
        payload_bytes: u32::from_le_bytes(header[12..16].try_into().expect("four bytes")) as usize,
        payload_checksum: header[16..20].try_into().expect("four bytes"),
    })
}

/// The offset, at or after `from`, of the next intact record header numbered at least
/// `next_record`.
fn next_record_header(bytes: &[u8], from: usize, next_record: u64) -> Option<usize> {
    let mut position = from;
    while let Some(offset) = bytes
        .get(position..)?
        .iter()
        .position(|&b| b == RECORD_MARKER[0])
    {
        let candidate = position + offset;
        if record_header_at(bytes, candidate).is_some_and(|h| h.record_number >= next_record) {
            return Some(candidate);
        }
        position = candidate + 1;
    }
    None
}

/// How many records a damaged tail (no intact record header in it) held: the one starting
/// where it starts, and one per further record marker found in it.
fn damaged_tail_records(tail: &[u8]) -> u64 {
    let further = tail
        .windows(RECORD_MARKER.len())
        .skip(1)
        .filter(|window| *window == RECORD_MARKER)
        .count();
    1 + further as u64
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
    /// The capture decision (absent in records written before capture policies, and for
    /// events outside sampling): class and whether the event is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    class: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kept: Option<bool>,
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
            class: pending.capture.map(|capture| capture.class),
            kept: pending.capture.map(|capture| capture.kept),
        }
    }
}

impl SpooledEvent {
    /// Back to a pending event; `None` if the record was altered on disk.
    fn into_pending(self) -> Option<PendingEvent> {
        let spooled = self;
        let capture = match (spooled.class, spooled.kept) {
            (None, None) => None,
            (Some(class), Some(kept)) if usize::from(class) < sealtrail_policy::CLASSES => {
                Some(CaptureDecision { class, kept })
            }
            _ => return None,
        };
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
            capture,
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use sealtrail_hot::conformance::test_event;

    use super::*;

    #[test]
    fn capture_decisions_survive_the_spool_and_old_records_have_none() {
        let mut dropped = test_event("acme", "e1", 1);
        dropped.capture = Some(CaptureDecision {
            class: 3,
            kept: false,
        });
        let mut kept = test_event("acme", "e2", 2);
        kept.capture = Some(CaptureDecision {
            class: 0,
            kept: true,
        });
        let request = vec![dropped, kept, test_event("acme", "e3", 3)];
        let payload =
            serde_json::to_vec(&request.iter().map(SpooledEvent::from).collect::<Vec<_>>())
                .unwrap();
        assert_eq!(decode_request(&payload).unwrap(), request);
        // A record written before capture policies has neither member.
        let old = String::from_utf8(payload).unwrap();
        assert!(!old.contains("\"class\":null"), "{old}");
        // Half a decision was altered on disk: the record does not decode.
        let altered = old.replacen("\"kept\":false", "\"kept\":null", 1);
        assert_eq!(decode_request(altered.as_bytes()), None);
    }

    /// `count` requests of 1 to 3 events each, with distinct `event_id`s.
    fn requests(count: usize) -> Vec<Vec<PendingEvent>> {
        (0..count)
            .map(|request| {
                (0..1 + request % 3)
                    .map(|event| {
                        let n = (request * 10 + event) as u64;
                        test_event("acme", &format!("r{request}-e{event}"), n)
                    })
                    .collect()
            })
            .collect()
    }

    /// Spools `requests` into a fresh directory as one segment and returns its path.
    fn spooled(dir: &Path, requests: &[Vec<PendingEvent>]) -> PathBuf {
        let (spool, leftovers) = Spool::open(dir).unwrap();
        assert!(leftovers.is_empty());
        for request in requests {
            spool.append(request).unwrap();
        }
        segment_path(dir, 1)
    }

    /// Byte range of each record of an undamaged segment, read by its length fields alone.
    fn record_ranges(bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
        let mut ranges = Vec::new();
        let mut start = SEGMENT_HEADER_BYTES;
        while start < bytes.len() {
            let length = u32::from_le_bytes(bytes[start + 12..start + 16].try_into().unwrap());
            let end = start + RECORD_HEADER_BYTES + length as usize;
            ranges.push(start..end);
            start = end;
        }
        assert_eq!(start, bytes.len(), "records fill the segment");
        ranges
    }

    #[test]
    fn every_request_comes_back_in_order_and_the_segment_is_versioned() {
        let dir = tempfile::tempdir().unwrap();
        let written = requests(50);
        let path = spooled(dir.path(), &written);
        let bytes = fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"SLTSPOOL");
        assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 1);
        assert_eq!(record_ranges(&bytes).len(), 50);

        let (spool, leftovers) = Spool::open(dir.path()).unwrap();
        assert_eq!(leftovers.len(), 1);
        assert_eq!(leftovers[0].path, path);
        assert!(!leftovers[0].damaged);
        assert_eq!(leftovers[0].requests, written);
        assert_eq!(
            spool.recovery(),
            SpoolRecovery {
                segments: 1,
                intact: 50,
                lost: 0,
                damaged_segments: 0
            }
        );
        // The new segment takes the next number.
        assert!(segment_path(dir.path(), 2).exists());
    }

    #[test]
    fn an_unknown_version_is_refused_naming_the_file_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = spooled(dir.path(), &requests(3));
        let mut bytes = fs::read(&path).unwrap();
        bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
        fs::write(&path, &bytes).unwrap();

        let error = Spool::open(dir.path()).unwrap_err().to_string();
        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(error.contains("format version 2"), "{error}");
        assert_eq!(fs::read(&path).unwrap(), bytes, "the segment is untouched");
    }

    #[test]
    fn a_damaged_segment_is_set_aside_after_replay_and_its_number_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let written = requests(10);
        let path = spooled(dir.path(), &written);
        let mut bytes = fs::read(&path).unwrap();
        let ranges = record_ranges(&bytes);
        // Damage the payload of record 3 and the header of record 6.
        bytes[ranges[3].end - 2] ^= 0x20;
        bytes[ranges[6].start + 5] ^= 0x01;
        fs::write(&path, &bytes).unwrap();

        let (spool, leftovers) = Spool::open(dir.path()).unwrap();
        let expected: Vec<_> = written
            .iter()
            .enumerate()
            .filter(|(index, _)| ![3, 6].contains(index))
            .map(|(_, request)| request.clone())
            .collect();
        assert_eq!(leftovers[0].requests, expected);
        assert!(leftovers[0].damaged);
        assert_eq!(spool.lost_records(), 2);
        assert_eq!(spool.recovery().damaged_segments, 1);

        spool.retire_replayed(&[(path.clone(), true)]).unwrap();
        let aside = dir.path().join("000000000001.spool.damaged");
        assert!(!path.exists());
        assert_eq!(fs::read(&aside).unwrap(), bytes, "kept byte for byte");
        drop(spool);
        fs::remove_file(segment_path(dir.path(), 2)).unwrap();

        // A set-aside segment is not read again, and its number is not reused.
        let (_spool, leftovers) = Spool::open(dir.path()).unwrap();
        assert!(leftovers.is_empty());
        assert!(segment_path(dir.path(), 2).exists());
        assert!(aside.exists());
    }

    #[test]
    fn a_record_written_part_way_does_not_hide_the_records_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let written = requests(8);
        let path = spooled(dir.path(), &written);
        let pristine = fs::read(&path).unwrap();
        let ranges = record_ranges(&pristine);
        let torn = &ranges[3];
        // A failed write leaves the start of record 3; records 4.. follow it directly.
        for kept in [
            3,
            10,
            RECORD_HEADER_BYTES,
            RECORD_HEADER_BYTES + 5,
            torn.len() - 1,
        ] {
            let mut bytes = pristine[..torn.start + kept].to_vec();
            bytes.extend_from_slice(&pristine[torn.end..]);
            fs::write(&path, &bytes).unwrap();
            let scanned = scan_segment(&bytes).unwrap();
            let read: Vec<_> = scanned
                .payloads
                .iter()
                .map(|payload| decode_request(payload).unwrap())
                .collect();
            let mut expected = written.clone();
            expected.remove(3);
            assert_eq!(read, expected, "{kept} bytes of record 3 kept");
            assert_eq!(scanned.lost, 1, "{kept} bytes of record 3 kept");
            assert!(scanned.damaged);
        }
    }

    #[test]
    fn an_intact_segment_is_deleted_after_replay() {
        let dir = tempfile::tempdir().unwrap();
        let path = spooled(dir.path(), &requests(2));
        let (spool, leftovers) = Spool::open(dir.path()).unwrap();
        assert!(!leftovers[0].damaged);
        spool.retire_replayed(&[(path.clone(), false)]).unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn a_torn_creation_holds_nothing_and_is_no_damage() {
        for length in 0..SEGMENT_HEADER_BYTES {
            let dir = tempfile::tempdir().unwrap();
            fs::write(segment_path(dir.path(), 7), &segment_header()[..length]).unwrap();
            let (spool, leftovers) = Spool::open(dir.path()).unwrap();
            assert!(leftovers[0].requests.is_empty());
            assert!(!leftovers[0].damaged, "{length} bytes");
            assert_eq!(spool.lost_records(), 0);
            assert!(segment_path(dir.path(), 8).exists());
        }
    }

    #[test]
    fn rotation_seals_a_full_segment_and_both_replay_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(dir.path()).unwrap();
        spool.segment_bytes_max = 2_000;
        let written = requests(30);
        let tickets: Vec<_> = written
            .iter()
            .map(|request| spool.append(request).unwrap())
            .collect();
        let segments = list_segments(dir.path()).unwrap().live.len();
        assert!(segments > 2, "{segments} segments");
        // Sealed segments were fsynced by `sync`, not by `append`.
        assert!(!spool.state.lock().unwrap().sealed_unsynced.is_empty());
        spool.sync().unwrap();
        assert!(spool.state.lock().unwrap().sealed_unsynced.is_empty());
        // Committing every request of the first segment deletes it.
        let first = tickets[0];
        for ticket in tickets.iter().filter(|ticket| **ticket == first) {
            spool.committed(*ticket).unwrap();
        }
        assert!(!segment_path(dir.path(), first.segment).exists());
        let committed = tickets.iter().filter(|ticket| **ticket == first).count();
        drop(spool);

        let (spool, leftovers) = Spool::open(dir.path()).unwrap();
        let replayed: Vec<_> = leftovers
            .iter()
            .flat_map(|segment| segment.requests.clone())
            .collect();
        assert_eq!(replayed, written[committed..]);
        assert_eq!(spool.lost_records(), 0);
    }

    /// Damage: an optional truncation and byte flips, as fractions of the segment's length.
    fn damage() -> impl Strategy<Value = (Option<f64>, Vec<(f64, u8)>)> {
        (
            proptest::option::of(0.0..=1.0f64),
            proptest::collection::vec((0.0..1.0f64, 1..=255u8), 0..4),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever is truncated or flipped, every intact record comes back once, in order, and
        /// the lost count is the number of damaged records (as the module doc defines it).
        #[test]
        fn recovery_keeps_every_intact_record((count, (cut, flips)) in (1..60usize, damage())) {
            let dir = tempfile::tempdir().unwrap();
            let written = requests(count);
            let path = spooled(dir.path(), &written);
            let pristine = fs::read(&path).unwrap();
            let ranges = record_ranges(&pristine);
            let length = pristine.len();
            let cut = cut.map_or(length, |fraction| (fraction * length as f64) as usize).min(length);
            let flips: Vec<(usize, u8)> = flips
                .into_iter()
                .map(|(fraction, mask)| (((fraction * length as f64) as usize).min(length - 1), mask))
                .filter(|(offset, _)| *offset < cut)
                .collect();
            let mut bytes = pristine.clone();
            for (offset, mask) in &flips {
                bytes[*offset] ^= mask;
            }
            bytes.truncate(cut);
            fs::write(&path, &bytes).unwrap();

            let changed = |range: std::ops::Range<usize>| {
                range.start < cut && (range.end > cut || bytes[range.clone()] != pristine[range])
            };
            let version_changed = cut >= SEGMENT_HEADER_BYTES
                && bytes[..8] == pristine[..8]
                && bytes[8..12] != pristine[8..12];
            let opened = Spool::open(dir.path());
            if version_changed {
                let error = opened.unwrap_err().to_string();
                prop_assert!(error.contains(&path.display().to_string()), "{}", error);
                prop_assert_eq!(&fs::read(&path).unwrap(), &bytes);
                return Ok(());
            }
            let (spool, leftovers) = opened.unwrap();

            let intact: Vec<bool> = ranges
                .iter()
                .map(|range| range.end <= cut && !changed(range.clone()))
                .collect();
            let expected: Vec<_> = written
                .iter()
                .zip(&intact)
                .filter(|(_, intact)| **intact)
                .map(|(request, _)| request.clone())
                .collect();
            prop_assert_eq!(&leftovers[0].requests, &expected);

            // Records after the last one whose header survived form the damaged tail: each
            // counts if its marker survived, and the first counts in any case.
            let header_intact = |range: &std::ops::Range<usize>| {
                !changed(range.start..range.start + RECORD_HEADER_BYTES)
            };
            let tail_start = ranges.iter().rposition(header_intact).map_or(0, |last| last + 1);
            let lost = ranges
                .iter()
                .enumerate()
                .filter(|(index, range)| range.start < cut && !intact[*index])
                .filter(|(index, range)| {
                    *index <= tail_start || !changed(range.start..range.start + RECORD_MARKER.len())
                })
                .count() as u64;
            prop_assert_eq!(spool.lost_records(), lost);
            let present = SEGMENT_HEADER_BYTES.min(cut);
            let header_damaged = bytes[..present] != pristine[..present];
            prop_assert_eq!(leftovers[0].damaged, lost > 0 || header_damaged);
        }
    }
}
