//! Signing secrets at rest: sealed with XChaCha20-Poly1305 under the key-encryption key of
//! `--secrets-key`, so that a dump of the database (a backup, a replica, a read-only SQL
//! injection) forges no subscriber token.
//!
//! A sealed secret is stored as `enc:v1:` + base64url(24-byte random nonce ‖ ciphertext ‖ tag).
//! The associated data binds it to its row (tenant id and kid): a sealed secret copied into
//! another tenant's row does not open. Without a key, secrets are stored and read as they are;
//! with one, plaintext rows left from before are sealed at start-up
//! ([`crate::Store::seal_plaintext_signing_secrets`]) and still read until then.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::{StoreError, TenantId};

/// What a sealed secret starts with.
pub const SEALED_PREFIX: &str = "enc:v1:";
const NONCE_LEN: usize = 24;

/// The key-encryption key. Its `Debug` never shows it.
#[derive(Clone)]
pub struct SecretsKey(XChaCha20Poly1305);

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretsKey(..)")
    }
}

impl SecretsKey {
    /// The key of `--secrets-key`: 32 bytes.
    pub fn new(bytes: &[u8; 32]) -> Self {
        Self(XChaCha20Poly1305::new(bytes.into()))
    }

    /// Seals `secret`, the one of signing key `kid` of `tenant`.
    pub fn seal(&self, tenant: TenantId, kid: &str, secret: &str) -> String {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = aad(tenant, kid);
        let sealed = self
            .0
            .encrypt(
                &nonce,
                Payload {
                    msg: secret.as_bytes(),
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 seals any message that fits in memory");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{SEALED_PREFIX}{}", URL_SAFE_NO_PAD.encode(out))
    }

    /// Opens a sealed secret of signing key `kid` of `tenant`.
    pub fn open(&self, tenant: TenantId, kid: &str, stored: &str) -> Result<String, StoreError> {
        let bad = || {
            StoreError::Internal(
                format!(
                    "signing key {kid} of tenant {tenant} does not open with --secrets-key \
                 (another key, or a damaged row)"
                )
                .into(),
            )
        };
        let body = stored.strip_prefix(SEALED_PREFIX).ok_or_else(bad)?;
        let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| bad())?;
        if bytes.len() < NONCE_LEN {
            return Err(bad());
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let aad = aad(tenant, kid);
        let plain = self
            .0
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| bad())?;
        String::from_utf8(plain).map_err(|_| bad())
    }
}

fn aad(tenant: TenantId, kid: &str) -> Vec<u8> {
    format!("herald signing key\0{}\0{kid}", tenant.0).into_bytes()
}

/// The secret as stored for `tenant`'s key `kid`: sealed when there is a key.
pub(crate) fn store_form(
    key: Option<&SecretsKey>,
    tenant: TenantId,
    kid: &str,
    secret: &str,
) -> String {
    match key {
        Some(key) => key.seal(tenant, kid, secret),
        None => secret.to_owned(),
    }
}

/// The secret of a stored row: opened when sealed, which needs the key.
pub(crate) fn read_form(
    key: Option<&SecretsKey>,
    tenant: TenantId,
    kid: &str,
    stored: &str,
) -> Result<String, StoreError> {
    match (stored.starts_with(SEALED_PREFIX), key) {
        (false, _) => Ok(stored.to_owned()),
        (true, Some(key)) => key.open(tenant, kid, stored),
        (true, None) => Err(StoreError::Internal(
            "signing secrets are encrypted, but no --secrets-key is set".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_only_in_its_own_row_and_with_its_own_key() {
        let key = SecretsKey::new(&[7; 32]);
        let sealed = key.seal(TenantId(1), "kid1", "hs_secret");
        assert!(sealed.starts_with(SEALED_PREFIX));
        assert!(!sealed.contains("hs_secret"));
        assert_ne!(
            sealed,
            key.seal(TenantId(1), "kid1", "hs_secret"),
            "a fresh nonce"
        );
        assert_eq!(key.open(TenantId(1), "kid1", &sealed).unwrap(), "hs_secret");
        assert!(
            key.open(TenantId(2), "kid1", &sealed).is_err(),
            "another tenant"
        );
        assert!(
            key.open(TenantId(1), "kid2", &sealed).is_err(),
            "another kid"
        );
        assert!(SecretsKey::new(&[8; 32])
            .open(TenantId(1), "kid1", &sealed)
            .is_err());
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert!(key
            .open(TenantId(1), "kid1", std::str::from_utf8(&tampered).unwrap())
            .is_err());
        assert!(read_form(None, TenantId(1), "kid1", &sealed).is_err());
        assert_eq!(
            read_form(Some(&key), TenantId(1), "kid1", "hs_plain").unwrap(),
            "hs_plain"
        );
        assert!(!format!("{key:?}").contains('7'));
    }
}
