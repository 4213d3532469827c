//! Herald's vocabulary, shared by every other crate: validated names, events, resume cursors,
//! Server-Sent Events framing and the stable error codes of the public API.
//!
//! Nothing here performs I/O, so every rule of the wire format can be tested in isolation.

pub mod cursor;
pub mod error;
pub mod event;
pub mod multi;
pub mod names;
pub mod problem;
pub mod publish;
pub mod sse;
pub mod token;

pub use cursor::{Cursor, CursorError, Epoch, Position};
pub use error::ErrorCode;
pub use event::{Event, EventData, InvalidData};
pub use multi::{channel_hash, MultiCursor};
pub use names::{
    parse_channel_pattern, ApiKeySecret, ChannelName, Email, EventType, InvalidName, KeyId,
    Password, Scope, TenantSlug,
};
pub use problem::Problem;
pub use token::{Claims, TokenError};
