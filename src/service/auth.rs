//! Access control of the HTTP endpoint: with `[metrics] token_file` set, every request must
//! carry the token, as `Authorization: Bearer <token>` (Prometheus `bearer_token_file`, fleet
//! tools) or as the password of HTTP Basic with any user name (a browser asks for it once).
//! The comparison (of SHA-256 digests) takes the same time wherever the first difference is; the token is never
//! logged, and a refusal says nothing about how close a guess was.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;

/// The access token, kept as its SHA-256 (never `Debug`-printed: it could end up in a log).
#[derive(Clone)]
pub struct Token(Arc<[u8]>);

fn sha256(b: &[u8]) -> ring::digest::Digest {
    ring::digest::digest(&ring::digest::SHA256, b)
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    pub fn new(secret: &str) -> Token {
        Token(Arc::from(sha256(secret.as_bytes()).as_ref()))
    }

    /// Whether `headers` carry this token.
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(given) = headers.get(header::AUTHORIZATION) else {
            return false;
        };
        self.admits_value(given.as_bytes())
    }

    /// Whether an `Authorization` header value carries this token (the fuzz seam of
    /// [`Token::admits`]).
    #[doc(hidden)]
    pub fn admits_value(&self, given: &[u8]) -> bool {
        if let Some(bearer) = strip_scheme(given, b"bearer ") {
            return self.matches(bearer);
        }
        let Some(basic) = strip_scheme(given, b"basic ") else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(basic.trim_ascii())
        else {
            return false;
        };
        // user:password; the user name is not checked.
        match decoded.iter().position(|b| *b == b':') {
            Some(colon) => self.matches(&decoded[colon + 1..]),
            None => false,
        }
    }

    /// Compares digests, all 32 bytes every time: neither the length nor the position of a
    /// difference shows in the time taken.
    fn matches(&self, given: &[u8]) -> bool {
        let given = sha256(given.trim_ascii());
        let diff =
            (given.as_ref().iter().zip(self.0.iter())).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }
}

/// `value` without its case-insensitive `scheme` prefix.
fn strip_scheme<'a>(value: &'a [u8], scheme: &[u8]) -> Option<&'a [u8]> {
    let head = value.get(..scheme.len())?;
    head.eq_ignore_ascii_case(scheme)
        .then(|| &value[scheme.len()..])
}

/// The middleware: 401 with both challenges unless the request carries the token.
pub async fn require(State(token): State<Token>, request: Request, next: Next) -> Response {
    if token.admits(request.headers()) {
        return next.run(request).await;
    }
    let challenge = [
        (header::WWW_AUTHENTICATE, "Basic realm=\"citysense\""),
        (header::CACHE_CONTROL, "no-store"),
    ];
    (
        StatusCode::UNAUTHORIZED,
        challenge,
        "authorization required\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, value.parse().expect("header"));
        h
    }

    #[test]
    fn bearer_and_basic_carry_the_token() {
        let t = Token::new("s3cret");
        assert!(t.admits(&with("Bearer s3cret")));
        assert!(t.admits(&with("bearer s3cret")));
        // "tech:s3cret" and ":s3cret"
        assert!(t.admits(&with("Basic dGVjaDpzM2NyZXQ=")));
        assert!(t.admits(&with("Basic OnMzY3JldA==")));
        assert!(!t.admits(&HeaderMap::new()));
        assert!(!t.admits(&with("Bearer s3cre")));
        assert!(!t.admits(&with("Bearer s3cretX")));
        assert!(!t.admits(&with("Basic czNjcmV0"))); // no colon
        assert!(!t.admits(&with("Basic !!!")));
        assert!(!t.admits(&with("Token s3cret")));
        assert!(!format!("{t:?}").contains("s3cret"));
    }
}
