//! Publishing: `POST /v1/{tenant}/channels/{channel}/events` (one event) and
//! `POST /v1/{tenant}/events` (a batch of up to 100, all or nothing).
//!
//! A 201 is answered only once the broker has stored the events (and so announced them): a
//! publisher that got its 201 can rely on every current subscriber receiving them and on any
//! resuming subscriber finding them in history. With an `Idempotency-Key`, a repeat within 24 h
//! answers the first response again and publishes nothing; the broker decides that atomically
//! with the append, so concurrent repeats cannot both publish.

use std::sync::Arc;

use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use herald_core::publish::{event_of, InvalidEvent};
use herald_core::{ChannelName, Cursor, ErrorCode, Event, EventData, EventType, Scope};
use herald_http::{body_error, media_type, require_json, ApiError, ChannelPath, TenantPath};
use herald_replay::{Append, Appended, ChannelKey, DailyQuota, Idempotency, Retention};
use herald_store::{day_of, ApiKeyAuth, ChannelSettings, Tenant};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::auth::{authenticate_in, check_channel};
use crate::limits::secs_to_midnight;
use crate::EdgeState;

/// The most events one batch may carry.
pub const MAX_BATCH: usize = 100;
/// The longest `Idempotency-Key` accepted.
pub const MAX_IDEMPOTENCY_KEY: usize = 128;

/// An event to publish.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"event": "order.created", "data": {"id": 1}}))]
struct PublishBody {
    /// The event type, `^[A-Za-z0-9._:-]{1,64}$`; default `message`; `herald.` is reserved.
    #[schema(pattern = "^[A-Za-z0-9._:-]{1,64}$")]
    event: Option<String>,
    /// Any JSON value, `null` included: a string is sent as its text, anything else as JSON.
    #[schema(value_type = Value)]
    data: Box<RawValue>,
}

/// A batch: 1 to 100 events, published all or nothing.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"events": [{"channel": "orders", "event": "order.created", "data": {"id": 1}}]}))]
struct BatchBody {
    /// The events.
    #[schema(min_items = 1, max_items = 100)]
    events: Vec<BatchEvent>,
}

/// One event of a batch.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"channel": "orders", "event": "order.created", "data": {"id": 1}}))]
struct BatchEvent {
    /// The channel to publish to.
    #[schema(pattern = "^[A-Za-z0-9._:@-]{1,128}$")]
    channel: String,
    /// The event type; default `message`.
    #[schema(pattern = "^[A-Za-z0-9._:-]{1,64}$")]
    event: Option<String>,
    /// Any JSON value.
    #[schema(value_type = Value)]
    data: Box<RawValue>,
}

/// Where a published event landed.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"channel": "orders", "id": "1fz3kq-lx9a2bq8-0"}))]
struct Published<'a> {
    /// The channel.
    #[schema(value_type = String)]
    channel: &'a ChannelName,
    /// The event's id: the cursor to resume after it, as its `id:` on the channel's stream.
    id: String,
}

/// Where each event of a batch landed, in order.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"results": [{"channel": "orders", "id": "1fz3kq-lx9a2bq8-0"}]}))]
struct BatchPublished<'a> {
    /// One per event.
    results: Vec<Published<'a>>,
}

/// Publish one event.
///
/// The answer comes once the event is stored: every current subscriber receives it, and a
/// resuming one finds it in history. A `text/plain` body is the data of a `message` event.
#[utoipa::path(post, path = "/v1/{tenant}/channels/{channel}/events", tag = "edge", operation_id = "publish",
    params(ChannelPath,
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 128,
            description = "At most 128 characters; a repeat within 24 h returns the first answer"),
    ),
    request_body(content((PublishBody = "application/json"), (String = "text/plain"))),
    security(("api_key" = [])),
    responses((status = 201, description = "Stored and announced", body = Published)))]
pub async fn one_event(
    State(state): State<EdgeState>,
    ChannelPath { tenant, channel }: ChannelPath,
    request: Request,
) -> Result<Response, ApiError> {
    let (headers, body) = headers_and_body(request).await;
    let (key, tenant) = authenticate_in(&state, &headers, &tenant, Scope::Publish).await?;
    check_channel(&key, &channel)?;
    let idempotency_key = idempotency_key(&headers)?;
    let event = parse_event(&headers, &body.map_err(body_error)?)?;
    let limits = PublishLimits::of(&state, tenant);
    limits.check_size(&event, None)?;
    let channels = vec![channel];
    let cursors = append(
        &state,
        &key,
        &limits,
        &channels,
        vec![event],
        idempotency_key,
        "one",
    )
    .await?;
    let answer = Published {
        channel: &channels[0],
        id: cursors[0].to_string(),
    };
    Ok(answered_for(&limits, (StatusCode::CREATED, Json(answer))))
}

/// Publish a batch of up to 100 events, all or nothing.
#[utoipa::path(post, path = "/v1/{tenant}/events", tag = "edge", operation_id = "publish_batch",
    params(TenantPath,
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 128,
            description = "At most 128 characters; a repeat within 24 h returns the first answer"),
    ),
    request_body = BatchBody, security(("api_key" = [])),
    responses((status = 201, description = "Stored and announced", body = BatchPublished)))]
pub async fn batch(
    State(state): State<EdgeState>,
    TenantPath(tenant): TenantPath,
    request: Request,
) -> Result<Response, ApiError> {
    let (headers, body) = headers_and_body(request).await;
    let (key, tenant) = authenticate_in(&state, &headers, &tenant, Scope::Publish).await?;
    let idempotency_key = idempotency_key(&headers)?;
    require_json(&headers)?;
    let body: BatchBody = serde_json::from_slice(&body.map_err(body_error)?)
        .map_err(|e| ApiError::invalid_body(format!("invalid JSON body: {e}")))?;
    if body.events.is_empty() || body.events.len() > MAX_BATCH {
        return Err(ApiError::invalid_body(format!(
            "a batch holds 1 to {MAX_BATCH} events"
        )));
    }
    let limits = PublishLimits::of(&state, tenant);
    let mut channels = Vec::with_capacity(body.events.len());
    let mut events = Vec::with_capacity(body.events.len());
    for (i, e) in body.events.iter().enumerate() {
        let at = |err: ApiError| ApiError {
            detail: format!("events[{i}]: {}", err.detail),
            ..err
        };
        let channel = ChannelName::parse(&e.channel).map_err(|err| at(err.into()))?;
        check_channel(&key, &channel).map_err(at)?;
        let event = json_event(event_of(e.event.as_deref(), &e.data)).map_err(at)?;
        limits.check_size(&event, Some(i))?;
        channels.push(channel);
        events.push(event);
    }
    let cursors = append(
        &state,
        &key,
        &limits,
        &channels,
        events,
        idempotency_key,
        "batch",
    )
    .await?;
    let results = channels
        .iter()
        .zip(&cursors)
        .map(|(channel, c)| Published {
            channel,
            id: c.to_string(),
        })
        .collect();
    Ok(answered_for(
        &limits,
        (StatusCode::CREATED, Json(BatchPublished { results })),
    ))
}

/// The request's headers and its body, read whole within the body limit. The headers are moved
/// out (the `HeaderMap` extractor would clone them); the body is read before anything is
/// checked, as the `Bytes` extractor would, so that a refusal leaves the connection reusable.
async fn headers_and_body(request: Request) -> (HeaderMap, Result<Bytes, BytesRejection>) {
    let (mut parts, body) = request.into_parts();
    let headers = std::mem::take(&mut parts.headers);
    let body = Bytes::from_request(Request::from_parts(parts, body), &()).await;
    (headers, body)
}

/// `answer`, marked with the tenant it was for (the CORS layer needs no lookup then).
fn answered_for(limits: &PublishLimits, answer: impl IntoResponse) -> Response {
    let mut response = answer.into_response();
    response
        .extensions_mut()
        .insert(crate::cors::AnsweredFor(limits.tenant.clone()));
    response
}

/// The tenant and its plan's publishing limits.
struct PublishLimits {
    tenant: Arc<Tenant>,
    max_message_bytes: usize,
    messages_per_day: u64,
}

impl PublishLimits {
    fn of(state: &EdgeState, tenant: Arc<Tenant>) -> Self {
        let plan = state.limits.plan(&tenant);
        Self {
            max_message_bytes: usize::try_from(plan.max_message_bytes).unwrap_or(usize::MAX),
            messages_per_day: plan.messages_per_day,
            tenant,
        }
    }

    /// `max_message_bytes` measures the data as rendered on the `data:` lines.
    fn check_size(&self, event: &Event, index: Option<usize>) -> Result<(), ApiError> {
        if event.data.rendered().len() > self.max_message_bytes {
            let at = index.map(|i| format!("events[{i}]: ")).unwrap_or_default();
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "{at}event data is over this plan's {} bytes",
                    self.max_message_bytes
                ),
            ));
        }
        Ok(())
    }
}

/// Appends with each channel's retention, after the key's rate limit and within the tenant's
/// daily quota; answers the cursors, fresh or remembered.
async fn append(
    state: &EdgeState,
    key: &ApiKeyAuth,
    limits: &PublishLimits,
    channels: &[ChannelName],
    events: Vec<Event>,
    idempotency_key: Option<String>,
    kind: &str,
) -> Result<Vec<Cursor>, ApiError> {
    let n = events.len();
    tracing::info_span!("limits", events = n)
        .in_scope(|| state.limits.publish(&limits.tenant, &key.key_id, n))?;
    let slug = &limits.tenant.slug;
    let mut batch = Vec::with_capacity(n);
    for (channel, event) in channels.iter().zip(events) {
        let settings = state.view.channel(&limits.tenant, channel).await?;
        batch.push(Append {
            channel: ChannelKey::new(slug.clone(), channel.clone()),
            event,
            retention: retention(&settings),
        });
    }
    let idempotency = idempotency_key.map(|k| Idempotency {
        tenant: slug.clone(),
        key: k,
        fingerprint: fingerprint(kind, &batch),
    });
    let now = state.clock.now();
    let quota = DailyQuota {
        tenant: slug.clone(),
        day: day_of(now),
        limit: limits.messages_per_day,
    };
    match state
        .broker
        .append_batch(&batch, idempotency.as_ref(), Some(&quota))
        .await?
    {
        Appended::Fresh(c) => {
            state
                .usage
                .tenant(limits.tenant.id, &limits.tenant.slug)
                .published(n as u64);
            state.metrics.publishes.inc_by(n as u64);
            Ok(c)
        }
        Appended::Repeat(c) => Ok(c),
        Appended::Conflict => Err(ApiError::new(
            ErrorCode::IdempotencyKeyReused,
            "this Idempotency-Key was used for a different request",
        )),
        Appended::QuotaExceeded => Err(ApiError {
            retry_after: Some(secs_to_midnight(now)),
            ..ApiError::new(
                ErrorCode::QuotaExceeded,
                format!(
                    "this tenant's {} messages for today (UTC) are used up",
                    limits.messages_per_day
                ),
            )
        }),
    }
}

pub(crate) fn retention(settings: &ChannelSettings) -> Retention {
    Retention {
        max_len: settings.history_size.max(1),
        ttl: std::time::Duration::from_secs(u64::from(settings.history_ttl_seconds.max(1))),
    }
}

/// What makes two publishes "the same request": the endpoint and every event's channel, type
/// and data (as compact JSON, so whitespace does not matter).
fn fingerprint(kind: &str, batch: &[Append]) -> String {
    let mut h = Sha256::new();
    h.update(kind.as_bytes());
    for a in batch {
        for part in [
            a.channel.channel.as_str(),
            a.event.event_type.as_str(),
            a.event.data.as_json(),
        ] {
            h.update([0]);
            h.update(part.as_bytes());
        }
    }
    format!("{:x}", h.finalize())
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let k = v
        .to_str()
        .map_err(|_| ApiError::invalid_body("Idempotency-Key must be visible ASCII"))?;
    if k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY {
        return Err(ApiError::invalid_body(format!(
            "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters"
        )));
    }
    Ok(Some(k.to_owned()))
}

/// The event of a request body: JSON `{"event"?, "data"}`, or a `text/plain` body as the data
/// of a `message` event.
fn parse_event(headers: &HeaderMap, body: &[u8]) -> Result<Event, ApiError> {
    if media_type(headers).as_deref() == Some("text/plain") {
        let text = std::str::from_utf8(body)
            .map_err(|_| ApiError::invalid_body("a text/plain body must be UTF-8"))?;
        return Ok(Event {
            event_type: EventType::message(),
            data: EventData::from_text(text),
        });
    }
    require_json(headers).map_err(|e| ApiError {
        detail: format!("{}, or text/plain", e.detail),
        ..e
    })?;
    let parsed: PublishBody = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid_body(format!("invalid JSON body: {e}")))?;
    json_event(event_of(parsed.event.as_deref(), &parsed.data))
}

/// An event of a parsed body, its refusal in the API's shape.
fn json_event(event: Result<Event, InvalidEvent>) -> Result<Event, ApiError> {
    event.map_err(|e| match e {
        InvalidEvent::Type(name) => name.into(),
        InvalidEvent::Data => ApiError::invalid_body(e.to_string()),
    })
}
