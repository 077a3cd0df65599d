//! Field-selective JSON parse, the hot path of `json` and `ttn` subscriptions with `fields`.
//!
//! The full parse builds a `serde_json::Value` tree: a `String` per key and a map node per
//! object, for a payload of which two or three numbers are used. Here the payload is parsed
//! once into a [`Node`] tree that keeps only the members on the way to a wanted path (the
//! configured fields, the timestamp path, TTN's fixed members), borrows keys and strings from
//! the payload, and checks everything else with [`Skip`] as strictly as the full parse does
//! (numbers in range, valid strings, nesting limit), without storing it.
//!
//! The path rules run over this tree through the same [`Tree`] functions as over the full one,
//! and a repeated key keeps its last value as `serde_json`'s map does, so a mapping that
//! succeeds here yields what the full parse would. Anything else (malformed JSON, a missing
//! required member, a value of the wrong type, a timestamp that does not parse) declines, and
//! the caller runs the full parse, which produces the error exactly as before. Bad input thus
//! costs two parses; good input one lean one.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

use super::{lookup, remove_path, timestamp_ns, Mapper, Sample, Tree, TsValue};
use crate::reading::TimestampNs;
use crate::time::parse_rfc3339;

/// Wanted paths per payload, at most (more: the full parse).
const MAX_WANTED: usize = 24;
/// Where TTN's decoded fields live.
const TTN_DECODED: &str = "uplink_message.decoded_payload.";
/// TTN members read besides the fields.
const TTN_MEMBERS: [&str; 4] = [
    "simulated",
    "received_at",
    "end_device_ids.device_id",
    "end_device_ids.application_ids.application_id",
];

impl Mapper {
    /// `json` with configured fields; false (and `out` untouched): use the full parse.
    pub(super) fn map_json_fields<'a>(&'a self, payload: &[u8], out: &mut Vec<Sample<'a>>) -> bool {
        if self.fields.is_empty() {
            return false; // every numeric leaf: that needs the whole tree
        }
        let mut wanted = [Wanted::EMPTY; MAX_WANTED];
        let paths = self.fields.values().chain(&self.timestamp_path);
        let Some(n) = fill(&mut wanted, paths.map(|p| Wanted::new("", p))) else {
            return false;
        };
        let Some(mut doc) = parse(payload, &wanted[..n]) else {
            return false;
        };
        if !matches!(doc, Node::Obj(_)) {
            return false;
        }
        let ts = match &self.timestamp_path {
            None => None,
            Some(path) => match lookup(&doc, path).and_then(|v| self.ts_of(v)) {
                Some(ts) => Some(ts),
                None => return false,
            },
        };
        // As in the full parse: the timestamp is not a field value.
        if let Some(path) = &self.timestamp_path {
            remove_path(&mut doc, path);
        }
        self.push_fields(&doc, ts, &[], out)
    }

    /// The Things Stack uplink with configured fields (no radio quantities); false (and `out`
    /// untouched): use the full parse.
    pub(super) fn map_ttn_fields<'a>(&'a self, payload: &[u8], out: &mut Vec<Sample<'a>>) -> bool {
        if self.fields.is_empty() || self.ttn.radio {
            return false;
        }
        let mut wanted = [Wanted::EMPTY; MAX_WANTED];
        let members = TTN_MEMBERS.iter().map(|m| Wanted::new("", m));
        let fields = self.fields.values().map(|p| Wanted::new(TTN_DECODED, p));
        let Some(n) = fill(&mut wanted, members.chain(fields)) else {
            return false;
        };
        let Some(doc) = parse(payload, &wanted[..n]) else {
            return false;
        };
        let Some(up) = doc.member("uplink_message") else {
            return false;
        };
        let simulated = matches!(doc.member("simulated"), Some(Node::Bool(true)));
        if simulated && !self.ttn.simulated {
            return false;
        }
        let ts = match doc.member("received_at") {
            Some(Node::Str(s)) => match parse_rfc3339(s) {
                Ok(ts) => Some(ts),
                Err(_) => return false,
            },
            _ => None,
        };
        let ids = doc.member("end_device_ids");
        let mut tags = Vec::new();
        if let Some(Node::Str(dev)) = ids.and_then(|i| i.member("device_id")) {
            tags.push(("sensor", dev.to_string()));
        }
        let app = ids
            .and_then(|i| i.member("application_ids"))
            .and_then(|a| a.member("application_id"));
        if let (true, Some(Node::Str(app))) = (self.ttn.application_tag, app) {
            tags.push(("application", app.to_string()));
        }
        let Some(decoded) = up.member("decoded_payload") else {
            return false;
        };
        self.push_fields(decoded, ts, &tags, out)
    }

    /// The configured fields found in `doc`; false (nothing pushed) if one is not a number.
    fn push_fields<'a>(
        &'a self,
        doc: &Node<'_>,
        ts: Option<TimestampNs>,
        tags: &[(&'static str, String)],
        out: &mut Vec<Sample<'a>>,
    ) -> bool {
        let before = out.len();
        for (quantity, path) in &self.fields {
            // A configured field may be absent from a given message (sensors report subsets).
            let Some(v) = lookup(doc, path) else { continue };
            let Node::Num(value) = *v else {
                out.truncate(before);
                return false;
            };
            out.push(Sample {
                quantity: Cow::Borrowed(quantity.as_str()),
                tags: tags.to_vec(),
                value,
                ts,
            });
        }
        true
    }

    /// The event time of timestamp value `v`; `None` when it does not convert.
    fn ts_of(&self, v: &Node<'_>) -> Option<TimestampNs> {
        let input = match v {
            Node::Str(s) => TsValue::Str(s),
            Node::Num(n) => TsValue::Num(Some(*n)),
            _ => TsValue::Other,
        };
        timestamp_ns(self.timestamp_format, input).ok()
    }
}

/// Copies `items` into `buf`; `None` if they do not fit.
fn fill<'p>(
    buf: &mut [Wanted<'p>; MAX_WANTED],
    items: impl Iterator<Item = Wanted<'p>>,
) -> Option<usize> {
    let mut n = 0;
    for w in items {
        *buf.get_mut(n)? = w;
        n += 1;
    }
    Some(n)
}

/// A wanted dotted path, `head` + `tail` (TTN's fixed prefix plus a configured path).
#[derive(Clone, Copy)]
struct Wanted<'p> {
    head: &'static str,
    tail: &'p str,
}

impl<'p> Wanted<'p> {
    const EMPTY: Wanted<'static> = Wanted { head: "", tail: "" };

    fn new(head: &'static str, tail: &'p str) -> Wanted<'p> {
        Wanted { head, tail }
    }

    fn len(&self) -> usize {
        self.head.len() + self.tail.len()
    }

    /// True if the path has `s` at byte offset `at`.
    fn has_at(&self, at: usize, s: &[u8]) -> bool {
        let head = self.head.as_bytes();
        // The part of `s` that falls in `head`, and the rest, which falls in `tail`.
        let split = head.len().saturating_sub(at).min(s.len());
        let (in_head, in_tail) = s.split_at(split);
        if !in_head.is_empty() && head.get(at..at + split) != Some(in_head) {
            return false;
        }
        let from = (at + split).saturating_sub(head.len());
        in_tail.is_empty() || self.tail.as_bytes().get(from..from + in_tail.len()) == Some(in_tail)
    }

    /// True if both paths start with the same `len` bytes.
    fn same_prefix(&self, other: &Wanted<'_>, len: usize) -> bool {
        let head = other.head.as_bytes();
        let in_head = &head[..len.min(head.len())];
        let in_tail = other.tail.as_bytes().get(..len - in_head.len());
        self.has_at(0, in_head) && in_tail.is_some_and(|t| self.has_at(in_head.len(), t))
    }
}

/// Where a member sits: the dotted join of the keys leading to it is the first `len` bytes of
/// `wanted[witness]` (`len` 0: the document itself). Kept allocation-free on purpose.
#[derive(Clone, Copy)]
struct Place<'w, 'p> {
    wanted: &'w [Wanted<'p>],
    witness: usize,
    len: usize,
}

impl<'w, 'p> Place<'w, 'p> {
    /// The place of member `key` if its path is a wanted path or a dotted prefix of one.
    /// Every key sequence the path rules can visit for a wanted path passes this test.
    fn child(&self, key: &str) -> Option<Place<'w, 'p>> {
        let start = if self.len == 0 { 0 } else { self.len + 1 };
        let end = start + key.len();
        let witness = self.wanted.get(self.witness)?;
        let hit = self.wanted.iter().position(|w| {
            (self.len == 0 || (w.same_prefix(witness, self.len) && w.has_at(self.len, b".")))
                && w.has_at(start, key.as_bytes())
                && (w.len() == end || w.has_at(end, b"."))
        })?;
        Some(Place {
            wanted: self.wanted,
            witness: hit,
            len: end,
        })
    }
}

/// What the mapping can see of a JSON value.
#[derive(Debug, PartialEq)]
enum Node<'de> {
    Num(f64),
    Str(Cow<'de, str>),
    Bool(bool),
    /// Only the wanted members; a repeated key keeps its last value.
    Obj(Vec<(Cow<'de, str>, Node<'de>)>),
    /// `null` and arrays: never a field value or timestamp.
    Other,
}

impl Tree for Node<'_> {
    fn member(&self, key: &str) -> Option<&Self> {
        match self {
            Node::Obj(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    fn member_mut(&mut self, key: &str) -> Option<&mut Self> {
        match self {
            Node::Obj(members) => members.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    fn remove_member(&mut self, key: &str) -> bool {
        let Node::Obj(members) = self else {
            return false;
        };
        let before = members.len();
        members.retain(|(k, _)| k != key);
        members.len() != before
    }
}

/// Parses `payload` keeping the members on the way to `wanted`; `None` if it is not valid JSON.
fn parse<'de>(payload: &'de [u8], wanted: &[Wanted<'_>]) -> Option<Node<'de>> {
    // Valid UTF-8 up front lets serde_json skip its per-string check; invalid input is the
    // full parse's to report.
    let text = std::str::from_utf8(payload).ok()?;
    let mut de = serde_json::Deserializer::from_str(text);
    let place = Place {
        wanted,
        witness: 0,
        len: 0,
    };
    let node = place.deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(node)
}

impl<'de> DeserializeSeed<'de> for Place<'_, '_> {
    type Value = Node<'de>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Node<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Place<'_, '_> {
    type Value = Node<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node<'de>, E> {
        Ok(Node::Bool(v))
    }
    // The same conversions as `serde_json::Number::as_f64`.
    fn visit_i64<E>(self, v: i64) -> Result<Node<'de>, E> {
        Ok(Node::Num(v as f64))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node<'de>, E> {
        Ok(Node::Num(v as f64))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node<'de>, E> {
        Ok(Node::Num(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Node<'de>, E> {
        Ok(Node::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node<'de>, E> {
        Ok(Node::Str(Cow::Owned(v.to_owned()))) // had escapes
    }
    fn visit_unit<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Node<'de>, A::Error> {
        Skip.visit_seq(seq)?;
        Ok(Node::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node<'de>, A::Error> {
        let mut members: Vec<(Cow<'de, str>, Node<'de>)> = Vec::new();
        while let Some(Key(key)) = map.next_key()? {
            let Some(place) = self.child(&key) else {
                map.next_value::<Skip>()?;
                continue;
            };
            let value = map.next_value_seed(place)?;
            match members.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = value,
                None => members.push((key, value)),
            }
        }
        Ok(Node::Obj(members))
    }
}

/// An object key, borrowed from the payload unless it had escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Key<'de>, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// A value parsed and dropped. Unlike `serde::de::IgnoredAny`, which serde_json skips without
/// checking numbers' range, it goes through `deserialize_any` so that whatever the full parse
/// rejects is rejected here too.
struct Skip;

impl<'de> de::Deserialize<'de> for Skip {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Skip, D::Error> {
        d.deserialize_any(Skip)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = Skip;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_str<E>(self, _: &str) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_unit<E>(self) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Skip)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skip, A::Error> {
        while map.next_key::<Skip>()?.is_some() {
            map.next_value::<Skip>()?;
        }
        Ok(Skip)
    }
}

#[cfg(test)]
mod tests;
