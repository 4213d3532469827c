#![doc = include_str!("../README.md")]
//! Retries: a request that is answered 429 or 503, or that fails in transport, is sent again
//! after the answer's `Retry-After` (or a short back-off), with the same `Idempotency-Key`, so
//! Herald stores a publish once however many attempts it took. The budget is bounded
//! ([`Retry`]): when the next wait would exceed it, the error is returned instead.

use std::fmt;
use std::time::{Duration, Instant};

use reqwest::{header, Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A client of one tenant, with an API key. Cheap to clone: clones share the connection pool.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base_url: String,
    tenant: String,
    key: String,
    retry: Retry,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key: clients end up in logs.
        f.debug_struct("Client")
            .field("base_url", &self.base_url)
            .field("tenant", &self.tenant)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// How persistently a request is retried on 429, 503 and transport failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Attempts in all, the first included; 1 means no retry.
    pub max_attempts: u32,
    /// The most time spent waiting between attempts, in all. A `Retry-After` that would go past
    /// it (a daily quota, say) is returned as the error at once.
    pub max_wait: Duration,
}

impl Retry {
    /// No retries: every 429 or 503 is returned as it is.
    pub const NONE: Retry = Retry {
        max_attempts: 1,
        max_wait: Duration::ZERO,
    };
}

impl Default for Retry {
    /// Five attempts within 30 s of waiting.
    fn default() -> Self {
        Retry {
            max_attempts: 5,
            max_wait: Duration::from_secs(30),
        }
    }
}

/// What went wrong with a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Herald answered with a problem+json error.
    #[error("herald answered {status} {code}: {detail}")]
    Api {
        status: u16,
        /// The stable machine-readable code: `rate_limited`, `unavailable`, `invalid_name`, ...
        code: String,
        detail: String,
        /// The `Retry-After` of a 429 or 503.
        retry_after: Option<Duration>,
        request_id: Option<String>,
    },
    /// The request could not be sent, or the answer could not be read.
    #[error("request to herald failed: {0}")]
    Transport(#[from] reqwest::Error),
}

impl Error {
    /// The HTTP status of an answer; `None` when there was none.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            Error::Transport(e) => e.status().map(|s| s.as_u16()),
        }
    }

    /// The problem+json `code` of an answer.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Api { code, .. } => Some(code),
            Error::Transport(_) => None,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Api { retry_after, .. } => *retry_after,
            Error::Transport(_) => None,
        }
    }

    fn is_retryable(&self) -> bool {
        match self {
            Error::Api { status, .. } => *status == 429 || *status == 503,
            // Connection refused or reset: the request may not have arrived; with an
            // idempotency key sending it again is safe.
            Error::Transport(e) => e.is_connect() || e.is_timeout() || e.is_request(),
        }
    }
}

/// The answer to a publish: the channel and the event's cursor.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Published {
    pub channel: String,
    pub id: String,
}

/// Options of one publish.
#[derive(Debug, Clone, Default)]
pub struct PublishOptions {
    /// The event type; `message` when `None`.
    pub event: Option<String>,
    /// The `Idempotency-Key`; one is generated when `None`. Either way it is the same on every
    /// retry of the call.
    pub idempotency_key: Option<String>,
}

/// One event of a batch.
#[derive(Debug, Clone, Serialize)]
pub struct BatchEvent {
    pub channel: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    pub data: Value,
}

impl BatchEvent {
    pub fn new(channel: impl Into<String>, data: impl Into<Value>) -> Self {
        BatchEvent {
            channel: channel.into(),
            event: None,
            data: data.into(),
        }
    }

    pub fn event(mut self, event: impl Into<String>) -> Self {
        self.event = Some(event.into());
        self
    }
}

/// What a subscriber token grants.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TokenRequest {
    /// Channel names; `*` is allowed as the last character (`team:7:*`).
    pub channels: Vec<String>,
    /// Lifetime; Herald's default (an hour) when `None`.
    #[serde(rename = "ttl_seconds", skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
    /// The user the token is for; grants that user's personal channels (`name@user`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
}

/// A minted subscriber token.
#[derive(Debug, Clone, Deserialize)]
pub struct Token {
    pub token: String,
    /// RFC 3339.
    pub expires_at: String,
}

/// One retained event.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HistoryEvent {
    pub id: String,
    pub event: String,
    pub data: Value,
}

/// One page of a channel's history, oldest first.
#[derive(Debug, Clone, Deserialize)]
pub struct HistoryPage {
    pub events: Vec<HistoryEvent>,
    /// `history_truncated` or `invalid_cursor` when the page does not continue right after
    /// the cursor asked for.
    #[serde(default)]
    pub gap: Option<String>,
}

impl HistoryPage {
    /// The cursor to ask for the next page with; `None` when this one is empty.
    pub fn next_after(&self) -> Option<&str> {
        self.events.last().map(|e| e.id.as_str())
    }
}

/// A channel's live state.
#[derive(Debug, Clone, Deserialize)]
pub struct ChannelInfo {
    pub channel: String,
    pub subscribers: u64,
    pub last_event_id: Option<String>,
    pub retained: u64,
}

#[derive(Serialize)]
struct PublishBody<'a, T: Serialize + ?Sized> {
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'a str>,
    data: &'a T,
}

#[derive(Deserialize)]
struct BatchAnswer {
    results: Vec<Published>,
}

#[derive(Deserialize)]
struct Problem {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    detail: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    request_id: Option<String>,
}

impl Client {
    /// A client of `tenant` at `base_url` (`https://herald.example.com`), with an API key of
    /// the tenant (`hk_...`).
    pub fn new(
        base_url: impl Into<String>,
        tenant: impl Into<String>,
        key: impl Into<String>,
    ) -> Client {
        Client {
            http: reqwest::Client::new(),
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            tenant: tenant.into(),
            key: key.into(),
            retry: Retry::default(),
        }
    }

    /// Uses `http` for requests, e.g. one built with TLS features or timeouts of your own.
    pub fn with_http_client(mut self, http: reqwest::Client) -> Client {
        self.http = http;
        self
    }

    /// Sets the retry budget.
    pub fn with_retry(mut self, retry: Retry) -> Client {
        self.retry = retry;
        self
    }

    /// Publishes `data` (any JSON value) to `channel` as a `message` event.
    pub async fn publish<T: Serialize + ?Sized>(
        &self,
        channel: &str,
        data: &T,
    ) -> Result<Published, Error> {
        self.publish_with(channel, data, PublishOptions::default())
            .await
    }

    /// Publishes with an event type or an idempotency key of the caller's.
    pub async fn publish_with<T: Serialize + ?Sized>(
        &self,
        channel: &str,
        data: &T,
        options: PublishOptions,
    ) -> Result<Published, Error> {
        let path = format!(
            "/v1/{}/channels/{}/events",
            segment(&self.tenant),
            segment(channel)
        );
        let key = options.idempotency_key.unwrap_or_else(idempotency_key);
        let body = PublishBody {
            event: options.event.as_deref(),
            data,
        };
        self.send(Method::POST, &path, |r| {
            r.header("idempotency-key", &key).json(&body)
        })
        .await
    }

    /// Publishes 1 to 100 events, all or nothing, under one idempotency key.
    pub async fn publish_batch(&self, events: &[BatchEvent]) -> Result<Vec<Published>, Error> {
        self.publish_batch_with(events, None).await
    }

    /// [`Client::publish_batch`] with an idempotency key of the caller's.
    pub async fn publish_batch_with(
        &self,
        events: &[BatchEvent],
        idempotency_key: Option<String>,
    ) -> Result<Vec<Published>, Error> {
        let path = format!("/v1/{}/events", segment(&self.tenant));
        let key = idempotency_key.unwrap_or_else(self::idempotency_key);
        let body = serde_json::json!({ "events": events });
        let answer: BatchAnswer = self
            .send(Method::POST, &path, |r| {
                r.header("idempotency-key", &key).json(&body)
            })
            .await?;
        Ok(answer.results)
    }

    /// Mints a subscriber token (the key needs the `subscribe` scope).
    pub async fn mint_token(&self, request: &TokenRequest) -> Result<Token, Error> {
        let path = format!("/v1/{}/tokens", segment(&self.tenant));
        self.send(Method::POST, &path, |r| r.json(request)).await
    }

    /// One page of `channel`'s history: the events after `after` (from the oldest retained
    /// when `None`), at most `limit` (Herald's default 100 when `None`).
    pub async fn history(
        &self,
        channel: &str,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<HistoryPage, Error> {
        let path = format!(
            "/v1/{}/channels/{}/history",
            segment(&self.tenant),
            segment(channel)
        );
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(after) = after {
            query.push(("after", after.to_owned()));
        }
        if let Some(limit) = limit {
            query.push(("limit", limit.to_string()));
        }
        self.send(Method::GET, &path, |r| r.query(&query)).await
    }

    /// A channel's subscribers, last event id and retained count.
    pub async fn channel(&self, channel: &str) -> Result<ChannelInfo, Error> {
        let path = format!(
            "/v1/{}/channels/{}",
            segment(&self.tenant),
            segment(channel)
        );
        self.send(Method::GET, &path, |r| r).await
    }

    /// Sends a request built by `build` until it succeeds, fails for good, or the retry budget
    /// is spent. `build` runs once per attempt, so every attempt carries the same headers.
    async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<T, Error> {
        let url = format!("{}{path}", self.base_url);
        let started = Instant::now();
        let mut attempt = 1;
        loop {
            let request = build(
                self.http
                    .request(method.clone(), &url)
                    .bearer_auth(&self.key),
            );
            let result = match request.send().await {
                Ok(response) => read(response).await,
                Err(e) => Err(Error::Transport(e)),
            };
            let err = match result {
                Ok(value) => return Ok(value),
                Err(err) => err,
            };
            if !err.is_retryable() || attempt >= self.retry.max_attempts {
                return Err(err);
            }
            let wait = err.retry_after().unwrap_or_else(|| backoff(attempt));
            if started.elapsed() + wait > self.retry.max_wait {
                return Err(err);
            }
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }
}

/// Reads a success body as `T`, or an error answer as [`Error::Api`].
async fn read<T: DeserializeOwned>(response: reqwest::Response) -> Result<T, Error> {
    let status = response.status();
    if status.is_success() {
        return Ok(response.json().await?);
    }
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = response.text().await.unwrap_or_default();
    let problem: Option<Problem> = serde_json::from_str(&text).ok();
    let (code, detail, problem_request_id) = match problem {
        Some(p) => (
            p.code.unwrap_or_else(|| fallback_code(status)),
            p.detail.or(p.title).unwrap_or_default(),
            p.request_id,
        ),
        None => (fallback_code(status), text, None),
    };
    Err(Error::Api {
        status: status.as_u16(),
        code,
        detail,
        retry_after,
        request_id: problem_request_id.or(request_id),
    })
}

/// A code for an answer that is not problem+json (a proxy's 502, say).
fn fallback_code(status: StatusCode) -> String {
    match status.as_u16() {
        429 => "rate_limited",
        502..=504 => "unavailable",
        _ => "http_error",
    }
    .to_owned()
}

/// The wait before attempt `attempt + 1` when the answer names none: 250 ms, doubling, at
/// most 4 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250u64 << attempt.saturating_sub(1).min(4))
}

/// A fresh idempotency key: 128 random bits, hex.
fn idempotency_key() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Percent-encodes one path segment, so that a bad name reaches Herald (and its 400) as it is
/// rather than as another path.
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_keep_channel_characters_and_escape_the_rest() {
        assert_eq!(segment("user:42@x.y-z_~"), "user:42@x.y-z_~");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn backoff_doubles_up_to_four_seconds() {
        let waits: Vec<u64> = (1..=7).map(|a| backoff(a).as_millis() as u64).collect();
        assert_eq!(waits, [250, 500, 1000, 2000, 4000, 4000, 4000]);
    }

    #[test]
    fn idempotency_keys_differ_and_fit_the_limit() {
        let (a, b) = (idempotency_key(), idempotency_key());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
    }
}
