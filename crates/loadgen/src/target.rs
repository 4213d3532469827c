//! The servers under test, as the generator speaks to them: where a channel's stream is, and
//! how an event is published. Every target gets the same events (a sequence number and a
//! send timestamp at the front of a fixed-size text payload), so their figures compare.

use std::net::SocketAddr;

use anyhow::{bail, Result};

#[derive(Debug, Clone)]
pub enum Kind {
    /// `GET /v1/{tenant}/channels/{c}/events`, `POST` the same path with a Bearer key.
    Herald { tenant: String, key: String },
    /// Nchan: `GET /sub/{c}` as EventSource, `POST /pub/{c}`.
    Nchan,
}

#[derive(Debug, Clone)]
pub struct Target {
    pub server: SocketAddr,
    pub kind: Kind,
}

impl Target {
    pub fn subscribe_request(&self, channel: &str, last_event_id: Option<&str>) -> Vec<u8> {
        let path = match &self.kind {
            Kind::Herald { tenant, .. } => format!("/v1/{tenant}/channels/{channel}/events"),
            Kind::Nchan => format!("/sub/{channel}"),
        };
        let resume = last_event_id
            .map(|id| format!("Last-Event-ID: {id}\r\n"))
            .unwrap_or_default();
        format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n{resume}\r\n",
            self.server
        )
        .into_bytes()
    }

    /// Events one request may publish: 1 where the server has no batch endpoint (Nchan).
    pub fn max_batch(&self) -> usize {
        match self.kind {
            Kind::Herald { .. } => HERALD_MAX_BATCH,
            Kind::Nchan => 1,
        }
    }

    /// Appends one batch publish of `events` (channel, payload) to `out`; Herald only (see
    /// [`Target::max_batch`]).
    pub fn batch_request(&self, out: &mut Vec<u8>, events: &[(&str, String)]) {
        use std::io::Write;
        let Kind::Herald { tenant, key } = &self.kind else {
            unreachable!("a batch for a target without a batch endpoint");
        };
        // Payloads and channel names are plain ASCII without quotes or backslashes.
        let mut body = Vec::with_capacity(events.len() * 300);
        body.extend_from_slice(b"{\"events\":[");
        for (n, (channel, payload)) in events.iter().enumerate() {
            if n > 0 {
                body.push(b',');
            }
            let _ = write!(body, "{{\"channel\":\"{channel}\",\"data\":\"{payload}\"}}");
        }
        body.extend_from_slice(b"]}");
        let _ = write!(
            out,
            "POST /v1/{tenant}/events HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.server,
            body.len()
        );
        out.extend_from_slice(&body);
    }

    /// Appends one publish request to `out`.
    pub fn publish_request(&self, out: &mut Vec<u8>, channel: &str, payload: &str) {
        use std::io::Write;
        match &self.kind {
            Kind::Herald { tenant, key } => {
                // The payload is plain ASCII without quotes or backslashes: no escaping needed.
                let body_len = payload.len() + r#"{"data":""}"#.len();
                let _ = write!(
                    out,
                    "POST /v1/{tenant}/channels/{channel}/events HTTP/1.1\r\nHost: {}\r\n\
                     Authorization: Bearer {key}\r\nContent-Type: application/json\r\n\
                     Content-Length: {body_len}\r\n\r\n{{\"data\":\"{payload}\"}}",
                    self.server
                );
            }
            Kind::Nchan => {
                let _ = write!(
                    out,
                    "POST /pub/{channel} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain\r\n\
                     Content-Length: {}\r\n\r\n{payload}",
                    self.server,
                    payload.len()
                );
            }
        }
    }
}

/// Events in one batch publish, at most (API.md: `POST /v1/{tenant}/events`, at most 100).
const HERALD_MAX_BATCH: usize = 100;

/// The data of event `seq` sent at `micros`: `SSSSSSSSSS.TTTTTTTTTTTTT.xxxx…`, `size` bytes.
pub fn payload(seq: u64, micros: u64, size: usize) -> String {
    let mut s = format!("{seq:010}.{micros:013}.");
    while s.len() < size {
        s.push('x');
    }
    s
}

/// The sequence number and timestamp at the front of a payload.
pub fn parse_payload(data: &[u8]) -> Option<(u64, u64)> {
    if data.len() < 25 || data[10] != b'.' || data[24] != b'.' {
        return None;
    }
    Some((digits(&data[..10])?, digits(&data[11..24])?))
}

fn digits(b: &[u8]) -> Option<u64> {
    b.iter().try_fold(0u64, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + u64::from(c - b'0'))
    })
}

pub fn parse_kind(name: &str, tenant: Option<String>, key: Option<String>) -> Result<Kind> {
    Ok(match name {
        "herald" => match (tenant, key) {
            (Some(tenant), Some(key)) => Kind::Herald { tenant, key },
            _ => bail!("--target herald needs --tenant and --key"),
        },
        "nchan" => Kind::Nchan,
        other => bail!("unknown target {other:?} (herald or nchan)"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip() {
        let p = payload(42, 1_234_567, 256);
        assert_eq!(p.len(), 256);
        assert_eq!(parse_payload(p.as_bytes()), Some((42, 1_234_567)));
        assert_eq!(parse_payload(b"{\"channel\":\"c\"}"), None);
    }
}
