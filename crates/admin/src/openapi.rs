//! The admin API's part of the OpenAPI document: the `#[utoipa::path]` of every `/api/v1`
//! handler, gathered, and the credentials they take. The binary joins it with the edge's part
//! (`herald::openapi`), which adds the problem+json error responses to every operation, and
//! serves the whole document at `/api/openapi.json`.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi as Document;
use utoipa::{Modify, OpenApi};

use crate::{accounts, channels, inspector, keys, signing_keys, tenants, usage};

/// Every `/api/v1` operation. An operation that names no `security` of its own takes a session
/// cookie or an admin API key.
#[derive(OpenApi)]
#[openapi(
    paths(
        accounts::signup, accounts::login, accounts::logout, accounts::me, accounts::change_password,
        tenants::list, tenants::create, tenants::get_one, tenants::patch, tenants::delete,
        tenants::members, tenants::add_member, tenants::remove_member,
        keys::list, keys::create, keys::revoke,
        channels::list, channels::create, channels::get_one, channels::patch, channels::delete,
        inspector::token,
        signing_keys::list, signing_keys::rotate,
        usage::usage, usage::limits, usage::audit,
    ),
    modifiers(&Credentials),
    security(("session" = []), ("admin_key" = [])),
    tags(
        (name = "accounts", description = "Sign-up, sessions, the account"),
        (name = "tenants", description = "Tenants and their settings"),
        (name = "members", description = "Who may administer a tenant"),
        (name = "keys", description = "API keys"),
        (name = "channels", description = "Channel settings and state"),
        (name = "signing-keys", description = "Secrets that sign subscriber tokens"),
        (name = "usage", description = "Usage, limits and the audit log"),
    ),
)]
pub struct ApiDoc;

/// The admin API's two credentials: a person's session cookie, a script's admin API key.
struct Credentials;

impl Modify for Credentials {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "herald_session",
                "The session cookie set by signup and login.",
            ))),
        );
        let mut admin_key = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build();
        admin_key.description = Some(
            "An API key (`hk_...`) with the `admin` scope: the admin API of its own tenant."
                .to_owned(),
        );
        components.add_security_scheme("admin_key", SecurityScheme::Http(admin_key));
    }
}
