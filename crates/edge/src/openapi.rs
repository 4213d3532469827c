//! The edge's part of the OpenAPI document: the `#[utoipa::path]` of every `/v1` handler,
//! gathered, and the credentials they take. The binary joins it with the admin API's part
//! (`herald::openapi`), which adds the problem+json error responses to every operation.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi as Document;
use utoipa::{Modify, OpenApi};

use crate::{history, publish, subscribe, tokens};

/// A cursor of a stream over `orders` (at `1fz3kq-lx9a2bq8-1`) and `chat` (no event yet), as
/// [`herald_core::MultiCursor::encode`] writes it: the example of a multi-channel `id`.
pub(crate) const MULTI_CURSOR_EXAMPLE: &str = "mAQIyXpbsBTQP2sCX8LSAZAGiS_mrAAAAAA";

/// Every `/v1` operation, in the order `router` serves them.
#[derive(OpenApi)]
#[openapi(
    paths(
        subscribe::one_channel, publish::one_event, subscribe::several_channels, publish::batch,
        tokens::mint, history::history, history::info,
    ),
    modifiers(&Credentials),
    tags((name = "edge", description = "Subscribe, publish, tokens, history")),
)]
pub struct ApiDoc;

/// The edge's two credentials, both `Authorization: Bearer`.
struct Credentials;

impl Modify for Credentials {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        let bearer = |description: &str| {
            let mut http = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build();
            http.description = Some(description.to_owned());
            SecurityScheme::Http(http)
        };
        components.add_security_scheme(
            "api_key",
            bearer("An API key (`hk_...`) with the scope the operation needs."),
        );
        components.add_security_scheme(
            "subscriber_token",
            bearer("A subscriber token (HS256 JWT); also accepted as `?token=`."),
        );
    }
}

#[cfg(test)]
mod tests {
    use herald_core::{channel_hash, ChannelName, Cursor, MultiCursor};

    use super::*;

    #[test]
    fn the_multi_channel_example_is_a_cursor_the_server_reads() {
        let m = MultiCursor::parse(MULTI_CURSOR_EXAMPLE).unwrap();
        let orders = ChannelName::parse("orders").unwrap();
        let chat = ChannelName::parse("chat").unwrap();
        assert_eq!(
            m.get(channel_hash(&orders)),
            Some(Some(Cursor::parse("1fz3kq-lx9a2bq8-1").unwrap()))
        );
        assert_eq!(m.get(channel_hash(&chat)), Some(None));
        assert_eq!(m.encode(), MULTI_CURSOR_EXAMPLE);
    }
}
