//! Export files: the four formats an export job writes, and the readers `sealtrail
//! verify-bundle` checks them with (docs/FORMAT.md, "Export files").
//!
//! Every format carries every hashed field of each event, so an auditor recomputes each
//! event's hash from the file's own rows:
//!
//! - `ndjson`: one API event object per line (as `GET /v1/events` returns it, without `tier`);
//! - `csv`: RFC 4180, a header row, one column per API field in API order; `changes` and
//!   `metadata` are their canonical JSON text, an absent field an empty cell;
//! - `parquet`: the warm tier's schema (docs/FORMAT.md), which any Parquet reader opens;
//! - `ocsf`: one OCSF event per line (the SIEM forwarding mapping, docs/OCSF.md) with the API
//!   event in `raw_data`; the reader also re-derives the OCSF record from `raw_data`, so an edit
//!   to any mapped attribute fails too.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use sealtrail_archive::parquet_file::{decode_batch, event_schema, to_batch};
use sealtrail_ledger::{ExportCheck, ExportFault, ExportHeader, ExportReport, NoteVerifier};
use sealtrail_model::limits::EXPORT_PARQUET_ROW_GROUP_EVENTS;
use sealtrail_model::{format_timestamp, parse_timestamp, StoredEvent, Untiered, EVENT_FIELDS};
use sha2::{Digest, Sha256};

/// The formats of an export file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Ndjson,
    Csv,
    Parquet,
    Ocsf,
}

impl ExportFormat {
    pub const ALL: [ExportFormat; 4] = [
        ExportFormat::Ndjson,
        ExportFormat::Csv,
        ExportFormat::Parquet,
        ExportFormat::Ocsf,
    ];

    pub fn parse(name: &str) -> Option<ExportFormat> {
        ExportFormat::ALL
            .into_iter()
            .find(|format| format.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ExportFormat::Ndjson => "ndjson",
            ExportFormat::Csv => "csv",
            ExportFormat::Parquet => "parquet",
            ExportFormat::Ocsf => "ocsf",
        }
    }

    /// The file name extension.
    pub fn extension(self) -> &'static str {
        match self {
            ExportFormat::Ndjson => "ndjson",
            ExportFormat::Csv => "csv",
            ExportFormat::Parquet => "parquet",
            ExportFormat::Ocsf => "ocsf.ndjson",
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            ExportFormat::Ndjson | ExportFormat::Ocsf => "application/x-ndjson",
            ExportFormat::Csv => "text/csv",
            ExportFormat::Parquet => "application/vnd.apache.parquet",
        }
    }
}

/// The fields a stored event adds to format v1, in API order.
const STORED_FIELDS: [&str; 4] = ["seq", "received_at", "prev_hash", "event_hash"];

/// The CSV columns: every API field, in API order.
pub fn csv_columns() -> Vec<&'static str> {
    EVENT_FIELDS.iter().chain(&STORED_FIELDS).copied().collect()
}

/// A file's size and SHA-256 (lowercase hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigest {
    pub bytes: u64,
    pub sha256: String,
}

/// Counts and hashes what passes through, so a file's digest costs no second read. It sits
/// under the buffer, so it hashes large chunks, not serde's many small writes.
struct Digesting<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Digesting<W> {
    fn write(&mut self, buffer: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(buffer)?;
        self.hasher.update(&buffer[..written]);
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Bytes an export writer buffers before they pass to its output.
const WRITE_BUFFER_BYTES: usize = 1 << 20;

/// Why an export file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("Arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
}

type Out<W> = BufWriter<Digesting<W>>;

/// Writes one export file to `W` (a file, an upload), event by event, in `seq` order.
#[allow(missing_debug_implementations)] // the Parquet writer has none
pub struct ExportWriter<W: Write + Send> {
    inner: Inner<W>,
}

enum Inner<W: Write + Send> {
    Lines {
        out: Out<W>,
        ocsf: bool,
    },
    Csv(csv::Writer<Out<W>>),
    Parquet {
        writer: ArrowWriter<Out<W>>,
        pending: Vec<StoredEvent>,
    },
}

impl<W: Write + Send> ExportWriter<W> {
    pub fn new(format: ExportFormat, output: W) -> Result<ExportWriter<W>, WriteError> {
        let out = BufWriter::with_capacity(
            WRITE_BUFFER_BYTES,
            Digesting {
                inner: output,
                hasher: Sha256::new(),
                bytes: 0,
            },
        );
        let inner = match format {
            ExportFormat::Ndjson => Inner::Lines { out, ocsf: false },
            ExportFormat::Ocsf => Inner::Lines { out, ocsf: true },
            ExportFormat::Csv => {
                let mut writer = csv::WriterBuilder::new()
                    .terminator(csv::Terminator::CRLF)
                    .from_writer(out);
                writer.write_record(csv_columns())?;
                Inner::Csv(writer)
            }
            ExportFormat::Parquet => Inner::Parquet {
                writer: ArrowWriter::try_new(
                    out,
                    event_schema(),
                    Some(sealtrail_archive::parquet_file::export_properties()),
                )?,
                pending: Vec::with_capacity(EXPORT_PARQUET_ROW_GROUP_EVENTS),
            },
        };
        Ok(ExportWriter { inner })
    }

    pub fn write(&mut self, stored: StoredEvent) -> Result<(), WriteError> {
        match &mut self.inner {
            Inner::Lines { out, ocsf: false } => {
                serde_json::to_writer(&mut *out, &Untiered(&stored))?;
                out.write_all(b"\n")?;
            }
            Inner::Lines { out, ocsf: true } => {
                serde_json::to_writer(&mut *out, &ocsf_record(&stored)?)?;
                out.write_all(b"\n")?;
            }
            Inner::Csv(writer) => writer.write_record(csv_record(&stored))?,
            Inner::Parquet { writer, pending } => {
                pending.push(stored);
                if pending.len() == EXPORT_PARQUET_ROW_GROUP_EVENTS {
                    writer.write(&to_batch(pending)?)?;
                    pending.clear();
                }
            }
        }
        Ok(())
    }

    /// Ends the file: everything passed to the output, flushed; returns the file's digest and
    /// the output (a file still to be synced, an upload still to be completed).
    pub fn finish(self) -> Result<(FileDigest, W), WriteError> {
        let out = match self.inner {
            Inner::Lines { out, .. } => out,
            Inner::Csv(writer) => writer
                .into_inner()
                .map_err(|error| WriteError::Io(error.into_error()))?,
            Inner::Parquet {
                mut writer,
                pending,
            } => {
                if !pending.is_empty() {
                    writer.write(&to_batch(&pending)?)?;
                }
                writer.into_inner()?
            }
        };
        let mut digesting = out
            .into_inner()
            .map_err(|error| WriteError::Io(error.into_error()))?;
        digesting.inner.flush()?;
        let digest = FileDigest {
            bytes: digesting.bytes,
            sha256: hex::encode(digesting.hasher.finalize()),
        };
        Ok((digest, digesting.inner))
    }
}

/// An event as one OCSF record with the API event in `raw_data`.
fn ocsf_record(stored: &StoredEvent) -> Result<serde_json::Value, serde_json::Error> {
    let mut record = sealtrail_realtime::ocsf::ocsf_event(stored);
    record["raw_data"] = serde_json::to_string(&Untiered(stored))?.into();
    Ok(record)
}

fn csv_record(stored: &StoredEvent) -> [String; 18] {
    let event = &stored.event;
    let optional = |value: &Option<String>| value.clone().unwrap_or_default();
    [
        event.event_id.clone(),
        format_timestamp(event.timestamp_ns),
        event.tenant_id.clone(),
        event.actor_id.clone(),
        event.actor_type.as_str().to_owned(),
        event.action.clone(),
        event.resource_type.clone(),
        optional(&event.resource_id),
        event.outcome.as_str().to_owned(),
        optional(&event.ip_address),
        optional(&event.user_agent),
        optional(&event.request_id),
        optional(&event.changes),
        optional(&event.metadata),
        stored.seq.to_string(),
        format_timestamp(stored.received_at_ns),
        hex::encode(stored.prev_hash),
        hex::encode(stored.event_hash),
    ]
}

/// Reads an event back from its CSV row, fields as written (no re-encoding: the row's own bytes
/// are what is hashed).
fn from_csv(record: &csv::StringRecord) -> Result<StoredEvent, String> {
    let columns = csv_columns();
    if record.len() != columns.len() {
        return Err(format!(
            "{} columns, expected {}",
            record.len(),
            columns.len()
        ));
    }
    let field = |index: usize| record.get(index).unwrap_or_default();
    let optional = |index: usize| Some(field(index).to_owned()).filter(|text| !text.is_empty());
    let instant = |index: usize| {
        parse_timestamp(field(index))
            .ok_or_else(|| format!("{}: not an RFC 3339 timestamp", columns[index]))
    };
    let hash = |index: usize| -> Result<[u8; 32], String> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(field(index), &mut bytes)
            .map_err(|_| format!("{}: not 64 hex digits", columns[index]))?;
        Ok(bytes)
    };
    let event = sealtrail_model::Event {
        event_id: field(0).to_owned(),
        timestamp_ns: instant(1)?,
        tenant_id: field(2).to_owned(),
        actor_id: field(3).to_owned(),
        actor_type: sealtrail_model::ActorType::parse(field(4))
            .ok_or("actor_type: unknown value")?,
        action: field(5).to_owned(),
        resource_type: field(6).to_owned(),
        resource_id: optional(7),
        outcome: sealtrail_model::Outcome::parse(field(8)).ok_or("outcome: unknown value")?,
        ip_address: optional(9),
        user_agent: optional(10),
        request_id: optional(11),
        changes: optional(12),
        metadata: optional(13),
    };
    Ok(StoredEvent {
        event,
        seq: field(14)
            .parse()
            .map_err(|_| "seq: not a positive integer")?,
        received_at_ns: instant(15)?,
        prev_hash: hash(16)?,
        event_hash: hash(17)?,
    })
}

/// Reads an event back from its API JSON text, as docs/FORMAT.md tells a verifier to.
pub fn from_api_json(text: &str) -> Result<StoredEvent, String> {
    let mut value: serde_json::Value =
        serde_json::from_str(text).map_err(|error| format!("not JSON: {error}"))?;
    sealtrail_model::nearest_doubles(text.as_bytes(), &mut value);
    StoredEvent::from_json(&value)
}

/// Reads every row of an export file in file order, handing each event to `visit`. A row that
/// does not read back as an event is [`ExportFault::Row`].
pub fn read_export(
    format: ExportFormat,
    path: &Path,
    visit: &mut dyn FnMut(StoredEvent) -> Result<(), ExportFault>,
) -> Result<(), ExportFault> {
    let file = File::open(path).map_err(|error| ExportFault::File(error.to_string()))?;
    let bad_row = |row: u64, reason: String| ExportFault::Row { row, reason };
    match format {
        ExportFormat::Ndjson | ExportFormat::Ocsf => {
            for (index, line) in BufReader::new(file).lines().enumerate() {
                let row = index as u64 + 1;
                let line = line.map_err(|error| ExportFault::File(error.to_string()))?;
                let stored = if format == ExportFormat::Ndjson {
                    from_api_json(&line).map_err(|reason| bad_row(row, reason))?
                } else {
                    from_ocsf_line(&line).map_err(|reason| bad_row(row, reason))?
                };
                visit(stored)?;
            }
        }
        ExportFormat::Csv => {
            let mut reader = csv::ReaderBuilder::new().from_reader(BufReader::new(file));
            let headers = reader
                .headers()
                .map_err(|error| ExportFault::File(error.to_string()))?;
            let columns = csv_columns();
            if headers.iter().ne(columns.iter().copied()) {
                return Err(ExportFault::File(format!(
                    "the header row is not {}",
                    columns.join(",")
                )));
            }
            for (index, record) in reader.records().enumerate() {
                let row = index as u64 + 1;
                let record = record.map_err(|error| bad_row(row, error.to_string()))?;
                visit(from_csv(&record).map_err(|reason| bad_row(row, reason))?)?;
            }
        }
        ExportFormat::Parquet => {
            let builder = ParquetRecordBatchReaderBuilder::try_new(file)
                .map_err(|error| ExportFault::File(error.to_string()))?;
            // Names and types, not metadata: a file another writer re-saved is still read,
            // and its rows then speak for themselves.
            let expected = event_schema();
            let same = builder.schema().fields().len() == expected.fields().len()
                && builder
                    .schema()
                    .fields()
                    .iter()
                    .zip(expected.fields().iter())
                    .all(|(found, wanted)| {
                        found.name() == wanted.name() && found.data_type() == wanted.data_type()
                    });
            if !same {
                return Err(ExportFault::File(
                    "its schema is not Sealtrail's event schema".into(),
                ));
            }
            let reader = builder
                .build()
                .map_err(|error| ExportFault::File(error.to_string()))?;
            let mut row = 0u64;
            let mut events = Vec::new();
            for batch in reader {
                let batch = batch.map_err(|error| ExportFault::File(error.to_string()))?;
                events.clear();
                decode_batch(&batch, &mut events)
                    .map_err(|error| bad_row(row + 1, error.to_string()))?;
                for stored in events.drain(..) {
                    row += 1;
                    visit(stored)?;
                }
            }
        }
    }
    Ok(())
}

/// An OCSF line: its `raw_data` is the event, and the whole line must be exactly the record
/// that event maps to.
fn from_ocsf_line(line: &str) -> Result<StoredEvent, String> {
    let record: serde_json::Value =
        serde_json::from_str(line).map_err(|error| format!("not JSON: {error}"))?;
    let raw = record["raw_data"]
        .as_str()
        .ok_or("raw_data: missing or not a string")?;
    let stored = from_api_json(raw).map_err(|reason| format!("raw_data: {reason}"))?;
    let expected = serde_json::to_string(&ocsf_record(&stored).map_err(|e| e.to_string())?)
        .map_err(|error| error.to_string())?;
    if expected != line {
        return Err(format!(
            "seq {}: the OCSF attributes are not the mapping of its raw_data (edited)",
            stored.seq
        ));
    }
    Ok(stored)
}

/// The SHA-256 of a file, lowercase hex.
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Checks an export file against its bundle (`bundle`: the header line, then the witnesses)
/// with the server's verifier key. Streams both: memory stays constant whatever the export.
pub fn verify_export(
    bundle: &Path,
    file: &Path,
    key: &NoteVerifier,
) -> Result<ExportReport, ExportFault> {
    let opened = File::open(bundle).map_err(|error| ExportFault::Malformed(error.to_string()))?;
    let mut lines = BufReader::new(opened).lines();
    let first = lines
        .next()
        .ok_or_else(|| ExportFault::Malformed("the bundle is empty".into()))?
        .map_err(|error| ExportFault::Malformed(error.to_string()))?;
    let header: ExportHeader = serde_json::from_str(&first)
        .map_err(|error| ExportFault::Malformed(format!("header: {error}")))?;
    let format = ExportFormat::parse(&header.file_format).ok_or_else(|| {
        ExportFault::Malformed(format!("unknown file_format {:?}", header.file_format))
    })?;
    let mut check = ExportCheck::new(header, key)?;
    let mut witnesses = lines.enumerate().map(|(index, line)| {
        let line = line.map_err(|error| ExportFault::Malformed(error.to_string()))?;
        from_api_json(&line)
            .map_err(|reason| ExportFault::Malformed(format!("witness {}: {reason}", index + 1)))
    });
    let mut next_witness = witnesses.next().transpose()?;
    read_export(format, file, &mut |stored| {
        while let Some(witness) = next_witness.take_if(|witness| witness.seq < stored.seq) {
            check.witness(&witness)?;
            next_witness = witnesses.next().transpose()?;
        }
        check.row(&stored)
    })?;
    while let Some(witness) = next_witness {
        check.witness(&witness)?;
        next_witness = witnesses.next().transpose()?;
    }
    let digest = file_sha256(file).map_err(|error| ExportFault::File(error.to_string()))?;
    check.finish(&digest)
}
