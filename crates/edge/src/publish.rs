//! `POST /v1/{tenant}/channels/{channel}/events`: publish one event.
//!
//! A 201 is answered only once the broker has stored the event (and so announced it): a
//! publisher that got its 201 can rely on every current subscriber receiving the event and on
//! any resuming subscriber finding it in history.

use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use herald_core::{
    ApiKeySecret, ChannelName, ErrorCode, Event, EventData, EventType, Scope, TenantSlug,
};
use herald_replay::{ChannelKey, Retention};
use herald_store::ApiKeyAuth;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::{ApiError, EdgeState};

/// The largest event data accepted, measured as rendered on the `data:` lines.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    event: Option<String>,
    data: Box<RawValue>,
}

#[derive(Serialize)]
struct Published<'a> {
    channel: &'a ChannelName,
    id: String,
}

pub async fn one_event(
    State(state): State<EdgeState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Path((tenant, channel)) =
        path.map_err(|_| ApiError::new(ErrorCode::InvalidName, "malformed path"))?;
    let tenant = TenantSlug::parse(&tenant)?;
    let channel = ChannelName::parse(&channel)?;
    let key = authenticate(&state, &headers, &tenant, Scope::Publish).await?;
    check_channel(&key, &channel)?;
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(ErrorCode::PayloadTooLarge, "request body too large")
        }
        _ => ApiError::invalid_body("could not read the request body"),
    })?;
    let event = parse_event(&headers, &body)?;
    if event.data.rendered().len() > MAX_MESSAGE_BYTES {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("event data is over {MAX_MESSAGE_BYTES} bytes"),
        ));
    }
    let key = ChannelKey::new(tenant, channel);
    let cursor = state
        .broker
        .append(&key, &event, Retention::default())
        .await?;
    let answer = Published {
        channel: &key.channel,
        id: cursor.to_string(),
    };
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// The event of a request body: JSON `{"event"?, "data"}`, or a `text/plain` body as the data
/// of a `message` event.
fn parse_event(headers: &HeaderMap, body: &[u8]) -> Result<Event, ApiError> {
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    match media_type.as_deref() {
        Some("text/plain") => {
            let text = std::str::from_utf8(body)
                .map_err(|_| ApiError::invalid_body("a text/plain body must be UTF-8"))?;
            Ok(Event {
                event_type: EventType::message(),
                data: EventData::from_text(text),
            })
        }
        None | Some("application/json") => {
            let parsed: PublishBody = serde_json::from_slice(body)
                .map_err(|e| ApiError::invalid_body(format!("invalid JSON body: {e}")))?;
            let event_type = match parsed.event {
                Some(t) => EventType::parse(&t)?,
                None => EventType::message(),
            };
            let data = EventData::from_raw(&parsed.data)
                .map_err(|_| ApiError::invalid_body("`data` is not valid JSON"))?;
            Ok(Event { event_type, data })
        }
        Some(other) => Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!("unsupported content type {other:?}; use application/json or text/plain"),
        )),
    }
}

/// Checks the request's API key: well-formed, known, not revoked, of this tenant (a key of
/// another tenant is as good as unknown), and holding `scope`.
pub(crate) async fn authenticate(
    state: &EdgeState,
    headers: &HeaderMap,
    tenant: &TenantSlug,
    scope: Scope,
) -> Result<ApiKeyAuth, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::unauthorized("an API key is required: Authorization: Bearer hk_...")
        })?;
    let secret = ApiKeySecret::parse(token.trim())
        .map_err(|_| ApiError::unauthorized("malformed API key"))?;
    let key = state
        .view
        .api_key(&secret.key_id())
        .await?
        .filter(|k| k.verify(&secret) && k.revoked_at.is_none() && k.tenant_slug == *tenant)
        .ok_or_else(|| ApiError::unauthorized("unknown or revoked API key"))?;
    if !key.scopes.contains(&scope) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("this API key lacks the `{}` scope", scope.as_str()),
        ));
    }
    Ok(key)
}

/// Refuses a channel outside the key's channel patterns, if it has any.
pub(crate) fn check_channel(key: &ApiKeyAuth, channel: &ChannelName) -> Result<(), ApiError> {
    match &key.channels {
        Some(patterns) if !patterns.iter().any(|p| channel.matches(p)) => Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("this API key may not use channel {channel}"),
        )),
        _ => Ok(()),
    }
}
