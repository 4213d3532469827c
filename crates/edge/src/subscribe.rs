//! `GET /v1/{tenant}/channels/{channel}/events` and `GET /v1/{tenant}/events?channel=…`:
//! Server-Sent Events streams over one channel or several.
//!
//! The order that makes resume exact, per channel: join the hub *first*, then read history
//! after the client's cursor, then switch to live, dropping live events at or before the last
//! one sent. Joining first means no event can fall between history and live; the position check
//! means none arrives twice. The same catch-up runs whenever live delivery is interrupted — the
//! subscriber fell behind its channel's ring (`Lagged`), or the broker's connection was lost
//! (`Resync`) — so a slow or disconnected subscriber never costs memory beyond the ring and
//! never silently loses an event: it reads what it missed from history, or is told of the gap.
//!
//! A one-channel stream's ids are that channel's cursors, and its live frames are the hub's
//! shared bytes. A multi-channel stream's ids are [`MultiCursor`]s over all its channels, so its
//! frames are the shared body behind an `id:` line of its own.

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use herald_core::{
    channel_hash, sse, ChannelName, Cursor, ErrorCode, EventType, MultiCursor, TenantSlug,
};
use herald_http::{ApiError, ChannelPath, TenantPath};
use herald_replay::{ChannelKey, Gap};

use crate::auth::{suspended, Credential};
use crate::feed::{Feed, Lane, LiveFeeds, WriteBound};
use crate::meter::StreamMeter;
use crate::stream_end::StreamEnd;
use crate::EdgeState;
use axum::extract::ConnectInfo;
use axum::Extension;
use herald_store::Visibility;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU64;

/// Channels one connection may name at all; the tenant's plan sets the real bound.
pub const MAX_CHANNELS: usize = 256;

/// Subscribe to one channel (Server-Sent Events).
///
/// Without a cursor the stream starts live. With `Last-Event-ID` (or `lastEventId`) it first
/// sends what was missed, then live. `event: herald.gap` says when that cannot be exact.
#[utoipa::path(get, path = "/v1/{tenant}/channels/{channel}/events", tag = "edge", operation_id = "subscribe",
    params(ChannelPath,
        ("token" = Option<String>, Query, description = "Subscriber JWT, for private channels"),
        ("lastEventId" = Option<String>, Query, description = "Resume after this cursor (first connect)", example = "1fz3kq-lx9a2bq8-0"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this cursor; wins over lastEventId", example = "1fz3kq-lx9a2bq8-0"),
    ),
    security((), ("subscriber_token" = [])),
    responses((status = 200, description = "The event stream", content_type = "text/event-stream", body = String,
        example = json!("retry: 2000\n\nid: 1fz3kq-lx9a2bq8-1\nevent: order.created\ndata: {\"id\":1}\n\n"))))]
pub async fn one_channel(
    State(state): State<EdgeState>,
    ChannelPath { tenant, channel }: ChannelPath,
    RawQuery(query): RawQuery,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    bound: Option<Extension<WriteBound>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let ip = peer.map(|Extension(ConnectInfo(addr))| addr.ip());
    open(
        state,
        tenant,
        vec![channel],
        false,
        query.as_deref(),
        &headers,
        ip,
        bound.map(|Extension(b)| b),
    )
    .await
}

/// Subscribe to several channels on one connection (Server-Sent Events).
///
/// Each event's `id` is a cursor over every channel of the connection: resuming with it
/// resumes them all.
#[utoipa::path(get, path = "/v1/{tenant}/events", tag = "edge", operation_id = "subscribe_many",
    params(TenantPath,
        ("channel" = Vec<String>, Query, description = "A channel; repeat for several", explode = true, example = json!(["orders", "chat"])),
        ("token" = Option<String>, Query, description = "Subscriber JWT, for private channels"),
        ("lastEventId" = Option<String>, Query, description = "Resume after this cursor (first connect)", example = json!(crate::openapi::MULTI_CURSOR_EXAMPLE)),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this cursor; wins over lastEventId", example = json!(crate::openapi::MULTI_CURSOR_EXAMPLE)),
    ),
    security((), ("subscriber_token" = [])),
    responses((status = 200, description = "The event stream", content_type = "text/event-stream", body = String,
        example = json!(format!("retry: 2000\n\nid: {}\nevent: order.created\ndata: {{\"id\":1}}\n\n",
            crate::openapi::MULTI_CURSOR_EXAMPLE)))))]
pub async fn several_channels(
    State(state): State<EdgeState>,
    TenantPath(tenant): TenantPath,
    RawQuery(query): RawQuery,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    bound: Option<Extension<WriteBound>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let mut channels: Vec<ChannelName> = Vec::new();
    for (k, v) in form_urlencoded::parse(query.as_deref().unwrap_or_default().as_bytes()) {
        if k == "channel" {
            let c = ChannelName::parse(&v)?;
            if !channels.contains(&c) {
                channels.push(c);
            }
            if channels.len() > MAX_CHANNELS {
                return Err(too_many_channels(MAX_CHANNELS));
            }
        }
    }
    if channels.is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidName,
            "name at least one channel: ?channel=a&channel=b",
        ));
    }
    let mut hashes: Vec<u32> = channels.iter().map(channel_hash).collect();
    hashes.sort_unstable();
    if hashes.windows(2).any(|w| w[0] == w[1]) {
        return Err(ApiError::new(
            ErrorCode::InvalidName,
            "two of these channels cannot share a connection; use two connections",
        ));
    }
    let ip = peer.map(|Extension(ConnectInfo(addr))| addr.ip());
    open(
        state,
        tenant,
        channels,
        true,
        query.as_deref(),
        &headers,
        ip,
        bound.map(|Extension(b)| b),
    )
    .await
}

fn too_many_channels(max: usize) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidName,
        format!("at most {max} channels per connection on this plan"),
    )
}

/// Checks the tenant, the credential and the plan's limits, joins every channel's hub, and
/// starts the stream. Its span (`subscribe`) ends when the stream is answered; a resuming
/// stream's first page of history is traced as `replay`, and the rest of the stream as nothing.
#[tracing::instrument(name = "subscribe", skip_all, fields(tenant = %tenant, channels = channels.len()))]
#[allow(clippy::too_many_arguments)]
async fn open(
    state: EdgeState,
    tenant: TenantSlug,
    channels: Vec<ChannelName>,
    multi: bool,
    query: Option<&str>,
    headers: &HeaderMap,
    ip: Option<IpAddr>,
    bound: Option<WriteBound>,
) -> Result<Response, ApiError> {
    let tenant_row = state
        .view
        .tenant(&tenant)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such tenant"))?;
    if tenant_row.suspended_at.is_some() {
        return Err(suspended());
    }
    let watch = state.reauth.watch(&tenant_row);
    let token = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned());
    let credential = Credential::of(&state, &tenant_row, headers, token.as_deref()).await?;
    let plan = state.limits.plan(&tenant_row);
    if channels.len() as u64 > plan.channels_per_connection {
        return Err(too_many_channels(plan.channels_per_connection as usize));
    }
    for channel in &channels {
        let settings = state.view.channel(&tenant_row, channel).await?;
        credential.check(channel, settings.visibility == Visibility::Private)?;
    }
    state.limits.connect(&tenant_row, ip)?;
    let grant = watch
        .grant(&state, tenant_row.clone(), channels.clone(), credential)
        .await;
    let max_connections = plan.max_connections;
    let permit = state
        .broker
        .acquire_connection(&tenant, max_connections)
        .await?
        .ok_or_else(|| ApiError {
            retry_after: Some(5),
            ..ApiError::new(
                ErrorCode::QuotaExceeded,
                format!("this tenant's {max_connections} concurrent connections are all open"),
            )
        })?;
    let tenant_meter = state.usage.tenant(tenant_row.id, &tenant_row.slug);
    tenant_meter.connections_seen(permit.total);
    let meter = StreamMeter::new(tenant_meter, state.metrics.clone());
    let resume = requested_cursor(headers, query);
    let mut first = vec![(sse::retry(state.config.retry_ms), false)];
    let multi_cursor = match (&resume, multi) {
        (Some(text), true) => Some(MultiCursor::parse(text).ok()),
        _ => None,
    };
    let mut lanes = Vec::with_capacity(channels.len());
    let mut receivers = Vec::with_capacity(channels.len());
    for channel in channels {
        let key = ChannelKey::new(tenant.clone(), channel);
        let sub = state.broker.subscribe(&key).await?;
        let hash = channel_hash(&key.channel);
        // Where this channel resumes: (last sent, whether to read history after it first,
        // whether the client's cursor was unreadable). A lane that joins at the channel's head
        // and must catch up may prime the hub with that first read.
        let at_head = (sub.start, sub.catch_up, false);
        let (last, catching_up, unreadable) = match (&resume, &multi_cursor) {
            (None, _) => at_head,
            (Some(text), None) => match Cursor::parse(text) {
                Ok(c) => (Some(c), true, false),
                Err(_) => (None, true, true),
            },
            (Some(_), Some(None)) => (None, true, true),
            (Some(_), Some(Some(m))) => match m.get(hash) {
                None => at_head,
                Some(position) => (position, true, false),
            },
        };
        let prime = if last == sub.start && sub.catch_up {
            NonZeroU64::new(sub.generation)
        } else {
            None
        };
        if unreadable {
            first.push((gap_frame(&key.channel, Gap::InvalidCursor), true));
        }
        lanes.push(Lane {
            key,
            hash,
            last,
            catching_up,
            prime,
        });
        receivers.push(sub.rx);
    }
    tracing::debug!(tenant = %tenant, channels = lanes.len(), "stream opened");
    let live = if receivers.len() == 1 {
        LiveFeeds::One(receivers.pop().expect("one receiver"))
    } else {
        LiveFeeds::many(receivers)
    };
    let end = StreamEnd::new(tenant.clone(), lanes.len());
    let replay = lanes
        .iter()
        .any(|l| l.catching_up)
        .then(|| tracing::info_span!("replay", tenant = %tenant));
    let feed = Feed::new(
        state, grant, permit, meter, end, lanes, multi, live, first, bound, replay,
    );
    let body = Body::new(feed);
    let mut response = sse_response(body);
    response
        .extensions_mut()
        .insert(crate::cors::AnsweredFor(tenant_row));
    Ok(response)
}

fn sse_response(body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// The cursor the client sent: the `Last-Event-ID` header wins over the `lastEventId` query
/// parameter (which exists because a browser's first connect cannot set headers). An empty id
/// means none, as for a browser that was sent an empty `id:`; a header that is not text is an
/// unreadable cursor.
fn requested_cursor(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    let raw = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .map_or_else(|_| "\u{fffd}".to_owned(), str::to_owned),
        ),
        None => form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .find(|(k, _)| k == "lastEventId")
            .map(|(_, v)| v.into_owned()),
    };
    raw.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

pub(crate) fn gap_frame(channel: &ChannelName, gap: Gap) -> Bytes {
    let data = serde_json::json!({ "channel": channel, "reason": gap.reason() }).to_string();
    let gap_type = EventType::parse_any("herald.gap").expect("herald.gap is a valid type");
    sse::event(None, &gap_type, &data)
}
