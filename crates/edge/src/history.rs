//! `GET /v1/{tenant}/channels/{channel}/history` — the polling fallback for clients that cannot
//! hold a stream — and `GET /v1/{tenant}/channels/{channel}`, what a channel holds now.

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use herald_core::{ChannelName, Cursor, ErrorCode, Scope};
use herald_http::{ApiError, ChannelPath};
use herald_replay::{ChannelKey, Gap};
use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::auth::{authenticate, check_channel, Credential};
use crate::EdgeState;

/// Events per page when `limit` is not given, and the most a page may hold.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// A retained event.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": "1fz3kq-lx9a2bq8-0", "event": "order.created", "data": {"id": 1}}))]
struct HistoryEvent {
    /// Its cursor: pass it as `after` to read what came next.
    id: String,
    /// Its type.
    event: String,
    /// The published JSON value.
    #[schema(value_type = Value)]
    data: Box<RawValue>,
}

/// Why a page does not continue right after `after`, as a stream's `herald.gap` would say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = HistoryGap, example = "history_truncated")]
enum PageGap {
    /// Events after `after` were trimmed from the history; the page starts at the oldest kept.
    HistoryTruncated,
    /// `after` is not a cursor of this channel's history (unreadable, ahead of its head, or of
    /// an earlier life); the page starts at the oldest kept.
    InvalidCursor,
}

impl From<Gap> for PageGap {
    fn from(gap: Gap) -> Self {
        match gap {
            Gap::HistoryTruncated => Self::HistoryTruncated,
            Gap::InvalidCursor => Self::InvalidCursor,
        }
    }
}

/// A page of history, oldest first.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"events": [{"id": "1fz3kq-lx9a2bq8-0", "event": "order.created", "data": {"id": 1}}]}))]
struct HistoryPage {
    /// The events.
    events: Vec<HistoryEvent>,
    /// Absent when the page continues right after `after`.
    #[serde(skip_serializing_if = "Option::is_none")]
    gap: Option<PageGap>,
}

/// A channel's history after a cursor: the polling fallback.
///
/// With an API key (`subscribe` scope) or a subscriber token that grants the channel. Poll with
/// `after` = the last `id` received.
#[utoipa::path(get, path = "/v1/{tenant}/channels/{channel}/history", tag = "edge", operation_id = "history",
    params(ChannelPath,
        ("after" = Option<String>, Query, description = "Only events after this cursor", example = "1fz3kq-lx9a2bq8-0"),
        ("limit" = Option<u32>, Query, description = "At most this many (default 100)", minimum = 1, maximum = 1000),
        ("token" = Option<String>, Query, description = "A subscriber token, instead of the `Authorization` header"),
    ),
    security(("api_key" = []), ("subscriber_token" = [])),
    responses((status = 200, description = "Events, oldest first", body = HistoryPage)))]
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
    let settings = state.view.channel(&tenant, &channel).await?;
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
        .or(unreadable.then_some(Gap::InvalidCursor))
        .map(PageGap::from);
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

/// A channel's live state.
#[derive(Serialize, ToSchema)]
#[schema(as = ChannelInfo, example = json!({"channel": "orders", "subscribers": 3,
    "last_event_id": "1fz3kq-lx9a2bq8-0", "retained": 42}))]
struct ChannelView {
    /// The channel.
    #[schema(value_type = String)]
    channel: ChannelName,
    /// Open streams, across the cluster.
    subscribers: usize,
    /// The newest event's id; `null` when none is retained.
    last_event_id: Option<String>,
    /// Events retained.
    retained: usize,
}

/// A channel's live state (API key with the `subscribe` or `publish` scope).
#[utoipa::path(get, path = "/v1/{tenant}/channels/{channel}", tag = "edge", operation_id = "channel_info",
    params(ChannelPath), security(("api_key" = [])),
    responses((status = 200, description = "The channel", body = ChannelView)))]
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A page's `gap` says what a stream's `herald.gap` says.
    #[test]
    fn a_page_names_its_gap_as_a_stream_does() {
        for gap in [Gap::HistoryTruncated, Gap::InvalidCursor] {
            assert_eq!(
                serde_json::to_value(PageGap::from(gap)).unwrap(),
                gap.reason()
            );
        }
    }
}
