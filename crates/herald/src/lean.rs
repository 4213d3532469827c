//! The lean stream path: an HTTP/1.x connection whose first request opens an event stream is
//! served without hyper.
//!
//! hyper keeps an 8 KiB read buffer and an 8 KiB header buffer for the whole life of every
//! HTTP/1 connection, and no option lowers either; for a stream that will never send another
//! request and is written to only as events arrive, that is most of what the connection costs.
//! So the accept loop reads the first request head itself ([`read_head`]), bounded by
//! [`MAX_HEAD_BYTES`](crate::serve::MAX_HEAD_BYTES) and the header read timeout, and frees the
//! buffer once the head is parsed. A body-less `GET` of a stream route ([`Head::stream`]) is
//! built into an [`http::Request`] and answered by the same [`Router`] as every other request,
//! so every middleware applies (request id, security headers, CORS, request limits, the
//! per-IP stream cap, the request log line, metrics). Its answer is written here:
//!
//! - an event stream: the head, then each chunk of the body as it comes, as one vectored write
//!   of the chunk-size line, the shared frames and the CRLF (HTTP/1.1 chunked framing; an
//!   HTTP/1.0 client gets the body delimited by the close). While it waits for its next event
//!   the stream holds no buffer: a readiness wait on the socket sees the client go away.
//! - anything else (401, 404, 429 …): the whole response with its length, and the connection
//!   is closed.
//!
//! Everything else — h2c's preface, any other method or route, a request with a body, a head
//! the parser refuses, one followed at once by pipelined bytes — goes to hyper exactly as
//! before, with the bytes already read replayed first ([`Rewind`]).

use std::convert::Infallible;
use std::future::Future;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{
    header, HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Version,
};
use axum::response::Response;
use axum::routing::future::RouteFuture;
use axum::Router;
use bytes::{Buf, Bytes, BytesMut};
use http_body::Body as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tower::Service;

use crate::serve::{MAX_HEADERS_PARSED, MAX_HEAD_BYTES};

/// The largest non-stream answer written here (a problem document): larger ones are cut off
/// rather than buffered without bound. No route of the stream paths answers more than a
/// problem.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// How long a closed connection's unread request bytes are drained, so that the close does
/// not reset the connection before the client has read the answer.
const LINGER: Duration = Duration::from_secs(1);

/// What the first bytes of a connection turned out to be.
pub(crate) enum First {
    /// A stream request, parsed; its head buffer is gone. Boxed, so that the connection's task,
    /// which keeps room for this answer for its whole life, keeps no room for a request.
    Stream(Box<Request<Body>>),
    /// Anything else, for hyper: the bytes read so far, to be read again.
    Hyper(Bytes),
    /// The client closed, or sent nothing whole within the timeout.
    Nothing,
}

/// Reads the first request head of a connection within `timeout`.
pub(crate) async fn read_head(tcp: &mut TcpStream, peer: SocketAddr, timeout: Duration) -> First {
    let mut buf = BytesMut::new();
    let read = async {
        // A connection that has sent nothing yet holds no buffer.
        if tcp.readable().await.is_err() {
            return None;
        }
        buf.reserve(1024);
        loop {
            match tcp.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            match parse(&buf, peer) {
                Parsed::Partial if buf.len() < MAX_HEAD_BYTES => {
                    if buf.capacity() == buf.len() {
                        buf.reserve(buf.len().min(MAX_HEAD_BYTES - buf.len()));
                    }
                }
                other => return Some(other),
            }
        }
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(Some(Parsed::Stream(req))) => First::Stream(Box::new(req)),
        // hyper answers what we do not serve, including a head over its limit (431).
        Ok(Some(_)) => First::Hyper(buf.freeze()),
        // Whatever hyper would say to a head that never completed, nobody is there to read.
        Ok(None) | Err(_) => First::Nothing,
    }
}

#[allow(clippy::large_enum_variant)]
enum Parsed {
    Partial,
    Stream(Request<Body>),
    Other,
}

fn parse(buf: &[u8], peer: SocketAddr) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS_PARSED];
    let mut head = httparse::Request::new(&mut headers);
    let len = match head.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Other,
    };
    // Pipelined bytes belong to a next request, which only hyper serves.
    if len != buf.len() {
        return Parsed::Other;
    }
    match build(&head, peer) {
        Some(req) => Parsed::Stream(req),
        None => Parsed::Other,
    }
}

/// The request, if it is one the lean path serves: a body-less `GET` of a stream route.
fn build(head: &httparse::Request<'_, '_>, peer: SocketAddr) -> Option<Request<Body>> {
    let version = match head.version? {
        0 => Version::HTTP_10,
        1 => Version::HTTP_11,
        _ => return None,
    };
    if head.method? != "GET" {
        return None;
    }
    let target = head.path?;
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    if !(path.starts_with("/v1/") && path.ends_with("/events")) {
        return None;
    }
    let mut headers = HeaderMap::with_capacity(head.headers.len());
    for h in head.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        // A body, an upgrade or an expectation is hyper's to handle.
        if name == header::CONTENT_LENGTH && h.value != b"0"
            || name == header::TRANSFER_ENCODING
            || name == header::UPGRADE
            || name == header::EXPECT
        {
            return None;
        }
        headers.append(name, HeaderValue::from_bytes(h.value).ok()?);
    }
    let mut req = Request::new(Body::empty());
    *req.method_mut() = Method::GET;
    *req.uri_mut() = target.parse().ok()?;
    *req.version_mut() = version;
    *req.headers_mut() = headers;
    req.extensions_mut().insert(ConnectInfo(peer));
    // Each chunk is written before the next is asked for: none waits queued here.
    req.extensions_mut()
        .insert(herald_edge::WriteBound(herald_edge::MAX_LEAN_WRITE));
    Some(req)
}

/// Answers a stream request on `tcp` through `router`, and ends the connection; `permit`
/// counts it against `--max-connections` until then.
///
/// An idle stream is this future, waiting (the whole of its task), so it holds only what the
/// stream needs: the socket, the body and the state of one write. Written by hand: the
/// router's future, the answer to a refusal and the closing linger are boxed, their state
/// allocated only while they run, and nothing of them stays in the stream's state (as an
/// `async` block's captured variables would, for its whole life).
pub(crate) fn serve(
    tcp: TcpStream,
    mut router: Router,
    req: Box<Request<Body>>,
    permit: OwnedSemaphorePermit,
) -> Serve {
    let http10 = req.version() == Version::HTTP_10;
    Serve::Call {
        call: Box::pin(router.call(*req)),
        tcp,
        permit,
        http10,
    }
}

/// A stream connection being served: see [`serve`].
pub(crate) enum Serve {
    /// The router is answering the request.
    Call {
        call: Pin<Box<RouteFuture<Infallible>>>,
        tcp: TcpStream,
        permit: OwnedSemaphorePermit,
        http10: bool,
    },
    /// An event stream is being written.
    Stream(Streaming),
    /// A refusal's answer, or the linger after a stream ended on our side.
    Close(Pin<Box<dyn Future<Output = ()> + Send>>),
    Done,
}

impl Future for Serve {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            match this {
                Serve::Call { call, .. } => {
                    let response =
                        std::task::ready!(call.as_mut().poll(cx)).unwrap_or_else(|e| match e {});
                    let Serve::Call {
                        tcp,
                        permit,
                        http10,
                        ..
                    } = std::mem::replace(this, Serve::Done)
                    else {
                        unreachable!("in the call state")
                    };
                    *this = match event_stream(response, http10) {
                        Ok((head, body)) => {
                            Serve::Stream(Streaming::new(tcp, head, body, http10, permit))
                        }
                        Err(other) => close(tcp, permit, Some((other, http10))),
                    };
                }
                Serve::Stream(stream) => {
                    let result = std::task::ready!(Pin::new(&mut *stream).poll(cx));
                    let Serve::Stream(Streaming { tcp, permit, .. }) =
                        std::mem::replace(this, Serve::Done)
                    else {
                        unreachable!("in the stream state")
                    };
                    match result {
                        Ok(()) => *this = close(tcp, permit, None),
                        Err(e) => {
                            ended_with(&e);
                            return Poll::Ready(());
                        }
                    }
                }
                Serve::Close(close) => {
                    std::task::ready!(close.as_mut().poll(cx));
                    *this = Serve::Done;
                    return Poll::Ready(());
                }
                Serve::Done => return Poll::Ready(()),
            }
        }
    }
}

/// The end of a connection, boxed: the answer to a refusal, if there is one, then the linger;
/// `permit` is held until both are done.
fn close(
    mut tcp: TcpStream,
    permit: OwnedSemaphorePermit,
    answer_with: Option<(Box<Response>, bool)>,
) -> Serve {
    Serve::Close(Box::pin(async move {
        let _permit = permit;
        if let Some((response, http10)) = answer_with {
            if let Err(e) = answer(&mut tcp, *response, http10).await {
                return ended_with(&e);
            }
        }
        linger(tcp).await;
    }))
}

fn ended_with(e: &io::Error) {
    tracing::debug!(error = %e, "stream connection ended with an error");
}

/// An event stream's head, written out, and its body; any other answer as it is (boxed: the
/// stream's future keeps room for whichever it got).
fn event_stream(response: Response, http10: bool) -> Result<(Vec<u8>, Body), Box<Response>> {
    if !is_event_stream(&response) {
        return Err(Box::new(response));
    }
    let (parts, body) = response.into_parts();
    let framing = if http10 {
        ""
    } else {
        "transfer-encoding: chunked\r\n"
    };
    Ok((head(parts.status, &parts.headers, http10, framing), body))
}

fn is_event_stream(response: &Response) -> bool {
    response.status().is_success()
        && response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
}

/// The status line and header fields, and the framing of the body after them.
fn head(status: StatusCode, headers: &HeaderMap, http10: bool, framing: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(if http10 { b"HTTP/1.0 " } else { b"HTTP/1.1 " });
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        if matches!(
            *name,
            header::CONNECTION | header::CONTENT_LENGTH | header::TRANSFER_ENCODING
        ) {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !headers.contains_key(header::DATE) {
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(httpdate::fmt_http_date(std::time::SystemTime::now()).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(framing.as_bytes());
    out.extend_from_slice(b"connection: close\r\n\r\n");
    out
}

/// Writes an event stream's head and then its body as it comes, until the body ends (the
/// stream ended on our side: drain, access revoked …) or the client goes away.
///
/// Written by hand rather than as an `async fn`: this is the state an idle stream's task keeps
/// for its whole life, and here it is only the socket, the body, the permit, what is being
/// written and how much of it is out (about 130 bytes, where nested `async fn`s kept 472).
pub(crate) struct Streaming {
    tcp: TcpStream,
    body: Body,
    out: Out,
    /// Counts the connection against `--max-connections`.
    permit: OwnedSemaphorePermit,
    http10: bool,
    /// The body ended: once `out` is written, so is the stream.
    ended: bool,
}

impl Streaming {
    fn new(
        tcp: TcpStream,
        head: Vec<u8>,
        body: Body,
        http10: bool,
        permit: OwnedSemaphorePermit,
    ) -> Self {
        Self {
            tcp,
            body,
            out: Out::raw(Bytes::from(head)),
            permit,
            http10,
            ended: false,
        }
    }
}

impl Future for Streaming {
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            // While a write is under way the body is not asked for more: what comes meanwhile
            // waits in the channel's ring, not here.
            if !this.out.is_empty() {
                std::task::ready!(this.out.poll_write(&mut this.tcp, cx))?;
                if this.ended {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            let frame = match std::task::ready!(next(&this.tcp, Pin::new(&mut this.body), cx)) {
                Next::Frame(frame) => frame,
                Next::Gone(gone) => {
                    gone?;
                    return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
                }
            };
            match frame {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        if !data.is_empty() {
                            this.out = if this.http10 {
                                Out::raw(data)
                            } else {
                                Out::chunk(data)
                            };
                        }
                    }
                }
                Some(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
                // The stream ended on our side: end the body, and the connection after it.
                None if this.http10 => return Poll::Ready(Ok(())),
                None => {
                    this.ended = true;
                    this.out = Out::raw(Bytes::from_static(b"0\r\n\r\n"));
                }
            }
        }
    }
}

/// What a stream's wait ended with.
enum Next {
    /// The body's next frame, or its end.
    Frame(Option<Result<http_body::Frame<Bytes>, axum::Error>>),
    /// The client closed (`Ok`) or reset the connection.
    Gone(io::Result<()>),
}

/// Waits for the body's next frame and, meanwhile, for the client to go away. Bytes the client
/// sends (it should send none) are read and dropped, a few at a time, into a buffer that
/// exists only while they are read.
///
/// A poll function rather than a `select!` of two futures: this runs once for every chunk a
/// busy stream writes, and a readiness future would put a waiter on the socket's list and take
/// it off again each time, where `poll_read_ready` keeps one waker in the socket's own slot.
/// It is this connection's only reader, so that slot is its own.
fn next(tcp: &TcpStream, body: Pin<&mut Body>, cx: &mut Context<'_>) -> Poll<Next> {
    if let Poll::Ready(frame) = body.poll_frame(cx) {
        return Poll::Ready(Next::Frame(frame));
    }
    loop {
        // Ready or not, this counts against the task's cooperative budget: a client that
        // sends without pause cannot keep the thread here.
        if let Err(e) = std::task::ready!(tcp.poll_read_ready(cx)) {
            return Poll::Ready(Next::Gone(Err(e)));
        }
        let mut sink = [0u8; 64];
        match tcp.try_read(&mut sink) {
            Ok(0) => return Poll::Ready(Next::Gone(Ok(()))),
            // Readiness is cleared by the `WouldBlock`: the next poll waits again.
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Poll::Ready(Next::Gone(Err(e))),
        }
    }
}

/// What is being written: raw bytes (the head, an HTTP/1.0 body's bytes, the last chunk), or
/// one chunk of a chunked body — its size line, the bytes and the CRLF, in one vectored write
/// when the socket takes it all (the bytes are the shared frames themselves, never copied).
struct Out {
    size: [u8; 18],
    /// The length of the size line (0 for raw bytes).
    n: u8,
    /// Whether a CRLF follows (it ends a chunk).
    crlf: bool,
    data: Bytes,
    /// How much of the whole is written.
    written: usize,
}

impl Out {
    fn raw(data: Bytes) -> Self {
        Self {
            size: [0; 18],
            n: 0,
            crlf: false,
            data,
            written: 0,
        }
    }

    fn chunk(data: Bytes) -> Self {
        let mut out = Self::raw(data);
        out.n = size_line(&mut out.size, out.data.len()) as u8;
        out.crlf = true;
        out
    }

    fn tail(&self) -> &'static [u8] {
        if self.crlf {
            b"\r\n"
        } else {
            b""
        }
    }

    fn total(&self) -> usize {
        usize::from(self.n) + self.data.len() + self.tail().len()
    }

    fn is_empty(&self) -> bool {
        self.written == self.total()
    }

    /// Writes what is left, as far as the socket takes it; ready once all of it is out, and
    /// then empty (its bytes released).
    fn poll_write(&mut self, tcp: &mut TcpStream, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let total = self.total();
        while self.written < total {
            let parts: [&[u8]; 3] = [&self.size[..usize::from(self.n)], &self.data, self.tail()];
            let mut skip = self.written;
            let mut slices = [IoSlice::new(&[]); 3];
            let mut k = 0;
            for part in parts {
                if skip >= part.len() {
                    skip -= part.len();
                    continue;
                }
                slices[k] = IoSlice::new(&part[skip..]);
                skip = 0;
                k += 1;
            }
            match std::task::ready!(Pin::new(&mut *tcp).poll_write_vectored(cx, &slices[..k])) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => self.written += n,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        *self = Self::raw(Bytes::new());
        Poll::Ready(Ok(()))
    }
}

/// Writes `len` in hex and CRLF into `out`; returns the bytes written.
fn size_line(out: &mut [u8; 18], len: usize) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits = (usize::BITS - len.leading_zeros()).div_ceil(4).max(1) as usize;
    for i in 0..digits {
        out[digits - 1 - i] = HEX[(len >> (4 * i)) & 0xf];
    }
    out[digits] = b'\r';
    out[digits + 1] = b'\n';
    digits + 2
}

/// Writes a whole non-stream answer (a refusal, mostly) with its length.
async fn answer(tcp: &mut TcpStream, response: Response, http10: bool) -> io::Result<()> {
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_ANSWER_BYTES)
        .await
        .map_err(io::Error::other)?;
    let framing = format!("content-length: {}\r\n", bytes.len());
    let mut out = head(parts.status, &parts.headers, http10, &framing);
    out.extend_from_slice(&bytes);
    tcp.write_all(&out).await
}

/// Closes the connection after its answer: the write side first, then whatever the client
/// still sends is read out, for at most [`LINGER`], so that the close cannot reset the
/// connection before the client has read everything.
async fn linger(mut tcp: TcpStream) {
    let _ = tokio::time::timeout(LINGER, async {
        let _ = tcp.shutdown().await;
        let mut sink = [0u8; 256];
        while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// A connection handed to hyper after its first bytes were read here: those bytes are read
/// again first.
pub(crate) struct Rewind {
    pre: Bytes,
    io: TcpStream,
}

impl Rewind {
    pub(crate) fn new(pre: Bytes, io: TcpStream) -> Self {
        Self { pre, io }
    }
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.pre.is_empty() {
            let n = self.pre.len().min(buf.remaining());
            buf.put_slice(&self.pre[..n]);
            self.pre.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        "127.0.0.1:9".parse().unwrap()
    }

    /// A chunk larger than the socket takes at once goes out in several partial writes, each
    /// continuing where the last one stopped.
    #[tokio::test]
    async fn a_chunk_survives_partial_writes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let data: Vec<u8> = (0..(4 << 20)).map(|i: u32| (i % 251) as u8).collect();
        let reader = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            tcp.read_to_end(&mut got).await.unwrap();
            got
        });
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        for data in [Bytes::from(data.clone()), Bytes::from_static(b"x")] {
            let mut out = Out::chunk(data);
            std::future::poll_fn(|cx| out.poll_write(&mut tcp, cx))
                .await
                .unwrap();
            assert!(out.is_empty() && out.data.is_empty());
        }
        drop(tcp);
        let got = reader.await.unwrap();
        let mut want = b"400000\r\n".to_vec();
        want.extend_from_slice(&data);
        want.extend_from_slice(b"\r\n1\r\nx\r\n");
        assert!(got == want, "{} bytes arrived of {}", got.len(), want.len());
    }

    #[test]
    fn size_lines_are_hex() {
        let mut out = [0u8; 18];
        for (len, want) in [
            (0, "0\r\n"),
            (9, "9\r\n"),
            (16, "10\r\n"),
            (0xabc, "abc\r\n"),
        ] {
            let n = size_line(&mut out, len);
            assert_eq!(std::str::from_utf8(&out[..n]).unwrap(), want);
        }
        let n = size_line(&mut out, usize::MAX);
        assert_eq!(n, 18);
    }

    #[test]
    fn only_body_less_stream_gets_are_served_here() {
        let lean = |raw: &str| matches!(parse(raw.as_bytes(), peer()), Parsed::Stream(_));
        assert!(lean(
            "GET /v1/acme/channels/a/events HTTP/1.1\r\nhost: x\r\n\r\n"
        ));
        assert!(lean("GET /v1/acme/events?channel=a HTTP/1.0\r\n\r\n"));
        assert!(!lean("POST /v1/acme/channels/a/events HTTP/1.1\r\n\r\n"));
        assert!(!lean("GET /v1/acme/channels/a HTTP/1.1\r\n\r\n"));
        assert!(!lean(
            "GET /v1/acme/events HTTP/1.1\r\ncontent-length: 3\r\n\r\nabc"
        ));
        assert!(!lean(
            "GET /v1/acme/events HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n"
        ));
        assert!(!lean(
            "GET /v1/acme/events HTTP/1.1\r\nupgrade: h2c\r\n\r\n"
        ));
        assert!(!lean(
            "GET /v1/acme/events HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n"
        ));
        assert!(!lean("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
        assert!(matches!(
            parse(b"GET /v1/acme/events HTTP/1.1\r\nhost:", peer()),
            Parsed::Partial
        ));
    }
}
