//! The HTTP endpoint's credential check: an `Authorization` header value (arbitrary bytes,
//! more than a header can carry) against a fixed token, as is and with the bytes as the
//! credential of each scheme. Admitted exactly when the credential is the token (compared
//! without surrounding ASCII whitespace, as documented in `src/service/auth.rs`).
#![no_main]

use base64::Engine;
use citysense::service::auth::Token;
use libfuzzer_sys::fuzz_target;

const TOKEN: &[u8] = b"s3cret-T0ken";

/// `value` without its case-insensitive `scheme` prefix.
fn after<'a>(value: &'a [u8], scheme: &[u8]) -> Option<&'a [u8]> {
    let head = value.get(..scheme.len())?;
    head.eq_ignore_ascii_case(scheme)
        .then(|| &value[scheme.len()..])
}

fn is_token(credential: &[u8]) -> bool {
    credential.trim_ascii() == TOKEN
}

/// The specification: a Bearer token, or the password (after the first colon) of Basic.
fn expected(value: &[u8]) -> bool {
    if let Some(bearer) = after(value, b"bearer ") {
        return is_token(bearer);
    }
    let Some(basic) = after(value, b"basic ") else {
        return false;
    };
    let Ok(pair) = base64::engine::general_purpose::STANDARD.decode(basic.trim_ascii()) else {
        return false;
    };
    match pair.iter().position(|b| *b == b':') {
        Some(colon) => is_token(&pair[colon + 1..]),
        None => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let token = Token::new(std::str::from_utf8(TOKEN).unwrap_or_default());
    assert_eq!(token.admits_value(data), expected(data), "raw {data:?}");
    let bearer = [b"Bearer ".as_slice(), data].concat();
    assert_eq!(
        token.admits_value(&bearer),
        is_token(data),
        "bearer {data:?}"
    );
    let pair = [b"user:".as_slice(), data].concat();
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    );
    assert_eq!(
        token.admits_value(basic.as_bytes()),
        is_token(data),
        "basic {data:?}"
    );
});
