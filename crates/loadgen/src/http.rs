//! Just enough HTTP/1.1 for a load generator: one request written by hand, the response head
//! parsed, and a body read either by `Content-Length` or as chunked transfer coding. No
//! allocation per frame on the read path: each subscriber owns one buffer it reuses.
//!
//! Every read that waits for an answer is bounded by a timeout ([`read_within`]): a server that
//! stops answering fails the scenario with a message saying so, never hangs it.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Connects from `127.0.0.<source>` so that tens of thousands of connections to one server
/// port do not exhaust one source address's ephemeral ports.
pub async fn connect(server: SocketAddr, source: u8) -> Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if server.ip().is_loopback() {
        socket.bind(SocketAddr::from((
            Ipv4Addr::new(127, 0, 0, source.max(1)),
            0,
        )))?;
    }
    let stream = socket
        .connect(server)
        .await
        .with_context(|| format!("connect {server}"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// How long a setup exchange or a publish answer may keep the generator waiting.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

/// One `read` that fails, rather than waits forever, when nothing arrives within `timeout`.
/// `Ok(0)` is the end of the stream, as for `read`.
pub async fn read_within<R: AsyncRead + Unpin>(
    stream: &mut R,
    buf: &mut [u8],
    timeout: Duration,
) -> Result<usize> {
    match tokio::time::timeout(timeout, stream.read(buf)).await {
        Ok(read) => Ok(read?),
        Err(_) => bail!("the server sent nothing for {} s", timeout.as_secs_f64()),
    }
}

/// A response head: the status and the headers the generator cares about.
#[derive(Debug, Default)]
pub struct Head {
    pub status: u16,
    pub chunked: bool,
    pub content_length: Option<usize>,
    /// `Connection: close`: the server answers no request after this one on the connection.
    pub close: bool,
    pub set_cookie: Vec<String>,
}

/// Reads until the end of the response head; what follows it stays in `buf[..filled]`.
pub async fn read_head<R: AsyncRead + Unpin>(
    stream: &mut R,
    buf: &mut Vec<u8>,
    filled: &mut usize,
    timeout: Duration,
) -> Result<Head> {
    loop {
        if let Some(end) = memchr::memmem::find(&buf[..*filled], b"\r\n\r\n") {
            let head = parse_head(&buf[..end])?;
            buf.copy_within(end + 4..*filled, 0);
            *filled -= end + 4;
            return Ok(head);
        }
        if *filled == buf.len() {
            if buf.len() >= 1 << 20 {
                bail!("response head over 1 MiB");
            }
            buf.resize(buf.len() * 2, 0);
        }
        let n = read_within(stream, &mut buf[*filled..], timeout).await?;
        if n == 0 {
            bail!(Closed);
        }
        *filled += n;
    }
}

pub fn parse_head(raw: &[u8]) -> Result<Head> {
    let text = std::str::from_utf8(raw).context("response head is not UTF-8")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut head = Head {
        status,
        ..Head::default()
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("content-length") {
            head.content_length = value.parse().ok();
        } else if name.eq_ignore_ascii_case("connection") {
            head.close = value
                .split(',')
                .any(|token| token.trim().eq_ignore_ascii_case("close"));
        } else if name.eq_ignore_ascii_case("set-cookie") {
            head.set_cookie.push(value.to_owned());
        }
    }
    Ok(head)
}

/// The server ended the connection before (the rest of) an answer: a kept-alive connection
/// it chose to close, which a client may retry on a new one.
#[derive(Debug)]
pub struct Closed;

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection closed before the response head")
    }
}

impl std::error::Error for Closed {}

/// Decodes chunked transfer coding in place, incrementally: feed it the bytes as they arrive
/// and it moves the payload to the front of the buffer.
#[derive(Debug, Default)]
pub struct Dechunker {
    /// Payload bytes still to come in the current chunk.
    remaining: usize,
    /// Bytes of a chunk's trailing CRLF still to skip.
    skip: usize,
    pub done: bool,
    /// Where the last `decode` stopped reading (after the final chunk, once `done`).
    pub read_to: usize,
}

impl Dechunker {
    /// Decodes `buf[start..end]` (raw, possibly split anywhere) into payload written from
    /// `start`; returns the payload's end and the raw bytes left undecoded (an incomplete
    /// chunk-size line), which the caller keeps right after the payload.
    pub fn decode(&mut self, buf: &mut [u8], start: usize, end: usize) -> Result<(usize, usize)> {
        let (mut read, mut write) = (start, start);
        while read < end && !self.done {
            if self.skip > 0 {
                let n = self.skip.min(end - read);
                self.skip -= n;
                read += n;
                continue;
            }
            if self.remaining > 0 {
                let n = self.remaining.min(end - read);
                buf.copy_within(read..read + n, write);
                read += n;
                write += n;
                self.remaining -= n;
                if self.remaining == 0 {
                    self.skip = 2;
                }
                continue;
            }
            let Some(eol) = memchr::memmem::find(&buf[read..end], b"\r\n") else {
                // An incomplete size line: keep it for the next read.
                let left = end - read;
                buf.copy_within(read..end, write);
                return Ok((write, left));
            };
            let line = std::str::from_utf8(&buf[read..read + eol]).context("chunk size")?;
            let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                .with_context(|| format!("bad chunk size {line:?}"))?;
            read += eol + 2;
            if size == 0 {
                self.done = true;
            } else {
                self.remaining = size;
            }
        }
        self.read_to = read;
        Ok((write, 0))
    }
}

/// A complete request-response exchange on a fresh connection: for setup calls, not load.
pub async fn exchange(server: SocketAddr, request: &[u8]) -> Result<(Head, Vec<u8>)> {
    let mut stream = connect(server, 1).await?;
    stream.write_all(request).await?;
    let mut buf = vec![0; 16 * 1024];
    let mut filled = 0;
    let head = read_head(&mut stream, &mut buf, &mut filled, ANSWER_TIMEOUT).await?;
    let mut body = buf[..filled].to_vec();
    if head.chunked {
        let mut d = Dechunker::default();
        let mut out = Vec::new();
        let mut raw = body;
        let mut chunk = vec![0; 16 * 1024];
        loop {
            let end = raw.len();
            let (payload_end, left) = d.decode(&mut raw, 0, end)?;
            out.extend_from_slice(&raw[..payload_end]);
            if d.done {
                break;
            }
            raw.copy_within(payload_end..payload_end + left, 0);
            raw.truncate(left);
            let n = read_within(&mut stream, &mut chunk, ANSWER_TIMEOUT).await?;
            if n == 0 {
                bail!("connection closed inside a chunked body");
            }
            raw.extend_from_slice(&chunk[..n]);
        }
        body = out;
    } else if let Some(len) = head.content_length {
        while body.len() < len {
            let mut chunk = vec![0; len - body.len()];
            let n = read_within(&mut stream, &mut chunk, ANSWER_TIMEOUT).await?;
            if n == 0 {
                bail!("connection closed inside the body");
            }
            body.extend_from_slice(&chunk[..n]);
        }
        body.truncate(len);
    }
    Ok((head, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunks_across_arbitrary_splits() {
        let raw = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n";
        for split in 0..raw.len() {
            let mut d = Dechunker::default();
            let mut out = Vec::new();
            let mut pending: Vec<u8> = Vec::new();
            for part in [&raw[..split], &raw[split..]] {
                let mut buf = pending.clone();
                buf.extend_from_slice(part);
                let end = buf.len();
                let (payload_end, left) = d.decode(&mut buf, 0, end).unwrap();
                out.extend_from_slice(&buf[..payload_end]);
                pending = buf[payload_end..payload_end + left].to_vec();
            }
            assert_eq!(out, b"hello, world", "split at {split}");
            assert!(d.done);
        }
    }
}
