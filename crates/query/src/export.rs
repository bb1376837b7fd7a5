//! Export: every event of a tenant in a time range, in `seq` order, as NDJSON (one API event
//! object per line, the same bytes `GET /v1/events` returns for it).
//!
//! The export streams: files are read one after another, each as one ordered partition, and
//! lines go to the client in chunks through a bounded channel, so memory stays at a few
//! chunks and a file's row group whatever the range, and a slow client slows the reader
//! instead of filling memory. Exports run on the query runtime (see `executor.rs`) and count
//! against [`sealtrail_model::limits::QUERIES_CONCURRENT_MAX`], like SQL.

use std::sync::Arc;

use datafusion::prelude::{col, lit};
use futures::{Stream, StreamExt};
use sealtrail_hot::{EventQuery, Order};
use sealtrail_model::limits::{ARCHIVE_SCAN_EVENTS, EXPORT_CHUNKS_IN_FLIGHT, EXPORT_CHUNK_BYTES};
use sealtrail_model::{LocatedEvent, StorageTier, StoredEvent};
use tokio::sync::mpsc;

use crate::files::ArchivedFile;
use crate::page::decode;
use crate::{Error, QueryEngine, Result};

/// One piece of the NDJSON body: whole lines only.
pub type Chunk = Vec<u8>;

impl QueryEngine {
    /// Streams the tenant's events with `timestamp` in `[from_ns, to_ns)` as NDJSON chunks.
    /// An error ends the stream with that error (the HTTP layer then aborts the response, so a
    /// client can never mistake a cut export for a complete one). [`Error::Busy`] before any
    /// chunk when too many queries and exports are running.
    pub fn export(
        self: &Arc<Self>,
        tenant_id: String,
        from_ns: Option<i64>,
        to_ns: Option<i64>,
    ) -> Result<impl Stream<Item = Result<Chunk>> + Send + 'static> {
        let permit = self.executor.admit()?;
        let (sender, receiver) = mpsc::channel(EXPORT_CHUNKS_IN_FLIGHT);
        let engine = Arc::clone(self);
        // Not awaited: the task ends when the export does or its reader goes away (a send
        // fails), and the permit is held until then.
        drop(self.executor.spawn(async move {
            let _permit = permit;
            let mut out = Output {
                sender: sender.clone(),
                buffer: Vec::with_capacity(EXPORT_CHUNK_BYTES + 4_096),
            };
            let result = engine
                .export_into(&tenant_id, from_ns, to_ns, &mut out)
                .await;
            let result = match result {
                Ok(()) => out.flush().await,
                Err(error) => Err(error),
            };
            if let Err(error) = result {
                // The receiver may be gone (client disconnected): nothing left to tell.
                let _ = sender.send(Err(error)).await;
            }
        }));
        Ok(futures::stream::unfold(
            receiver,
            |mut receiver| async move { receiver.recv().await.map(|item| (item, receiver)) },
        ))
    }

    async fn export_into(
        &self,
        tenant_id: &str,
        from_ns: Option<i64>,
        to_ns: Option<i64>,
        out: &mut Output,
    ) -> Result<()> {
        let files = self.archived_files(tenant_id).await?;
        let archived_through = files.last().map_or(0, |file| file.last_seq);
        for file in files
            .iter()
            .filter(|file| file.may_hold_time(from_ns, to_ns))
        {
            self.export_file(file, from_ns, to_ns, out).await?;
        }
        let mut after = archived_through;
        loop {
            let page = self
                .hot
                .scan_events(tenant_id, after, ARCHIVE_SCAN_EVENTS)
                .await?;
            let Some(last) = page.last().map(|stored| stored.seq) else {
                break;
            };
            let full = page.len() == ARCHIVE_SCAN_EVENTS;
            for stored in page {
                if in_range(&stored, from_ns, to_ns) {
                    out.line(stored, StorageTier::Hot).await?;
                }
            }
            if !full {
                break;
            }
            after = last;
        }
        Ok(())
    }

    /// One file's events in the range, in `seq` order: a single partition keeps the file's
    /// row order, so no sort is needed.
    async fn export_file(
        &self,
        file: &ArchivedFile,
        from_ns: Option<i64>,
        to_ns: Option<i64>,
        out: &mut Output,
    ) -> Result<()> {
        let session = self.session(1);
        let Some(table) = self.tier_tables(&[file]).await?.pop() else {
            return Ok(());
        };
        let mut frame = session.read_table(table)?;
        let instant = |ns| {
            lit(datafusion::common::ScalarValue::TimestampNanosecond(
                Some(ns),
                Some("UTC".into()),
            ))
        };
        if let Some(from_ns) = from_ns {
            frame = frame.filter(col("timestamp").gt_eq(instant(from_ns)))?;
        }
        if let Some(to_ns) = to_ns {
            frame = frame.filter(col("timestamp").lt(instant(to_ns)))?;
        }
        let mut stream = frame.execute_stream().await?;
        while let Some(batch) = stream.next().await {
            for stored in decode(&[batch?])? {
                out.line(stored, file.tier).await?;
            }
        }
        Ok(())
    }
}

impl QueryEngine {
    /// The first and the last `seq`, at most `tree_size`, of the events `filter` selects (its
    /// filters and time range; order, cursor and limit aside), or `None` when none.
    pub async fn span(&self, filter: &EventQuery, tree_size: u64) -> Result<Option<(u64, u64)>> {
        let mut bound = filter.clone();
        bound.limit = 1;
        bound.order = Order::Asc;
        bound.after_seq = None;
        let first = self.page(bound.clone()).await?;
        bound.order = Order::Desc;
        bound.after_seq = Some(tree_size + 1);
        let last = self.page(bound).await?;
        Ok(match (first.first(), last.first()) {
            (Some(first), Some(last)) if first.stored.seq <= last.stored.seq => {
                Some((first.stored.seq, last.stored.seq))
            }
            _ => None,
        })
    }

    /// Sends every event of `first..=last` to `sender` in `seq` order, a decoded batch at a
    /// time, from whichever tier holds it. A gap is [`Error::Corrupt`]; a receiver gone is
    /// [`Error::Cancelled`].
    pub async fn send_span(
        &self,
        tenant_id: &str,
        first: u64,
        last: u64,
        sender: &mpsc::Sender<Vec<StoredEvent>>,
    ) -> Result<()> {
        let mut next = first;
        let take = |batch: Vec<StoredEvent>, next: &mut u64| -> Result<Vec<StoredEvent>> {
            for stored in &batch {
                if stored.seq != *next {
                    return Err(Error::Corrupt(format!(
                        "tenant {tenant_id}: seq {} read where seq {next} belongs",
                        stored.seq
                    )));
                }
                *next += 1;
            }
            Ok(batch)
        };
        let send = |batch: Vec<StoredEvent>| async move {
            if batch.is_empty() {
                return Ok(());
            }
            sender.send(batch).await.map_err(|_| Error::Cancelled)
        };
        let files = self.archived_files(tenant_id).await?;
        let archived_through = files.last().map_or(0, |file| file.last_seq);
        for file in files
            .iter()
            .filter(|file| file.last_seq >= first && file.first_seq <= last)
        {
            let session = self.session(1);
            let Some(table) = self.tier_tables(&[file]).await?.pop() else {
                continue;
            };
            let frame = session.read_table(table)?.filter(
                col("seq")
                    .gt_eq(lit(first as i64))
                    .and(col("seq").lt_eq(lit(last as i64))),
            )?;
            let mut stream = frame.execute_stream().await?;
            while let Some(batch) = stream.next().await {
                send(take(decode(&[batch?])?, &mut next)?).await?;
            }
        }
        let mut after = archived_through.max(first - 1);
        while after < last {
            let page = self
                .hot
                .scan_events(tenant_id, after, ARCHIVE_SCAN_EVENTS)
                .await?;
            let Some(end) = page.last().map(|stored| stored.seq) else {
                break;
            };
            let page: Vec<StoredEvent> = page
                .into_iter()
                .take_while(|stored| stored.seq <= last)
                .collect();
            send(take(page, &mut next)?).await?;
            after = end;
        }
        if next != last + 1 {
            return Err(Error::Corrupt(format!(
                "tenant {tenant_id}: events from seq {next} to {last} are missing"
            )));
        }
        Ok(())
    }
}

fn in_range(stored: &StoredEvent, from_ns: Option<i64>, to_ns: Option<i64>) -> bool {
    let timestamp = stored.event.timestamp_ns;
    from_ns.is_none_or(|from| timestamp >= from) && to_ns.is_none_or(|to| timestamp < to)
}

/// The chunked NDJSON writer.
struct Output {
    sender: mpsc::Sender<Result<Chunk>>,
    buffer: Vec<u8>,
}

impl Output {
    async fn line(&mut self, stored: StoredEvent, tier: StorageTier) -> Result<()> {
        serde_json::to_writer(&mut self.buffer, &LocatedEvent { stored, tier }).map_err(
            |error| Error::Decode {
                path: "export".to_owned(),
                reason: error.to_string(),
            },
        )?;
        self.buffer.push(b'\n');
        if self.buffer.len() >= EXPORT_CHUNK_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(EXPORT_CHUNK_BYTES + 4_096),
        );
        self.sender
            .send(Ok(chunk))
            .await
            .map_err(|_| Error::Cancelled)
    }
}
