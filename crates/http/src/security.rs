//! The security headers of every response, defined once: the API's JSON and streams, the web
//! admin's pages, and the Swagger UI at `/api/docs` differ only in their Content-Security-Policy.
//!
//! A JSON or event-stream answer is never a document a browser should render, run or frame, so
//! its policy allows nothing at all; the web admin runs its own modules and nothing inline; the
//! Swagger UI needs inline styles (React sets `style` attributes) and `data:` images.

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;

/// The policy of API responses: nothing may load, run, or frame them.
pub const API_CSP: &str =
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The policy of the web admin's pages and assets: scripts and styles only from files of this
/// origin (no inline script, no inline style sheet), API calls and the inspector's `EventSource`
/// to this origin only, and never framed.
pub const WEB_CSP: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The policy of the Swagger UI at `/api/docs`: its own scripts, inline styles (which the UI
/// sets on elements), `data:` icons, "Try it out" calls to this origin; never framed.
pub const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
     font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `Referrer-Policy` everywhere: full URLs (which may carry a `token`) never leave the origin.
pub const REFERRER_POLICY: &str = "same-origin";

/// Sets the security headers on `headers`, with `csp` unless a policy is set already.
pub fn insert(headers: &mut HeaderMap, csp: &'static str) {
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(csp));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static(REFERRER_POLICY),
    );
}

/// Gives a response the headers, with [`API_CSP`] where the route did not choose its own
/// policy: the function of a `map_response` layer around every router.
pub fn apply(mut response: Response) -> Response {
    insert(response.headers_mut(), API_CSP);
    response
}

/// The headers of `csp`'s surface, for a response built by hand.
pub fn headers(csp: &'static str) -> HeaderMap {
    let mut h = HeaderMap::new();
    insert(&mut h, csp);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_set_by_the_route_stays_and_the_rest_is_added() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(DOCS_CSP),
        );
        insert(&mut h, API_CSP);
        assert_eq!(h[header::CONTENT_SECURITY_POLICY], DOCS_CSP);
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(h[header::REFERRER_POLICY], REFERRER_POLICY);
        for csp in [API_CSP, WEB_CSP, DOCS_CSP] {
            assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
            assert!(!csp.contains("unsafe-eval"), "{csp}");
        }
        assert!(!WEB_CSP.contains("unsafe-inline"));
    }
}
