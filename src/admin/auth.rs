//! The API's bearer token. Checked before any handler runs (and so before a body is
//! read), which is what makes "a missing or wrong token changes nothing" hold.

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::api::ApiError;
use super::AdminState;

/// The configured token, kept as its SHA-256 so every comparison is over 32 bytes:
/// the time taken says nothing about the token's length or contents.
#[derive(Clone)]
pub struct Token {
    sha: Option<[u8; 32]>,
}

impl Token {
    /// An empty configured token disables the API rather than accepting an empty one.
    pub fn new(configured: &str) -> Token {
        let sha = (!configured.is_empty()).then(|| Sha256::digest(configured.as_bytes()).into());
        Token { sha }
    }

    fn accepts(&self, presented: &str) -> bool {
        let Some(expected) = self.sha else {
            return false;
        };
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        expected.ct_eq(&presented).into()
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Middleware for the `/api/v1` routes.
pub async fn require_token(
    State(state): State<AdminState>,
    request: Request,
    next: Next,
) -> Response {
    match bearer(request.headers()) {
        Some(presented) if state.token.accepts(presented) => next.run(request).await,
        Some(_) => unauthorised("wrong token"),
        None => unauthorised("missing token: send Authorization: Bearer <token>"),
    }
}

/// The credentials of an `Authorization: Bearer ...` header (the scheme is
/// case-insensitive, RFC 7235).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credentials) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credentials.trim())
}

fn unauthorised(reason: &str) -> Response {
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, reason).into_response();
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_accepts_only_itself_and_never_when_empty() {
        let token = Token::new("s3cret");
        assert!(token.accepts("s3cret"));
        assert!(!token.accepts("s3cre"));
        assert!(!token.accepts(""));
        assert!(!Token::new("").accepts(""));
    }

    #[test]
    fn bearer_reads_the_scheme_case_insensitively() {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, "bearer abc".parse().unwrap());
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert(AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&headers), None);
    }
}
