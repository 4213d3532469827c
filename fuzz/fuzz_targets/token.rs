//! Subscriber-token verification. Two halves: any string as a token is refused without a
//! panic unless it really is one of ours; and claims of any shape, signed with the tenant's
//! secret, verify exactly when the contract says they should.
#![no_main]

use herald_core::parse_channel_pattern;
use herald_core::token::{signing_kid, verify, Claims, LEEWAY_SECS};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8] = b"hsk_fuzzing-secret";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

fuzz_target!(|input: (&str, &[u8], u32)| {
    let (raw, claims_json, exp_offset) = input;
    // Anything as a token: no panic, and what passes was signed with the secret for acme.
    if let Ok(claims) = verify(raw, "acme", SECRET) {
        assert_eq!(claims.tenant, "acme");
        assert!(signing_kid(raw).is_ok());
    }
    // Claims of any shape, signed as a tenant's server would sign them.
    let Ok(mut claims) = serde_json::from_slice::<Claims>(claims_json) else {
        return;
    };
    // Half the time in the future, half in the past.
    let offset = u64::from(exp_offset >> 1);
    claims.exp = if exp_offset & 1 == 0 {
        now() + 60 + offset
    } else {
        now().saturating_sub(LEEWAY_SECS + 60 + offset)
    };
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k1".into());
    let token = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(SECRET))
        .expect("claims serialise");
    let valid = claims.tenant == "acme"
        && exp_offset & 1 == 0
        && claims
            .channels
            .iter()
            .all(|p| parse_channel_pattern(p).is_ok())
        && token.len() <= herald_core::token::MAX_TOKEN_LEN;
    match verify(&token, "acme", SECRET) {
        Ok(got) => {
            assert!(valid, "accepted {claims:?}");
            assert_eq!(got, claims);
        }
        Err(e) => assert!(!valid, "refused {claims:?}: {e}"),
    }
    // The same token with another secret is never accepted.
    assert!(verify(&token, "acme", b"another secret").is_err());
});
