//! Tests of the store writer: answer classification, URL building, auth, redaction (kept
//! apart from `influx.rs` for length).

use super::*;

#[test]
fn classification_follows_the_write_api() {
    assert_eq!(classify(204, None, None, ""), Outcome::Written);
    assert!(matches!(
        classify(400, None, None, "bad"),
        Outcome::BadData { status: 400, .. }
    ));
    assert!(matches!(
        classify(422, None, None, ""),
        Outcome::BadData { status: 422, .. }
    ));
    assert_eq!(classify(413, None, None, ""), Outcome::TooLarge);
    let partial = r#"{"error":"partial write: field type conflict: input field \"v\" on measurement \"m\" is type string, already exists as type float dropped=3"}"#;
    assert!(matches!(
        classify(400, None, None, partial),
        Outcome::BadData {
            dropped: Some(3),
            ..
        }
    ));
    assert_eq!(parse_dropped("unable to parse 'x': bad"), None);
    assert_eq!(parse_dropped("dropped="), None);
    assert_eq!(parse_dropped("dropped=12"), Some(12));
    assert_eq!(
        classify(429, Some("2"), None, ""),
        Outcome::Retry {
            after: Some(Duration::from_secs(2)),
            reason: "HTTP 429".into()
        }
    );
    assert!(matches!(
        classify(503, Some("x"), None, ""),
        Outcome::Retry { after: None, .. }
    ));
    assert!(matches!(
        classify(500, None, None, ""),
        Outcome::Retry { after: None, .. }
    ));
    for s in [401, 403, 404] {
        assert!(
            matches!(classify(s, None, None, ""), Outcome::Operator { .. }),
            "{s}"
        );
    }
    // A 3xx that reached us was not followed: never delivered.
    for s in [301, 302, 303, 307, 308] {
        assert_eq!(
            classify(s, None, Some("http://portal/"), ""),
            Outcome::Redirect {
                status: s,
                location: "http://portal/".into()
            }
        );
    }
}

fn writer(toml_text: &str) -> Writer {
    let cfg: OutputConfig = toml::from_str(toml_text).unwrap();
    Writer::build(&cfg).unwrap()
}

fn authorization(w: &Writer) -> Option<String> {
    let req = w.request(Vec::new(), false).build().unwrap();
    assert_eq!(req.url(), &w.url, "no userinfo in the request URL");
    req.headers()
        .get(AUTHORIZATION)
        .map(|v| v.to_str().unwrap().to_string())
}

#[test]
fn urls_are_encoded() {
    let w = writer(
        "api = \"v2\"\nurl = \"http://127.0.0.1:8086/\"\norg = \"gemeente utrecht\"\nbucket = \"a&b\"\ntoken = \"t\"",
    );
    assert_eq!(
        w.url(),
        "http://127.0.0.1:8086/api/v2/write?org=gemeente+utrecht&bucket=a%26b&precision=ns"
    );
    assert_eq!(authorization(&w).as_deref(), Some("Token t"));
    let w = writer(
        "api = \"v1\"\nurl = \"http://h:8086/influx\"\ndb = \"city\"\nrp = \"week\"\nusername = \"u\"\npassword = \"p\"",
    );
    assert_eq!(
        w.url(),
        "http://h:8086/influx/write?db=city&rp=week&precision=ns"
    );
    assert_eq!(authorization(&w).as_deref(), Some("Basic dTpw"));
}

#[test]
fn userinfo_becomes_basic_auth_and_never_shows() {
    let w = writer("api = \"v1\"\nurl = \"http://us%40er:s3cr%3At@h:8086\"\ndb = \"d\"");
    assert_eq!(w.url(), "http://h:8086/write?db=d&precision=ns");
    assert!(!format!("{w:?}").contains("s3cr"));
    // base64("us@er:s3cr:t")
    assert_eq!(authorization(&w).as_deref(), Some("Basic dXNAZXI6czNjcjp0"));
    // Configured credentials win over the URL's.
    let w = writer(
        "api = \"v1\"\nurl = \"http://x:y@h\"\ndb = \"d\"\nusername = \"u\"\npassword = \"pass-word\"",
    );
    assert_eq!(authorization(&w).as_deref(), Some("Basic dTpwYXNzLXdvcmQ="));
    assert!(!format!("{w:?}").contains("pass-word"));
}

#[test]
fn redaction_masks_userinfo_and_secret_query_values() {
    let u = Url::parse("https://me:pw@h/write?db=d&u=me&p=pw&token=tk&x_api_key=k&n=1").unwrap();
    assert_eq!(
        redact(&u),
        "https://h/write?db=d&u=me&p=redacted&token=redacted&x_api_key=redacted&n=1"
    );
    let w = writer("api = \"v1\"\nurl = \"http://h/?u=me&p=pw\"\ndb = \"d\"");
    assert_eq!(w.url(), "http://h/write?u=me&p=redacted&db=d&precision=ns");
    let bad: OutputConfig =
        toml::from_str("api = \"v1\"\nurl = \"http://me:pw@[::1\"\ndb = \"d\"").unwrap();
    let e = Writer::build(&bad).unwrap_err().to_string();
    assert!(!e.contains("pw"), "{e}");
}

/// nginx answers a missing or untrusted client certificate with a 400 page: that is about the
/// connection, so the data must stay spooled, not go to the dead-letter file.
#[test]
fn nginx_client_certificate_400_is_a_tls_refusal_not_bad_data() {
    let page = "<html>\r\n<head><title>400 No required SSL certificate was sent</title></head>\r\n<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n</body></html>";
    assert_eq!(
        classify(400, None, None, page),
        Outcome::Tls {
            failure: TlsFailure::ClientCertificate,
            detail: "HTTP 400: 400 No required SSL certificate was sent".into(),
        }
    );
}
