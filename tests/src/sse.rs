//! A small `text/event-stream` reader for tests, following the WHATWG parsing rules for the
//! fields Herald sends.

use std::time::Duration;

use bytes::BytesMut;
use futures_util::StreamExt;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

/// An open stream.
pub struct SseStream {
    pub headers: reqwest::header::HeaderMap,
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: BytesMut,
    /// Comment lines seen so far (`: keepalive`).
    pub comments: usize,
    /// The last `retry:` value seen.
    pub retry: Option<u64>,
}

impl SseStream {
    pub fn new(response: reqwest::Response) -> Self {
        Self {
            headers: response.headers().clone(),
            body: Box::pin(response.bytes_stream()),
            buf: BytesMut::new(),
            comments: 0,
            retry: None,
        }
    }

    /// The next event, or `None` when the stream ended or nothing came for `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(block) = self.take_block() {
                if let Some(event) = self.parse_block(&block) {
                    return Some(event);
                }
                continue;
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Ok(Some(Ok(chunk))) => self.buf.extend_from_slice(&chunk),
                _ => return None,
            }
        }
    }

    /// The next event, failing the test when none comes within 5 s.
    pub async fn next(&mut self) -> SseEvent {
        self.next_within(Duration::from_secs(5))
            .await
            .expect("an event within 5 s")
    }

    /// Reads `n` events.
    pub async fn take(&mut self, n: usize) -> Vec<SseEvent> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.next().await);
        }
        out
    }

    /// Whether the server ended the stream within `wait`.
    pub async fn ends_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Ok(None) => return true,
                Ok(Some(Ok(chunk))) => self.buf.extend_from_slice(&chunk),
                Ok(Some(Err(_))) => return false,
                Err(_) => return false,
            }
        }
    }

    /// A complete block (up to a blank line), without its terminator.
    fn take_block(&mut self) -> Option<String> {
        let text = std::str::from_utf8(&self.buf).ok()?;
        let end = text.find("\n\n")?;
        let block = text[..end].to_owned();
        let _ = self.buf.split_to(end + 2);
        Some(block)
    }

    fn parse_block(&mut self, block: &str) -> Option<SseEvent> {
        let (mut id, mut event, mut data, mut has_data) =
            (None, String::new(), String::new(), false);
        for line in block.split('\n') {
            if line.starts_with(':') {
                self.comments += 1;
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            match field {
                "id" => id = Some(value.to_owned()),
                "event" => event = value.to_owned(),
                "data" => {
                    if has_data {
                        data.push('\n');
                    }
                    data.push_str(value);
                    has_data = true;
                }
                "retry" => self.retry = value.parse().ok(),
                _ => {}
            }
        }
        has_data.then(|| SseEvent {
            id,
            event: if event.is_empty() {
                "message".into()
            } else {
                event
            },
            data,
        })
    }
}
