//! `GET /v1/{tenant}/channels/{channel}/history` — the polling fallback for clients that cannot
//! hold a stream — and `GET /v1/{tenant}/channels/{channel}`, what a channel holds now.

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use herald_core::{ChannelName, Cursor, ErrorCode, Scope};
use herald_http::{ApiError, ChannelPath};
use herald_replay::ChannelKey;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::auth::{authenticate, check_channel, Credential};
use crate::EdgeState;

/// Events per page when `limit` is not given, and the most a page may hold.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

#[derive(Serialize)]
struct HistoryEvent {
    id: String,
    event: String,
    data: Box<RawValue>,
}

#[derive(Serialize)]
struct HistoryPage {
    events: Vec<HistoryEvent>,
    /// Set when the page does not continue right after `after`: `history_truncated` or
    /// `invalid_cursor`, as a stream's `herald.gap` would say.
    #[serde(skip_serializing_if = "Option::is_none")]
    gap: Option<&'static str>,
}

/// `GET /v1/{tenant}/channels/{channel}/history?after=<cursor>&limit=100`, with an API key
/// (`subscribe` scope) or a subscriber token that grants the channel.
pub async fn history(
    State(state): State<EdgeState>,
    ChannelPath {
        tenant: slug,
        channel,
    }: ChannelPath,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (mut after, mut limit, mut token) = (None, DEFAULT_LIMIT, None);
    for (k, v) in form_urlencoded::parse(query.as_deref().unwrap_or_default().as_bytes()) {
        match &*k {
            "after" => after = Some(v.into_owned()),
            "token" => token = Some(v.into_owned()),
            "limit" => {
                limit = v
                    .parse()
                    .ok()
                    .filter(|l| (1..=MAX_LIMIT).contains(l))
                    .ok_or_else(|| {
                        ApiError::invalid_body(format!("`limit` must be 1 to {MAX_LIMIT}"))
                    })?;
            }
            _ => {}
        }
    }
    let tenant = state
        .view
        .tenant(&slug)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such tenant"))?;
    let credential = Credential::of(&state, &tenant, &headers, token.as_deref()).await?;
    if matches!(credential, Credential::Anonymous) {
        return Err(ApiError::unauthorized(
            "an API key or a subscriber token is required",
        ));
    }
    let settings = state.view.channel(tenant.id, &channel).await?;
    credential.check(
        &channel,
        settings.visibility == herald_store::Visibility::Private,
    )?;
    let key = ChannelKey::new(slug, channel);
    // An unreadable cursor reads from the oldest retained event, and says so.
    let (after, unreadable) = match after.as_deref().map(str::trim).filter(|a| !a.is_empty()) {
        None => (None, false),
        Some(a) => match Cursor::parse(a) {
            Ok(c) => (Some(c), false),
            Err(_) => (None, true),
        },
    };
    let page = state.broker.read(&key, after, limit).await?;
    let gap = page
        .gap
        .map(|g| g.reason())
        .or(unreadable.then_some("invalid_cursor"));
    let events = page
        .events
        .iter()
        .map(|e| HistoryEvent {
            id: page.cursor_of(e).to_string(),
            event: e.event.event_type.to_string(),
            data: e.event.data.to_raw(),
        })
        .collect();
    Ok(Json(HistoryPage { events, gap }).into_response())
}

#[derive(Serialize)]
struct ChannelView {
    channel: ChannelName,
    subscribers: usize,
    last_event_id: Option<String>,
    retained: usize,
}

/// `GET /v1/{tenant}/channels/{channel}` with an API key of the tenant.
pub async fn info(
    State(state): State<EdgeState>,
    ChannelPath {
        tenant: slug,
        channel,
    }: ChannelPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let key = match authenticate(&state, &headers, &slug, Scope::Subscribe).await {
        Err(e) if e.code == ErrorCode::Forbidden => {
            authenticate(&state, &headers, &slug, Scope::Publish).await?
        }
        other => other?,
    };
    check_channel(&key, &channel)?;
    let channel_key = ChannelKey::new(slug, channel);
    let info = state.broker.channel_info(&channel_key).await?;
    let subscribers = state.broker.subscribers(&channel_key).await?;
    Ok(Json(ChannelView {
        channel: channel_key.channel,
        subscribers,
        last_event_id: info.last.map(|c| c.to_string()),
        retained: info.retained,
    })
    .into_response())
}
