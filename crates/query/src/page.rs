//! `GET /v1/events` across tiers: the same filters, order and `seq` cursor wherever the events
//! live.
//!
//! Descending pages start in the hot store (the newest events) and continue into the archive
//! below the archived prefix; ascending pages do the reverse. Archived files are visited
//! newest-first (or oldest-first) in rounds of doubling size, so a page that the first files
//! fill never opens the rest of a tenant's history (lookups by `request_id` or `resource_id`
//! read every candidate file in one round instead), and a page never holds more than its own
//! rows: DataFusion keeps only the top `limit` rows of a round while it scans.

use datafusion::arrow::array::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::prelude::{col, lit, Expr};
use sealtrail_archive::parquet_file::decode_batch;
use sealtrail_hot::{EventQuery, Order};
use sealtrail_model::limits::QUERY_FILES_FIRST_ROUND;
use sealtrail_model::{LocatedEvent, StorageTier, StoredEvent};

use crate::files::ArchivedFile;
use crate::{Error, QueryEngine, Result};

impl QueryEngine {
    /// One page of a tenant's events matching `query`, in its order, from whichever tiers hold
    /// them. `query.limit` rows at most.
    pub async fn page(&self, query: EventQuery) -> Result<Vec<LocatedEvent>> {
        let files = self.archived_files(&query.tenant_id).await?;
        let archived_through = files.last().map_or(0, |file| file.last_seq);
        let limit = query.limit;
        let mut page = Vec::with_capacity(limit.min(1_024));
        match query.order {
            Order::Desc => {
                let hot = self.hot.query(query.clone()).await?;
                // Hot rows inside the archived range are leftovers of an interrupted
                // migration; the archive answers for them. Being the lowest, they come last.
                let exhausted =
                    hot.len() < limit || hot.iter().any(|stored| stored.seq <= archived_through);
                page.extend(
                    hot.into_iter()
                        .filter(|stored| stored.seq > archived_through)
                        .map(|stored| located(stored, StorageTier::Hot)),
                );
                if exhausted && page.len() < limit {
                    let below = query.after_seq.map_or(archived_through + 1, |after| {
                        after.min(archived_through + 1)
                    });
                    let files: Vec<&ArchivedFile> = files
                        .iter()
                        .rev()
                        .filter(|file| file.first_seq < below)
                        .collect();
                    let bound = col("seq").lt(lit(seq_value(below)));
                    self.archive_rows(&files, &query, bound, limit - page.len(), &mut page)
                        .await?;
                }
            }
            Order::Asc => {
                let after = query.after_seq.unwrap_or(0);
                if after < archived_through {
                    let files: Vec<&ArchivedFile> =
                        files.iter().filter(|file| file.last_seq > after).collect();
                    let bound = col("seq").gt(lit(seq_value(after)));
                    self.archive_rows(&files, &query, bound, limit, &mut page)
                        .await?;
                }
                if page.len() < limit {
                    let mut hot_query = query.clone();
                    hot_query.after_seq = Some(after.max(archived_through));
                    hot_query.limit = limit - page.len();
                    page.extend(
                        self.hot
                            .query(hot_query)
                            .await?
                            .into_iter()
                            .map(|stored| located(stored, StorageTier::Hot)),
                    );
                }
            }
        }
        Ok(page)
    }

    /// One event by `event_id`, from whichever tier holds it.
    pub async fn event(&self, tenant_id: &str, event_id: &str) -> Result<Option<LocatedEvent>> {
        let files = self.archived_files(tenant_id).await?;
        let archived_through = files.last().map_or(0, |file| file.last_seq);
        if let Some(stored) = self.hot.get_event(tenant_id, event_id).await? {
            if stored.seq > archived_through {
                return Ok(Some(located(stored, StorageTier::Hot)));
            }
        }
        let files: Vec<&ArchivedFile> = files.iter().rev().collect();
        let query = EventQuery {
            limit: 1,
            ..EventQuery::for_tenant(tenant_id)
        };
        let mut found = Vec::new();
        let bound = col("event_id").eq(lit(event_id));
        self.archive_rows(&files, &query, bound, 1, &mut found)
            .await?;
        Ok(found.pop())
    }

    /// Appends up to `wanted` archived rows matching `query` and `bound` to `page`, visiting
    /// `files` (already in the page's order) in rounds of doubling size.
    async fn archive_rows(
        &self,
        files: &[&ArchivedFile],
        query: &EventQuery,
        bound: Expr,
        wanted: usize,
        page: &mut Vec<LocatedEvent>,
    ) -> Result<()> {
        let files: Vec<&ArchivedFile> = files
            .iter()
            .copied()
            .filter(|file| file.may_hold_time(query.from_ns, query.to_ns))
            .collect();
        let predicate = filters(query).into_iter().fold(bound, Expr::and);
        let ascending = query.order == Order::Asc;
        let target = page.len() + wanted;
        let mut start = 0;
        // A lookup by an identifier with a bloom filter matches a handful of rows anywhere in
        // the history: one query over every file (one plan, the bloom filters skipping row
        // groups) beats rounds that would re-plan it up to log2(files) times.
        let lookup = query.request_id.is_some() || query.resource_id.is_some();
        let mut round = if lookup {
            files.len().max(1)
        } else {
            QUERY_FILES_FIRST_ROUND.max(1)
        };
        while start < files.len() && page.len() < target {
            let window = &files[start..files.len().min(start + round)];
            let session = self.session(num_partitions());
            let mut frames = self
                .tier_tables(window)
                .await?
                .into_iter()
                .map(|table| session.read_table(table));
            let Some(first) = frames.next() else { break };
            let frame = frames.try_fold(first?, |all, next| all.union(next?))?;
            let batches = frame
                .filter(predicate.clone())?
                .sort(vec![col("seq").sort(ascending, false)])?
                .limit(0, Some(target - page.len()))?
                .collect()
                .await?;
            let tiers: Vec<(u64, u64, StorageTier)> = window
                .iter()
                .map(|file| (file.first_seq, file.last_seq, file.tier))
                .collect();
            for stored in decode(&batches)? {
                let tier = tiers
                    .iter()
                    .find(|(first, last, _)| (*first..=*last).contains(&stored.seq))
                    .map_or(StorageTier::Warm, |(_, _, tier)| *tier);
                page.push(located(stored, tier));
            }
            start += window.len();
            round = round.saturating_mul(2);
        }
        Ok(())
    }
}

/// The `GET /v1/events` filters as DataFusion predicates.
fn filters(query: &EventQuery) -> Vec<Expr> {
    let mut predicates = Vec::new();
    for (column, value) in query.exact_filters() {
        if let Some(value) = value {
            predicates.push(col(column).eq(lit(value)));
        }
    }
    for (column, matched) in query.protected_filters() {
        if let Some(matched) = matched {
            let plain = col(column).eq(lit(matched.plaintext.clone()));
            predicates.push(match matched.envelope_pattern() {
                Some(pattern) => plain.or(col(column).like(lit(pattern))),
                None => plain,
            });
        }
    }
    if let Some(actors) = &query.actor_in {
        // An empty scope is `IN ()`, which matches nothing, as in the hot stores.
        predicates.push(if actors.is_empty() {
            lit(false)
        } else {
            col("actor_id").in_list(actors.iter().map(lit).collect(), false)
        });
    }
    if let Some(from_ns) = query.from_ns {
        predicates.push(col("timestamp").gt_eq(lit(instant(from_ns))));
    }
    if let Some(to_ns) = query.to_ns {
        predicates.push(col("timestamp").lt(lit(instant(to_ns))));
    }
    predicates
}

fn instant(ns: i64) -> ScalarValue {
    ScalarValue::TimestampNanosecond(Some(ns), Some("UTC".into()))
}

/// `seq` as stored in Parquet (`Int64`; a log never reaches 2^63 events).
fn seq_value(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

fn located(stored: StoredEvent, tier: StorageTier) -> LocatedEvent {
    LocatedEvent { stored, tier }
}

pub(crate) fn decode(batches: &[RecordBatch]) -> Result<Vec<StoredEvent>> {
    let mut events = Vec::new();
    for batch in batches {
        decode_batch(batch, &mut events).map_err(|error| Error::Decode {
            path: "archived events".to_owned(),
            reason: error.to_string(),
        })?;
    }
    Ok(events)
}

/// Partitions a scan is split into: one per core.
pub(crate) fn num_partitions() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}
