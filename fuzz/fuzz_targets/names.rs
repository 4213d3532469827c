//! Name parsing against API.md §2's rules, written out here independently of the parsers.
#![no_main]

use herald_core::{parse_channel_pattern, ChannelName, EventType, TenantSlug};
use libfuzzer_sys::fuzz_target;

fn slug_rule(s: &str) -> bool {
    // ^[a-z0-9](?:[a-z0-9-]{1,38})[a-z0-9]$
    let b = s.as_bytes();
    let end = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    (3..=40).contains(&b.len())
        && end(&b[0])
        && end(&b[b.len() - 1])
        && b.iter().all(|c| end(c) || *c == b'-')
}

fn channel_rule(s: &str) -> bool {
    // ^[A-Za-z0-9._:@-]{1,128}$
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"._:@-".contains(&c))
}

fn type_rule(s: &str) -> bool {
    // ^[A-Za-z0-9._:-]{1,64}$, and `herald.` is reserved
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"._:-".contains(&c))
        && !s.starts_with("herald.")
}

fuzz_target!(|s: &str| {
    assert_eq!(TenantSlug::parse(s).is_ok(), slug_rule(s), "slug {s:?}");
    assert_eq!(
        ChannelName::parse(s).is_ok(),
        channel_rule(s),
        "channel {s:?}"
    );
    assert_eq!(EventType::parse(s).is_ok(), type_rule(s), "type {s:?}");
    if let Ok(c) = ChannelName::parse(s) {
        assert_eq!(c.as_str(), s);
        assert!(c.matches(s), "a name matches itself as a pattern");
    }
    // A pattern is a name, or a name's prefix followed by one `*`.
    let pattern_rule = match s.strip_suffix('*') {
        Some("") => true,
        Some(prefix) => channel_rule(prefix),
        None => channel_rule(s),
    };
    assert_eq!(
        parse_channel_pattern(s).is_ok(),
        pattern_rule,
        "pattern {s:?}"
    );
});
