//! One batch, one `POST /v1/events`: how each answer is read, and how a refused batch is split so
//! that one bad event never takes the others down with it.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, StatusCode};
use serde::Deserialize;

use crate::backoff::parse_retry_after;
use crate::context::X_REQUEST_ID;
use crate::event::Durability;

/// How the server acknowledged an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Delivery {
    /// `201`: committed and fsynced by the server.
    Committed,
    /// `202`: in the server's spool, committed shortly (async durability).
    Accepted,
    /// Not yet answered by the server, but fsynced in the client's spool; it is sent when the
    /// server answers again (by this process, or by the next client to open the spool).
    /// Only events of [`Durability::Async`] resolve with this.
    Spooled,
}

/// One event as it travels: its id, its JSON text, and the request it was recorded in.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub(crate) event_id: Arc<str>,
    pub(crate) json: Arc<str>,
    pub(crate) request_id: Option<Arc<str>>,
}

/// Where to send, and as whom.
#[derive(Debug)]
pub(crate) struct Transport {
    pub(crate) http: reqwest::Client,
    pub(crate) sync_url: reqwest::Url,
    pub(crate) async_url: reqwest::Url,
    pub(crate) authorization: HeaderValue,
}

/// A failure that may pass: no answer, or 408, 429, 5xx.
#[derive(Debug, Clone)]
pub(crate) struct Transient {
    /// What the server asked for in `Retry-After` (429 and 503 only).
    pub(crate) retry_after: Option<Duration>,
    pub(crate) reason: String,
}

/// Events the server refused for good, with its answer.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) status: u16,
    pub(crate) detail: String,
    pub(crate) items: Vec<Item>,
}

/// What became of a batch.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) acknowledged: Vec<(Item, Delivery)>,
    pub(crate) refused: Vec<Refusal>,
    /// Events not yet answered, in their order; non-empty only with `transient`.
    pub(crate) remaining: Vec<Item>,
    pub(crate) transient: Option<Transient>,
}

/// The answer to one request.
enum Answer {
    Acknowledged(Delivery),
    Transient(Transient),
    Refused {
        status: StatusCode,
        detail: String,
        /// Per-event problems by index in the request: `(index, "field: reason")`.
        items: Vec<(usize, String)>,
    },
}

/// The problem document (RFC 9457) of a refusal, as far as the client reads it.
#[derive(Deserialize)]
struct Problem {
    #[serde(default)]
    detail: Option<String>,
    #[serde(default)]
    errors: Vec<ProblemItem>,
}

#[derive(Deserialize)]
struct ProblemItem {
    #[serde(default)]
    index: Option<usize>,
    #[serde(default)]
    field: String,
    #[serde(default)]
    reason: String,
}

impl Transport {
    /// Delivers `items` as one batch, as far as the server lets it, with no pause: a refusal
    /// that names its events (400, 409) removes just those and sends the rest again at once; a
    /// 413 splits the batch in halves. Stops at the first transient failure, returning what is
    /// left. Every event is resent with its own `event_id`, so a request whose answer was lost
    /// costs nothing but the round trip.
    pub(crate) async fn deliver(
        &self,
        durability: Durability,
        request_id: &str,
        items: Vec<Item>,
    ) -> Outcome {
        let mut outcome = Outcome::default();
        let mut parts: VecDeque<Vec<Item>> = VecDeque::from([items]);
        while let Some(mut part) = parts.pop_front() {
            if part.is_empty() {
                continue;
            }
            match self.post(durability, request_id, &part).await {
                Answer::Acknowledged(delivery) => outcome
                    .acknowledged
                    .extend(part.into_iter().map(|item| (item, delivery))),
                Answer::Transient(transient) => {
                    outcome.remaining = part;
                    outcome.remaining.extend(parts.into_iter().flatten());
                    outcome.transient = Some(transient);
                    return outcome;
                }
                Answer::Refused { status, .. }
                    if status == StatusCode::PAYLOAD_TOO_LARGE && part.len() > 1 =>
                {
                    let second = part.split_off(part.len() / 2);
                    parts.push_front(second);
                    parts.push_front(part);
                }
                Answer::Refused {
                    status,
                    detail,
                    items,
                } => {
                    let named: BTreeSet<usize> = items
                        .iter()
                        .map(|(index, _)| *index)
                        .filter(|index| *index < part.len())
                        .collect();
                    let per_event =
                        matches!(status, StatusCode::BAD_REQUEST | StatusCode::CONFLICT);
                    if per_event && !named.is_empty() && named.len() < part.len() {
                        // Only the named events are at fault; nothing of the request was
                        // written, so the others go again, alone.
                        for index in named.iter().rev() {
                            let item = part.remove(*index);
                            let reasons: Vec<&str> = items
                                .iter()
                                .filter(|(at, _)| at == index)
                                .map(|(_, reason)| reason.as_str())
                                .collect();
                            outcome.refused.push(Refusal {
                                status: status.as_u16(),
                                detail: format!("{detail} ({})", reasons.join("; ")),
                                items: vec![item],
                            });
                        }
                        parts.push_front(part);
                    } else {
                        outcome.refused.push(Refusal {
                            status: status.as_u16(),
                            detail,
                            items: part,
                        });
                    }
                }
            }
        }
        outcome
    }

    async fn post(&self, durability: Durability, request_id: &str, items: &[Item]) -> Answer {
        let mut body =
            String::with_capacity(2 + items.iter().map(|item| item.json.len() + 1).sum::<usize>());
        body.push('[');
        for (index, item) in items.iter().enumerate() {
            if index > 0 {
                body.push(',');
            }
            body.push_str(&item.json);
        }
        body.push(']');
        let url = match durability {
            Durability::Sync => self.sync_url.clone(),
            Durability::Async => self.async_url.clone(),
        };
        let sent = self
            .http
            .post(url)
            .header(AUTHORIZATION, self.authorization.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(X_REQUEST_ID, request_id)
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                return Answer::Transient(Transient {
                    retry_after: None,
                    reason: error_chain(&error),
                })
            }
        };
        let status = response.status();
        if status == StatusCode::ACCEPTED {
            return Answer::Acknowledged(Delivery::Accepted);
        }
        if status.is_success() {
            return Answer::Acknowledged(Delivery::Committed);
        }
        if status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
            || status.is_server_error()
        {
            let retry_after = (status == StatusCode::TOO_MANY_REQUESTS
                || status == StatusCode::SERVICE_UNAVAILABLE)
                .then(|| response.headers().get(RETRY_AFTER))
                .flatten()
                .and_then(|value| value.to_str().ok())
                .and_then(parse_retry_after);
            return Answer::Transient(Transient {
                retry_after,
                reason: format!("HTTP {status}"),
            });
        }
        // Any other answer (4xx, or a redirect, which the client does not follow) is final.
        let text = response.text().await.unwrap_or_default();
        let (detail, items) = match serde_json::from_str::<Problem>(&text) {
            Ok(problem) => (
                problem.detail.unwrap_or_else(|| status.to_string()),
                problem
                    .errors
                    .into_iter()
                    .filter_map(|item| {
                        item.index
                            .map(|index| (index, format!("{}: {}", item.field, item.reason)))
                    })
                    .collect(),
            ),
            Err(_) => (
                format!("{status}: {}", text.chars().take(200).collect::<String>()),
                Vec::new(),
            ),
        };
        Answer::Refused {
            status,
            detail,
            items,
        }
    }
}

/// An error with its causes, for a log line ("error sending request: connection refused").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
