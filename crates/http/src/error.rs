//! The error every handler returns, and the one place a failure becomes a status.
//!
//! Policy: `code` and `detail` are for the client and never carry an internal cause. A store or
//! broker failure maps by what it means for the client: a missing row is 404, a taken name 409,
//! an unreachable dependency 503 with `Retry-After` (retry shortly), and anything else, a bug or
//! corrupt data that a retry will not fix, is 500 `internal`, its cause logged here and never
//! sent.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use herald_core::{ErrorCode, InvalidName, Problem};
use herald_replay::BrokerError;
use herald_store::StoreError;

/// A client-facing error.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub detail: String,
    /// Seconds for `Retry-After`, when retrying later can succeed.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            retry_after: None,
        }
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, detail)
    }

    pub fn invalid_body(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidBody, detail)
    }

    /// A dependency could not be reached; the operation did not happen and may be retried
    /// shortly.
    pub fn unavailable(cause: &dyn fmt::Display) -> Self {
        tracing::warn!(error = %cause, "dependency unavailable");
        Self {
            retry_after: Some(1),
            ..Self::new(
                ErrorCode::Unavailable,
                "a backing service is unavailable; retry shortly",
            )
        }
    }

    /// A failure a retry will not fix; its cause goes to the log only.
    pub fn internal(cause: &(dyn StdError + 'static)) -> Self {
        tracing::error!(error = %Chain(cause), "internal error");
        Self::new(ErrorCode::Internal, "internal error")
    }
}

impl From<InvalidName> for ApiError {
    fn from(e: InvalidName) -> Self {
        Self::new(ErrorCode::InvalidName, e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e.kind() {
            StoreError::NotFound => Self::new(ErrorCode::NotFound, "not found"),
            StoreError::Conflict(what) => {
                Self::new(ErrorCode::Conflict, format!("this {what} is already taken"))
            }
            StoreError::Unavailable(_) | StoreError::Connect { .. } => {
                Self::unavailable(&Chain(&e))
            }
            StoreError::Migrate(_)
            | StoreError::Other(_)
            | StoreError::Internal(_)
            | StoreError::Shared(_) => Self::internal(&e),
        }
    }
}

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> Self {
        match e {
            BrokerError::Unavailable(_) => Self::unavailable(&Chain(&e)),
            BrokerError::Protocol(_) => Self::internal(&e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = problem_response(Problem::new(self.code, self.detail), self.retry_after);
        // For [`CountRejections`]: the code, without parsing the body again.
        response.extensions_mut().insert(self.code);
        response
    }
}

/// A problem+json response, with `Retry-After` when given.
pub fn problem_response(problem: Problem, retry_after: Option<u64>) -> Response {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(herald_core::problem::CONTENT_TYPE),
    );
    if let Some(secs) = retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// A layer that calls `count` with the code of every error response beneath it answers, and the
/// tenant the request's path names when its route has a `{tenant}` segment: every rejection is
/// an [`ApiError`], and every [`ApiError`] response carries its code. A route layer (it reads
/// the matched route), written out rather than `from_fn` so that a request pays no allocation
/// for it.
#[derive(Clone)]
pub struct CountRejections<F> {
    count: F,
}

impl<F> CountRejections<F>
where
    F: Fn(ErrorCode, Option<&str>) + Clone + Send + Sync + 'static,
{
    pub fn new(count: F) -> Self {
        Self { count }
    }
}

impl<S, F: Clone> tower::Layer<S> for CountRejections<F> {
    type Service = Counted<S, F>;

    fn layer(&self, inner: S) -> Self::Service {
        Counted {
            inner,
            count: self.count.clone(),
        }
    }
}

/// The service of [`CountRejections`].
#[derive(Clone)]
pub struct Counted<S, F> {
    inner: S,
    count: F,
}

impl<S, F> tower::Service<axum::extract::Request> for Counted<S, F>
where
    S: tower::Service<axum::extract::Request, Response = Response>,
    F: Fn(ErrorCode, Option<&str>) + Clone,
{
    type Response = Response;
    type Error = S::Error;
    type Future = CountedFuture<S::Future, F>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::extract::Request) -> Self::Future {
        let route = request
            .extensions()
            .get::<axum::extract::MatchedPath>()
            .cloned();
        // A clone of the URI shares its bytes: nothing is copied unless a rejection is counted.
        let uri = request.uri().clone();
        CountedFuture {
            inner: self.inner.call(request),
            count: Some((self.count.clone(), route, uri)),
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Counted`].
    pub struct CountedFuture<Fut, F> {
        #[pin]
        inner: Fut,
        count: Option<(F, Option<axum::extract::MatchedPath>, axum::http::Uri)>,
    }
}

impl<Fut, F, E> Future for CountedFuture<Fut, F>
where
    Fut: Future<Output = Result<Response, E>>,
    F: Fn(ErrorCode, Option<&str>),
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        if let (Ok(response), Some((count, route, uri))) = (&result, this.count.take()) {
            if let Some(code) = response.extensions().get::<ErrorCode>() {
                count(*code, route.and_then(|r| tenant_of(r.as_str(), uri.path())));
            }
        }
        Poll::Ready(result)
    }
}

/// The `{tenant}` segment of `path`, when `route` (the pattern it matched) has one. A slug, not
/// a secret; and only the path is read, never the query.
pub fn tenant_of<'a>(route: &str, path: &'a str) -> Option<&'a str> {
    let at = route.split('/').position(|segment| segment == "{tenant}")?;
    path.split('/').nth(at).filter(|s| !s.is_empty())
}

/// An error with its sources, `a: b: c`, for the log.
struct Chain<'a>(&'a (dyn StdError + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_of(e: impl Into<ApiError>) -> (u16, Option<String>, String) {
        let response = e.into().into_response();
        let retry = response
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_owned());
        let code = response.extensions().get::<ErrorCode>().unwrap().as_str();
        (response.status().as_u16(), retry, code.to_owned())
    }

    #[test]
    fn each_kind_of_store_error_has_its_status() {
        let cases: Vec<(StoreError, u16, Option<&str>, &str)> = vec![
            (StoreError::NotFound, 404, None, "not_found"),
            (StoreError::Conflict("slug"), 409, None, "conflict"),
            (
                StoreError::Unavailable(sqlx::Error::PoolTimedOut),
                503,
                Some("1"),
                "unavailable",
            ),
            (
                StoreError::Connect {
                    url: "postgres://db".into(),
                    source: sqlx::Error::PoolClosed,
                },
                503,
                Some("1"),
                "unavailable",
            ),
            (
                StoreError::Other(sqlx::Error::ColumnNotFound("x".into())),
                500,
                None,
                "internal",
            ),
            (
                StoreError::Internal("a blocking task panicked".into()),
                500,
                None,
                "internal",
            ),
            // A failure that several cache readers waited for maps as the failure it was.
            (
                StoreError::Shared(std::sync::Arc::new(StoreError::Unavailable(
                    sqlx::Error::PoolClosed,
                ))),
                503,
                Some("1"),
                "unavailable",
            ),
            (
                StoreError::Shared(std::sync::Arc::new(StoreError::NotFound)),
                404,
                None,
                "not_found",
            ),
        ];
        for (error, status, retry, code) in cases {
            let shown = error.to_string();
            assert_eq!(
                status_of(error),
                (status, retry.map(str::to_owned), code.to_owned()),
                "{shown}"
            );
        }
    }

    #[test]
    fn broker_errors_are_unavailable_or_internal() {
        assert_eq!(
            status_of(BrokerError::Unavailable("connection refused".into())),
            (503, Some("1".into()), "unavailable".into())
        );
        assert_eq!(
            status_of(BrokerError::Protocol("unexpected reply".into())),
            (500, None, "internal".into())
        );
    }

    #[tokio::test]
    async fn internal_causes_are_never_shown() {
        let secret_cause = sqlx::Error::ColumnNotFound("secret_column".into());
        let response = ApiError::from(StoreError::Other(secret_cause)).into_response();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(body.contains("\"code\":\"internal\""), "{body}");
        assert!(!body.contains("secret_column"), "{body}");
    }
}
