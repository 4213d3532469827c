//! Names that appear in URLs and on the wire. Each is a newtype whose `parse` is the only way in,
//! so a handler that holds a `ChannelName` never has to ask whether it was checked.

use std::fmt;
use std::sync::Arc;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// A name that failed its rule; `what` says which kind of name it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what}: {reason}")]
pub struct InvalidName {
    pub what: &'static str,
    pub reason: &'static str,
}

impl InvalidName {
    fn new(what: &'static str, reason: &'static str) -> Self {
        Self { what, reason }
    }
}

macro_rules! string_newtype {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        ///
        /// Shared, not owned: a name is copied into every stream, lane and key that uses it,
        /// and a clone is a reference count, not an allocation.
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_inner(self) -> String {
                self.0.as_ref().to_owned()
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // `pad`, not `write_str`, so that width and alignment work as for a `str`.
                f.pad(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidName;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_newtype!(
    /// A tenant's slug: `^[a-z0-9](?:[a-z0-9-]{1,38})[a-z0-9]$`, globally unique, part of every URL.
    TenantSlug
);

impl TenantSlug {
    pub fn parse(s: &str) -> Result<Self, InvalidName> {
        const WHAT: &str = "tenant slug";
        let b = s.as_bytes();
        if !(3..=40).contains(&b.len()) {
            return Err(InvalidName::new(WHAT, "must be 3 to 40 characters"));
        }
        let inner_ok = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        if !b.iter().all(|c| inner_ok(c) || *c == b'-') {
            return Err(InvalidName::new(
                WHAT,
                "only lowercase letters, digits and '-' are allowed",
            ));
        }
        if !inner_ok(&b[0]) || !inner_ok(&b[b.len() - 1]) {
            return Err(InvalidName::new(
                WHAT,
                "must start and end with a letter or digit",
            ));
        }
        Ok(Self(s.into()))
    }
}

string_newtype!(
    /// A channel name: `^[A-Za-z0-9._:@-]{1,128}$`.
    ChannelName
);

impl ChannelName {
    pub const MAX_LEN: usize = 128;

    /// The user of a personal channel `<name>@<user>` (split at the first `@`): such a channel
    /// is private by construction and only a token whose `sub` is that user may subscribe.
    pub fn personal_user(&self) -> Option<&str> {
        match self.0.split_once('@') {
            Some((name, user)) if !name.is_empty() && !user.is_empty() => Some(user),
            _ => None,
        }
    }

    /// Whether a channel pattern grants this channel: the same name, or a prefix followed by
    /// `*` as the pattern's last character (`team:7:*`).
    pub fn matches(&self, pattern: &str) -> bool {
        match pattern.strip_suffix('*') {
            Some(prefix) => self.0.starts_with(prefix),
            None => &*self.0 == pattern,
        }
    }

    pub fn parse(s: &str) -> Result<Self, InvalidName> {
        const WHAT: &str = "channel name";
        if s.is_empty() || s.len() > Self::MAX_LEN {
            return Err(InvalidName::new(WHAT, "must be 1 to 128 characters"));
        }
        if !s
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'@' | b'-'))
        {
            return Err(InvalidName::new(
                WHAT,
                "only letters, digits and . _ : @ - are allowed",
            ));
        }
        Ok(Self(s.into()))
    }
}

string_newtype!(
    /// An event type: `^[A-Za-z0-9._:-]{1,64}$`. `message` is the default and is not written on
    /// the wire; types starting with `herald.` are reserved for the platform's own events.
    EventType
);

impl EventType {
    pub const DEFAULT: &'static str = "message";
    const RESERVED_PREFIX: &'static str = "herald.";

    /// Parses a type a publisher asked for; the platform's reserved types are refused.
    pub fn parse(s: &str) -> Result<Self, InvalidName> {
        let t = Self::parse_any(s)?;
        if s.starts_with(Self::RESERVED_PREFIX) {
            return Err(InvalidName::new(
                "event type",
                "types starting with 'herald.' are reserved",
            ));
        }
        Ok(t)
    }

    /// Parses any well-formed type, reserved ones included (the platform's own events, and
    /// events read back from a replay store).
    pub fn parse_any(s: &str) -> Result<Self, InvalidName> {
        const WHAT: &str = "event type";
        if s.is_empty() || s.len() > 64 {
            return Err(InvalidName::new(WHAT, "must be 1 to 64 characters"));
        }
        if !s
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-'))
        {
            return Err(InvalidName::new(
                WHAT,
                "only letters, digits and . _ : - are allowed",
            ));
        }
        Ok(Self(s.into()))
    }

    pub fn message() -> Self {
        Self(Self::DEFAULT.into())
    }

    pub fn is_message(&self) -> bool {
        &*self.0 == Self::DEFAULT
    }
}

impl Default for EventType {
    fn default() -> Self {
        Self::message()
    }
}

string_newtype!(
    /// The public id of an API key: the 8 characters after `hk_`. Safe to log and to show.
    KeyId
);

impl KeyId {
    pub fn parse(s: &str) -> Result<Self, InvalidName> {
        if s.len() == ApiKeySecret::ID_LEN && s.bytes().all(|c| c.is_ascii_alphanumeric()) {
            Ok(Self(s.into()))
        } else {
            Err(InvalidName::new("key id", "must be 8 letters or digits"))
        }
    }
}

/// A whole API key, `hk_` + 40 base62 characters. Its `Debug` never shows the secret part.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeySecret(String);

impl ApiKeySecret {
    pub const PREFIX: &'static str = "hk_";
    pub const BODY_LEN: usize = 40;
    pub const ID_LEN: usize = 8;

    /// A fresh key from the operating system's CSPRNG (~238 bits of entropy).
    pub fn generate() -> Self {
        const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let mut rng = rand::rngs::OsRng;
        let body: String = (0..Self::BODY_LEN)
            .map(|_| BASE62[rng.gen_range(0..BASE62.len())] as char)
            .collect();
        Self(format!("{}{body}", Self::PREFIX))
    }

    pub fn parse(s: &str) -> Result<Self, InvalidName> {
        let body = s
            .strip_prefix(Self::PREFIX)
            .ok_or(InvalidName::new("API key", "must start with hk_"))?;
        if body.len() != Self::BODY_LEN || !body.bytes().all(|c| c.is_ascii_alphanumeric()) {
            return Err(InvalidName::new(
                "API key",
                "must be hk_ and 40 letters or digits",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// The public key id: the first 8 characters after `hk_`.
    pub fn key_id(&self) -> KeyId {
        let start = Self::PREFIX.len();
        KeyId(self.0[start..start + Self::ID_LEN].into())
    }

    /// The whole key, for hashing or for showing once at creation.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeySecret({}{}…)", Self::PREFIX, self.key_id())
    }
}

/// A channel pattern as tokens and API keys carry it: a channel name, or a prefix of one
/// followed by `*` as the last character (`team:7:*`, or `*` for every channel).
pub fn parse_channel_pattern(p: &str) -> Result<String, InvalidName> {
    let prefix = p.strip_suffix('*').unwrap_or(p);
    let valid = !p.is_empty()
        && !prefix.contains('*')
        && (prefix.is_empty() || ChannelName::parse(prefix).is_ok());
    if valid {
        Ok(p.to_owned())
    } else {
        Err(InvalidName::new(
            "channel pattern",
            "a channel name, optionally ending in * (only as the last character)",
        ))
    }
}

/// An account's email address: trimmed, lowercased, at most 254 bytes, one `@` with text on
/// both sides and no whitespace. Deliverability is not this type's business.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn parse(s: &str) -> Result<Self, InvalidName> {
        let s = s.trim().to_lowercase();
        let valid = s.len() <= 254
            && !s.chars().any(|c| c.is_whitespace() || c.is_control())
            && matches!(s.split_once('@'), Some((local, domain))
                if !local.is_empty() && !domain.is_empty() && !domain.contains('@'));
        if valid {
            Ok(Self(s))
        } else {
            Err(InvalidName::new(
                "email",
                "must be an address like name@example.com",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A password as typed: 10 to 1024 characters. Its `Debug` never shows it.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub const MIN_CHARS: usize = 10;
    pub const MAX_BYTES: usize = 1024;

    pub fn parse(s: &str) -> Result<Self, InvalidName> {
        if s.chars().count() < Self::MIN_CHARS {
            return Err(InvalidName::new(
                "password",
                "must be at least 10 characters",
            ));
        }
        if s.len() > Self::MAX_BYTES {
            return Err(InvalidName::new("password", "must be at most 1024 bytes"));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(…)")
    }
}

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Publish,
    Subscribe,
    Admin,
}

impl Scope {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Publish => "publish",
            Self::Subscribe => "subscribe",
            Self::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Result<Self, InvalidName> {
        match s {
            "publish" => Ok(Self::Publish),
            "subscribe" => Ok(Self::Subscribe),
            "admin" => Ok(Self::Admin),
            _ => Err(InvalidName::new(
                "scope",
                "must be publish, subscribe or admin",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_slugs_follow_the_rule() {
        for ok in ["abc", "a-b", "acme-2024", &"a".repeat(40)] {
            assert!(TenantSlug::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "ab",
            "-ab",
            "ab-",
            "Abc",
            "a_b",
            "a.b",
            "ab c",
            &"a".repeat(41),
            "é12",
        ] {
            assert!(TenantSlug::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn channel_names_follow_the_rule() {
        for ok in [
            "a",
            "orders",
            "user:42",
            "team.7_x-y",
            "notifications@42",
            &"c".repeat(128),
        ] {
            assert!(ChannelName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a b",
            "a/b",
            "a*",
            "ü",
            "a\nb",
            &"c".repeat(129),
            "a%20",
        ] {
            assert!(ChannelName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn channel_patterns_match_exactly_or_by_trailing_wildcard() {
        let c = ChannelName::parse("team:7:chat").unwrap();
        assert!(c.matches("team:7:chat"));
        assert!(c.matches("team:7:*"));
        assert!(c.matches("*"));
        assert!(!c.matches("team:7"));
        assert!(!c.matches("team:8:*"));
        assert!(!c.matches("team:*:chat"));
        let personal = ChannelName::parse("notifications@ann@example.com").unwrap();
        assert_eq!(personal.personal_user(), Some("ann@example.com"));
        assert_eq!(ChannelName::parse("a@").unwrap().personal_user(), None);
        assert_eq!(ChannelName::parse("@a").unwrap().personal_user(), None);
        assert_eq!(c.personal_user(), None);
    }

    #[test]
    fn event_types_follow_the_rule_and_reserve_herald() {
        assert!(EventType::parse("order.created").is_ok());
        assert!(EventType::parse("a:b-c_d").is_ok());
        assert!(EventType::parse("").is_err());
        assert!(EventType::parse("a@b").is_err());
        assert!(EventType::parse(&"t".repeat(65)).is_err());
        assert!(EventType::parse("herald.gap").is_err());
        assert!(EventType::parse_any("herald.gap").is_ok());
        assert!(EventType::default().is_message());
    }

    #[test]
    fn emails_and_passwords() {
        assert_eq!(
            Email::parse(" Ann@Example.COM ").unwrap().as_str(),
            "ann@example.com"
        );
        for bad in ["", "ann", "@x", "ann@", "a b@x", "a@b@c"] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
        assert!(Password::parse("123456789").is_err());
        assert!(Password::parse("1234567890").is_ok());
        assert!(Password::parse(&"p".repeat(1025)).is_err());
        assert_eq!(
            format!("{:?}", Password::parse("secret-secret").unwrap()),
            "Password(…)"
        );
        assert_eq!(Scope::parse("publish"), Ok(Scope::Publish));
        assert!(Scope::parse("root").is_err());
    }

    #[test]
    fn api_keys_carry_their_public_id() {
        let key = ApiKeySecret::generate();
        assert_eq!(key.expose().len(), 43);
        let parsed = ApiKeySecret::parse(key.expose()).unwrap();
        assert_eq!(parsed.key_id().as_str(), &key.expose()[3..11]);
        assert!(!format!("{key:?}").contains(&key.expose()[11..]));
        assert!(ApiKeySecret::parse("hk_short").is_err());
        assert!(ApiKeySecret::parse(&format!("xx_{}", "a".repeat(40))).is_err());
        assert!(ApiKeySecret::parse(&format!("hk_{}-", "a".repeat(39))).is_err());
        assert!(KeyId::parse("abcd1234").is_ok());
        assert!(KeyId::parse("abcd123").is_err());
    }
}
