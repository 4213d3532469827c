//! Resume cursors: the opaque `id:` of every event on a one-channel stream.
//!
//! A cursor names a position in one channel's history *and* the life of that history it belongs
//! to. A history has a new life whenever it is lost and begun again: the in-process broker
//! restarted, or Redis lost its data. Each life draws a random [`Epoch`], so a cursor from an
//! earlier life is recognised as such and never mistaken for a position in the current one.
//!
//! Positions are `(milliseconds, sequence)` pairs ordered lexicographically, the shape of a
//! Redis stream entry id; the in-process broker produces the same shape so that both brokers
//! share one cursor format.
//!
//! Text form: `<epoch>-<ms>-<seq>`, each part lowercase base 36, e.g. `1fz3kq-lx9a2bq8-0`
//! (about 17 characters). It contains only `[0-9a-z-]`, so it is safe in URLs, headers and logs.

use std::fmt;

use rand::Rng;

/// The random id of one life of a history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Epoch(pub u32);

impl Epoch {
    /// A fresh epoch; never 0, which multi-channel cursors use to mean "no position yet".
    pub fn random() -> Self {
        Self(rand::thread_rng().gen_range(1..=u32::MAX))
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_base36(f, u64::from(self.0))
    }
}

/// A position in one channel's history, in the order events were appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Position {
    pub ms: u64,
    pub seq: u64,
}

impl Position {
    pub const ZERO: Position = Position { ms: 0, seq: 0 };

    pub const fn new(ms: u64, seq: u64) -> Self {
        Self { ms, seq }
    }

    /// Parses a Redis stream entry id (`<ms>-<seq>`, decimal).
    pub fn from_stream_id(id: &str) -> Option<Self> {
        let (ms, seq) = id.split_once('-')?;
        Some(Self {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

impl fmt::Display for Position {
    /// The Redis stream entry id form, `<ms>-<seq>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// A position together with the life of the history it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cursor {
    pub epoch: Epoch,
    pub position: Position,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unreadable cursor")]
pub struct CursorError;

impl Cursor {
    /// Longest text a cursor can have; longer input is refused before it is looked at.
    pub const MAX_LEN: usize = 7 + 1 + 13 + 1 + 13;

    pub const fn new(epoch: Epoch, position: Position) -> Self {
        Self { epoch, position }
    }

    pub fn parse(s: &str) -> Result<Self, CursorError> {
        if s.len() > Self::MAX_LEN {
            return Err(CursorError);
        }
        let mut parts = s.split('-');
        let (Some(epoch), Some(ms), Some(seq), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(CursorError);
        };
        let epoch = u32::try_from(parse_base36(epoch)?).map_err(|_| CursorError)?;
        Ok(Self {
            epoch: Epoch(epoch),
            position: Position::new(parse_base36(ms)?, parse_base36(seq)?),
        })
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-", self.epoch)?;
        write_base36(f, self.position.ms)?;
        f.write_str("-")?;
        write_base36(f, self.position.seq)
    }
}

fn write_base36(f: &mut fmt::Formatter<'_>, mut n: u64) -> fmt::Result {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut buf = [0u8; 13];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = DIGITS[(n % 36) as usize];
        n /= 36;
        if n == 0 {
            break;
        }
    }
    // The buffer holds only ASCII digits and letters.
    f.write_str(std::str::from_utf8(&buf[i..]).map_err(|_| fmt::Error)?)
}

/// Strict base 36: lowercase only, no sign, no leading zeros, no overflow — so every value has
/// exactly one text form and two different strings never name the same cursor.
fn parse_base36(s: &str) -> Result<u64, CursorError> {
    if s.is_empty() || s.len() > 13 || (s.len() > 1 && s.starts_with('0')) {
        return Err(CursorError);
    }
    s.bytes().try_fold(0u64, |acc, c| {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'z' => c - b'a' + 10,
            _ => return Err(CursorError),
        };
        acc.checked_mul(36)
            .and_then(|v| v.checked_add(u64::from(d)))
            .ok_or(CursorError)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cursors_are_short_and_readable() {
        let c = Cursor::new(Epoch(u32::MAX), Position::new(1_732_190_000_123, 7));
        let s = c.to_string();
        assert_eq!(s, "1z141z3-m3r97a4b-7");
        assert_eq!(Cursor::parse(&s), Ok(c));
    }

    #[test]
    fn garbage_is_unreadable() {
        for bad in [
            "",
            "-",
            "a-b",
            "a-b-c-d",
            "A-1-1",
            "1-1-",
            "01-1-1",
            "1- 1-1",
            "1-1-+1",
            "zzzzzzzzzzzzzz-1-1",
            "zzzzzzz-1-1",
            "1-3w5e11264sgsg-0",
            "😀-1-1",
        ] {
            assert_eq!(Cursor::parse(bad), Err(CursorError), "{bad:?}");
        }
    }

    #[test]
    fn positions_order_like_stream_ids() {
        assert!(Position::new(1, 9) < Position::new(2, 0));
        assert!(Position::new(2, 0) < Position::new(2, 1));
        assert_eq!(
            Position::from_stream_id("1700000000000-3"),
            Some(Position::new(1_700_000_000_000, 3))
        );
        assert_eq!(Position::from_stream_id("17-x"), None);
        assert_eq!(Position::new(5, 6).to_string(), "5-6");
    }

    proptest! {
        #[test]
        fn every_cursor_round_trips(epoch: u32, ms: u64, seq: u64) {
            let c = Cursor::new(Epoch(epoch), Position::new(ms, seq));
            let s = c.to_string();
            prop_assert!(s.len() <= Cursor::MAX_LEN);
            prop_assert_eq!(Cursor::parse(&s), Ok(c));
        }

        #[test]
        fn parsing_never_panics(s in "\\PC{0,40}") {
            let _ = Cursor::parse(&s);
        }
    }
}
