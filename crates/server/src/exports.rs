//! Export jobs: `POST /v1/exports` and the routes that follow one (docs/EXPORTS.md).
//!
//! A job writes the tenant's matching events, in `seq` order, to a local scratch file in one of
//! four formats (`sealtrail_query::formats`) and its bundle beside it: the signed checkpoint
//! the export was taken at, the inclusion proofs of its span's ends, the span's non-matching
//! events and a signed statement of its claims (`sealtrail_ledger::ExportHeader`). Both go to
//! the warm store under `_exports/<tenant>/<id>/` (a `_` prefix, so no tier listing or
//! Hive-style reader takes them for a tenant's data) by multipart upload, which makes an object
//! visible only once complete; only then is the job `done`. So a partial file is never offered:
//! a crash before that leaves the job `queued` or `running`, and the next start runs it again
//! from the beginning.
//!
//! A tenant's protected fields (docs/PRIVACY.md) are exported as stored, sealed, unless the job
//! asks for `plaintext` (a tenant admin's or the platform admin's right): then each matching
//! event's fields are opened on the way to the file, as `GET /v1/events` shows them, and the
//! file still verifies (an opened field carries the salt its commitment is checked with). Such
//! a file is a copy of personal data outside the keys: an erasure removes every plaintext
//! export of its tenant ([`remove_plaintext`]).
//!
//! Jobs live in the store's settings: `exports/<tenant>` holds a tenant's jobs, `exports` the
//! tenants that have any. Each request, completion, download, cancellation and deletion is an
//! event of the tenant's log, committed before the answer (exports are always-logged actions).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, WriteMultipart};
use sealtrail_ledger::{ExportFilter, ExportHeader, EXPORT_BUNDLE_FORMAT};
use sealtrail_model::limits::{
    EXPORT_BATCHES_IN_FLIGHT, EXPORT_EXPIRY_DAYS_MAX, EXPORT_JOBS_CONCURRENT_MAX,
    EXPORT_JOBS_PER_TENANT_MAX, EXPORT_SWEEP_SECS,
};
use sealtrail_model::{format_timestamp, parse_timestamp, StoredEvent, Untiered};
use sealtrail_query::formats::{ExportFormat, ExportWriter, FileDigest};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::access::readable_tenant;
use crate::auth::Principal;
use crate::problem::ApiError;
use crate::{now_ns, AppState};

const INDEX_SETTING: &str = "exports";
const DAY_NS: i64 = 86_400 * 1_000_000_000;
/// Bytes per multipart upload part (S3's smallest is 5 MiB).
const UPLOAD_CHUNK_BYTES: usize = 8 * 1024 * 1024;
/// Bytes the writer hands to the uploader at a time: small enough that the allocator reuses
/// their memory (8 MiB buffers were fresh pages, zeroed by the kernel, each time), gathered
/// into parts without a copy.
const SINK_CHUNK_BYTES: usize = 1024 * 1024;
/// Chunks queued between the writer and the uploader.
const SINK_CHUNKS_IN_FLIGHT: usize = 16;
/// Parts of one upload in flight at once: with the chunks queued before them, the bound on an
/// upload's memory.
const UPLOAD_PARTS_IN_FLIGHT: usize = 4;

fn jobs_setting(tenant_id: &str) -> String {
    format!("exports/{tenant_id}")
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum JobState {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
    /// Done, and its files since removed (expired, or deleted by a caller).
    Expired,
}

impl JobState {
    fn finished(self) -> bool {
        !matches!(self, JobState::Queued | JobState::Running)
    }
}

/// A job as stored and as answered.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Job {
    export_id: String,
    tenant_id: String,
    format: String,
    filters: ExportFilter,
    /// Protected fields opened in the file (absent in jobs stored before the option existed).
    #[serde(default)]
    plaintext: bool,
    state: JobState,
    requested_by: String,
    created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    finished_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
    /// Events the job reads (its span), known once it runs.
    #[serde(default)]
    events_expected: u64,
    #[serde(default)]
    events_read: u64,
    /// Rows in the file.
    #[serde(default)]
    events_written: u64,
    #[serde(default)]
    bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tree_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl Job {
    fn answer(&self, live: Option<&Progress>) -> Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Some(live) = live {
            value["events_expected"] = live.expected.load(Ordering::Relaxed).into();
            value["events_read"] = live.read.load(Ordering::Relaxed).into();
            value["events_written"] = live.written.load(Ordering::Relaxed).into();
        }
        if self.state == JobState::Done {
            let base = format!("/v1/exports/{}", self.export_id);
            value["download"] = format!("{base}/download").into();
            value["bundle"] = format!("{base}/download?part=bundle").into();
        }
        value
    }
}

/// A running job's counters and its cancel flag.
#[derive(Debug, Default)]
struct Progress {
    expected: AtomicU64,
    read: AtomicU64,
    written: AtomicU64,
    cancel: AtomicBool,
}

/// The node's export jobs.
#[derive(Debug)]
pub(crate) struct Exports {
    /// Serialises every read-modify-write of the job settings.
    lock: tokio::sync::Mutex<()>,
    running: std::sync::Mutex<HashMap<String, Arc<Progress>>>,
    /// Every job task started, aborted by [`Exports::stop`].
    tasks: std::sync::Mutex<Vec<tokio::task::AbortHandle>>,
    slots: Arc<tokio::sync::Semaphore>,
    scratch_dir: PathBuf,
    expiry_days: u32,
    warm: sealtrail_archive::Tier,
}

impl Exports {
    pub(crate) fn new(
        data_dir: &std::path::Path,
        warm: sealtrail_archive::Tier,
        expiry_days: u32,
    ) -> Self {
        Exports {
            lock: tokio::sync::Mutex::new(()),
            running: std::sync::Mutex::default(),
            tasks: std::sync::Mutex::default(),
            slots: Arc::new(tokio::sync::Semaphore::new(EXPORT_JOBS_CONCURRENT_MAX)),
            scratch_dir: data_dir.join("exports-scratch"),
            expiry_days: expiry_days.min(EXPORT_EXPIRY_DAYS_MAX),
            warm,
        }
    }

    /// Stops every job (at shutdown, before the pipeline drains): a stopped job is `running` on
    /// record and runs again from the beginning on the next start.
    pub(crate) fn stop(&self) {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }

    fn progress(&self, export_id: &str) -> Option<Arc<Progress>> {
        self.running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(export_id)
            .cloned()
    }

    fn object(&self, job: &Job, name: &str) -> (Arc<dyn ObjectStore>, ObjectPath) {
        let (store, prefix) = self.warm.object_store();
        let path = prefix
            .child("_exports")
            .child(job.tenant_id.as_str())
            .child(job.export_id.as_str())
            .child(name);
        (store, path)
    }
}

fn data_name(format: ExportFormat) -> String {
    format!("events.{}", format.extension())
}

const BUNDLE_NAME: &str = "bundle.ndjson";
/// A job of this format is a compliance report: an NDJSON export of the period, and the report
/// read from it (`report.rs`).
pub(crate) const REPORT_FORMAT: &str = "report";
const REPORT_HTML: &str = "report.html";
const REPORT_PDF: &str = "report.pdf";

/// The file format a job writes: its own, or NDJSON for a report.
/// Whether `name` is a format an export job can be asked for.
pub(crate) fn is_job_format(name: &str) -> bool {
    file_format(name).is_some()
}

/// Every format an export job can be asked for, for an error message.
pub(crate) fn job_format_names() -> String {
    let mut names = ExportFormat::ALL.map(ExportFormat::as_str).to_vec();
    names.push(REPORT_FORMAT);
    names.join(", ")
}

fn file_format(job_format: &str) -> Option<ExportFormat> {
    match job_format {
        REPORT_FORMAT => Some(ExportFormat::Ndjson),
        other => ExportFormat::parse(other),
    }
}

/// Every object a job may have written.
fn object_names(job: &Job) -> Vec<String> {
    let mut names = vec![BUNDLE_NAME.to_owned()];
    if let Some(format) = file_format(&job.format) {
        names.push(data_name(format));
    }
    if job.format == REPORT_FORMAT {
        names.extend([REPORT_HTML.to_owned(), REPORT_PDF.to_owned()]);
    }
    names
}

async fn load_jobs(state: &AppState, tenant_id: &str) -> Result<Vec<Job>, ApiError> {
    match state.store.setting(&jobs_setting(tenant_id)).await? {
        None => Ok(Vec::new()),
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|error| {
            ApiError::internal(format!("stored export jobs of {tenant_id}: {error}"))
        }),
    }
}

async fn save_jobs(state: &AppState, tenant_id: &str, jobs: &[Job]) -> Result<(), ApiError> {
    let bytes = serde_json::to_vec(jobs).map_err(ApiError::internal)?;
    state
        .store
        .set_setting(&jobs_setting(tenant_id), bytes)
        .await?;
    Ok(())
}

async fn load_index(state: &AppState) -> Result<Vec<String>, ApiError> {
    match state.store.setting(INDEX_SETTING).await? {
        None => Ok(Vec::new()),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map_err(|error| ApiError::internal(format!("stored export index: {error}"))),
    }
}

/// Changes one job under the lock; `None` when it is not on record.
async fn update_job(
    state: &AppState,
    tenant_id: &str,
    export_id: &str,
    change: impl FnOnce(&mut Job),
) -> Result<Option<Job>, ApiError> {
    let _guard = state.exports.lock.lock().await;
    let mut jobs = load_jobs(state, tenant_id).await?;
    let Some(job) = jobs.iter_mut().find(|job| job.export_id == export_id) else {
        return Ok(None);
    };
    change(job);
    let changed = job.clone();
    save_jobs(state, tenant_id, &jobs).await?;
    Ok(Some(changed))
}

/// Records an export action in the tenant's log, synchronously durable.
async fn record(
    state: &AppState,
    job: &Job,
    actor_id: &str,
    action: &str,
    metadata: Value,
) -> Result<(), ApiError> {
    let actor_type = if actor_id == "sealtrail" {
        "system"
    } else {
        "service"
    };
    let event = json!({
        "tenant_id": job.tenant_id,
        "actor_id": actor_id,
        "actor_type": actor_type,
        "action": action,
        "resource_type": "export",
        "resource_id": job.export_id,
        "outcome": "success",
        "metadata": metadata,
    });
    crate::capture::record(&state.pipeline, event).await?;
    Ok(())
}

/// `POST /v1/exports {format, from, to, filters, tenant_id}` → 202 `{export_id, …}`.
pub(crate) async fn create(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    body: Bytes,
) -> Result<Response, ApiError> {
    let value = crate::problem::json_document(&body)?;
    let Some(object) = value.as_object() else {
        return Err(ApiError::invalid_field("body", "must be a JSON object"));
    };
    for name in object.keys() {
        if !["format", "from", "to", "filters", "tenant_id", "plaintext"].contains(&name.as_str()) {
            return Err(ApiError::invalid_field(name, "unknown member"));
        }
    }
    let tenant_id = match object.get("tenant_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text.clone()),
        Some(_) => return Err(ApiError::invalid_field("tenant_id", "must be a string")),
    };
    let tenant_id = readable_tenant(&principal, tenant_id.as_ref())?;
    let plaintext = match object.get("plaintext") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Bool(true)) => true,
        Some(_) => return Err(ApiError::invalid_field("plaintext", "must be a boolean")),
    };
    // A file of personal data in the clear, outside the keys an erasure destroys: the tenant
    // admin's decision, not every reader's.
    if plaintext && !principal.may_administer(&tenant_id) {
        return Err(ApiError::Forbidden(
            "plaintext: only a tenant admin key or the platform admin may export protected \
             fields in plaintext"
                .into(),
        ));
    }
    // Absent: the tenant's preferred format (its settings), else a 400.
    let preferred = match object.get("format") {
        None | Some(Value::Null) => state
            .settings
            .for_tenant(&*state.store, &tenant_id)
            .await?
            .export_format
            .clone(),
        Some(_) => None,
    };
    let format = match (object.get("format"), preferred) {
        (Some(Value::String(name)), _) if is_job_format(name) => name.clone(),
        (None | Some(Value::Null), Some(preferred)) => preferred,
        (Some(Value::String(_)), _) => {
            return Err(ApiError::invalid_field(
                "format",
                format!("must be one of {}", job_format_names()),
            ))
        }
        _ => {
            return Err(ApiError::invalid_field(
                "format",
                format!(
                    "required (the tenant's settings name no export_format): one of {}",
                    job_format_names()
                ),
            ))
        }
    };
    let mut filters = match object.get("filters") {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(filters)) => filters.clone(),
        Some(_) => return Err(ApiError::invalid_field("filters", "must be a JSON object")),
    };
    for bound in ["from", "to"] {
        if filters.contains_key(bound) {
            return Err(ApiError::invalid_field(
                &format!("filters.{bound}"),
                format!("the range is the request's own `{bound}`"),
            ));
        }
        match object.get(bound) {
            None | Some(Value::Null) => {}
            Some(Value::String(text)) => {
                if parse_timestamp(text).is_none() {
                    return Err(ApiError::invalid_field(
                        bound,
                        "must be an RFC 3339 date-time with offset",
                    ));
                }
                filters.insert(bound.into(), text.clone().into());
            }
            Some(_) => return Err(ApiError::invalid_field(bound, "must be a string")),
        }
    }
    let query = crate::query::filter_from_json(&Value::Object(filters))?;
    let filters: ExportFilter =
        serde_json::from_value(crate::query::filter_to_json(&query)).map_err(ApiError::internal)?;

    let export_id = format!("exp_{}", uuid::Uuid::now_v7().simple());
    let job = Job {
        export_id: export_id.clone(),
        tenant_id: tenant_id.clone(),
        format,
        filters,
        plaintext,
        state: JobState::Queued,
        requested_by: principal.actor_id(),
        created_at: format_timestamp(now_ns()),
        finished_at: None,
        expires_at: None,
        events_expected: 0,
        events_read: 0,
        events_written: 0,
        bytes: 0,
        sha256: None,
        tree_size: None,
        error: None,
    };
    {
        let _guard = state.exports.lock.lock().await;
        let mut jobs = load_jobs(&state, &tenant_id).await?;
        let forget = match jobs.len() >= EXPORT_JOBS_PER_TENANT_MAX {
            false => None,
            true => Some(
                jobs.iter()
                    .position(|job| job.state.finished())
                    .ok_or_else(|| {
                        ApiError::TooManyRequests(format!(
                    "tenant {tenant_id} has {EXPORT_JOBS_PER_TENANT_MAX} unfinished exports, the \
                     most it may have; wait for one or cancel one"
                ))
                    })?,
            ),
        };
        // Recorded before anything is stored or removed: a request the log cannot take is
        // refused whole.
        record(
            &state,
            &job,
            &job.requested_by,
            "export.requested",
            json!({"export_id": export_id, "format": job.format, "filters": job.filters,
                   "plaintext": job.plaintext}),
        )
        .await?;
        if let Some(oldest) = forget {
            let forgotten = jobs.remove(oldest);
            remove_files(&state, &forgotten).await;
        }
        jobs.push(job.clone());
        save_jobs(&state, &tenant_id, &jobs).await?;
        let mut index = load_index(&state).await?;
        if !index.contains(&tenant_id) {
            index.push(tenant_id.clone());
            let bytes = serde_json::to_vec(&index).map_err(ApiError::internal)?;
            state.store.set_setting(INDEX_SETTING, bytes).await?;
        }
    }
    start(&state, job.clone());
    tracing::info!(
        tenant_id,
        export_id,
        format = job.format,
        "export requested"
    );
    Ok((StatusCode::ACCEPTED, Json(job.answer(None))).into_response())
}

/// The job `export_id` of the caller's tenant (`?tenant_id=` for the platform admin); another
/// tenant's job is 404, like one that never existed.
async fn find(
    state: &AppState,
    principal: &Principal,
    params: &HashMap<String, String>,
    export_id: &str,
    download: bool,
) -> Result<Job, ApiError> {
    for name in params.keys() {
        if name != "tenant_id" && !(download && name == "part") {
            return Err(ApiError::invalid_field(name, "unknown query parameter"));
        }
    }
    let tenant_id = readable_tenant(principal, params.get("tenant_id"))?;
    load_jobs(state, &tenant_id)
        .await?
        .into_iter()
        .find(|job| job.export_id == export_id)
        .ok_or_else(|| ApiError::NotFound(format!("tenant {tenant_id} has no export {export_id}")))
}

/// `GET /v1/exports`: the tenant's jobs, newest first.
pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    for name in params.keys() {
        if name != "tenant_id" {
            return Err(ApiError::invalid_field(name, "unknown query parameter"));
        }
    }
    let tenant_id = readable_tenant(&principal, params.get("tenant_id"))?;
    let jobs = load_jobs(&state, &tenant_id).await?;
    let answers: Vec<Value> = jobs
        .iter()
        .rev()
        .map(|job| job.answer(state.exports.progress(&job.export_id).as_deref()))
        .collect();
    Ok(Json(json!({"tenant_id": tenant_id, "exports": answers})))
}

/// `GET /v1/exports/{id}`.
pub(crate) async fn get(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(export_id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let job = find(&state, &principal, &params, &export_id, false).await?;
    let live = state.exports.progress(&export_id);
    Ok(Json(job.answer(live.as_deref())))
}

/// `GET /v1/exports/{id}/download[?part=bundle]`: the file, or its bundle, once done.
pub(crate) async fn download(
    State(state): State<Arc<AppState>>,
    request: crate::access::ReadRequest,
    Path(export_id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let principal = request.principal.clone();
    let job = find(&state, &principal, &params, &export_id, true).await?;
    let reader = request
        .whole_tenant(&state, params.get("tenant_id"))
        .await?;
    let format = file_format(&job.format)
        .ok_or_else(|| ApiError::internal(format!("stored export format {}", job.format)))?;
    let report = job.format == REPORT_FORMAT;
    let (name, media_type) = match params.get("part").map(String::as_str) {
        None | Some("data") => (data_name(format), format.media_type()),
        Some("bundle") => (BUNDLE_NAME.to_owned(), "application/x-ndjson"),
        Some("html") if report => (REPORT_HTML.to_owned(), "text/html; charset=utf-8"),
        Some("pdf") if report => (REPORT_PDF.to_owned(), "application/pdf"),
        Some(part @ ("html" | "pdf")) => {
            return Err(ApiError::NotFound(format!(
                "export {export_id} is not a report: it has no {part} part"
            )))
        }
        Some(_) => {
            return Err(ApiError::invalid_field(
                "part",
                "must be data, bundle, html or pdf",
            ))
        }
    };
    if job.state != JobState::Done {
        return Err(ApiError::Conflict {
            detail: format!(
                "export {export_id} is {}: only a done export can be downloaded",
                serde_json::to_value(job.state)
                    .ok()
                    .and_then(|value| value.as_str().map(str::to_owned))
                    .unwrap_or_default()
            ),
            errors: Vec::new(),
        });
    }
    let (store, path) = state.exports.object(&job, &name);
    let object = store
        .get(&path)
        .await
        .map_err(|error| ApiError::internal(format!("export {export_id}: {error}")))?;
    record(
        &state,
        &job,
        &principal.actor_id(),
        "export.downloaded",
        json!({"export_id": export_id, "part": params.get("part").map_or("data", String::as_str)}),
    )
    .await?;
    reader.record(
        &state,
        json!({"export_id": export_id, "part": params.get("part")}),
        usize::try_from(job.events_written).ok(),
    )?;
    let mut response = Body::from_stream(object.into_stream()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type));
    if let Ok(value) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{}-{export_id}-{name}\"",
        job.tenant_id
    )) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// `DELETE /v1/exports/{id}`: cancels a job that has not finished; removes the files of one
/// that has.
pub(crate) async fn cancel(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(export_id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let job = find(&state, &principal, &params, &export_id, false).await?;
    let action = match job.state {
        JobState::Queued | JobState::Running => "export.cancelled",
        JobState::Done => "export.deleted",
        _ => return Ok(Json(job.answer(None))),
    };
    record(
        &state,
        &job,
        &principal.actor_id(),
        action,
        json!({"export_id": export_id}),
    )
    .await?;
    if let Some(progress) = state.exports.progress(&export_id) {
        progress.cancel.store(true, Ordering::Relaxed);
    }
    let now = format_timestamp(now_ns());
    let changed = update_job(&state, &job.tenant_id, &export_id, |job| {
        job.state = match job.state {
            JobState::Queued | JobState::Running => JobState::Cancelled,
            JobState::Done => JobState::Expired,
            other => other,
        };
        job.finished_at.get_or_insert(now);
    })
    .await?
    .unwrap_or(job);
    if changed.state == JobState::Expired {
        remove_files(&state, &changed).await;
    }
    Ok(Json(changed.answer(None)))
}

async fn remove_files(state: &AppState, job: &Job) {
    for name in object_names(job) {
        let (store, path) = state.exports.object(job, &name);
        match store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(error) => {
                tracing::warn!(export_id = job.export_id, %error, "removing an export file failed")
            }
        }
    }
}

/// Runs `job` in the background (after a free slot).
fn start(state: &Arc<AppState>, job: Job) {
    let progress = Arc::new(Progress::default());
    state
        .exports
        .running
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .insert(job.export_id.clone(), progress.clone());
    let task_state = state.clone();
    let task = tokio::spawn(async move {
        let state = task_state;
        let export_id = job.export_id.clone();
        let tenant_id = job.tenant_id.clone();
        let outcome = match state.exports.slots.clone().acquire_owned().await {
            Ok(_slot) => run(&state, job, progress.clone()).await,
            Err(_) => Err(Failure::Failed("the export queue closed".into())),
        };
        let now = format_timestamp(now_ns());
        let saved = match outcome {
            Ok(()) => Ok(None),
            Err(Failure::Cancelled) => {
                update_job(&state, &tenant_id, &export_id, |job| {
                    job.state = JobState::Cancelled;
                    job.finished_at.get_or_insert(now);
                })
                .await
            }
            Err(Failure::Failed(reason)) => {
                tracing::error!(tenant_id, export_id, reason, "export failed");
                update_job(&state, &tenant_id, &export_id, |job| {
                    job.state = JobState::Failed;
                    job.error = Some(reason);
                    job.finished_at = Some(now);
                })
                .await
            }
        };
        if let Err(error) = saved {
            tracing::error!(export_id, %error, "saving an export's state failed");
        }
        state
            .exports
            .running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&export_id);
    });
    let mut tasks = state
        .exports
        .tasks
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    tasks.retain(|task| !task.is_finished());
    tasks.push(task.abort_handle());
}

#[derive(Debug)]
enum Failure {
    Cancelled,
    Failed(String),
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure::Failed(error.to_string())
    }
}

/// One job, from its checkpoint to `done`.
async fn run(state: &Arc<AppState>, job: Job, progress: Arc<Progress>) -> Result<(), Failure> {
    let export_id = job.export_id.clone();
    let tenant_id = job.tenant_id.clone();
    let Some(job) = update_job(state, &tenant_id, &export_id, |job| {
        if job.state == JobState::Queued || job.state == JobState::Running {
            job.state = JobState::Running;
        }
    })
    .await?
    else {
        return Err(Failure::Failed("the job is no longer on record".into()));
    };
    if job.state != JobState::Running || progress.cancel.load(Ordering::Relaxed) {
        return Err(Failure::Cancelled);
    }
    let format = file_format(&job.format)
        .ok_or_else(|| Failure::Failed(format!("unknown format {}", job.format)))?;
    let report = job.format == REPORT_FORMAT;
    let policy = state
        .policies
        .for_tenant(&*state.store, &tenant_id)
        .await
        .map_err(|error| Failure::Failed(error.to_string()))?;

    // The tree the export is taken at: everything committed now, under a signed checkpoint.
    let head = state
        .store
        .chain_heads()
        .await?
        .into_iter()
        .find(|(id, _)| *id == tenant_id)
        .map_or(0, |(_, head)| head.seq);
    if head == 0 {
        return Err(Failure::Failed(format!(
            "tenant {tenant_id} has no events yet: there is nothing to export"
        )));
    }
    state.checkpointer.cut(&tenant_id, head).await?;
    let checkpoint = state
        .store
        .checkpoint(&tenant_id, None)
        .await?
        .ok_or_else(|| Failure::Failed("no checkpoint could be cut".into()))?;
    let tree_size = checkpoint.tree_size;

    let mut query = crate::query::filter_from_json(&serde_json::to_value(&job.filters)?)
        .map_err(|error| Failure::Failed(format!("stored filters: {error}")))?;
    query.tenant_id = tenant_id.clone();
    let span = state.query.span(&query, tree_size).await?;
    let bounds = job
        .filters
        .bounds()
        .map_err(|name| Failure::Failed(format!("stored filters.{name}")))?;

    std::fs::create_dir_all(&state.exports.scratch_dir)?;
    let scratch = |name: &str| {
        state
            .exports
            .scratch_dir
            .join(format!("{export_id}.{name}"))
    };
    let (data_path, witness_path, bundle_path) = (
        scratch(format.extension()),
        scratch("witnesses"),
        scratch("bundle"),
    );
    // The file goes straight into a multipart upload of its object, as it is written: no copy
    // on local disk (a report keeps one, to check it before it states the result).
    let (chunks, chunk_receiver) = tokio::sync::mpsc::channel(SINK_CHUNKS_IN_FLIGHT);
    let (store, object_path) = state.exports.object(&job, &data_name(format));
    let uploading = tokio::spawn(stream_upload(store, object_path, chunk_receiver));
    let upload_sink = ChunkSink {
        buffer: Vec::with_capacity(SINK_CHUNK_BYTES),
        sender: chunks.clone(),
    };
    let sink: Box<dyn Write + Send> = match report {
        true => Box::new(Tee(
            upload_sink,
            std::io::BufWriter::new(std::fs::File::create(&data_path)?),
        )),
        false => Box::new(upload_sink),
    };
    let output = Output {
        writer: ExportWriter::new(format, sink)?,
        witnesses: std::io::BufWriter::new(std::fs::File::create(&witness_path)?),
        witness_count: 0,
        tally: crate::report::Tally::default(),
    };
    let (first_seq, last_seq) = span.unwrap_or((0, 0));
    progress.expected.store(
        span.map_or(0, |(first, last)| last - first + 1),
        Ordering::Relaxed,
    );
    // Decoding (the query engine, in this task) and writing (a blocking thread) overlap: two
    // cores each do half of the work, and at most EXPORT_BATCHES_IN_FLIGHT batches wait.
    let (sender, receiver) = tokio::sync::mpsc::channel(EXPORT_BATCHES_IN_FLIGHT);
    let consumer = {
        let (progress, filters) = (progress.clone(), job.filters.clone());
        let classify = report.then(|| policy.clone());
        tokio::task::spawn_blocking(move || {
            output.write_all(receiver, &progress, &filters, bounds, classify.as_deref())
        })
    };
    // A plaintext job opens each matching event on the way (the witnesses stay sealed: they
    // prove the span, they are not the export).
    let (sender, opener) = match job.plaintext {
        false => (sender, None),
        true => {
            let (opened, sealed) = tokio::sync::mpsc::channel(EXPORT_BATCHES_IN_FLIGHT);
            let (state, filters) = (state.clone(), job.filters.clone());
            let opener = tokio::spawn(async move {
                open_matching(&state, sealed, &sender, &filters, bounds).await
            });
            (opened, Some(opener))
        }
    };
    let produced = match span {
        Some((first, last)) => {
            state
                .query
                .send_span(&tenant_id, first, last, &sender)
                .await
        }
        None => Ok(()),
    };
    drop(sender);
    if let Some(opener) = opener {
        opener.await.map_err(|error| {
            Failure::Failed(format!("opening protected fields stopped: {error}"))
        })??;
    }
    let written = consumer
        .await
        .map_err(|error| Failure::Failed(format!("the export writer stopped: {error}")))?;
    let (digest, witness_count, tally) = written?;
    produced?;
    // Every byte is with the uploader: it completes the object now. Without this (a failure
    // above drops `chunks`), it aborts the upload and no partial object ever appears.
    chunks
        .send(Chunk::Done)
        .await
        .map_err(|_| Failure::Failed("the upload stopped".into()))?;
    uploading
        .await
        .map_err(|error| Failure::Failed(format!("the upload stopped: {error}")))??;

    let mut inclusion = Vec::new();
    if let Some((first, last)) = span {
        inclusion.push(
            state
                .query
                .prove_inclusion(&tenant_id, first, tree_size)
                .await?,
        );
        if last != first {
            inclusion.push(
                state
                    .query
                    .prove_inclusion(&tenant_id, last, tree_size)
                    .await?,
            );
        }
    }
    let mut header = ExportHeader {
        format: EXPORT_BUNDLE_FORMAT.to_owned(),
        tenant_id: tenant_id.clone(),
        export_id: export_id.clone(),
        file_format: format.as_str().to_owned(),
        filters: job.filters.clone(),
        first_seq,
        last_seq,
        events: progress.written.load(Ordering::Relaxed),
        witnesses: witness_count,
        tree_size,
        file_sha256: digest.sha256.clone(),
        checkpoint: checkpoint.note.clone(),
        inclusion,
        statement: String::new(),
    };
    header.statement = state.checkpointer.sign_text(&header.statement_text())?;
    {
        let mut bundle = std::io::BufWriter::new(std::fs::File::create(&bundle_path)?);
        serde_json::to_writer(&mut bundle, &header)?;
        bundle.write_all(b"\n")?;
        std::io::copy(&mut std::fs::File::open(&witness_path)?, &mut bundle)?;
        bundle.flush()?;
        bundle.get_ref().sync_all()?;
    }
    if progress.cancel.load(Ordering::Relaxed) {
        return Err(Failure::Cancelled);
    }
    let mut scratch_files = vec![data_path.clone(), witness_path, bundle_path.clone()];
    if report {
        let context = report_context(state, &job, &header, &data_path, &bundle_path).await?;
        for (name, bytes) in [
            (
                REPORT_HTML,
                crate::report::html(&context, &tally).into_bytes(),
            ),
            (REPORT_PDF, crate::report::pdf(&context, &tally)),
        ] {
            let path = scratch(name);
            std::fs::write(&path, bytes)?;
            upload(state, &job, &path, name).await?;
            scratch_files.push(path);
        }
    }
    upload(state, &job, &bundle_path, BUNDLE_NAME).await?;
    for path in scratch_files {
        let _ = std::fs::remove_file(path);
    }
    record(
        state,
        &job,
        "sealtrail",
        "export.completed",
        json!({
            "export_id": export_id,
            "format": job.format,
            "events": header.events,
            "bytes": digest.bytes,
            "sha256": digest.sha256,
            "tree_size": tree_size,
            "first_seq": first_seq,
            "last_seq": last_seq,
        }),
    )
    .await?;
    let now = now_ns();
    let expiry_days = i64::from(state.exports.expiry_days);
    let finished = update_job(state, &tenant_id, &export_id, |job| {
        // Cancelled meanwhile (a caller, or an erasure removing plaintext exports): not done.
        if job.state != JobState::Running {
            return;
        }
        job.state = JobState::Done;
        job.finished_at = Some(format_timestamp(now));
        job.expires_at = Some(format_timestamp(now + expiry_days * DAY_NS));
        job.events_expected = progress.expected.load(Ordering::Relaxed);
        job.events_read = progress.read.load(Ordering::Relaxed);
        job.events_written = header.events;
        job.bytes = digest.bytes;
        job.sha256 = Some(digest.sha256.clone());
        job.tree_size = Some(tree_size);
    })
    .await?;
    if finished.is_none_or(|job| job.state != JobState::Done) {
        remove_files(state, &job).await;
        return Err(Failure::Cancelled);
    }
    tracing::info!(
        tenant_id,
        export_id,
        events = header.events,
        bytes = digest.bytes,
        "export done"
    );
    Ok(())
}

/// Opens the protected fields of each event of `sealed` the export's filters admit, for a
/// plaintext export, and passes every event on in order.
async fn open_matching(
    state: &AppState,
    mut sealed: tokio::sync::mpsc::Receiver<Vec<StoredEvent>>,
    opened: &tokio::sync::mpsc::Sender<Vec<StoredEvent>>,
    filters: &ExportFilter,
    bounds: sealtrail_ledger::Bounds,
) -> Result<(), Failure> {
    while let Some(mut batch) = sealed.recv().await {
        for stored in batch.iter_mut() {
            if filters.admits(bounds, stored) {
                crate::privacy::open_event(state, stored).await?;
            }
        }
        if opened.send(batch).await.is_err() {
            // The writer stopped; its own error says why.
            break;
        }
    }
    Ok(())
}

/// Removes every plaintext export of `tenant_id` (an erasure of one of its subjects, or of
/// the tenant, was just made: no copy of the erased fields may stay in a file the product
/// wrote): a running one is cancelled, a done one's files deleted. Returns how many.
pub(crate) async fn remove_plaintext(
    state: &AppState,
    tenant_id: &str,
    reason: &str,
) -> Result<u64, ApiError> {
    let _guard = state.exports.lock.lock().await;
    let mut jobs = load_jobs(state, tenant_id).await?;
    let now = format_timestamp(now_ns());
    let mut removed = Vec::new();
    for job in jobs.iter_mut().filter(|job| job.plaintext) {
        job.state = match job.state {
            JobState::Queued | JobState::Running => {
                if let Some(progress) = state.exports.progress(&job.export_id) {
                    progress.cancel.store(true, Ordering::Relaxed);
                }
                JobState::Cancelled
            }
            JobState::Done => JobState::Expired,
            _ => continue,
        };
        job.error = Some(reason.to_owned());
        job.finished_at.get_or_insert(now.clone());
        removed.push(job.clone());
    }
    if removed.is_empty() {
        return Ok(0);
    }
    save_jobs(state, tenant_id, &jobs).await?;
    for job in &removed {
        remove_files(state, job).await;
        tracing::info!(
            tenant_id,
            export_id = job.export_id,
            "plaintext export removed"
        );
    }
    Ok(removed.len() as u64)
}

/// An export's files while its span streams past.
struct Output {
    writer: ExportWriter<Box<dyn Write + Send>>,
    witnesses: std::io::BufWriter<std::fs::File>,
    witness_count: u64,
    tally: crate::report::Tally,
}

impl Output {
    /// Writes every event that arrives: a matching one to the file (and the report's tally,
    /// with `classify`), another to the witnesses. Runs on a blocking thread.
    fn write_all(
        mut self,
        mut receiver: tokio::sync::mpsc::Receiver<Vec<StoredEvent>>,
        progress: &Progress,
        filters: &ExportFilter,
        bounds: sealtrail_ledger::Bounds,
        classify: Option<&sealtrail_policy::Policy>,
    ) -> Result<(FileDigest, u64, crate::report::Tally), Failure> {
        while let Some(batch) = receiver.blocking_recv() {
            if progress.cancel.load(Ordering::Relaxed) {
                return Err(Failure::Cancelled);
            }
            progress
                .read
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            for stored in batch {
                if filters.admits(bounds, &stored) {
                    progress.written.fetch_add(1, Ordering::Relaxed);
                    if let Some(policy) = classify {
                        self.tally.add(&stored, policy.classify(&stored.event));
                    }
                    self.writer.write(stored)?;
                } else {
                    self.witness_count += 1;
                    serde_json::to_writer(&mut self.witnesses, &Untiered(&stored))?;
                    self.witnesses.write_all(b"\n")?;
                }
            }
        }
        // Here, not in the job's task: the last chunk is handed to the uploader by a blocking
        // send.
        let (digest, mut sink) = self.writer.finish()?;
        sink.flush()?;
        self.witnesses.flush()?;
        Ok((digest, self.witness_count, self.tally))
    }
}

/// A piece of an export file on its way to the object store, or the word that it is whole.
#[derive(Debug)]
enum Chunk {
    Data(Vec<u8>),
    Done,
}

/// Hands what is written to the uploader in chunks of [`SINK_CHUNK_BYTES`] (from the writer's
/// blocking thread).
struct ChunkSink {
    buffer: Vec<u8>,
    sender: tokio::sync::mpsc::Sender<Chunk>,
}

impl ChunkSink {
    fn send(&mut self) -> std::io::Result<()> {
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(SINK_CHUNK_BYTES));
        self.sender
            .blocking_send(Chunk::Data(chunk))
            .map_err(|_| std::io::Error::other("the upload stopped"))
    }
}

impl Write for ChunkSink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= SINK_CHUNK_BYTES {
            self.send()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.buffer.is_empty() {
            true => Ok(()),
            false => self.send(),
        }
    }
}

/// Writes to both.
struct Tee<A, B>(A, B);

impl<A: Write, B: Write> Write for Tee<A, B> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.write_all(bytes)?;
        self.1.write_all(bytes)?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()?;
        self.1.flush()
    }
}

/// Uploads the chunks that arrive as one object, completed at [`Chunk::Done`]; aborted (no
/// object) when the writer goes away without it.
async fn stream_upload(
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    mut chunks: tokio::sync::mpsc::Receiver<Chunk>,
) -> Result<(), Failure> {
    let mut upload =
        WriteMultipart::new_with_chunk_size(store.put_multipart(&path).await?, UPLOAD_CHUNK_BYTES);
    while let Some(chunk) = chunks.recv().await {
        match chunk {
            Chunk::Data(bytes) => {
                if let Err(error) = upload.wait_for_capacity(UPLOAD_PARTS_IN_FLIGHT).await {
                    let _ = upload.abort().await;
                    return Err(error.into());
                }
                upload.put(bytes.into());
            }
            Chunk::Done => {
                upload.finish().await?;
                return Ok(());
            }
        }
    }
    let _ = upload.abort().await;
    Err(Failure::Cancelled)
}

/// What a report states besides its tally: the server's own check of the export it just wrote
/// (with the key auditors use), the checkpoint, retention and legal hold.
async fn report_context(
    state: &AppState,
    job: &Job,
    header: &ExportHeader,
    data_path: &std::path::Path,
    bundle_path: &std::path::Path,
) -> Result<crate::report::Context, Failure> {
    let verifier = state.checkpointer.verifier();
    let verification = sealtrail_query::formats::verify_export(bundle_path, data_path, &verifier)
        .map(|report| {
            format!(
                "All {} events of the period (seq {}..={} with {} others of that range) were \
                 recomputed from the file: none altered or missing, included in the signed tree \
                 of size {}.",
                report.events,
                report.first_seq,
                report.last_seq,
                report.witnesses,
                report.tree_size
            )
        })
        .map_err(|fault| fault.to_string());
    let retention = crate::lifecycle::load_retention_policy(&*state.store, &job.tenant_id)
        .await
        .map_err(Failure::Failed)?;
    let bound = |bound: &Option<String>, open: &str| bound.clone().unwrap_or_else(|| open.into());
    Ok(crate::report::Context {
        tenant_id: job.tenant_id.clone(),
        export_id: job.export_id.clone(),
        period: format!(
            "{} to {}",
            bound(&job.filters.from, "the first event"),
            bound(&job.filters.to, "the export")
        ),
        generated_at: format_timestamp(now_ns()),
        retention: retention.map_or_else(
            || "no policy: every event is kept indefinitely".to_owned(),
            |policy| policy.describe(),
        ),
        legal_hold: retention.is_some_and(|policy| policy.legal_hold),
        tree_size: header.tree_size,
        checkpoint: header.checkpoint.clone(),
        file_sha256: header.file_sha256.clone(),
        verification,
        verifier_key: verifier.verifier_key(),
    })
}

/// Uploads a scratch file by multipart upload: the object appears only once complete.
async fn upload(
    state: &AppState,
    job: &Job,
    file: &std::path::Path,
    name: &str,
) -> Result<(), Failure> {
    let (store, path) = state.exports.object(job, name);
    let mut writer = WriteMultipart::new(store.put_multipart(&path).await?);
    let mut source = std::fs::File::open(file)?;
    let mut buffer = vec![0u8; UPLOAD_CHUNK_BYTES];
    loop {
        let read = source.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        writer.wait_for_capacity(UPLOAD_PARTS_IN_FLIGHT).await?;
        writer.write(&buffer[..read]);
    }
    writer.finish().await?;
    Ok(())
}

/// At start: runs again every job a stop interrupted (from the beginning: its scratch files
/// are rewritten), then sweeps expired exports every [`EXPORT_SWEEP_SECS`].
pub(crate) async fn run_jobs(state: Arc<AppState>) {
    match load_index(&state).await {
        Ok(tenants) => {
            for tenant_id in tenants {
                match load_jobs(&state, &tenant_id).await {
                    Ok(jobs) => {
                        for job in jobs.into_iter().filter(|job| !job.state.finished()) {
                            tracing::info!(tenant_id, export_id = job.export_id, "export resumed");
                            start(&state, job);
                        }
                    }
                    Err(error) => tracing::error!(tenant_id, %error, "reading export jobs"),
                }
            }
        }
        Err(error) => tracing::error!(%error, "reading the export index"),
    }
    let mut ticker = tokio::time::interval(std::time::Duration::from_secs(EXPORT_SWEEP_SECS));
    loop {
        ticker.tick().await;
        if let Err(error) = sweep(&state).await {
            tracing::error!(%error, "sweeping expired exports");
        }
    }
}

async fn sweep(state: &AppState) -> Result<(), ApiError> {
    let now = now_ns();
    for tenant_id in load_index(state).await? {
        let expired: Vec<Job> = load_jobs(state, &tenant_id)
            .await?
            .into_iter()
            .filter(|job| {
                job.state == JobState::Done
                    && job
                        .expires_at
                        .as_deref()
                        .and_then(parse_timestamp)
                        .is_some_and(|at| at <= now)
            })
            .collect();
        for job in expired {
            remove_files(state, &job).await;
            update_job(state, &tenant_id, &job.export_id, |job| {
                job.state = JobState::Expired;
            })
            .await?;
            tracing::info!(tenant_id, export_id = job.export_id, "export expired");
        }
    }
    Ok(())
}
