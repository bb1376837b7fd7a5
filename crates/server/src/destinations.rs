//! Where committed events go out: signed webhooks (per tenant) and SIEM sinks (per tenant or
//! platform-wide: Splunk HEC, syslog RFC 5424 over TCP or TLS, OCSF JSON over HTTP).
//!
//! Each destination is a feed consumer with a durable cursor per tenant, run by a worker task of
//! its own, so a slow or unreachable receiver holds up nobody but itself. Delivery is at least
//! once and in `seq` order per tenant: a message (a webhook's one event, a sink's batch of up
//! to [`SINK_BATCH_EVENTS_MAX`]) is retried with exponential backoff and jitter up to
//! [`DELIVERY_ATTEMPTS_MAX`] attempts; then it is parked in the destination's dead-letter list
//! (which an admin lists and replays) and the worker goes on. The cursor moves only after a
//! message was delivered or parked, so a crash in between sends it again: receivers dedupe by
//! `event_id` (a webhook's `webhook-id`).
//!
//! Destinations are kept in the hot store's settings (one list, `destinations`), dead letters
//! beside them (`dead_letters/<id>`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use sealtrail_hot::{EventQuery, HotStore};
use sealtrail_model::limits::{
    DEAD_LETTERS_MAX, DELIVERY_ATTEMPTS_MAX, DELIVERY_RETRY_CAP_MILLIS, DELIVERY_TIMEOUT_MILLIS,
    FEED_BATCH_EVENTS_MAX, SINK_BATCH_EVENTS_MAX,
};
use sealtrail_model::{format_timestamp, StoredEvent};
use sealtrail_realtime::webhook::WebhookSecret;
use sealtrail_realtime::window::is_alert;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex as AsyncMutex;
use tokio::task::JoinHandle;

use crate::feed::{self, Moved};
use crate::problem::ApiError;
use crate::{now_ns, AppState};

const DESTINATIONS_SETTING: &str = "destinations";

fn dead_letters_setting(id: &str) -> String {
    format!("dead_letters/{id}")
}

/// Which committed events a destination receives: alerts (the `alert.triggered` events the
/// server raised), events (every event, alerts among them), or both — narrowed by the filters
/// of `GET /v1/events` (so `"resource_id": "brute-force"` picks one rule's alerts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Selection {
    pub(crate) alerts: bool,
    pub(crate) events: bool,
    pub(crate) filter: EventQuery,
}

impl Selection {
    fn admits(&self, stored: &StoredEvent) -> bool {
        (self.events || (self.alerts && is_alert(&stored.event)))
            && crate::query::filter_admits(&self.filter, stored)
    }

    /// What a read of `tenant_id`'s log can leave to the store: the filters, and for alerts
    /// alone their action.
    fn pushed_down(&self, tenant_id: &str) -> EventQuery {
        let mut query = EventQuery {
            tenant_id: tenant_id.to_owned(),
            ..self.filter.clone()
        };
        if !self.events && query.action.is_none() {
            query.action = Some(sealtrail_realtime::window::ALERT_ACTION.into());
        }
        query
    }
}

/// How a destination is reached.
#[derive(Clone)]
pub(crate) enum Transport {
    /// Standard Webhooks: one signed POST per event.
    Webhook { url: String, secret: WebhookSecret },
    /// Splunk HTTP Event Collector: a batch of events per POST.
    SplunkHec { url: String, token: String },
    /// RFC 5424 messages, octet-counted (RFC 6587), over one TCP (or TLS) connection.
    Syslog { address: String, tls: bool },
    /// A JSON array of OCSF events per POST.
    OcsfHttp {
        url: String,
        authorization: Option<String>,
    },
}

impl std::fmt::Debug for Transport {
    // Hand-written: secrets and tokens never reach a log line.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.kind())
    }
}

impl Transport {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Transport::Webhook { .. } => "webhook",
            Transport::SplunkHec { .. } => "splunk_hec",
            Transport::Syslog { .. } => "syslog",
            Transport::OcsfHttp { .. } => "ocsf_http",
        }
    }

    fn batch_max(&self) -> usize {
        match self {
            Transport::Webhook { .. } => 1,
            _ => SINK_BATCH_EVENTS_MAX,
        }
    }
}

/// A webhook or a sink.
#[derive(Debug, Clone)]
pub(crate) struct Destination {
    pub(crate) id: String,
    /// `None`: every tenant (a platform sink).
    pub(crate) tenant_id: Option<String>,
    pub(crate) selection: Selection,
    pub(crate) transport: Transport,
    pub(crate) created_at: String,
}

impl Destination {
    fn consumer(&self) -> String {
        format!("destination/{}", self.id)
    }

    /// The stored form, secrets included (the store is the server's own).
    fn to_stored(&self) -> Value {
        let mut value = self.to_public();
        match &self.transport {
            Transport::Webhook { secret, .. } => value["secret"] = secret.to_text().into(),
            Transport::SplunkHec { token, .. } => value["token"] = token.clone().into(),
            Transport::OcsfHttp {
                authorization: Some(authorization),
                ..
            } => value["authorization"] = authorization.clone().into(),
            _ => {}
        }
        value
    }

    /// What the API shows: never a secret or token.
    pub(crate) fn to_public(&self) -> Value {
        let mut value = json!({
            "id": self.id,
            "kind": self.transport.kind(),
            "tenant_id": self.tenant_id,
            "created_at": self.created_at,
        });
        match &self.transport {
            Transport::Webhook { url, .. }
            | Transport::SplunkHec { url, .. }
            | Transport::OcsfHttp { url, .. } => value["url"] = url.clone().into(),
            Transport::Syslog { address, tls } => {
                value["address"] = address.clone().into();
                value["tls"] = (*tls).into();
            }
        }
        let mut kinds = Vec::new();
        if self.selection.alerts {
            kinds.push("alerts");
        }
        if self.selection.events {
            kinds.push("events");
        }
        value["events"] = json!(kinds);
        value["filters"] = crate::query::filter_to_json(&self.selection.filter);
        value
    }

    fn from_stored(value: &Value) -> Option<Destination> {
        let text = |name: &str| value[name].as_str().map(str::to_owned);
        let url = text("url");
        let transport = match value["kind"].as_str()? {
            "webhook" => Transport::Webhook {
                url: url?,
                secret: WebhookSecret::parse(value["secret"].as_str()?).ok()?,
            },
            "splunk_hec" => Transport::SplunkHec {
                url: url?,
                token: text("token")?,
            },
            "syslog" => Transport::Syslog {
                address: text("address")?,
                tls: value["tls"].as_bool()?,
            },
            "ocsf_http" => Transport::OcsfHttp {
                url: url?,
                authorization: text("authorization"),
            },
            _ => return None,
        };
        let kinds = value["events"].as_array()?;
        let kind = |name: &str| kinds.iter().any(|kind| kind.as_str() == Some(name));
        Some(Destination {
            id: text("id")?,
            tenant_id: text("tenant_id"),
            selection: Selection {
                alerts: kind("alerts"),
                events: kind("events"),
                filter: crate::query::filter_from_json(&value["filters"]).ok()?,
            },
            transport,
            created_at: text("created_at")?,
        })
    }
}

/// One parked message.
fn dead_letter(tenant_id: &str, events: &[StoredEvent], attempts: u32, reason: &str) -> Value {
    json!({
        "tenant_id": tenant_id,
        "first_seq": events.first().map(|event| event.seq),
        "last_seq": events.last().map(|event| event.seq),
        "event_ids": events.iter().take(20).map(|event| event.event.event_id.clone()).collect::<Vec<_>>(),
        "events": events.len(),
        "attempts": attempts,
        "error": reason,
        "parked_at": format_timestamp(now_ns()),
    })
}

/// Every destination of the process and its worker.
#[derive(Debug, Default)]
pub(crate) struct Destinations {
    /// Serializes read-modify-write of the stored lists.
    changes: AsyncMutex<()>,
    workers: Mutex<HashMap<String, JoinHandle<()>>>,
}

impl Destinations {
    fn workers(&self) -> std::sync::MutexGuard<'_, HashMap<String, JoinHandle<()>>> {
        self.workers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts a worker for every stored destination.
    pub(crate) async fn start(state: &Arc<AppState>) -> Result<(), ApiError> {
        for destination in stored(&*state.store).await? {
            state.destinations.spawn(state, destination);
        }
        Ok(())
    }

    fn spawn(&self, state: &Arc<AppState>, destination: Destination) {
        let id = destination.id.clone();
        let worker = tokio::spawn(run_worker(state.clone(), destination));
        if let Some(old) = self.workers().insert(id, worker) {
            old.abort();
        }
    }

    /// Stops every worker (at shutdown, before the pipeline drains).
    pub(crate) fn stop(&self) {
        for (_, worker) in self.workers().drain() {
            worker.abort();
        }
    }

    /// Stores a new destination, then starts its worker. A tenant's destination starts at its
    /// log's head: it receives what is committed from now on.
    pub(crate) async fn add(
        &self,
        state: &Arc<AppState>,
        destination: Destination,
        count_max: usize,
    ) -> Result<(), ApiError> {
        let _guard = self.changes.lock().await;
        let mut list = stored(&*state.store).await?;
        // Webhooks are counted per tenant, sinks across the deployment.
        let is_webhook = |destination: &Destination| destination.transport.kind() == "webhook";
        let same_scope = list
            .iter()
            .filter(|other| {
                is_webhook(other) == is_webhook(&destination)
                    && (!is_webhook(other) || other.tenant_id == destination.tenant_id)
            })
            .count();
        if same_scope >= count_max {
            return Err(ApiError::Conflict {
                detail: format!(
                    "at most {count_max} {} may exist",
                    if is_webhook(&destination) {
                        "webhooks of one tenant"
                    } else {
                        "sinks"
                    }
                ),
                errors: Vec::new(),
            });
        }
        let tenants = match &destination.tenant_id {
            Some(tenant_id) => vec![(
                tenant_id.clone(),
                feed::head(&*state.store, tenant_id).await?,
            )],
            None => feed::heads(&*state.store).await?,
        };
        for (tenant_id, head) in tenants {
            feed::save_cursor(&*state.store, &destination.consumer(), &tenant_id, head).await?;
        }
        list.push(destination.clone());
        store_list(&*state.store, &list).await?;
        self.spawn(state, destination);
        Ok(())
    }

    /// Removes a destination and stops its worker; `false` when there is none with that id in
    /// the scope.
    pub(crate) async fn remove(
        &self,
        state: &AppState,
        id: &str,
        tenant_id: Option<&str>,
    ) -> Result<bool, ApiError> {
        let _guard = self.changes.lock().await;
        let mut list = stored(&*state.store).await?;
        let before = list.len();
        list.retain(|destination| {
            !(destination.id == id && destination.tenant_id.as_deref() == tenant_id)
        });
        if list.len() == before {
            return Ok(false);
        }
        store_list(&*state.store, &list).await?;
        if let Some(worker) = self.workers().remove(id) {
            worker.abort();
        }
        state.feed.forget(&format!("destination/{id}"));
        Ok(true)
    }
}

/// Every stored destination.
pub(crate) async fn stored(store: &dyn HotStore) -> Result<Vec<Destination>, ApiError> {
    let Some(bytes) = store.setting(DESTINATIONS_SETTING).await? else {
        return Ok(Vec::new());
    };
    let list: Vec<Value> = serde_json::from_slice(&bytes)
        .map_err(|error| ApiError::internal(format!("stored destinations: {error}")))?;
    list.iter()
        .map(|value| {
            Destination::from_stored(value)
                .ok_or_else(|| ApiError::internal("a stored destination does not decode"))
        })
        .collect()
}

async fn store_list(store: &dyn HotStore, list: &[Destination]) -> Result<(), ApiError> {
    let values: Vec<Value> = list.iter().map(Destination::to_stored).collect();
    store
        .set_setting(
            DESTINATIONS_SETTING,
            serde_json::to_vec(&values).map_err(ApiError::internal)?,
        )
        .await?;
    Ok(())
}

/// A destination's dead letters, oldest first.
pub(crate) async fn dead_letters(store: &dyn HotStore, id: &str) -> Result<Vec<Value>, ApiError> {
    let Some(bytes) = store.setting(&dead_letters_setting(id)).await? else {
        return Ok(Vec::new());
    };
    serde_json::from_slice(&bytes)
        .map_err(|error| ApiError::internal(format!("dead letters of {id}: {error}")))
}

async fn store_dead_letters(
    store: &dyn HotStore,
    id: &str,
    list: &[Value],
) -> Result<(), ApiError> {
    let start = list.len().saturating_sub(DEAD_LETTERS_MAX);
    store
        .set_setting(
            &dead_letters_setting(id),
            serde_json::to_vec(&list[start..]).map_err(ApiError::internal)?,
        )
        .await?;
    Ok(())
}

/// Sends every parked message of `destination` once more (each with one attempt); those that
/// arrive leave the list. Returns `(delivered, still parked)`.
pub(crate) async fn replay_dead_letters(
    state: &AppState,
    destination: &Destination,
) -> Result<(usize, usize), ApiError> {
    let _guard = state.destinations.changes.lock().await;
    let letters = dead_letters(&*state.store, &destination.id).await?;
    let mut sender = Sender::new(destination.transport.clone(), state);
    let mut kept = Vec::new();
    let mut delivered = 0;
    for letter in letters {
        let (Some(tenant_id), Some(first), Some(last)) = (
            letter["tenant_id"].as_str(),
            letter["first_seq"].as_u64(),
            letter["last_seq"].as_u64(),
        ) else {
            continue;
        };
        let count = usize::try_from(last + 1 - first).unwrap_or(usize::MAX);
        let events = feed::read(
            &state.query,
            &*state.store,
            EventQuery::for_tenant(tenant_id),
            first - 1,
            count.min(SINK_BATCH_EVENTS_MAX),
        )
        .await?;
        let events: Vec<StoredEvent> = events
            .into_iter()
            .filter(|event| destination.selection.admits(event))
            .collect();
        match sender.send(&events).await {
            Ok(()) => delivered += 1,
            Err(reason) => {
                let mut letter = letter;
                letter["error"] = reason.into();
                kept.push(letter);
            }
        }
    }
    let still = kept.len();
    store_dead_letters(&*state.store, &destination.id, &kept).await?;
    Ok((delivered, still))
}

/// Whether an address is one the public internet routes to. Deliveries go only there unless the
/// deployment allows private destinations (`--allow-private-destinations`): otherwise a tenant
/// admin could make the server call its own network (loopback, private ranges, link-local and
/// cloud metadata addresses, carrier-grade NAT, unique-local IPv6).
pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (b & 0xc0) == 64))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| !is_public(IpAddr::V4(v4))))
        }
    }
}

/// The reason a literal address of a URL or `host:port` may not be delivered to, if any.
pub(crate) fn refused_literal(host: &str, allow_private: bool) -> Option<String> {
    let ip: IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    (!allow_private && !is_public(ip)).then(|| {
        format!("{ip} is not a public address; this deployment does not deliver to private ones (--allow-private-destinations)")
    })
}

/// Resolves host names for deliveries, keeping only public addresses.
#[derive(Debug)]
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let public = public_addresses(&host, 0).await?;
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

async fn public_addresses(
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
    let public: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await?
        .filter(|address| is_public(address.ip()))
        .collect();
    if public.is_empty() {
        return Err(format!("{host} resolves to no public address; this deployment does not deliver to private ones (--allow-private-destinations)").into());
    }
    Ok(public)
}

/// Sends messages of one transport, keeping its connection (syslog) between them.
struct Sender {
    transport: Transport,
    http: reqwest::Client,
    connection: Option<Box<dyn tokio::io::AsyncWrite + Send + Unpin>>,
    retry_base: Duration,
    allow_private: bool,
}

impl Sender {
    fn new(transport: Transport, state: &AppState) -> Self {
        let mut http = reqwest::Client::builder()
            .timeout(Duration::from_millis(DELIVERY_TIMEOUT_MILLIS))
            // A redirect could lead anywhere, a private address included.
            .redirect(reqwest::redirect::Policy::none());
        if !state.allow_private_destinations {
            http = http.dns_resolver(Arc::new(PublicOnly));
        }
        Sender {
            transport,
            http: http.build().unwrap_or_default(),
            connection: None,
            retry_base: state.delivery_retry_base,
            allow_private: state.allow_private_destinations,
        }
    }

    /// Refuses a URL whose host is a literal private address (names are checked as they are
    /// resolved).
    fn check_url(&self, url: &str) -> Result<(), String> {
        let host = reqwest::Url::parse(url)
            .ok()
            .and_then(|url| url.host_str().map(str::to_owned))
            .unwrap_or_default();
        match refused_literal(&host, self.allow_private) {
            Some(reason) => Err(reason),
            None => Ok(()),
        }
    }

    /// One attempt at delivering `events` as one message.
    async fn send(&mut self, events: &[StoredEvent]) -> Result<(), String> {
        if events.is_empty() {
            return Ok(());
        }
        let transport = self.transport.clone();
        match transport {
            Transport::Webhook { url, secret } => {
                self.check_url(&url)?;
                let stored = &events[0];
                let kind = if is_alert(&stored.event) {
                    "alert.triggered"
                } else {
                    "audit.event"
                };
                let data = sealtrail_realtime::event_json(stored);
                let body = sealtrail_realtime::webhook::message_body(kind, now_ns(), &data);
                let timestamp = now_ns() / 1_000_000_000;
                let id = &stored.event.event_id;
                let signature = sealtrail_realtime::webhook::sign(&secret, id, timestamp, &body);
                let request = self
                    .http
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("webhook-id", id)
                    .header("webhook-timestamp", timestamp.to_string())
                    .header("webhook-signature", signature)
                    .body(body);
                check_response(request.send().await).await
            }
            Transport::SplunkHec { url, token } => {
                self.check_url(&url)?;
                let batch: Vec<Value> = events
                    .iter()
                    .map(|stored| {
                        sealtrail_realtime::hec::hec_event(stored, "sealtrail", "sealtrail:audit")
                    })
                    .collect();
                let request = self
                    .http
                    .post(&url)
                    .header("authorization", format!("Splunk {token}"))
                    .header("content-type", "application/json")
                    .body(sealtrail_realtime::hec::hec_batch(&batch));
                check_response(request.send().await).await
            }
            Transport::OcsfHttp { url, authorization } => {
                self.check_url(&url)?;
                let batch: Vec<Value> = events
                    .iter()
                    .map(sealtrail_realtime::ocsf::ocsf_event)
                    .collect();
                let mut request = self
                    .http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(serde_json::to_vec(&batch).map_err(|error| error.to_string())?);
                if let Some(authorization) = authorization {
                    request = request.header("authorization", authorization);
                }
                check_response(request.send().await).await
            }
            Transport::Syslog { address, tls } => {
                let mut bytes = Vec::new();
                for stored in events {
                    bytes.extend(sealtrail_realtime::syslog::syslog_frame(
                        stored,
                        "sealtrail",
                        "sealtrail",
                    ));
                }
                if self.connection.is_none() {
                    self.connection = Some(connect(&address, tls, self.allow_private).await?);
                }
                let connection = self.connection.as_mut().expect("connected above");
                let written =
                    tokio::time::timeout(Duration::from_millis(DELIVERY_TIMEOUT_MILLIS), async {
                        connection.write_all(&bytes).await?;
                        connection.flush().await
                    })
                    .await;
                match written {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(error)) => {
                        self.connection = None;
                        Err(format!("syslog write to {address}: {error}"))
                    }
                    Err(_) => {
                        self.connection = None;
                        Err(format!("syslog write to {address} timed out"))
                    }
                }
            }
        }
    }

    /// Delivers with retries; `Err` after [`DELIVERY_ATTEMPTS_MAX`] failed attempts.
    async fn deliver(&mut self, events: &[StoredEvent]) -> Result<(), (u32, String)> {
        let mut attempt = 1;
        loop {
            match self.send(events).await {
                Ok(()) => return Ok(()),
                Err(reason) if attempt >= DELIVERY_ATTEMPTS_MAX => return Err((attempt, reason)),
                Err(reason) => {
                    tracing::debug!(
                        kind = self.transport.kind(),
                        attempt,
                        reason,
                        "delivery failed; retrying"
                    );
                    crate::metrics::registry().delivery(self.transport.kind(), "retried");
                    tokio::time::sleep(backoff(self.retry_base, attempt)).await;
                    attempt += 1;
                }
            }
        }
    }
}

/// The pause after failed attempt `attempt`: the base doubled each time, at most
/// [`DELIVERY_RETRY_CAP_MILLIS`], times a jitter in [0.5, 1.5) so that receivers coming back
/// are not hit by every sender at once.
fn backoff(base: Duration, attempt: u32) -> Duration {
    let doubled = base.saturating_mul(1 << attempt.min(20).saturating_sub(1));
    let capped = doubled.min(Duration::from_millis(DELIVERY_RETRY_CAP_MILLIS));
    capped.mul_f64(rand::thread_rng().gen_range(0.5..1.5))
}

async fn check_response(response: Result<reqwest::Response, reqwest::Error>) -> Result<(), String> {
    match response {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => Err(format!("the receiver answered {}", response.status())),
        Err(error) => Err(format!("cannot reach the receiver: {error}")),
    }
}

async fn connect(
    address: &str,
    tls: bool,
    allow_private: bool,
) -> Result<Box<dyn tokio::io::AsyncWrite + Send + Unpin>, String> {
    let timeout = Duration::from_millis(DELIVERY_TIMEOUT_MILLIS);
    let (host, port) = address
        .rsplit_once(':')
        .and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?)))
        .ok_or_else(|| format!("{address} is not host:port"))?;
    let bare_host = host.trim_start_matches('[').trim_end_matches(']');
    let targets: Vec<SocketAddr> = if allow_private {
        tokio::net::lookup_host((bare_host, port))
            .await
            .map_err(|error| format!("cannot resolve {address}: {error}"))?
            .collect()
    } else {
        public_addresses(bare_host, port)
            .await
            .map_err(|error| error.to_string())?
    };
    let stream = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&targets[..]))
        .await
        .map_err(|_| format!("connecting to {address} timed out"))?
        .map_err(|error| format!("cannot connect to {address}: {error}"))?;
    stream.set_nodelay(true).ok();
    if !tls {
        return Ok(Box::new(stream));
    }
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from(bare_host.to_owned())
        .map_err(|error| format!("{address}: not a TLS server name: {error}"))?;
    let connector = tokio_rustls::TlsConnector::from(tls_config()?);
    let stream = tokio::time::timeout(timeout, connector.connect(name, stream))
        .await
        .map_err(|_| format!("TLS handshake with {address} timed out"))?
        .map_err(|error| format!("TLS handshake with {address}: {error}"))?;
    Ok(Box::new(stream))
}

/// The platform's trusted roots, read once.
fn tls_config() -> Result<Arc<tokio_rustls::rustls::ClientConfig>, String> {
    static CONFIG: std::sync::OnceLock<Result<Arc<tokio_rustls::rustls::ClientConfig>, String>> =
        std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = tokio_rustls::rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            for certificate in found.certs {
                let _ = roots.add(certificate);
            }
            if roots.is_empty() {
                return Err("no trusted root certificates found on this machine".into());
            }
            let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
            let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|error| error.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
}

/// One destination's worker: catches up every tenant in its scope whenever a log grows.
async fn run_worker(state: Arc<AppState>, destination: Destination) {
    let subscription = state.feed.subscribe();
    let mut sender = Sender::new(destination.transport.clone(), &state);
    let mut cursors: HashMap<String, feed::Cursor> = HashMap::new();
    let mut moved = Moved::Poll;
    loop {
        let tenants: Vec<String> = match (&destination.tenant_id, moved) {
            (Some(tenant_id), Moved::Tenants(moved)) if !moved.contains(tenant_id) => Vec::new(),
            (Some(tenant_id), _) => vec![tenant_id.clone()],
            (None, Moved::Tenants(moved)) => moved.into_iter().collect(),
            (None, Moved::Poll) => match feed::heads(&*state.store).await {
                Ok(heads) => heads.into_iter().map(|(tenant_id, _)| tenant_id).collect(),
                Err(_) => Vec::new(),
            },
        };
        for tenant_id in tenants {
            let delivered =
                catch_up(&state, &destination, &mut sender, &mut cursors, &tenant_id).await;
            if let Err(error) = delivered {
                // Read the cursor again: what was delivered but not saved goes again.
                cursors.remove(&tenant_id);
                tracing::warn!(%error, destination = destination.id, tenant_id, "delivery paused; retrying");
            }
        }
        moved = subscription.next().await;
    }
}

/// Delivers every selected event of `tenant_id` after the destination's cursor.
async fn catch_up(
    state: &AppState,
    destination: &Destination,
    sender: &mut Sender,
    cursors: &mut HashMap<String, feed::Cursor>,
    tenant_id: &str,
) -> Result<(), ApiError> {
    let consumer = destination.consumer();
    if !cursors.contains_key(tenant_id) {
        let saved = feed::cursor(&*state.store, &consumer, tenant_id).await?;
        // A tenant first seen after a platform sink was made: all of its events are new.
        let cursor = feed::Cursor::at(saved.unwrap_or(0), saved.is_some());
        cursors.insert(tenant_id.to_owned(), cursor);
    }
    let cursor = cursors.get_mut(tenant_id).expect("inserted above");
    let query = destination.selection.pushed_down(tenant_id);
    let batch_max = destination.transport.batch_max();
    loop {
        let page = feed::read(
            &state.query,
            &*state.store,
            query.clone(),
            cursor.seq,
            FEED_BATCH_EVENTS_MAX,
        )
        .await?;
        let Some(last) = page.last().map(|event| event.seq) else {
            state.feed.set_lag(&consumer, tenant_id, 0);
            // Caught up: save what is left unsaved once it is due (the poll comes back here).
            return cursor
                .save(&*state.store, &consumer, tenant_id, false)
                .await;
        };
        let head = feed::head(&*state.store, tenant_id).await?;
        state
            .feed
            .set_lag(&consumer, tenant_id, head.saturating_sub(cursor.seq));
        let selected: Vec<StoredEvent> = page
            .into_iter()
            .filter(|event| destination.selection.admits(event))
            .collect();
        for message in selected.chunks(batch_max) {
            match sender.deliver(message).await {
                Ok(()) => {
                    crate::metrics::registry().delivery(destination.transport.kind(), "delivered")
                }
                Err((attempts, reason)) => {
                    tracing::warn!(
                        destination = destination.id,
                        tenant_id,
                        attempts,
                        reason,
                        "delivery parked in the dead-letter list"
                    );
                    crate::metrics::registry().delivery(destination.transport.kind(), "parked");
                    let _guard = state.destinations.changes.lock().await;
                    let mut letters = dead_letters(&*state.store, &destination.id).await?;
                    letters.push(dead_letter(tenant_id, message, attempts, &reason));
                    store_dead_letters(&*state.store, &destination.id, &letters).await?;
                }
            }
            cursor.seq = message.last().expect("chunks are never empty").seq;
            cursor
                .save(&*state.store, &consumer, tenant_id, false)
                .await?;
        }
        cursor.seq = cursor.seq.max(last);
        cursor
            .save(&*state.store, &consumer, tenant_id, false)
            .await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "224.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
            assert!(refused_literal(private, false).is_some(), "{private}");
            assert!(refused_literal(private, true).is_none(), "{private}");
        }
        for public in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
        assert!(refused_literal("[::1]", false).is_some());
        assert!(
            refused_literal("hooks.example.com", false).is_none(),
            "names are checked as they resolve"
        );
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let base = Duration::from_millis(100);
        for attempt in 1..=12 {
            let nominal = (100u64 << (attempt - 1)).min(DELIVERY_RETRY_CAP_MILLIS) as f64;
            let pause = backoff(base, attempt).as_millis() as f64;
            assert!(
                (nominal * 0.5..=nominal * 1.5).contains(&pause),
                "attempt {attempt}: {pause}"
            );
        }
    }
}
