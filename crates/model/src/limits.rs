//! Every bound Sealtrail enforces, in one place.
//!
//! Each constant is documented and carries its unit last (`_bytes_max`, `_secs_max`, …), so a
//! reader can see at a glance what is limited and by how much. Validation errors quote these
//! values; ARCHITECTURE.md and the OpenAPI document point here.

/// Largest request body accepted by `POST /v1/events`, in bytes. Larger bodies get 413.
pub const BODY_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Most events in one ingest request (one object, array or NDJSON stream). More gets 413.
pub const BATCH_EVENTS_MAX: usize = 10_000;

/// `tenant_id`: 1 to this many characters of `[A-Za-z0-9_.-]`.
pub const TENANT_ID_CHARS_MAX: usize = 64;
/// `event_id`: the client's idempotency key, at most this many characters.
pub const EVENT_ID_CHARS_MAX: usize = 128;
/// `actor_id`: at most this many characters.
pub const ACTOR_ID_CHARS_MAX: usize = 256;
/// `action`: 1 to this many characters of `[A-Za-z0-9_.:-]`.
pub const ACTION_CHARS_MAX: usize = 64;
/// `resource_type`: 1 to this many characters of `[A-Za-z0-9_.:-]`.
pub const RESOURCE_TYPE_CHARS_MAX: usize = 64;
/// `resource_id`: at most this many characters.
pub const RESOURCE_ID_CHARS_MAX: usize = 256;
/// `user_agent`: at most this many characters.
pub const USER_AGENT_CHARS_MAX: usize = 512;
/// `request_id`: at most this many characters.
pub const REQUEST_ID_CHARS_MAX: usize = 128;
/// `ip_address`: at most this many characters (the longest IPv6 text form is 45).
pub const IP_ADDRESS_CHARS_MAX: usize = 64;

/// Deepest nesting of objects and arrays inside `changes` or `metadata` (the field itself is
/// depth 1). Deeper documents are rejected rather than truncated.
pub const JSON_DEPTH_MAX: usize = 10;
/// Largest `changes` object, in bytes of its compact JSON text.
pub const CHANGES_BYTES_MAX: usize = 64 * 1024;
/// Largest `metadata` object, in bytes of its compact JSON text.
pub const METADATA_BYTES_MAX: usize = 16 * 1024;

/// How far in the future (by the server's clock) an event `timestamp` may lie, in seconds.
pub const CLOCK_SKEW_SECS_MAX: i64 = 300;
/// Most fractional-second digits of an RFC 3339 timestamp: instants are kept in nanoseconds, so a
/// finer one would be cut, and is refused instead.
pub const TIMESTAMP_FRACTION_DIGITS_MAX: usize = 9;
/// How far in the past an event `timestamp` accepted over HTTP may lie, in days. Older history
/// belongs in a bulk import, not the live ingest path.
pub const TIMESTAMP_AGE_DAYS_MAX: i64 = 366;

/// Largest `seq` and tree size the API accepts (in a cursor, `tree_size`, `first`, `second`):
/// SQLite, PostgreSQL and Parquet all store them as signed 64-bit integers, so a larger
/// number would wrap to a negative one. A log never comes near it.
pub const SEQ_MAX: u64 = i64::MAX as u64;

/// Default page size of `GET /v1/events`.
pub const QUERY_LIMIT_DEFAULT: usize = 100;
/// Largest page size of `GET /v1/events`.
pub const QUERY_LIMIT_MAX: usize = 1_000;

/// Events accepted with `durability=async` and not yet committed. When full, async ingest
/// answers 503 with Retry-After instead of buffering without bound.
pub const ASYNC_QUEUE_EVENTS_MAX: usize = 200_000;
/// Events in sync requests waiting for their commit. A sync request waits up to
/// [`SYNC_ADMIT_WAIT_MILLIS_MAX`] for room, then gets 503.
pub const SYNC_INFLIGHT_EVENTS_MAX: usize = 100_000;
/// How long a sync request may wait for room in the commit pipeline, in milliseconds.
pub const SYNC_ADMIT_WAIT_MILLIS_MAX: u64 = 2_000;
/// Most events the writer puts in one group commit (one transaction, one fsync).
pub const GROUP_COMMIT_EVENTS_MAX: usize = 20_000;
/// Seconds a client is told to wait (Retry-After) when the pipeline is full.
pub const RETRY_AFTER_SECS: u64 = 1;

/// A spool segment is sealed and a new one started once it holds this many bytes.
pub const SPOOL_SEGMENT_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// The spool is fsynced at least this often, in milliseconds. This bounds what a power loss
/// (not a process crash) can take from acknowledged async events.
pub const SPOOL_FSYNC_INTERVAL_MILLIS: u64 = 50;

/// How long an orderly shutdown may take, in seconds from the signal: in-flight requests finish
/// and the async queue drains into the store within it. Past it, sync callers still waiting get
/// 503, async requests not yet committed stay in the spool (replayed on the next start), no
/// final checkpoint is sealed, and the process exits. Below the 30 s an orchestrator commonly
/// waits before SIGKILL, so the exit stays orderly.
pub const SHUTDOWN_DRAIN_SECS_MAX: u64 = 20;
/// After the shutdown deadline, how long requests still in flight get to send their 503 before
/// their connections are closed, in milliseconds.
pub const SHUTDOWN_REFUSALS_MILLIS_MAX: u64 = 500;

/// Read connections kept open to the hot store.
pub const HOT_READ_CONNECTIONS_MAX: usize = 4;
/// How often the hot store's background thread checkpoints the SQLite WAL, in milliseconds.
pub const WAL_CHECKPOINT_INTERVAL_MILLIS: u64 = 500;
/// Size of the SQLite WAL above which the writer, right after a commit, copies every frame into
/// the database and truncates the file (a pause of one checkpoint for ingest), so sustained load
/// cannot grow the WAL without bound: the background checkpoint is passive and cannot restart
/// the WAL while commits keep arriving. Also the size the WAL is cut back to after an ordinary
/// checkpoint (`journal_size_limit`).
pub const WAL_BYTES_SOFT_MAX: u64 = 64 * 1024 * 1024;
/// How long a truncating WAL checkpoint waits for readers of older snapshots, in milliseconds,
/// before it gives up until the next commit.
pub const WAL_TRUNCATE_WAIT_MILLIS: u64 = 2_000;
/// Attempts to truncate the SQLite WAL after a secure delete (a destroyed key), each waiting up
/// to [`WAL_TRUNCATE_WAIT_MILLIS`] for readers: until then the WAL still holds the deleted value.
pub const SECURE_DELETE_WAL_ATTEMPTS: u32 = 50;

/// Connections each process keeps to the PostgreSQL hot tier; the group-commit writer and the
/// concurrent readers share them.
pub const POSTGRES_CONNECTIONS_MAX: usize = 8;
/// Monthly partitions of the PostgreSQL `events` table kept ready after the current month. They
/// are created at start and whenever an append reaches a month that has none, so a month never
/// begins with its partition still missing.
pub const POSTGRES_PARTITION_MONTHS_AHEAD: u32 = 2;
/// A PostgreSQL session idle inside a transaction this long, in milliseconds, is ended by the
/// server. This bounds how long a hung (not killed) node can hold its tenants' chain-head locks
/// and stall the other nodes writing to those tenants.
pub const POSTGRES_IDLE_IN_TRANSACTION_MILLIS_MAX: u64 = 60_000;
/// How long to wait for a new PostgreSQL connection, in seconds.
pub const POSTGRES_CONNECT_TIMEOUT_SECS: u64 = 10;
/// Group commits a process runs at once against PostgreSQL (the write pipeline's lanes, each
/// holding one pooled connection while it commits). Half of [`POSTGRES_CONNECTIONS_MAX`], so
/// queries and key lookups always find a free connection while every lane is committing.
pub const POSTGRES_COMMIT_LANES: usize = POSTGRES_CONNECTIONS_MAX / 2;

/// Events stay in the hot tier at least this many days (by their `timestamp`) before
/// `sealtrail lifecycle run` moves them to the warm tier, unless configured otherwise.
pub const HOT_RETENTION_DAYS_DEFAULT: u32 = 30;
/// Most events in one warm-tier Parquet file. A migration holds one file's events in memory
/// (encoded, then read back and compared), so this bounds its memory to a few hundred MB.
pub const ARCHIVE_FILE_EVENTS_MAX: usize = 250_000;
/// Rows per Parquet row group. Row groups are the unit of statistics-based pruning; this size
/// keeps each one large enough for zstd and dictionaries to pay off.
pub const ARCHIVE_ROW_GROUP_EVENTS_MAX: usize = 65_536;
/// Hot rows read per round trip while migrating.
pub const ARCHIVE_SCAN_EVENTS: usize = 10_000;
/// zstd level of warm-tier files: fast enough to migrate a day's volume in minutes.
pub const WARM_ZSTD_LEVEL: i32 = 3;

/// Largest SQL text `POST /v1/query` accepts, in bytes.
pub const SQL_TEXT_BYTES_MAX: usize = 16 * 1024;
/// Most rows `POST /v1/query` returns; a larger result is cut there and marked `truncated`.
pub const SQL_ROWS_MAX: usize = 10_000;
/// How long one `POST /v1/query` may run before it is cancelled, in milliseconds.
pub const SQL_TIMEOUT_MILLIS: u64 = 30_000;
/// Archived files a filtered page reads in its first round; each further round doubles it, so
/// a page that the newest file fills never opens the rest of the tenant's history.
pub const QUERY_FILES_FIRST_ROUND: usize = 1;
/// NDJSON bytes an export buffers before handing a chunk to the connection.
pub const EXPORT_CHUNK_BYTES: usize = 256 * 1024;
/// Chunks an export may have in flight to a slow client before it waits: the bound on its memory.
pub const EXPORT_CHUNKS_IN_FLIGHT: usize = 8;
/// Memory all running queries may use together for sorts, joins and aggregations, in bytes. A
/// query that needs more fails with a clear error instead of taking the service's memory; no
/// query spills to disk.
pub const QUERY_MEMORY_BYTES_MAX: usize = 1024 * 1024 * 1024;
/// Share of [`QUERY_MEMORY_BYTES_MAX`] DataFusion's memory pool accounts for. Its operators
/// count less than they hold (hash tables and buffers grow by doubling, and the old buffer lives
/// while the new one fills): with the whole bound as the pool, a `GROUP BY` over a cross join
/// held 2.0 GB and a nested loop join 2.2 GB when the pool refused them. With half, that
/// `GROUP BY` held 0.9 GB on one machine and 1.3 GB on another (allocator timing and
/// fragmentation differ): about 2.5 times what the pool counted. Three tenths keeps the real use
/// inside the bound on both.
pub const QUERY_MEMORY_POOL_FRACTION: f64 = 0.3;
/// Largest `POST /v1/query` response body, in bytes. Rows that would cross it are cut and the
/// answer is marked `truncated`, like a result over [`SQL_ROWS_MAX`]: 10,000 rows of 64 KB made
/// a 655 MB response before this bound.
pub const SQL_RESPONSE_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Rows per batch inside a `POST /v1/query` plan (DataFusion's `batch_size`). An event row may
/// hold about 82 KB (`changes`, `metadata` and the other fields at their limits), and batches
/// are held outside the memory pool while they move between operators, so this bounds each to
/// about 40 MB.
pub const SQL_BATCH_ROWS: usize = 512;
/// Threads that run `POST /v1/query` and `GET /v1/export` work, on their own runtime at a lower
/// scheduling priority: a heavy query can take this many cores, never the ones ingest's group
/// commit and `GET /v1/events` run on.
pub const QUERY_THREADS: usize = 1;
/// `POST /v1/query` and `GET /v1/export` calls running at once across the process. Another one
/// is answered 503 with Retry-After instead of queueing behind them.
pub const QUERIES_CONCURRENT_MAX: usize = 2;

/// Warm-tier files whose newest event is older than this many days are compacted into the
/// cold tier by `sealtrail lifecycle run`, unless configured otherwise.
pub const WARM_RETENTION_DAYS_DEFAULT: u32 = 365;
/// zstd level of cold-tier files: slower to write than the warm level, but a tenant-month is
/// compacted once and then kept for years, so bytes matter more than seconds.
pub const COLD_ZSTD_LEVEL: i32 = 15;
/// Rows per row group in cold-tier files: larger than the warm tier's, for better compression
/// of data that is scanned rarely and in bulk.
pub const COLD_ROW_GROUP_EVENTS_MAX: usize = 262_144;
/// Most events in one cold-tier file. A tenant-month is one file unless it holds more; the
/// compaction holds one file's events in memory (encoded, then read back and compared), so
/// this bounds its memory to about a gigabyte.
pub const COLD_FILE_EVENTS_MAX: usize = 1_000_000;
/// Longest retention a tenant's policy may set, in days (100 years).
pub const RETENTION_DAYS_MAX: u32 = 36_600;
/// Longest retention a tenant's policy may set, in years.
pub const RETENTION_YEARS_MAX: u32 = 100;
/// Days a retention year counts for. 366, so a policy of N years never deletes an event before
/// N calendar years have passed, leap years included.
pub const RETENTION_YEAR_DAYS: u32 = 366;
/// Events per all-or-nothing request in `sealtrail import` (requests are grouped into commits
/// of up to [`GROUP_COMMIT_EVENTS_MAX`] events).
pub const IMPORT_REQUEST_EVENTS: usize = 1_000;
/// Longest line `sealtrail import` accepts, in bytes: the largest valid event fits.
pub const IMPORT_LINE_BYTES_MAX: usize = 1024 * 1024;
/// How often `sealtrail serve` runs the lifecycle (hot → warm → cold → retention), in seconds;
/// `--lifecycle-interval-secs 0` turns the schedule off.
pub const LIFECYCLE_INTERVAL_SECS_DEFAULT: u64 = 86_400;

/// Async requests refused at commit (an `event_id` reused with other content) kept per tenant
/// for `GET /v1/tenants/{tenant_id}/rejected-events`; older ones are dropped, and counted.
pub const ASYNC_REJECTIONS_KEPT_MAX: usize = 1_000;

/// TCP connections the server serves at once. The listener stops accepting at this many, so
/// further connections wait in the kernel's accept backlog (and time out there, at the client)
/// rather than each taking a task, buffers and a file descriptor.
pub const CONNECTIONS_MAX: usize = 1_024;
/// How long a request may take until its response head is ready, in milliseconds; beyond it
/// the request is answered 503 with Retry-After. Longer than [`SQL_TIMEOUT_MILLIS`], so a query
/// fails with its own 400 first. A streamed body (`GET /v1/export`) is not cut by it once its
/// head is sent: an export runs for as long as it keeps sending.
pub const REQUEST_TIMEOUT_MILLIS: u64 = 60_000;
/// `POST /v1/query` and `GET /v1/export` calls one tenant may run at once. Another one from the
/// same tenant is answered 429 with Retry-After, so one tenant cannot hold every slot of
/// [`QUERIES_CONCURRENT_MAX`] while others wait.
pub const QUERIES_PER_TENANT_CONCURRENT_MAX: usize = 1;
/// Least entropy of the platform-admin token (`SEALTRAIL_ADMIN_TOKEN`) and of the metrics token
/// (`SEALTRAIL_METRICS_TOKEN`), in bits. The server refuses to start with a weaker one.
pub const ADMIN_TOKEN_BITS_MIN: usize = 256;
/// Latest expiry an API key may be given (`expires_at` or `ttl_seconds` of `POST /v1/keys`), in
/// days from its creation. A key without an expiry never expires; one that needs to last longer
/// is left without one and revoked when it is no longer needed.
pub const API_KEY_TTL_DAYS_MAX: i64 = 366;

/// Rules one capture policy may hold (matched in order on every event of the tenant). Bounded
/// so that a change's event, holding the policy before and after, always fits `changes`
/// ([`CHANGES_BYTES_MAX`]); a test in `sealtrail-policy` checks the worst case.
pub const POLICY_RULES_MAX: usize = 64;
/// Longest string a policy rule matches on (`action` and `resource_type` are at most 64 chars).
pub const POLICY_MATCH_CHARS_MAX: usize = 64;
/// How long a node keeps a tenant's capture policy before reading it again: a change made on
/// another node of a shared database applies here within this time.
pub const POLICY_CACHE_MILLIS: u64 = 2_000;
/// Tenants whose policy one node keeps cached (the cache starts over beyond it).
pub const POLICY_CACHE_TENANTS_MAX: usize = 100_000;
/// Statistics one pass of the sampling statement task reads at a time.
pub const SAMPLING_STATEMENT_COUNTS_MAX: usize = 10_000;
/// Default seconds between sampling statements (the issue asks for at least hourly).
pub const SAMPLING_STATEMENT_INTERVAL_SECS_DEFAULT: u64 = 3_600;
/// Longest `display_name`, `department` or `team` of an actor directory entry, in characters.
pub const ACTOR_NAME_CHARS_MAX: usize = 256;
/// Largest `attributes` object of an actor directory entry, in bytes of canonical JSON.
pub const ACTOR_ATTRIBUTES_BYTES_MAX: usize = 16 * 1024;
/// Actors one `PUT /v1/tenants/{t}/actors` may upsert.
pub const ACTORS_PER_REQUEST_MAX: usize = 1_000;
/// Actor-day summaries one `GET /v1/summaries/actor-day` answers (then `truncated`).
pub const SUMMARY_ROWS_MAX: usize = 10_000;
/// Resources a tenant-month summary lists, most events first (the practice's top 20).
pub const TOP_RESOURCES: usize = 20;
/// The most active actors `GET /v1/summaries/tenant-day` names for its period.
pub const TOP_ACTORS: usize = 20;

/// Bytes of keys and answers the query result cache holds (`sealtrail_query::ResultCache`).
pub const QUERY_CACHE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Largest answer the query result cache stores: a bigger one would push out many smaller
/// ones, and computing it costs far more than the lookup saves.
pub const QUERY_CACHE_ENTRY_BYTES_MAX: usize = 4 * 1024 * 1024;

// Real time: the committed-event feed, alert rules, webhooks, the live stream, SIEM sinks.

/// Events a feed consumer reads from one tenant's log at a time.
pub const FEED_BATCH_EVENTS_MAX: usize = 1_000;
/// How often a feed consumer looks for commits it was not told of (another node's, on a
/// shared PostgreSQL database), in milliseconds.
pub const FEED_POLL_MILLIS: u64 = 1_000;
/// How often a feed consumer that keeps up saves its cursor, in milliseconds. A save is a write
/// through the store's one writer, so saving after every event would compete with ingest;
/// delivery is at least once, so a crash repeats at most this much work (alerts are recognised
/// by their ids, receivers dedupe by `event_id`).
pub const FEED_CURSOR_SAVE_MILLIS: u64 = 1_000;
/// Alert rules one tenant may hold.
pub const ALERT_RULES_PER_TENANT_MAX: usize = 50;
/// Longest alert rule name, in characters.
pub const ALERT_RULE_NAME_CHARS_MAX: usize = 64;
/// Values one `match` member (`action`, `action_prefix`) may list.
pub const ALERT_RULE_MATCH_VALUES_MAX: usize = 32;
/// Longest window or cool-down of a threshold rule: a day.
pub const ALERT_WINDOW_SECONDS_MAX: u64 = 86_400;
/// Largest threshold of an alert rule (sums of bytes reach petabytes well below it).
pub const ALERT_THRESHOLD_MAX: f64 = 1e15;
/// Largest number of standard deviations, and largest `min_count`, of a baseline rule.
pub const ALERT_DEVIATIONS_MAX: f64 = 1_000.0;
pub const ALERT_MIN_COUNT_MAX: u64 = 1_000_000_000;
/// Longest history a baseline rule compares today with, in days.
pub const ALERT_BASELINE_DAYS_MAX: u32 = 90;
/// Ids of contributing events one alert event lists (the newest of its window).
pub const ALERT_CONTRIBUTING_EVENTS_MAX: usize = 20;
/// Events one group's window holds; beyond it the oldest are forgotten (the value is then a
/// lower bound), so one hot key cannot take the server's memory.
pub const ALERT_WINDOW_EVENTS_MAX: usize = 100_000;
/// Groups one rule of one tenant tracks at once; a new group beyond it is not tracked until
/// windows expire (counted in `/metrics`).
pub const ALERT_GROUPS_PER_RULE_MAX: usize = 100_000;
/// Events read back at start to rebuild one tenant's windows (those within the longest
/// rule's reach before the consumer's cursor).
pub const ALERT_REBUILD_EVENTS_MAX: usize = 200_000;
/// Webhooks one tenant may register.
pub const WEBHOOKS_PER_TENANT_MAX: usize = 20;
/// Sinks one deployment may hold.
pub const SINKS_MAX: usize = 100;
/// Longest webhook or sink URL, in bytes.
pub const DESTINATION_URL_BYTES_MAX: usize = 2_048;
/// Attempts of one delivery (a webhook message, a sink batch) before it is parked in the
/// dead-letter list.
pub const DELIVERY_ATTEMPTS_MAX: u32 = 8;
/// Default first pause between attempts (doubled each time, with jitter), in milliseconds.
pub const DELIVERY_RETRY_BASE_MILLIS_DEFAULT: u64 = 500;
/// Longest pause between two attempts, in milliseconds.
pub const DELIVERY_RETRY_CAP_MILLIS: u64 = 60_000;
/// How long one delivery attempt may take, in milliseconds.
pub const DELIVERY_TIMEOUT_MILLIS: u64 = 10_000;
/// Entries one destination's dead-letter list keeps (the oldest go first beyond it).
pub const DEAD_LETTERS_MAX: usize = 1_000;
/// Events one sink delivery carries.
pub const SINK_BATCH_EVENTS_MAX: usize = 1_000;
/// Live streams (`GET /v1/stream`) open at once on one node; more get 503.
pub const STREAMS_MAX: usize = 256;
/// Seconds between keep-alive comments on an idle live stream.
pub const STREAM_KEEPALIVE_SECS: u64 = 15;

// Export jobs (`POST /v1/exports`).

/// Rows per row group of an exported Parquet file (and events one writer buffers).
pub const EXPORT_PARQUET_ROW_GROUP_EVENTS: usize = 64 * 1024;
/// zstd level of exported Parquet files: fast, an export is written once and read once.
pub const EXPORT_ZSTD_LEVEL: i32 = 3;
/// Export jobs running at once on one node; more wait in `queued`.
pub const EXPORT_JOBS_CONCURRENT_MAX: usize = 2;
/// Export jobs a tenant keeps on record (queued, running and finished); the oldest finished
/// ones are forgotten beyond it, and a new job is refused while all of them are unfinished.
pub const EXPORT_JOBS_PER_TENANT_MAX: usize = 100;
/// Days a finished export's files are kept by default (`--export-expiry-days`).
pub const EXPORT_EXPIRY_DAYS_DEFAULT: u32 = 7;
/// Longest export expiry a deployment may configure, in days.
pub const EXPORT_EXPIRY_DAYS_MAX: u32 = 365;
/// Seconds between two sweeps that remove expired exports' files.
pub const EXPORT_SWEEP_SECS: u64 = 60;
/// Administrative and security actions a compliance report lists one by one (all are counted,
/// and all are in the report's accompanying export).
pub const REPORT_LISTED_ACTIONS_MAX: usize = 1_000;
/// Decoded batches an export job's reader may hand ahead of its writer: the bound on the
/// memory between them.
pub const EXPORT_BATCHES_IN_FLIGHT: usize = 4;

// Access levels, viewer tokens and the read trail (docs/ACCESS.md).

/// Teams one `team_admin` key may name.
pub const KEY_TEAMS_MAX: usize = 100;
/// Longest life of a viewer token, in seconds (the one hour).
pub const VIEWER_TOKEN_TTL_SECS_MAX: i64 = 3_600;
/// Longest bearer credential read at all; anything longer is refused before it is parsed.
pub const BEARER_BYTES_MAX: usize = 4 * 1024;
/// Actors a `team_admin` scope may span: its teams' members, by the directory. A larger scope
/// is refused (403 naming the bound) rather than read partially.
pub const SCOPE_ACTORS_MAX: usize = 10_000;
/// Bytes of a read's SQL text or filters kept in its read-trail entry (then cut, marked).
pub const TRAIL_DETAIL_BYTES_MAX: usize = 4 * 1024;

/// Longest region name (`[a-z0-9-]`) in a tenant's settings.
pub const REGION_CHARS_MAX: usize = 32;
/// Other regions' nodes one node forwards to (`serve --peer`).
pub const REGION_PEERS_MAX: usize = 16;
/// How long a node trusts where it found a tenant or a credential on another region's node
/// (it asks again after; a tenant's region changes only by a move job).
pub const REGION_PLACEMENT_CACHE_MILLIS: u64 = 60_000;
/// Tenants and credentials whose region a node keeps in memory; the cache starts over when full.
pub const REGION_PLACEMENTS_CACHED_MAX: usize = 100_000;
/// How long a node waits for another region's node to connect.
pub const REGION_CONNECT_TIMEOUT_MILLIS: u64 = 5_000;
/// How long a node trusts the tenant settings and unwrapped keys it read: an erasure, a key
/// rotation or a settings change made on another node of a shared database applies here within
/// this time (on the node that made it, at once).
pub const VAULT_CACHE_MILLIS: u64 = 5_000;
/// Tenants whose settings a node keeps in memory; the cache starts over when full.
pub const TENANT_SETTINGS_CACHE_TENANTS_MAX: usize = 10_000;
/// Unwrapped keys (tenant and subject) a node keeps in memory; the cache starts over when full.
pub const VAULT_KEYS_CACHED_MAX: usize = 100_000;
