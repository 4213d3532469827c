//! The web admin: the files of `web-admin/` (plain ES modules, no build step), embedded in the
//! binary and served at `/` by `herald serve` and `herald admin`.
//!
//! Every page URL of the single-page app (`/`, `/login`, `/t/{tenant}/keys`, ...) answers the
//! same shell, `index.html`; the app reads the URL and renders the view. Assets live under
//! `/ui/`. Nothing else is claimed, so `/api`, `/v1`, `/healthz`, `/readyz` and `/metrics` keep
//! their own routes, and any other path still falls through to the server's 404.
//!
//! Each file is prepared once, at the first request: its content type, an `ETag` from its
//! SHA-256 (so `If-None-Match` answers 304), and for text a gzip copy when that is smaller. The
//! files have stable names (the modules import each other by relative URL), so they are served
//! `no-cache`: the browser keeps them but revalidates, which costs a 304 and no body.

use std::collections::HashMap;
use std::io::Write;
use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use herald_core::problem::{Problem, CONTENT_TYPE as PROBLEM};
use herald_core::ErrorCode;
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "../../web-admin/"]
struct Files;

/// Files of `web-admin/` that are for people reading the repository, not for browsers.
fn served(path: &str) -> bool {
    !path.ends_with(".md") && !path.contains("LICENSE")
}

/// The policy of every page and asset (shared with the rest of the server's security headers).
pub use herald_http::security::WEB_CSP as CONTENT_SECURITY_POLICY;

/// The app's page URLs: each answers the shell.
const PAGES: [&str; 9] = [
    "/",
    "/login",
    "/signup",
    "/account",
    "/t/{tenant}",
    "/t/{tenant}/keys",
    "/t/{tenant}/channels",
    "/t/{tenant}/channels/{channel}",
    "/t/{tenant}/settings",
];

/// Below this size gzip saves too little to be worth the `Content-Encoding`.
const MIN_COMPRESS: usize = 512;

/// The router of the web admin. Merge it into a router that serves the admin API.
pub fn router() -> Router {
    let mut router = Router::new().route("/ui/{*path}", get(asset));
    for page in PAGES {
        router = router.route(page, get(shell));
    }
    router
}

/// One embedded file, ready to send.
struct Asset {
    content_type: &'static str,
    etag: String,
    body: Bytes,
    gzip: Option<Bytes>,
}

static ASSETS: LazyLock<HashMap<String, Asset>> = LazyLock::new(|| {
    Files::iter()
        .filter(|path| served(path))
        .filter_map(|path| {
            let file = Files::get(&path)?;
            let body = Bytes::from(file.data.into_owned());
            let content_type = content_type(&path);
            let hash = file.metadata.sha256_hash();
            let etag = hash[..12].iter().map(|b| format!("{b:02x}")).collect();
            let gzip = compressible(content_type)
                .then(|| gzip(&body))
                .filter(|gz| body.len() >= MIN_COMPRESS && gz.len() < body.len() * 9 / 10);
            Some((
                path.into_owned(),
                Asset {
                    content_type,
                    etag,
                    body,
                    gzip,
                },
            ))
        })
        .collect()
});

async fn shell(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    // `index.html` is the shell, reached by the page URLs; under `/ui/` it would be a second copy.
    if path == "index.html" {
        return not_found();
    }
    serve(&path, &headers)
}

fn serve(path: &str, request: &HeaderMap) -> Response {
    let Some(asset) = ASSETS.get(path) else {
        return not_found();
    };
    let gzip = asset.gzip.as_ref().filter(|_| accepts_gzip(request));
    let etag = match gzip {
        Some(_) => format!("\"{}-gz\"", asset.etag),
        None => format!("\"{}\"", asset.etag),
    };
    let mut headers = security_headers();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    headers.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).expect("a hex ETag is a valid header"),
    );
    if matches(request, &etag) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    let body = match gzip {
        Some(gz) => {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            gz.clone()
        }
        None => asset.body.clone(),
    };
    (headers, body).into_response()
}

/// The headers every response of the web admin carries.
fn security_headers() -> HeaderMap {
    herald_http::security::headers(CONTENT_SECURITY_POLICY)
}

fn not_found() -> Response {
    let problem = Problem::new(ErrorCode::NotFound, "no such resource");
    let mut headers = security_headers();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM));
    let body = serde_json::to_vec(&problem).expect("a problem serializes");
    (StatusCode::NOT_FOUND, headers, body).into_response()
}

/// Whether `If-None-Match` names `etag` (or is `*`). Weak validators match too: RFC 9110 §13.1.2
/// compares them weakly for this header.
fn matches(request: &HeaderMap, etag: &str) -> bool {
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == etag || tag == "*")
}

/// Whether `Accept-Encoding` allows gzip (present with a non-zero q-value).
fn accepts_gzip(request: &HeaderMap) -> bool {
    request
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or_default();
            let q = parts
                .find_map(|p| p.strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && q > 0.0
        })
}

fn content_type(path: &str) -> &'static str {
    // Modules must be served as JavaScript or the browser refuses them under `nosniff`, so the
    // types the app uses are named here rather than guessed.
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    }
}

fn compressible(content_type: &str) -> bool {
    content_type.starts_with("text/") || content_type == "image/svg+xml"
}

fn gzip(data: &[u8]) -> Bytes {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder
        .write_all(data)
        .expect("writing to a Vec cannot fail");
    Bytes::from(encoder.finish().expect("writing to a Vec cannot fail"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn get(path: &str, headers: &[(&str, &str)]) -> Response {
        let mut request = Request::get(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        router()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    async fn body(response: Response) -> Bytes {
        response.into_body().collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn every_page_url_answers_the_shell_with_the_security_headers() {
        for path in [
            "/",
            "/login",
            "/signup",
            "/account",
            "/t/acme",
            "/t/acme/keys",
            "/t/acme/channels",
            "/t/acme/channels/team:7@42",
            "/t/acme/settings",
        ] {
            let response = get(path, &[]).await;
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            let h = response.headers();
            assert_eq!(h[header::CONTENT_TYPE], "text/html; charset=utf-8");
            assert_eq!(h[header::CONTENT_SECURITY_POLICY], CONTENT_SECURITY_POLICY);
            assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert_eq!(h[header::REFERRER_POLICY], "same-origin");
            let html = String::from_utf8(body(response).await.to_vec()).unwrap();
            assert!(html.contains(r#"<script type="module" src="/ui/app.js">"#));
        }
    }

    #[tokio::test]
    async fn the_policy_forbids_inline_code_and_framing() {
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe-inline"));
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe-eval"));
        assert!(CONTENT_SECURITY_POLICY.contains("frame-ancestors 'none'"));
        // The shell itself has no inline script or style for the policy to block.
        let html = String::from_utf8(body(get("/", &[]).await).await.to_vec()).unwrap();
        assert!(!html.contains("<style"));
        assert!(!html.contains("style="));
        assert_eq!(
            html.matches("<script").count(),
            html.matches(" src=").count()
        );
    }

    #[tokio::test]
    async fn modules_are_javascript_and_revalidate_with_etags() {
        let response = get("/ui/app.js", &[]).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-cache");
        let etag = response.headers()[header::ETAG]
            .to_str()
            .unwrap()
            .to_owned();
        let again = get("/ui/app.js", &[("if-none-match", &etag)]).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert!(body(again).await.is_empty());
        let weak = format!("\"other\", W/{etag}");
        let weak = get("/ui/app.js", &[("if-none-match", &weak)]).await;
        assert_eq!(weak.status(), StatusCode::NOT_MODIFIED);
        let stale = get("/ui/app.js", &[("if-none-match", "\"0000\"")]).await;
        assert_eq!(stale.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn large_text_is_gzipped_when_the_client_accepts_it() {
        let plain = get("/ui/vendor/uPlot.esm.js", &[]).await;
        assert!(plain.headers().get(header::CONTENT_ENCODING).is_none());
        let plain_etag = plain.headers()[header::ETAG].clone();
        let plain = body(plain).await;

        let gz = get(
            "/ui/vendor/uPlot.esm.js",
            &[("accept-encoding", "br, gzip")],
        )
        .await;
        assert_eq!(gz.headers()[header::CONTENT_ENCODING], "gzip");
        assert_eq!(gz.headers()[header::VARY], "Accept-Encoding");
        assert_ne!(gz.headers()[header::ETAG], plain_etag);
        let gz = body(gz).await;
        assert!(
            gz.len() < plain.len() / 2,
            "{} of {}",
            gz.len(),
            plain.len()
        );
        let mut unzipped = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut unzipped)
            .unwrap();
        assert_eq!(unzipped, plain);

        let refused = get(
            "/ui/vendor/uPlot.esm.js",
            &[("accept-encoding", "gzip;q=0")],
        )
        .await;
        assert!(refused.headers().get(header::CONTENT_ENCODING).is_none());
    }

    #[tokio::test]
    async fn unknown_paths_are_not_found_and_other_routes_are_not_claimed() {
        for path in [
            "/ui/nope.js",
            "/ui/../Cargo.toml",
            "/ui/index.html",
            "/t/acme/other",
        ] {
            let response = get(path, &[]).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        }
        for path in [
            "/api/v1/me",
            "/v1/acme/channels/a/events",
            "/healthz",
            "/readyz",
            "/metrics",
        ] {
            let response = get(path, &[]).await;
            // The web router alone has no such route: axum's own empty 404, i.e. not the shell.
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
            assert!(
                response
                    .headers()
                    .get(header::CONTENT_SECURITY_POLICY)
                    .is_none(),
                "{path}"
            );
        }
    }
}
