//! The stable, machine-readable error codes of every Herald API (`code` in problem+json).
//!
//! One exhaustive list maps each code to its HTTP status, its snake_case name and a title, so an
//! HTTP crate never invents a status or a code of its own.

/// A machine-readable error code; [`ErrorCode::as_str`] is its wire form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidName,
    InvalidBody,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    /// The client sent its request body too slowly (`--body-read-timeout-secs`).
    RequestTimeout,
    PayloadTooLarge,
    /// The request target is longer than the server reads.
    UriTooLong,
    UnsupportedMediaType,
    IdempotencyKeyReused,
    RateLimited,
    QuotaExceeded,
    /// Too many header fields, or too many bytes of them.
    HeadersTooLarge,
    TenantSuspended,
    CsrfRejected,
    Unavailable,
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 19] = [
        Self::InvalidName,
        Self::InvalidBody,
        Self::Unauthorized,
        Self::Forbidden,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::Conflict,
        Self::RequestTimeout,
        Self::PayloadTooLarge,
        Self::UriTooLong,
        Self::UnsupportedMediaType,
        Self::IdempotencyKeyReused,
        Self::RateLimited,
        Self::QuotaExceeded,
        Self::HeadersTooLarge,
        Self::TenantSuspended,
        Self::CsrfRejected,
        Self::Unavailable,
        Self::Internal,
    ];

    pub const fn status(self) -> u16 {
        match self {
            Self::InvalidName | Self::InvalidBody => 400,
            Self::Unauthorized => 401,
            Self::Forbidden | Self::TenantSuspended | Self::CsrfRejected => 403,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::Conflict => 409,
            Self::RequestTimeout => 408,
            Self::PayloadTooLarge => 413,
            Self::UriTooLong => 414,
            Self::UnsupportedMediaType => 415,
            Self::IdempotencyKeyReused => 422,
            Self::RateLimited | Self::QuotaExceeded => 429,
            Self::HeadersTooLarge => 431,
            Self::Internal => 500,
            Self::Unavailable => 503,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidName => "invalid_name",
            Self::InvalidBody => "invalid_body",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Conflict => "conflict",
            Self::RequestTimeout => "request_timeout",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UriTooLong => "uri_too_long",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::RateLimited => "rate_limited",
            Self::QuotaExceeded => "quota_exceeded",
            Self::HeadersTooLarge => "headers_too_large",
            Self::TenantSuspended => "tenant_suspended",
            Self::CsrfRejected => "csrf_rejected",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }

    /// The problem's `title`: short, the same for every occurrence of the code.
    pub const fn title(self) -> &'static str {
        match self {
            Self::InvalidName => "Invalid name",
            Self::InvalidBody => "Invalid request body",
            Self::Unauthorized => "Unauthorized",
            Self::Forbidden => "Forbidden",
            Self::NotFound => "Not found",
            Self::MethodNotAllowed => "Method not allowed",
            Self::Conflict => "Conflict",
            Self::RequestTimeout => "Request timeout",
            Self::PayloadTooLarge => "Payload too large",
            Self::UriTooLong => "URI too long",
            Self::UnsupportedMediaType => "Unsupported media type",
            Self::IdempotencyKeyReused => "Idempotency key reused",
            Self::RateLimited => "Rate limited",
            Self::QuotaExceeded => "Quota exceeded",
            Self::HeadersTooLarge => "Request header fields too large",
            Self::TenantSuspended => "Tenant suspended",
            Self::CsrfRejected => "Cross-site request rejected",
            Self::Unavailable => "Service unavailable",
            Self::Internal => "Internal server error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(
                s.bytes().all(|c| c.is_ascii_lowercase() || c == b'_'),
                "{s}"
            );
            assert!(seen.insert(s), "{s} twice");
            assert!((400..600).contains(&code.status()));
        }
    }
}
