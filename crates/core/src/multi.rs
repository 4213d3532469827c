//! Cursors of multi-channel streams: one position per channel of the connection.
//!
//! A stream over several channels (`GET /v1/{tenant}/events?channel=a&channel=b`) cannot use a
//! one-channel [`Cursor`] as its `id:`: after a reconnect it must resume every channel at once.
//! Its id encodes, for every channel of the connection, where that channel's history stands for
//! this client. Channels are named by a 32-bit FNV-1a hash of their name (so a cursor names its
//! channels without spelling them out, and a reconnect with other channels can still use the
//! parts that apply); a channel that had no event yet in its history is marked *empty* — on
//! resume it is read from its oldest retained event, since all of those came after.
//!
//! Binary form, then base64url without padding, prefixed with `m`:
//!
//! ```text
//! version (1 byte, = 1) · count (varint) · count × entry, sorted by hash
//! entry = hash (u32 BE) · epoch (u32 BE, 0 = empty) · [if epoch ≠ 0: ms delta (zigzag varint,
//!         from the previous non-empty entry's ms, the first from 0) · seq (varint)]
//! ```
//!
//! Three active channels take about 60 characters; the 16 of `channels_per_connection` at most
//! about 320. Epoch 0 is never drawn ([`Epoch::random`]), so it can mean *empty*.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::cursor::{Cursor, CursorError, Epoch, Position};
use crate::names::ChannelName;

/// Longest text accepted: far above what 16 channels need, far below what could hurt.
pub const MAX_LEN: usize = 1024;
/// Most entries a cursor may carry.
const MAX_ENTRIES: usize = 64;
const VERSION: u8 = 1;

/// The stable 32-bit name of a channel inside multi-channel cursors (FNV-1a). Never change it:
/// cursors in clients' hands depend on it.
pub fn channel_hash(channel: &ChannelName) -> u32 {
    channel.as_str().bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Where each channel of a connection stands.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MultiCursor {
    /// `(channel hash, position)`, sorted by hash, hashes unique. `None`: the channel had no
    /// event in its history yet.
    entries: Vec<(u32, Option<Cursor>)>,
}

impl MultiCursor {
    /// Records a channel's position, replacing what the cursor held for it.
    pub fn set(&mut self, hash: u32, cursor: Option<Cursor>) {
        match self.entries.binary_search_by_key(&hash, |(h, _)| *h) {
            Ok(i) => self.entries[i].1 = cursor,
            Err(i) => self.entries.insert(i, (hash, cursor)),
        }
    }

    /// What the cursor says of a channel: `None` if it does not name it, `Some(None)` if the
    /// channel was empty, `Some(Some(cursor))` for a position.
    pub fn get(&self, hash: u32) -> Option<Option<Cursor>> {
        self.entries
            .binary_search_by_key(&hash, |(h, _)| *h)
            .ok()
            .map(|i| self.entries[i].1)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn encode(&self) -> String {
        let mut buf = Vec::with_capacity(2 + self.entries.len() * 16);
        buf.push(VERSION);
        put_varint(&mut buf, self.entries.len() as u64);
        let mut prev_ms = 0u64;
        for (hash, cursor) in &self.entries {
            buf.extend_from_slice(&hash.to_be_bytes());
            match cursor {
                None => buf.extend_from_slice(&0u32.to_be_bytes()),
                Some(c) => {
                    buf.extend_from_slice(&c.epoch.0.to_be_bytes());
                    let delta = c.position.ms.wrapping_sub(prev_ms) as i64;
                    put_varint(&mut buf, zigzag(delta));
                    put_varint(&mut buf, c.position.seq);
                    prev_ms = c.position.ms;
                }
            }
        }
        let mut s = String::with_capacity(1 + buf.len() * 4 / 3 + 2);
        s.push('m');
        URL_SAFE_NO_PAD.encode_string(&buf, &mut s);
        s
    }

    pub fn parse(s: &str) -> Result<Self, CursorError> {
        if s.len() > MAX_LEN {
            return Err(CursorError);
        }
        let body = s.strip_prefix('m').ok_or(CursorError)?;
        let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| CursorError)?;
        let mut r = Reader(&bytes);
        if r.byte()? != VERSION {
            return Err(CursorError);
        }
        let count = usize::try_from(r.varint()?).map_err(|_| CursorError)?;
        if count > MAX_ENTRIES {
            return Err(CursorError);
        }
        let mut entries = Vec::with_capacity(count);
        let mut prev_ms = 0u64;
        for _ in 0..count {
            let hash = r.u32()?;
            if entries.last().is_some_and(|(h, _)| *h >= hash) {
                return Err(CursorError); // unsorted or duplicate: not a form we write
            }
            let epoch = r.u32()?;
            let cursor = if epoch == 0 {
                None
            } else {
                let ms = prev_ms.wrapping_add(unzigzag(r.varint()?) as u64);
                let seq = r.varint()?;
                prev_ms = ms;
                Some(Cursor::new(Epoch(epoch), Position::new(ms, seq)))
            };
            entries.push((hash, cursor));
        }
        if !r.0.is_empty() {
            return Err(CursorError);
        }
        Ok(Self { entries })
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, CursorError> {
        let (&b, rest) = self.0.split_first().ok_or(CursorError)?;
        self.0 = rest;
        Ok(b)
    }

    fn u32(&mut self) -> Result<u32, CursorError> {
        if self.0.len() < 4 {
            return Err(CursorError);
        }
        let (head, rest) = self.0.split_at(4);
        self.0 = rest;
        Ok(u32::from_be_bytes([head[0], head[1], head[2], head[3]]))
    }

    fn varint(&mut self) -> Result<u64, CursorError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(CursorError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn c(epoch: u32, ms: u64, seq: u64) -> Option<Cursor> {
        Some(Cursor::new(Epoch(epoch), Position::new(ms, seq)))
    }

    #[test]
    fn three_channels_stay_short() {
        let mut m = MultiCursor::default();
        for (i, name) in ["orders", "user:42", "team:7:chat"].iter().enumerate() {
            let h = channel_hash(&ChannelName::parse(name).unwrap());
            m.set(
                h,
                c(
                    0x9abc_def0 + i as u32,
                    1_732_190_000_123 + i as u64 * 500,
                    2,
                ),
            );
        }
        let s = m.encode();
        assert!(s.len() <= 64, "{} chars: {s}", s.len());
        assert_eq!(MultiCursor::parse(&s), Ok(m));
    }

    #[test]
    fn sixteen_channels_fit_in_a_log_line() {
        let mut m = MultiCursor::default();
        for i in 0..16u32 {
            m.set(
                i.wrapping_mul(2_654_435_761),
                c(
                    u32::MAX - i,
                    1_700_000_000_000 + u64::from(i) * 86_400_000,
                    5,
                ),
            );
        }
        assert!(m.encode().len() <= 330, "{}", m.encode().len());
    }

    #[test]
    fn empty_channels_and_lookups() {
        let mut m = MultiCursor::default();
        m.set(7, None);
        m.set(3, c(1, 10, 0));
        m.set(3, c(1, 11, 0));
        assert_eq!(m.get(7), Some(None));
        assert_eq!(m.get(3), Some(c(1, 11, 0)));
        assert_eq!(m.get(4), None);
        assert_eq!(MultiCursor::parse(&m.encode()), Ok(m));
    }

    #[test]
    fn garbage_is_unreadable() {
        for bad in [
            "",
            "m",
            "x",
            "mAQ",
            "m!!!!",
            "1-2-3",
            &format!("m{}", "A".repeat(2000)),
        ] {
            assert_eq!(MultiCursor::parse(bad), Err(CursorError), "{bad:?}");
        }
    }

    #[test]
    fn hashes_are_stable() {
        // Cursors in clients' hands depend on these values never changing.
        assert_eq!(channel_hash(&ChannelName::parse("a").unwrap()), 0xe40c_292c);
        assert_eq!(
            channel_hash(&ChannelName::parse("orders").unwrap()),
            channel_hash(&ChannelName::parse("orders").unwrap())
        );
    }

    proptest! {
        #[test]
        fn every_cursor_round_trips(entries in proptest::collection::btree_map(any::<u32>(), proptest::option::of((1u32.., any::<u64>(), any::<u64>())), 0..20)) {
            let mut m = MultiCursor::default();
            for (h, e) in entries {
                m.set(h, e.map(|(ep, ms, seq)| Cursor::new(Epoch(ep), Position::new(ms, seq))));
            }
            prop_assert_eq!(MultiCursor::parse(&m.encode()), Ok(m));
        }

        #[test]
        fn parsing_never_panics(s in "m[A-Za-z0-9_-]{0,200}") {
            let _ = MultiCursor::parse(&s);
        }
    }
}
