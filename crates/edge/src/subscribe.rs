//! `GET /v1/{tenant}/channels/{channel}/events`: a Server-Sent Events stream.
//!
//! The order that makes resume exact: join the hub *first*, then read history after the
//! client's cursor, then switch to live, dropping live events at or before the last one sent.
//! Joining first means no event can fall between history and live; the position check means
//! none arrives twice. The same catch-up runs whenever live delivery is interrupted — the
//! subscriber fell behind its channel's ring (`Lagged`), or the broker's connection was lost
//! (`Resync`) — so a slow or disconnected subscriber never costs memory beyond the ring and
//! never silently loses an event: it reads what it missed from history, or is told of the gap.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use herald_core::{sse, ChannelName, Cursor, ErrorCode, EventType, TenantSlug};
use herald_replay::{ChannelKey, Gap, Live, LiveEvent, Subscription};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::{Instant, Sleep};

use crate::{ApiError, EdgeState};

/// Events read from history per round trip while catching up.
const PAGE: usize = 256;
/// How long to wait before retrying a history read that failed.
const RETRY_READ: Duration = Duration::from_secs(1);

/// What the client asked to resume from.
enum Resume {
    Live,
    After(Cursor),
    Unreadable,
}

pub async fn one_channel(
    State(state): State<EdgeState>,
    path: Result<Path<(String, String)>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Path((tenant, channel)) =
        path.map_err(|_| ApiError::new(ErrorCode::InvalidName, "malformed path"))?;
    let tenant = TenantSlug::parse(&tenant)?;
    let channel = ChannelName::parse(&channel)?;
    if state.view.tenant(&tenant).await?.is_none() {
        return Err(ApiError::new(ErrorCode::NotFound, "no such tenant"));
    }
    let resume = resume_from(&headers, query.as_deref());
    let key = ChannelKey::new(tenant, channel);
    let sub = state.broker.subscribe(&key).await?;
    tracing::debug!(channel = %key, "stream opened");
    let feed = Feed::new(state.clone(), key, sub, resume);
    let body = Body::from_stream(futures_util::stream::unfold(feed, |mut feed| async move {
        let chunk = feed.next().await?;
        Some((Ok::<_, Infallible>(chunk), feed))
    }));
    Ok(sse_response(body))
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

/// The `Last-Event-ID` header wins over the `lastEventId` query parameter (which exists because
/// a browser's first connect cannot set headers). An empty id means "no cursor", as in a
/// browser that was sent an empty `id:`.
fn resume_from(headers: &HeaderMap, query: Option<&str>) -> Resume {
    let from_query = || {
        form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .find(|(k, _)| k == "lastEventId")
            .map(|(_, v)| v.into_owned())
    };
    let raw = match headers.get("last-event-id") {
        Some(v) => v.to_str().map(str::to_owned).ok(),
        None => from_query(),
    };
    match raw.as_deref().map(str::trim) {
        None => match headers.get("last-event-id") {
            Some(_) => Resume::Unreadable,
            None => Resume::Live,
        },
        Some("") => Resume::Live,
        Some(s) => Cursor::parse(s).map_or(Resume::Unreadable, Resume::After),
    }
}

fn gap_frame(channel: &ChannelName, gap: Gap) -> Bytes {
    let data = serde_json::json!({ "channel": channel, "reason": gap.reason() }).to_string();
    let gap_type = EventType::parse_any("herald.gap").expect("herald.gap is a valid type");
    sse::event(None, &gap_type, &data)
}

/// One subscriber's stream: its position, what it has still to send, and its live feed.
struct Feed {
    state: EdgeState,
    key: ChannelKey,
    sub: Subscription,
    /// The last event sent (or the position live delivery started from).
    last: Option<Cursor>,
    /// Frames ready to send, at most one history page.
    pending: VecDeque<Bytes>,
    /// Whether history must be read after `last` before live events can be trusted again.
    catching_up: bool,
    heartbeat: Pin<Box<Sleep>>,
    retry_read: Option<Pin<Box<Sleep>>>,
}

impl Feed {
    fn new(state: EdgeState, key: ChannelKey, sub: Subscription, resume: Resume) -> Self {
        let mut pending = VecDeque::new();
        pending.push_back(sse::retry(state.config.retry_ms));
        let (last, catching_up) = match resume {
            Resume::Live => (sub.start, sub.catch_up),
            Resume::After(cursor) => (Some(cursor), true),
            Resume::Unreadable => {
                pending.push_back(gap_frame(&key.channel, Gap::InvalidCursor));
                (None, true)
            }
        };
        let heartbeat = Box::pin(tokio::time::sleep(state.config.heartbeat));
        Self {
            state,
            key,
            sub,
            last,
            pending,
            catching_up,
            heartbeat,
            retry_read: None,
        }
    }

    /// The next chunk of the response body; `None` ends the stream.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(frame) = self.pending.pop_front() {
                self.reset_heartbeat();
                return Some(frame);
            }
            if self.catching_up && self.retry_read.is_none() {
                self.read_history().await;
                continue;
            }
            let retry = async {
                match self.retry_read.as_mut() {
                    Some(sleep) => sleep.await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = self.state.shutdown.cancelled() => return None,
                received = self.sub.rx.recv() => match received {
                    Ok(Live::Event(event)) => {
                        if let Some(frame) = self.accept(&event) {
                            self.reset_heartbeat();
                            return Some(frame);
                        }
                    }
                    Ok(Live::Resync) | Err(RecvError::Lagged(_)) => self.catching_up = true,
                    Err(RecvError::Closed) => return None,
                },
                _ = retry => self.retry_read = None,
                _ = self.heartbeat.as_mut() => {
                    self.reset_heartbeat();
                    return Some(Bytes::from_static(sse::KEEPALIVE));
                }
            }
        }
    }

    /// A live event's frame, unless it was already sent (or is older than the start).
    fn accept(&mut self, event: &LiveEvent) -> Option<Bytes> {
        match self.last {
            Some(last) if last.epoch != event.cursor.epoch => {
                // The history began a new life while we were connected; let history say what
                // the client lost.
                self.catching_up = true;
                None
            }
            Some(last) if event.cursor.position <= last.position => None,
            _ => {
                self.last = Some(event.cursor);
                Some(event.frame().clone())
            }
        }
    }

    /// Reads one page of history after `last` into `pending`.
    async fn read_history(&mut self) {
        match self.state.broker.read(&self.key, self.last, PAGE).await {
            Ok(history) => {
                if let Some(gap) = history.gap {
                    self.pending.push_back(gap_frame(&self.key.channel, gap));
                    if gap == Gap::InvalidCursor {
                        self.last = None;
                    }
                }
                for e in &history.events {
                    let cursor = history.cursor_of(e);
                    let frame = sse::event(
                        Some(&cursor.to_string()),
                        &e.event.event_type,
                        &e.event.data.rendered(),
                    );
                    self.pending.push_back(frame);
                    self.last = Some(cursor);
                }
                self.catching_up = history.events.len() >= PAGE;
            }
            Err(e) => {
                // The stream stays open (heartbeats continue) and tries again.
                tracing::warn!(channel = %self.key, error = %e, "history read failed; retrying");
                self.retry_read = Some(Box::pin(tokio::time::sleep(RETRY_READ)));
            }
        }
    }

    fn reset_heartbeat(&mut self) {
        let at = Instant::now() + self.state.config.heartbeat;
        self.heartbeat.as_mut().reset(at);
    }
}
