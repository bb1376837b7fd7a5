//! Events as Parquet: one column per stored field, so any engine (DuckDB, Spark, Trino, Athena,
//! pyarrow) reads the files without Sealtrail.
//!
//! Rows are sorted by `seq`, the tenant's receipt order, not by `timestamp`: a file is then one
//! contiguous piece of the hash chain that a verifier streams in order, and since timestamps are
//! close to receipt order (ingest bounds the clock skew), the row-group statistics of
//! `timestamp` still prune time ranges well. `changes` and `metadata` are kept as their
//! canonical JSON text, byte for byte what was hashed.
//!
//! `event_hash` is not stored: it is a function of the row (the canonical encoding of its
//! fields, `seq`, `received_at` and `prev_hash`), so [`decode`] recomputes it, as any verifier
//! must anyway — a stored hash proves nothing until it is recomputed. Keeping it would cost 32
//! incompressible bytes per event, a third of a warm file. `prev_hash` stays, so each row is
//! linked to the one before without reading it.

use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, FixedSizeBinaryArray, Int64Array, RecordBatch, StringArray,
    TimestampNanosecondArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use sealtrail_model::limits::{
    ARCHIVE_ROW_GROUP_EVENTS_MAX, EXPORT_PARQUET_ROW_GROUP_EVENTS, EXPORT_ZSTD_LEVEL,
};
use sealtrail_model::{ActorType, Event, Outcome, StoredEvent};

/// Columns with a bloom filter: the identifiers investigations look up one at a time.
const BLOOM_FILTER_COLUMNS: [&str; 3] = ["actor_id", "resource_id", "request_id"];

/// Why a Parquet file could not be read back as events.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("Arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("the file's schema is not Sealtrail's event schema: {0}")]
    Schema(String),
    #[error("seq {seq}: {reason}")]
    Row { seq: u64, reason: String },
}

/// The Arrow schema of every archived file.
pub fn event_schema() -> SchemaRef {
    let timestamp = DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()));
    let text = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        Field::new("seq", DataType::Int64, false),
        text("tenant_id", false),
        text("event_id", false),
        Field::new("timestamp", timestamp.clone(), false),
        Field::new("received_at", timestamp, false),
        text("actor_id", false),
        text("actor_type", false),
        text("action", false),
        text("resource_type", false),
        text("resource_id", true),
        text("outcome", false),
        text("ip_address", true),
        text("user_agent", true),
        text("request_id", true),
        text("changes", true),
        text("metadata", true),
        Field::new("prev_hash", DataType::FixedSizeBinary(32), false),
    ]))
}

/// Writer settings: zstd at `zstd_level`, statistics per page (which include the row-group
/// statistics), bloom filters on the lookup identifiers, and the `seq` sort order recorded.
fn writer_properties(
    events: &[StoredEvent],
    zstd_level: i32,
    row_group_events: usize,
) -> Result<WriterProperties, parquet::errors::ParquetError> {
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(zstd_level)?))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_size(row_group_events)
        .set_sorting_columns(Some(vec![SortingColumn {
            column_idx: 0,
            descending: false,
            nulls_first: false,
        }]))
        .set_created_by("sealtrail".into());
    // A bloom filter is sized for the distinct values it will hold; the library's default
    // (a million) would cost about a megabyte per column and row group whatever the data.
    for (column, distinct) in bloom_filter_sizes(events, row_group_events) {
        builder = builder
            .set_column_bloom_filter_enabled(ColumnPath::from(column), true)
            .set_column_bloom_filter_ndv(ColumnPath::from(column), distinct.max(1) as u64);
    }
    // Increasing integers: delta encoding stores each as a few bits.
    for column in ["seq", "timestamp", "received_at"] {
        builder = builder
            .set_column_dictionary_enabled(ColumnPath::from(column), false)
            .set_column_encoding(ColumnPath::from(column), Encoding::DELTA_BINARY_PACKED);
    }
    // Hashes are incompressible and unique: a dictionary and statistics on them cost space and
    // buy nothing.
    let prev_hash = ColumnPath::from("prev_hash");
    builder = builder
        .set_column_dictionary_enabled(prev_hash.clone(), false)
        .set_column_statistics_enabled(prev_hash, EnabledStatistics::None);
    Ok(builder.build())
}

/// Writer settings of an export file: the warm tier's encodings, without bloom filters (an
/// export is read whole, not probed), written as it streams.
pub fn export_properties() -> WriterProperties {
    let level = ZstdLevel::try_new(EXPORT_ZSTD_LEVEL).unwrap_or_default();
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_max_row_group_size(EXPORT_PARQUET_ROW_GROUP_EVENTS)
        .set_created_by("sealtrail".into());
    for column in ["seq", "timestamp", "received_at"] {
        builder = builder
            .set_column_dictionary_enabled(ColumnPath::from(column), false)
            .set_column_encoding(ColumnPath::from(column), Encoding::DELTA_BINARY_PACKED);
    }
    builder
        .set_column_dictionary_enabled(ColumnPath::from("prev_hash"), false)
        .build()
}

/// For each bloom-filtered column, the most distinct values any row group of `events` has.
fn bloom_filter_sizes(
    events: &[StoredEvent],
    row_group_events: usize,
) -> Vec<(&'static str, usize)> {
    type Lookup = fn(&StoredEvent) -> Option<&str>;
    let fields: [(&'static str, Lookup); 3] = [
        ("actor_id", |stored| Some(stored.event.actor_id.as_str())),
        ("resource_id", |stored| stored.event.resource_id.as_deref()),
        ("request_id", |stored| stored.event.request_id.as_deref()),
    ];
    debug_assert_eq!(fields.map(|(name, _)| name), BLOOM_FILTER_COLUMNS);
    fields
        .into_iter()
        .map(|(name, field)| {
            let most = events
                .chunks(row_group_events.max(1))
                .map(|group| {
                    group
                        .iter()
                        .filter_map(field)
                        .collect::<std::collections::HashSet<&str>>()
                        .len()
                })
                .max()
                .unwrap_or(0);
            (name, most)
        })
        .collect()
}

/// One record batch of `events` (already in `seq` order), in [`event_schema`].
pub fn to_batch(events: &[StoredEvent]) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let text = |field: fn(&StoredEvent) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(events.iter().map(field)))
    };
    let optional = |field: fn(&StoredEvent) -> Option<&str>| -> ArrayRef {
        Arc::new(events.iter().map(field).collect::<StringArray>())
    };
    let instant = |field: fn(&StoredEvent) -> i64| -> ArrayRef {
        Arc::new(
            TimestampNanosecondArray::from_iter_values(events.iter().map(field))
                .with_timezone("UTC"),
        )
    };
    let hash =
        |field: fn(&StoredEvent) -> &[u8; 32]| -> Result<ArrayRef, arrow_schema::ArrowError> {
            Ok(Arc::new(FixedSizeBinaryArray::try_from_iter(
                events.iter().map(field),
            )?))
        };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(
            events.iter().map(|stored| stored.seq as i64),
        )),
        text(|stored| &stored.event.tenant_id),
        text(|stored| &stored.event.event_id),
        instant(|stored| stored.event.timestamp_ns),
        instant(|stored| stored.received_at_ns),
        text(|stored| &stored.event.actor_id),
        text(|stored| stored.event.actor_type.as_str()),
        text(|stored| &stored.event.action),
        text(|stored| &stored.event.resource_type),
        optional(|stored| stored.event.resource_id.as_deref()),
        text(|stored| stored.event.outcome.as_str()),
        optional(|stored| stored.event.ip_address.as_deref()),
        optional(|stored| stored.event.user_agent.as_deref()),
        optional(|stored| stored.event.request_id.as_deref()),
        optional(|stored| stored.event.changes.as_deref()),
        optional(|stored| stored.event.metadata.as_deref()),
        hash(|stored| &stored.prev_hash)?,
    ];
    RecordBatch::try_new(event_schema(), columns)
}

/// Encodes `events` (ascending by `seq`) as one Parquet file.
pub fn encode(events: &[StoredEvent], zstd_level: i32) -> crate::Result<Vec<u8>> {
    encode_with(events, zstd_level, ARCHIVE_ROW_GROUP_EVENTS_MAX)
}

/// [`encode`] with row groups of up to `row_group_events` rows (the cold tier's are larger).
pub fn encode_with(
    events: &[StoredEvent],
    zstd_level: i32,
    row_group_events: usize,
) -> crate::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(
        &mut bytes,
        event_schema(),
        Some(writer_properties(events, zstd_level, row_group_events)?),
    )?;
    for chunk in events.chunks(row_group_events) {
        writer.write(&to_batch(chunk)?)?;
    }
    writer.close()?;
    Ok(bytes)
}

/// Reads every event of a Parquet file written by [`encode`]. A file with another schema or an
/// undecodable row is an error naming the `seq`, never skipped.
pub fn decode(bytes: Bytes) -> Result<Vec<StoredEvent>, DecodeError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)?;
    let expected = event_schema();
    let found = builder.schema();
    if found.fields() != expected.fields() {
        return Err(DecodeError::Schema(format!(
            "expected {:?}, found {:?}",
            expected.fields(),
            found.fields()
        )));
    }
    let mut events = Vec::new();
    for batch in builder.build()? {
        decode_batch(&batch?, &mut events)?;
    }
    Ok(events)
}

fn column<T: 'static>(batch: &RecordBatch, index: usize) -> Result<&T, DecodeError> {
    batch
        .column(index)
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| DecodeError::Schema(format!("column {index} has an unexpected type")))
}

/// Appends the events of a batch in [`event_schema`] (every column, in order) to `events`.
pub fn decode_batch(batch: &RecordBatch, events: &mut Vec<StoredEvent>) -> Result<(), DecodeError> {
    let seqs = column::<Int64Array>(batch, 0)?;
    let strings: Vec<&StringArray> = [1, 2, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]
        .into_iter()
        .map(|index| column::<StringArray>(batch, index))
        .collect::<Result<_, _>>()?;
    let [tenant_ids, event_ids, actor_ids, actor_types, actions, resource_types, resource_ids, outcomes, ip_addresses, user_agents, request_ids, changes, metadata] =
        strings[..]
    else {
        return Err(DecodeError::Schema("string columns missing".into()));
    };
    let timestamps = column::<TimestampNanosecondArray>(batch, 3)?;
    let received = column::<TimestampNanosecondArray>(batch, 4)?;
    let prev_hashes = column::<FixedSizeBinaryArray>(batch, 16)?;
    let optional = |array: &StringArray, row: usize| -> Option<String> {
        (!array.is_null(row)).then(|| array.value(row).to_owned())
    };
    for row in 0..batch.num_rows() {
        let seq = seqs.value(row) as u64;
        let bad = |reason: &str| DecodeError::Row {
            seq,
            reason: reason.to_owned(),
        };
        let prev_hash: [u8; 32] = prev_hashes
            .value(row)
            .try_into()
            .map_err(|_| bad("prev_hash is not 32 bytes"))?;
        let event = Event {
            event_id: event_ids.value(row).to_owned(),
            timestamp_ns: timestamps.value(row),
            tenant_id: tenant_ids.value(row).to_owned(),
            actor_id: actor_ids.value(row).to_owned(),
            actor_type: ActorType::parse(actor_types.value(row))
                .ok_or_else(|| bad("unknown actor_type"))?,
            action: actions.value(row).to_owned(),
            resource_type: resource_types.value(row).to_owned(),
            resource_id: optional(resource_ids, row),
            outcome: Outcome::parse(outcomes.value(row)).ok_or_else(|| bad("unknown outcome"))?,
            ip_address: optional(ip_addresses, row),
            user_agent: optional(user_agents, row),
            request_id: optional(request_ids, row),
            changes: optional(changes, row),
            metadata: optional(metadata, row),
        };
        let received_at_ns = received.value(row);
        let event_hash = sealtrail_ledger::event_hash(&event, seq, received_at_ns, &prev_hash);
        events.push(StoredEvent {
            event,
            seq,
            received_at_ns,
            prev_hash,
            event_hash,
        });
    }
    Ok(())
}
