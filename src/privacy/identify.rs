//! Finding device identifiers in a parsed JSON payload, and normalising them so that one
//! device is one item however the scanner spells it (`AA:BB:..`, `aa-bb-..`, `aabb..`).
//!
//! The path is dotted (`mac`, `probes.mac`, `devices`); an array met anywhere on the way fans
//! out, so `{"probes":[{"mac":..},{"mac":..}]}` with `probes.mac` and `{"devices":["..",".."]}`
//! with `devices` both work. Identifiers are copied only into a fixed stack buffer, never into
//! a heap string, and errors say what was wrong without quoting the payload.

use serde_json::Value as Json;

/// Most identifiers taken from one message; the rest are counted as refused.
pub const MAX_PER_MESSAGE: usize = 4096;
/// Longest normalised identifier (a MAC is 12, a UUID 32).
pub const MAX_LEN: usize = 64;

/// Why a payload yielded no identifier. Deliberately without payload text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierError {
    #[error("identifier path not found in payload")]
    Missing,
    #[error("identifier at the path is not a string (or list of strings)")]
    NotAString,
    #[error("identifier empty or longer than 64 characters after normalising")]
    BadLength,
}

impl IdentifierError {
    /// The message as a static string (for errors that must not allocate payload text).
    pub fn as_str(&self) -> &'static str {
        match self {
            IdentifierError::Missing => "identifier path not found in payload",
            IdentifierError::NotAString => "identifier is not a string or list of strings",
            IdentifierError::BadLength => "identifier empty or too long after normalising",
        }
    }
}

/// Calls `f` with each normalised identifier at `path`; returns how many were found.
/// Items that are not usable identifiers are skipped; if none is usable, the first reason.
pub fn for_each(
    doc: &Json,
    path: &str,
    f: &mut dyn FnMut(&[u8]),
) -> Result<usize, IdentifierError> {
    let mut walk = Walk {
        found: 0,
        resolved: false,
        first_error: None,
        f,
    };
    let segments: Vec<&str> = path.split('.').filter(|s| !s.is_empty()).collect();
    walk.visit(doc, &segments);
    match (walk.found, walk.first_error) {
        // A scanner that heard nobody may send an empty list: zero identifiers, not an error.
        (0, None) if walk.resolved => Ok(0),
        (0, Some(e)) => Err(e),
        (0, None) => Err(IdentifierError::Missing),
        (n, _) => Ok(n),
    }
}

struct Walk<'f> {
    found: usize,
    /// The path led to something (an empty list counts).
    resolved: bool,
    first_error: Option<IdentifierError>,
    f: &'f mut dyn FnMut(&[u8]),
}

impl Walk<'_> {
    fn visit(&mut self, v: &Json, path: &[&str]) {
        if self.found >= MAX_PER_MESSAGE {
            return;
        }
        match (v, path.split_first()) {
            (Json::Array(items), _) => {
                self.resolved |= items.is_empty();
                items.iter().for_each(|i| self.visit(i, path));
            }
            (Json::Object(map), Some((head, rest))) => match map.get(*head) {
                Some(child) => self.visit(child, rest),
                None => self.fail(IdentifierError::Missing),
            },
            (Json::String(s), None) => {
                let mut buf = [0u8; MAX_LEN];
                match normalise(s, &mut buf) {
                    Some(n) => {
                        self.found += 1;
                        (self.f)(&buf[..n]);
                    }
                    None => self.fail(IdentifierError::BadLength),
                }
                // Do not leave a copy on the stack once it is hashed.
                buf.fill(0);
            }
            (_, None) => self.fail(IdentifierError::NotAString),
            (_, Some(_)) => self.fail(IdentifierError::Missing),
        }
    }

    fn fail(&mut self, e: IdentifierError) {
        self.first_error.get_or_insert(e);
    }
}

/// Lower-cases ASCII and drops separators (`:`, `-`, `.`, spaces) into `buf`; the length,
/// or `None` when empty or too long.
pub fn normalise(s: &str, buf: &mut [u8; MAX_LEN]) -> Option<usize> {
    let mut n = 0;
    for b in s.bytes() {
        if matches!(b, b':' | b'-' | b'.' | b' ' | b'\t') {
            continue;
        }
        *buf.get_mut(n)? = b.to_ascii_lowercase();
        n += 1;
    }
    (n > 0).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(doc: &str, path: &str) -> Result<Vec<String>, IdentifierError> {
        let doc: Json = serde_json::from_str(doc).unwrap();
        let mut got = Vec::new();
        for_each(&doc, path, &mut |id| {
            got.push(String::from_utf8(id.to_vec()).unwrap())
        })?;
        Ok(got)
    }

    #[test]
    fn single_list_and_nested_identifiers() {
        assert_eq!(
            collect(r#"{"mac":"AA:BB:CC:00:11:22","rssi":-70}"#, "mac").unwrap(),
            ["aabbcc001122"]
        );
        assert_eq!(
            collect(
                r#"{"devices":["aa-bb-cc-00-11-22","AABBCC001123"]}"#,
                "devices"
            )
            .unwrap(),
            ["aabbcc001122", "aabbcc001123"]
        );
        assert_eq!(
            collect(r#"{"devices":[]}"#, "devices").unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            collect(
                r#"{"probes":[{"mac":"aa:bb:cc:00:11:22"},{"mac":"aa:bb:cc:00:11:24"},{"x":1}]}"#,
                "probes.mac"
            )
            .unwrap(),
            ["aabbcc001122", "aabbcc001124"]
        );
    }

    #[test]
    fn errors_never_quote_the_payload() {
        let cases = [
            (r#"{"rssi":-70}"#, IdentifierError::Missing),
            (r#"{"mac":12}"#, IdentifierError::NotAString),
            (r#"{"mac":"::"}"#, IdentifierError::BadLength),
        ];
        for (doc, want) in cases {
            let e = collect(doc, "mac").unwrap_err();
            assert_eq!(e, want);
            assert!(!e.to_string().contains("70") && !e.to_string().contains("12"));
        }
        let long = format!(r#"{{"mac":"{}"}}"#, "a".repeat(MAX_LEN + 1));
        assert_eq!(collect(&long, "mac"), Err(IdentifierError::BadLength));
    }

    #[test]
    fn message_cap() {
        let many: Vec<String> = (0..MAX_PER_MESSAGE + 10)
            .map(|i| format!("{i:012x}"))
            .collect();
        let doc = serde_json::json!({ "devices": many }).to_string();
        assert_eq!(collect(&doc, "devices").unwrap().len(), MAX_PER_MESSAGE);
    }
}
