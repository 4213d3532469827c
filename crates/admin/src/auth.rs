//! Who is asking: a session cookie or an admin API key, and the CSRF rule for cookies.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method};
use herald_core::{ErrorCode, KeyId, Scope, TenantSlug};
use herald_http::{api_key_secret, bearer, check_api_key, ApiError};
use herald_store::{Account, Membership, NewAuditEntry, Role, Tenant};

use crate::AdminState;

pub const COOKIE: &str = "herald_session";

/// Who is calling a tenant-scoped endpoint.
pub enum Who {
    /// A person, through their session.
    Account(Account),
    /// A script, through an API key with the `admin` scope, limited to the key's own tenant.
    AdminKey {
        /// The key's tenant.
        tenant: TenantSlug,
        /// The key's public id, for the audit log.
        key: KeyId,
    },
}

/// The caller of a tenant-scoped endpoint, and the address the request came from.
pub struct Caller {
    /// Who.
    pub who: Who,
    /// The client's IP address, when known.
    pub ip: Option<IpAddr>,
}

impl FromRequestParts<AdminState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AdminState) -> Result<Self, ApiError> {
        let ip = client_ip(parts);
        if let Some(token) = bearer(&parts.headers) {
            let secret = api_key_secret(token)?;
            let found = state.store.api_key_auth(&secret.key_id()).await?;
            let key = check_api_key(found, &secret, None, Scope::Admin)?;
            return Ok(Caller {
                who: Who::AdminKey {
                    tenant: key.tenant_slug,
                    key: key.key_id,
                },
                ip,
            });
        }
        let session = Session::from_request_parts(parts, state).await?;
        Ok(Caller {
            who: Who::Account(session.account),
            ip,
        })
    }
}

impl Caller {
    /// The tenant the caller addresses (its slug parsed by `TenantPath`), with the caller's
    /// role in it. Unknown tenants and tenants the caller does not belong to are both 404, so
    /// neither reveals the other.
    pub async fn tenant(&self, state: &AdminState, slug: &TenantSlug) -> Result<Access, ApiError> {
        let not_found = || ApiError::new(ErrorCode::NotFound, "no such tenant");
        let membership = match &self.who {
            Who::Account(account) => state.store.membership(account.id, slug).await?,
            Who::AdminKey { tenant, .. } if tenant == slug => state
                .store
                .tenant_by_slug(slug)
                .await?
                .map(|tenant: Tenant| Membership {
                    tenant,
                    role: Role::Admin,
                }),
            Who::AdminKey { .. } => None,
        };
        let membership = membership.ok_or_else(not_found)?;
        Ok(Access {
            tenant: membership.tenant,
            role: membership.role,
            actor: self.actor(),
            ip: self.ip,
        })
    }

    /// The caller as the audit log names it.
    pub fn actor(&self) -> String {
        match &self.who {
            Who::Account(account) => format!("account:{}", account.email),
            Who::AdminKey { key, .. } => format!("key:{key}"),
        }
    }
}

/// A caller's access to one tenant.
pub struct Access {
    /// The tenant.
    pub tenant: Tenant,
    /// The caller's role in it (an admin API key acts as `admin`).
    pub role: Role,
    /// The caller, as the audit log names it.
    pub actor: String,
    /// The client's address.
    pub ip: Option<IpAddr>,
}

impl Access {
    /// Refuses viewers: they may read, not change.
    pub fn require_writer(&self) -> Result<(), ApiError> {
        match self.role {
            Role::Owner | Role::Admin => Ok(()),
            Role::Viewer => Err(ApiError::new(
                ErrorCode::Forbidden,
                "viewers cannot change the tenant",
            )),
        }
    }

    /// Refuses everyone but the tenant's owners.
    pub fn require_owner(&self) -> Result<(), ApiError> {
        match self.role {
            Role::Owner => Ok(()),
            Role::Admin | Role::Viewer => Err(ApiError::new(
                ErrorCode::Forbidden,
                "only an owner of the tenant may do this",
            )),
        }
    }

    /// Records a change in the tenant's audit log. A failure to record is logged, not returned:
    /// the change itself has happened.
    pub async fn audit(
        &self,
        state: &AdminState,
        action: &str,
        target: Option<&str>,
        details: Option<serde_json::Value>,
    ) {
        let ip = self.ip.map(|ip| ip.to_string());
        let entry = NewAuditEntry {
            actor: &self.actor,
            action,
            target,
            ip: ip.as_deref(),
            details,
        };
        if let Err(e) = state.store.audit(self.tenant.id, entry).await {
            tracing::warn!(error = %e, action, "cannot record an audit entry");
        }
    }
}

/// The peer address of the connection, when the server records it.
pub fn client_ip(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

/// A person's live session. Extracting it also enforces the CSRF rule.
pub struct Session {
    pub account: Account,
    pub token: String,
}

impl FromRequestParts<AdminState> for Session {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AdminState) -> Result<Self, ApiError> {
        let token = session_cookie(&parts.headers)
            .ok_or_else(|| ApiError::unauthorized("log in first (or use an admin API key)"))?;
        check_origin(&parts.method, &parts.headers, state)?;
        let account = state
            .store
            .session_account(&token, state.session_lifetime())
            .await?
            .ok_or_else(|| ApiError::unauthorized("the session has ended; log in again"))?;
        Ok(Session { account, token })
    }
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// A state-changing request that a browser could send on its own must come from our origin:
/// `Origin`, or without one `Referer`, must name the public URL's origin.
pub fn check_origin(
    method: &Method,
    headers: &HeaderMap,
    state: &AdminState,
) -> Result<(), ApiError> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let expected = state.config.public_origin.as_str();
    let same = match headers.get(header::ORIGIN) {
        Some(origin) => origin.as_bytes() == expected.as_bytes(),
        None => headers
            .get(header::REFERER)
            .and_then(|r| r.to_str().ok())
            .is_some_and(|r| r == expected || r.starts_with(&format!("{expected}/"))),
    };
    if same {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::CsrfRejected,
            "cross-site request refused: Origin must be this service's own",
        ))
    }
}

/// Sign-up and login are not cookie-authenticated, but a browser on another site must not be
/// able to log a person into an account of the attacker's choosing: an `Origin` that is sent
/// must be ours. Scripts send none.
pub fn check_foreign_origin(headers: &HeaderMap, state: &AdminState) -> Result<(), ApiError> {
    match headers.get(header::ORIGIN) {
        Some(o) if o.as_bytes() != state.config.public_origin.as_bytes() => Err(ApiError::new(
            ErrorCode::CsrfRejected,
            "cross-site request refused: Origin must be this service's own",
        )),
        _ => Ok(()),
    }
}

pub fn set_cookie(state: &AdminState, token: &str) -> HeaderValue {
    let secure = if state.secure_cookies() {
        "; Secure"
    } else {
        ""
    };
    // The browser forgets the cookie when the server would refuse it anyway.
    let max_age = state
        .config
        .session_ttl
        .min(state.config.session_max_age)
        .as_secs();
    HeaderValue::from_str(&format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .expect("session tokens are base64url")
}

pub fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static("herald_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// The client's IP address, when the server records peer addresses; never rejects.
pub struct ClientIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip(parts)))
    }
}
