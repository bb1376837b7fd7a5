//! The local spool: batches the server could not take yet, kept on disk until it answers 2xx.
//!
//! Layout: a directory of append-only segment files `<id>.seg` (20 decimal digits, ids only grow)
//! and a `cursor` file. A segment starts with a 12-byte header (`STCSPOOL`, then format version 1
//! as a little-endian `u32`), then holds records:
//!
//! | bytes | content |
//! |---|---|
//! | 4 | payload length `n`, little-endian `u32` |
//! | 4 | CRC-32 (IEEE) of the length word and the payload, little-endian |
//! | n | payload: one batch as JSON |
//!
//! *Contract:* [`Spool::append`] MUST NOT return before the record is fsynced (and, for a new
//! segment, the directory entry too): `Client::flush` counts a spooled event as safe on that
//! return. A crash mid-append leaves a torn last record; its checksum (or its length running past
//! the end of the file) shows it, and [`Spool::open`] cuts it off: it was never acknowledged to
//! anyone. A bad record anywhere else is damage, not a crash: the bytes from it on are moved to
//! `<segment>.torn` for inspection and reported at `error`.
//!
//! Entries are removed only from the front ([`Spool::pop_front`], after the server answered 2xx),
//! by moving the cursor and deleting segments left empty. The cursor is written without fsync:
//! losing it only means that acknowledged entries are sent again, which the server answers with
//! the stored receipts (every event carries its `event_id`). It is removed *before* the segments
//! when the spool empties, and segment ids never fall below it, so a stale cursor can never hide
//! a newer entry.
//!
//! One process per spool directory: two clients sharing one would interleave their records.
//!
//! This module does blocking IO; the client calls it from `spawn_blocking` (or from `Drop`).

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::limits::{SPOOL_RECORD_OVERHEAD_BYTES, SPOOL_SEGMENT_BYTES_MAX};

const MAGIC: &[u8; 8] = b"STCSPOOL";
const FORMAT_VERSION: u32 = 1;
const HEADER_BYTES: u64 = 12;
const CURSOR_FILE: &str = "cursor";
const SEGMENT_SUFFIX: &str = ".seg";

/// Where an entry starts: its segment and the byte offset of its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct EntryId {
    pub(crate) segment: u64,
    pub(crate) offset: u64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    id: EntryId,
    payload_len: u32,
}

#[derive(Debug)]
struct Segment {
    id: u64,
    len: u64,
}

/// An open spool directory. See the module documentation.
#[derive(Debug)]
pub(crate) struct Spool {
    dir: PathBuf,
    bytes_max: u64,
    /// Segments on disk, oldest first; the last one is the one appended to.
    segments: VecDeque<Segment>,
    /// The newest segment, open for appending, if it may still grow.
    active: Option<File>,
    /// Every entry not yet removed, oldest first.
    entries: VecDeque<Entry>,
    /// Bytes of all segment files together: what the bound limits.
    bytes: u64,
    next_segment_id: u64,
}

impl Spool {
    /// Opens (creating if needed) the spool in `dir`: reads every segment, cuts off a torn last
    /// record, and skips what the cursor says was delivered.
    pub(crate) fn open(dir: &Path, bytes_max: u64) -> Result<Spool> {
        fs::create_dir_all(dir).map_err(io_error(dir))?;
        let mut ids = Vec::new();
        for item in fs::read_dir(dir).map_err(io_error(dir))? {
            let item = item.map_err(io_error(dir))?;
            let name = item.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(id) = segment_id(name) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        let cursor = read_cursor(dir);
        let mut spool = Spool {
            dir: dir.to_owned(),
            bytes_max,
            segments: VecDeque::new(),
            active: None,
            entries: VecDeque::new(),
            bytes: 0,
            next_segment_id: ids
                .last()
                .copied()
                .max(cursor.map(|cursor| cursor.segment))
                .unwrap_or(0)
                + 1,
        };
        let last = ids.last().copied();
        for id in ids {
            let path = spool.segment_path(id);
            let live = spool.scan_segment(id, &path, Some(id) == last, cursor)?;
            let len = fs::metadata(&path).map_err(io_error(&path))?.len();
            if live == 0 {
                fs::remove_file(&path).map_err(io_error(&path))?;
            } else {
                spool.segments.push_back(Segment { id, len });
                spool.bytes += len;
            }
        }
        if spool.entries.is_empty() {
            spool.remove_cursor()?;
        }
        // The newest segment keeps taking records, unless it is already full.
        if let Some(segment) = spool.segments.back() {
            if segment.len < SPOOL_SEGMENT_BYTES_MAX {
                let path = spool.segment_path(segment.id);
                let file = OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .map_err(io_error(&path))?;
                spool.active = Some(file);
            }
        }
        Ok(spool)
    }

    /// Reads one segment, adding its live entries; returns how many it holds.
    fn scan_segment(
        &mut self,
        id: u64,
        path: &Path,
        is_last: bool,
        cursor: Option<EntryId>,
    ) -> Result<usize> {
        let bytes = fs::read(path).map_err(io_error(path))?;
        if bytes.len() < HEADER_BYTES as usize || &bytes[..8] != MAGIC {
            // A crash right after the segment was created leaves part of its header.
            let torn_header =
                is_last && bytes.len() < HEADER_BYTES as usize && header().starts_with(&bytes);
            if torn_header {
                return Ok(0);
            }
            return Err(Error::SpoolFormat {
                path: path.to_owned(),
            });
        }
        if bytes[8..12] != FORMAT_VERSION.to_le_bytes() {
            return Err(Error::SpoolFormat {
                path: path.to_owned(),
            });
        }
        let mut offset = HEADER_BYTES as usize;
        let mut live = 0;
        while offset < bytes.len() {
            let Some(payload_len) = check_record(&bytes[offset..]) else {
                self.cut_segment(path, &bytes, offset, is_last)?;
                break;
            };
            let entry = Entry {
                id: EntryId {
                    segment: id,
                    offset: offset as u64,
                },
                payload_len,
            };
            if cursor.is_none_or(|cursor| entry.id >= cursor) {
                self.entries.push_back(entry);
                live += 1;
            }
            offset += SPOOL_RECORD_OVERHEAD_BYTES as usize + payload_len as usize;
        }
        Ok(live)
    }

    /// Cuts a segment at its first bad record.
    fn cut_segment(&self, path: &Path, bytes: &[u8], offset: usize, is_last: bool) -> Result<()> {
        if is_last {
            tracing::warn!(
                path = %path.display(),
                offset,
                bytes = bytes.len() - offset,
                "spool: ignoring a torn last record (a crash while it was written; it was never \
                 acknowledged)"
            );
        } else {
            let aside = path.with_extension("seg.torn");
            fs::write(&aside, &bytes[offset..]).map_err(io_error(&aside))?;
            tracing::error!(
                path = %path.display(),
                offset,
                kept_in = %aside.display(),
                "spool: a damaged record in a sealed segment; the rest of the segment cannot be \
                 read and was moved aside"
            );
        }
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io_error(path))?;
        file.set_len(offset as u64).map_err(io_error(path))?;
        file.sync_all().map_err(io_error(path))
    }

    /// Appends one batch and fsyncs it. `Err(SpoolFull)` when it would take the spool beyond its
    /// byte bound; nothing is written then.
    pub(crate) fn append(&mut self, payload: &[u8]) -> Result<EntryId> {
        assert!(!payload.is_empty(), "a spool record holds a batch");
        let payload_len =
            u32::try_from(payload.len()).expect("a batch is far below 4 GiB (BODY_BYTES_MAX)");
        let record_bytes = SPOOL_RECORD_OVERHEAD_BYTES + u64::from(payload_len);
        let active_len = self.segments.back().map_or(0, |segment| segment.len);
        let new_segment = self.active.is_none()
            || (active_len > HEADER_BYTES && active_len + record_bytes > SPOOL_SEGMENT_BYTES_MAX);
        let header_bytes = if new_segment { HEADER_BYTES } else { 0 };
        if self.bytes + header_bytes + record_bytes > self.bytes_max {
            return Err(Error::SpoolFull {
                bytes_max: self.bytes_max,
            });
        }
        if new_segment {
            self.start_segment()?;
        }
        let segment = self
            .segments
            .back_mut()
            .expect("a segment was just ensured");
        let path = self.dir.join(segment_name(segment.id));
        let file = self.active.as_mut().expect("the newest segment is open");
        let offset = segment.len;
        let mut record = Vec::with_capacity(record_bytes as usize);
        record.extend_from_slice(&payload_len.to_le_bytes());
        record.extend_from_slice(&record_crc(payload_len, payload).to_le_bytes());
        record.extend_from_slice(payload);
        let written = file.write_all(&record).and_then(|()| file.sync_data());
        if let Err(error) = written {
            // Leave no half record behind for the next append to follow.
            let _ = file.set_len(offset);
            return Err(Error::SpoolIo {
                path,
                source: error,
            });
        }
        segment.len += record_bytes;
        self.bytes += record_bytes;
        let id = EntryId {
            segment: segment.id,
            offset,
        };
        self.entries.push_back(Entry { id, payload_len });
        if segment.len >= SPOOL_SEGMENT_BYTES_MAX {
            self.active = None;
        }
        Ok(id)
    }

    fn start_segment(&mut self) -> Result<()> {
        let id = self.next_segment_id;
        let path = self.segment_path(id);
        let mut file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(io_error(&path))?;
        let created = file
            .write_all(&header())
            .and_then(|()| file.sync_data())
            .and_then(|()| sync_dir(&self.dir));
        if let Err(error) = created {
            let _ = fs::remove_file(&path);
            return Err(Error::SpoolIo {
                path,
                source: error,
            });
        }
        self.next_segment_id += 1;
        self.segments.push_back(Segment {
            id,
            len: HEADER_BYTES,
        });
        self.bytes += HEADER_BYTES;
        self.active = Some(file);
        Ok(())
    }

    /// The oldest entry and its payload, checked against its checksum once more as it is read.
    pub(crate) fn front(&self) -> Option<(EntryId, Result<Vec<u8>>)> {
        let entry = *self.entries.front()?;
        Some((entry.id, self.read(entry)))
    }

    fn read(&self, entry: Entry) -> Result<Vec<u8>> {
        let path = self.segment_path(entry.id.segment);
        let mut record = vec![0; SPOOL_RECORD_OVERHEAD_BYTES as usize + entry.payload_len as usize];
        let read = File::open(&path).and_then(|mut file| {
            file.seek(SeekFrom::Start(entry.id.offset))?;
            file.read_exact(&mut record)
        });
        read.map_err(io_error(&path))?;
        match check_record(&record) {
            Some(len) if len == entry.payload_len => {
                record.drain(..SPOOL_RECORD_OVERHEAD_BYTES as usize);
                Ok(record)
            }
            _ => Err(Error::SpoolIo {
                path,
                source: io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the record at offset {} changed on disk since it was written",
                        entry.id.offset
                    ),
                ),
            }),
        }
    }

    /// Removes the oldest entry, which MUST be `id` (the one the caller delivered).
    pub(crate) fn pop_front(&mut self, id: EntryId) -> Result<()> {
        let front = self.entries.front().map(|entry| entry.id);
        assert_eq!(front, Some(id), "only the oldest entry is removed");
        self.entries.pop_front();
        let Some(next) = self.entries.front().map(|entry| entry.id) else {
            // Empty: the cursor goes first, so that a crash in between replays (harmlessly)
            // rather than skips.
            self.remove_cursor()?;
            self.active = None;
            while let Some(segment) = self.segments.pop_front() {
                self.delete_segment(&segment)?;
            }
            return Ok(());
        };
        write_cursor(&self.dir, next)?;
        while self
            .segments
            .front()
            .is_some_and(|segment| segment.id < next.segment)
        {
            let segment = self.segments.pop_front().expect("checked above");
            self.delete_segment(&segment)?;
        }
        Ok(())
    }

    /// Keeps a copy of the oldest entry's bytes beside the spool, for inspection, then removes
    /// it. For an entry that can no longer be read or parsed: it can never be delivered, and
    /// leaving it would stop every entry behind it.
    pub(crate) fn set_aside_front(&mut self, id: EntryId) -> Result<PathBuf> {
        let entry = *self.entries.front().expect("an entry to set aside");
        assert_eq!(entry.id, id, "only the oldest entry is set aside");
        let path = self.segment_path(id.segment);
        let aside = self.dir.join(format!(
            "{}.{}.damaged",
            segment_name(id.segment),
            id.offset
        ));
        let mut record = vec![0; SPOOL_RECORD_OVERHEAD_BYTES as usize + entry.payload_len as usize];
        let read = File::open(&path).and_then(|mut file| {
            file.seek(SeekFrom::Start(id.offset))?;
            file.read(&mut record)
        });
        let bytes_read = read.map_err(io_error(&path))?;
        fs::write(&aside, &record[..bytes_read]).map_err(io_error(&aside))?;
        self.pop_front(id)?;
        Ok(aside)
    }

    fn delete_segment(&mut self, segment: &Segment) -> Result<()> {
        let path = self.segment_path(segment.id);
        self.bytes -= segment.len;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(Error::SpoolIo {
                path,
                source: error,
            }),
        }
    }

    fn remove_cursor(&self) -> Result<()> {
        let path = self.dir.join(CURSOR_FILE);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(Error::SpoolIo {
                path,
                source: error,
            }),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes the segment files take on disk.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    fn segment_path(&self, id: u64) -> PathBuf {
        self.dir.join(segment_name(id))
    }
}

fn header() -> [u8; HEADER_BYTES as usize] {
    let mut header = [0; HEADER_BYTES as usize];
    header[..8].copy_from_slice(MAGIC);
    header[8..].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header
}

fn segment_name(id: u64) -> String {
    format!("{id:020}{SEGMENT_SUFFIX}")
}

fn segment_id(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The payload length of the record `bytes` starts with, if it is whole and its checksum holds.
fn check_record(bytes: &[u8]) -> Option<u32> {
    let overhead = SPOOL_RECORD_OVERHEAD_BYTES as usize;
    if bytes.len() < overhead {
        return None;
    }
    let payload_len = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    let payload = bytes.get(overhead..overhead + payload_len as usize)?;
    (payload_len > 0 && record_crc(payload_len, payload) == crc).then_some(payload_len)
}

/// The checksum covers the length word too, so a damaged length is caught even when the bytes
/// it then points at happen to exist.
fn record_crc(payload_len: u32, payload: &[u8]) -> u32 {
    let crc = crc32_update(!0, &payload_len.to_le_bytes());
    !crc32_update(crc, payload)
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320): the zlib/PNG checksum.
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut index = 0;
    while index < 256 {
        let mut value = index as u32;
        let mut bit = 0;
        while bit < 8 {
            value = if value & 1 == 1 {
                (value >> 1) ^ 0xEDB8_8320
            } else {
                value >> 1
            };
            bit += 1;
        }
        table[index] = value;
        index += 1;
    }
    table
};

fn crc32_update(mut crc: u32, bytes: &[u8]) -> u32 {
    for byte in bytes {
        crc = CRC_TABLE[((crc ^ u32::from(*byte)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

fn read_cursor(dir: &Path) -> Option<EntryId> {
    // A missing or unreadable cursor means "nothing delivered": everything is replayed, which
    // the server's idempotency makes harmless.
    let text = fs::read_to_string(dir.join(CURSOR_FILE)).ok()?;
    let (segment, offset) = text.trim().split_once(' ')?;
    Some(EntryId {
        segment: segment.parse().ok()?,
        offset: offset.parse().ok()?,
    })
}

fn write_cursor(dir: &Path, next: EntryId) -> Result<()> {
    let temporary = dir.join("cursor.tmp");
    fs::write(&temporary, format!("{} {}\n", next.segment, next.offset))
        .map_err(io_error(&temporary))?;
    let path = dir.join(CURSOR_FILE);
    fs::rename(&temporary, &path).map_err(io_error(&path))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    // Directories cannot be opened for fsync everywhere; where they can (Unix) a new segment's
    // name must be durable before a record in it is acknowledged.
    if cfg!(unix) {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::SpoolIo {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: u64 = 1024 * 1024;

    fn drain(spool: &mut Spool) -> Vec<Vec<u8>> {
        let mut payloads = Vec::new();
        while let Some((id, payload)) = spool.front() {
            payloads.push(payload.unwrap());
            spool.pop_front(id).unwrap();
        }
        payloads
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|item| item.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "seg"))
            .collect();
        files.sort();
        files
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(!crc32_update(!0, b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn entries_survive_a_reopen_in_order_and_removed_ones_stay_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), BOUND).unwrap();
        for index in 0..5 {
            spool.append(format!("batch {index}").as_bytes()).unwrap();
        }
        let (first, payload) = spool.front().unwrap();
        assert_eq!(payload.unwrap(), b"batch 0");
        spool.pop_front(first).unwrap();
        drop(spool);

        let mut spool = Spool::open(dir.path(), BOUND).unwrap();
        assert_eq!(spool.len(), 4);
        spool.append(b"batch 5").unwrap();
        let payloads = drain(&mut spool);
        let expected: Vec<Vec<u8>> = (1..6).map(|i| format!("batch {i}").into_bytes()).collect();
        assert_eq!(payloads, expected);
        // Empty: no segment and no cursor left, and a reopen finds nothing.
        assert!(segment_files(dir.path()).is_empty());
        assert!(!dir.path().join(CURSOR_FILE).exists());
        assert_eq!(spool.bytes(), 0);
        assert!(Spool::open(dir.path(), BOUND).unwrap().is_empty());
    }

    #[test]
    fn a_torn_last_record_is_ignored_and_appends_continue_after_the_good_ones() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), BOUND).unwrap();
        spool.append(b"first").unwrap();
        spool.append(b"second").unwrap();
        drop(spool);
        let segment = segment_files(dir.path()).pop().unwrap();
        let good_len = fs::metadata(&segment).unwrap().len();

        // A crash halfway through the third record: its length says 100 bytes, 3 are there.
        let mut torn = 100u32.to_le_bytes().to_vec();
        torn.extend_from_slice(&[1, 2, 3, 4, b'a', b'b', b'c']);
        OpenOptions::new()
            .append(true)
            .open(&segment)
            .unwrap()
            .write_all(&torn)
            .unwrap();
        let mut spool = Spool::open(dir.path(), BOUND).unwrap();
        assert_eq!(spool.len(), 2);
        assert_eq!(fs::metadata(&segment).unwrap().len(), good_len);
        spool.append(b"third").unwrap();
        drop(spool);

        // A whole record whose checksum does not hold (a torn sector): also cut.
        let mut bad = 4u32.to_le_bytes().to_vec();
        bad.extend_from_slice(&record_crc(4, b"good").to_le_bytes());
        bad.extend_from_slice(b"gooX");
        OpenOptions::new()
            .append(true)
            .open(&segment)
            .unwrap()
            .write_all(&bad)
            .unwrap();
        let mut spool = Spool::open(dir.path(), BOUND).unwrap();
        assert_eq!(
            drain(&mut spool),
            vec![b"first".to_vec(), b"second".to_vec(), b"third".to_vec()]
        );
    }

    #[test]
    fn a_torn_segment_header_is_dropped_but_a_foreign_file_stops_the_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), BOUND).unwrap();
        spool.append(b"kept").unwrap();
        drop(spool);
        fs::write(dir.path().join(segment_name(7)), &header()[..5]).unwrap();
        let mut spool = Spool::open(dir.path(), BOUND).unwrap();
        assert_eq!(drain(&mut spool), vec![b"kept".to_vec()]);

        let foreign = dir.path().join(segment_name(9));
        fs::write(&foreign, b"not a spool segment at all").unwrap();
        let error = Spool::open(dir.path(), BOUND).unwrap_err();
        assert!(matches!(error, Error::SpoolFormat { path } if path == foreign));
        assert_eq!(fs::read(&foreign).unwrap(), b"not a spool segment at all");
    }

    #[test]
    fn the_byte_bound_refuses_appends_until_entries_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let payload = vec![b'x'; 1000];
        let bound = HEADER_BYTES + 3 * (SPOOL_RECORD_OVERHEAD_BYTES + 1000);
        let mut spool = Spool::open(dir.path(), bound).unwrap();
        for _ in 0..3 {
            spool.append(&payload).unwrap();
        }
        assert_eq!(spool.bytes(), bound);
        let error = spool.append(&payload).unwrap_err();
        assert!(matches!(error, Error::SpoolFull { bytes_max } if bytes_max == bound));
        assert_eq!(spool.len(), 3, "a refused append writes nothing");
        assert_eq!(
            fs::metadata(&segment_files(dir.path())[0]).unwrap().len(),
            bound
        );
        // Delivering everything frees the space.
        drain(&mut spool);
        spool.append(&payload).unwrap();
        // The bound also holds across a reopen.
        drop(spool);
        let spool = Spool::open(dir.path(), bound).unwrap();
        assert_eq!(
            spool.bytes(),
            HEADER_BYTES + SPOOL_RECORD_OVERHEAD_BYTES + 1000
        );
    }

    #[test]
    fn segments_roll_over_and_delivered_ones_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let payload = vec![b'y'; 3 * 1024 * 1024];
        let mut spool = Spool::open(dir.path(), 64 * 1024 * 1024).unwrap();
        for _ in 0..4 {
            spool.append(&payload).unwrap();
        }
        // 8 MiB segments hold two records of 3 MiB each.
        assert_eq!(segment_files(dir.path()).len(), 2);
        for _ in 0..2 {
            let (id, _) = spool.front().unwrap();
            spool.pop_front(id).unwrap();
        }
        assert_eq!(segment_files(dir.path()).len(), 1);
        drop(spool);
        let mut spool = Spool::open(dir.path(), 64 * 1024 * 1024).unwrap();
        assert_eq!(spool.len(), 2);
        spool.append(b"after").unwrap();
        let payloads = drain(&mut spool);
        assert_eq!(payloads.len(), 3);
        assert_eq!(payloads[2], b"after");
    }

    #[test]
    fn a_stale_cursor_never_hides_newer_entries() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), BOUND).unwrap();
        for _ in 0..3 {
            spool.append(b"old").unwrap();
        }
        let (id, _) = spool.front().unwrap();
        spool.pop_front(id).unwrap();
        let cursor = fs::read(dir.path().join(CURSOR_FILE)).unwrap();
        drain(&mut spool);
        drop(spool);
        // A crash after the spool emptied lost the cursor's removal (and, say, kept it).
        fs::write(dir.path().join(CURSOR_FILE), cursor).unwrap();
        let mut spool = Spool::open(dir.path(), BOUND).unwrap();
        spool.append(b"new").unwrap();
        drop(spool);
        let mut spool = Spool::open(dir.path(), BOUND).unwrap();
        assert_eq!(drain(&mut spool), vec![b"new".to_vec()]);
    }
}
