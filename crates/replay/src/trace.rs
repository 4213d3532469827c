//! The trace context an event carries from its publish to every process that fans it out.
//!
//! A sampled publish leaves its W3C trace context (`traceparent`) on the announcement of each
//! event it appends, so that the `fanout` span of every edge that delivers the event joins the
//! publish's trace, whichever process the publish reached. An unsampled publish, and every
//! publish while tracing is off, carries nothing: the context is an `Option` that stays `None`,
//! and nothing on the fan-out path allocates or records for tracing.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use herald_core::Cursor;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::ChannelKey;

/// Whether traces are exported at all: set once at start-up by whoever installs the exporter.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns trace propagation on: from now on sampled spans leave their context on the events they
/// append. Called by the binary once it has installed a trace exporter.
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether [`enable`] was called.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// A W3C `traceparent`: the trace and span an event was appended in, and the trace flags.
/// `Copy` and fixed-size, so carrying one costs no allocation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    flags: u8,
}

impl TraceParent {
    /// The context of the current span, when tracing is on and the span is sampled.
    pub fn current() -> Option<Self> {
        if !enabled() {
            return None;
        }
        let cx = tracing::Span::current().context();
        let span = cx.span();
        Self::of(span.span_context())
    }

    fn of(cx: &SpanContext) -> Option<Self> {
        (cx.is_valid() && cx.is_sampled()).then(|| Self {
            trace_id: cx.trace_id().to_bytes(),
            span_id: cx.span_id().to_bytes(),
            flags: cx.trace_flags().to_u8(),
        })
    }

    /// Reads `00-<32 hex>-<16 hex>-<2 hex>`; anything else (another version, all-zero ids) is
    /// `None`, as the W3C recommendation asks of a receiver that cannot use it.
    pub fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != 55 || &b[..3] != b"00-" || b[35] != b'-' || b[52] != b'-' {
            return None;
        }
        let mut out = Self {
            trace_id: [0; 16],
            span_id: [0; 8],
            flags: 0,
        };
        hex_into(&b[3..35], &mut out.trace_id)?;
        hex_into(&b[36..52], &mut out.span_id)?;
        let mut flags = [0];
        hex_into(&b[53..55], &mut flags)?;
        out.flags = flags[0];
        out.context().is_valid().then_some(out)
    }

    /// The remote span this context names.
    pub fn context(&self) -> SpanContext {
        SpanContext::new(
            TraceId::from_bytes(self.trace_id),
            SpanId::from_bytes(self.span_id),
            TraceFlags::new(self.flags),
            true,
            TraceState::NONE,
        )
    }

    /// Makes `span` a child of this context. `span` must be new: a parent is only taken before
    /// the span starts.
    pub fn adopt(&self, span: &tracing::Span) {
        let parent = opentelemetry::Context::new().with_remote_span_context(self.context());
        // Fails only without an OpenTelemetry layer, when there is nothing to parent.
        let _ = span.set_parent(parent);
    }
}

fn hex_into(hex: &[u8], out: &mut [u8]) -> Option<()> {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(())
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("00-")?;
        for b in self.trace_id {
            write!(f, "{b:02x}")?;
        }
        f.write_str("-")?;
        for b in self.span_id {
            write!(f, "{b:02x}")?;
        }
        write!(f, "-{:02x}", self.flags)
    }
}

impl fmt::Debug for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Runs `deliver` (the hand-over of one event to this process's hub) inside a `fanout` span
/// that joins the trace of the event's publish, when the event carries one; an untraced event
/// is delivered with no span at all. One span per event and process, never per subscriber.
pub(crate) fn fanout<R>(
    key: &ChannelKey,
    cursor: Cursor,
    trace: Option<TraceParent>,
    deliver: impl FnOnce() -> R,
) -> R {
    let Some(parent) = trace else {
        return deliver();
    };
    let span = tracing::info_span!(
        "fanout",
        tenant = %key.tenant,
        channel = %key.channel,
        cursor = %cursor,
    );
    parent.adopt(&span);
    span.in_scope(deliver)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_round_trip_and_refuse_what_is_not_one() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let tp = TraceParent::parse(text).unwrap();
        assert_eq!(tp.to_string(), text);
        assert!(tp.context().is_sampled());
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn nothing_is_carried_while_tracing_is_off() {
        assert!(!enabled());
        let span = tracing::info_span!("publish");
        let _in = span.enter();
        assert_eq!(TraceParent::current(), None);
    }
}
