//! Where a key is in the configuration text, from `toml_edit`'s spans: the key path of a
//! byte offset (for serde errors, which carry a span) and the position of a key path (for
//! the semantic checks, which name a key). Paths are dotted with `[i]` for array elements and
//! array-of-tables entries: `mqtt[0].subscription[1].topic`, `aggregation.stats[2]`.

use std::ops::Range;

use toml_edit::{ArrayOfTables, ImDocument, InlineTable, Item, Table, Value};

/// What holds the byte offset an error points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    /// Key path of the innermost key or element there.
    pub path: String,
    /// The whole `key = value` (the outermost one in its table) to blank out before parsing
    /// again; `None` when the offset is on a table header.
    pub entry: Option<Range<usize>>,
}

/// The entry an error with byte range `span` of `text` is about; `None` if `text` is not TOML
/// or nothing is there. An error spanning the root table (a missing top-level field) is about
/// the whole file: path "" and no entry.
pub(super) fn entry_at(text: &str, span: Range<usize>) -> Option<Entry> {
    let doc = ImDocument::parse(text).ok()?;
    let root = doc.as_table();
    if root.span() == Some(span.clone()) {
        return Some(Entry {
            path: String::new(),
            entry: None,
        });
    }
    in_table(root, span.start, "")
}

/// Byte offset where `path` is set, or else where the nearest enclosing table's header is;
/// `None` if neither is in `text` (a default value is wrong).
pub(super) fn position_of(text: &str, path: &str) -> Option<usize> {
    let doc = ImDocument::parse(text).ok()?;
    let mut node = Node::Table(doc.as_table());
    let mut best = None;
    for segment in segments(path) {
        let Some((next, at)) = child(node, segment) else {
            break;
        };
        best = at.or(best);
        node = next;
    }
    best
}

fn contains(span: Option<Range<usize>>, pos: usize) -> bool {
    span.is_some_and(|s| s.contains(&pos))
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

/// Searches the entries of `table` (whose path is `path`) for `pos`.
fn in_table(table: &Table, pos: usize, path: &str) -> Option<Entry> {
    for (name, item) in table.iter() {
        let here = join(path, name);
        let key_span = table.key(name).and_then(|k| k.span());
        let found = match item {
            Item::Value(v) => {
                let (Some(k), Some(s)) = (&key_span, v.span()) else {
                    continue;
                };
                let entry = k.start..s.end;
                if !entry.contains(&pos) {
                    continue;
                }
                Some(Entry {
                    path: in_value(v, pos, here),
                    entry: Some(entry),
                })
            }
            Item::Table(t) => in_sub_table(t, pos, &here, key_span),
            Item::ArrayOfTables(a) => in_tables(a, pos, &here),
            Item::None => None,
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

/// A sub-table: a dotted key (`a.b = 1`, blanked from its first part) or a `[header]`.
fn in_sub_table(t: &Table, pos: usize, path: &str, key: Option<Range<usize>>) -> Option<Entry> {
    let Some(mut found) = in_table(t, pos, path) else {
        return on_header(t, pos, path);
    };
    if let (true, Some(r), Some(k)) = (t.is_dotted(), &mut found.entry, key) {
        r.start = r.start.min(k.start);
    }
    Some(found)
}

fn on_header(t: &Table, pos: usize, path: &str) -> Option<Entry> {
    contains(t.span(), pos).then(|| Entry {
        path: path.to_string(),
        entry: None,
    })
}

fn in_tables(a: &ArrayOfTables, pos: usize, path: &str) -> Option<Entry> {
    a.iter().enumerate().find_map(|(i, t)| {
        let here = format!("{path}[{i}]");
        in_table(t, pos, &here).or_else(|| on_header(t, pos, &here))
    })
}

/// The path of the innermost element or inline-table key of `v` holding `pos`.
fn in_value(v: &Value, pos: usize, path: String) -> String {
    match v {
        Value::Array(a) => {
            for (i, el) in a.iter().enumerate() {
                if contains(el.span(), pos) {
                    return in_value(el, pos, format!("{path}[{i}]"));
                }
            }
        }
        Value::InlineTable(t) => return in_inline(t, pos, path),
        _ => {}
    }
    path
}

fn in_inline(t: &InlineTable, pos: usize, path: String) -> String {
    for (name, v) in t.iter() {
        let key = t.key(name).and_then(|k| k.span());
        if contains(key, pos) || contains(v.span(), pos) {
            return in_value(v, pos, join(&path, name));
        }
    }
    path
}

/// One step of a key path: `name` or `[i]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Segment<'p> {
    Key(&'p str),
    Index(usize),
}

/// `a.b[0].c` -> `a`, `b`, `[0]`, `c`. An index that is not a number is kept as a key (not found).
fn segments(path: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let mut pieces = part.split('[');
        if let Some(name) = pieces.next().filter(|n| !n.is_empty()) {
            out.push(Segment::Key(name));
        }
        for index in pieces {
            let digits = index.strip_suffix(']').unwrap_or(index);
            out.push(match digits.parse() {
                Ok(i) => Segment::Index(i),
                Err(_) => Segment::Key(index),
            });
        }
    }
    out
}

#[derive(Clone, Copy)]
enum Node<'d> {
    Table(&'d Table),
    Inline(&'d InlineTable),
    Array(&'d toml_edit::Array),
    Tables(&'d ArrayOfTables),
    Leaf,
}

fn node_of_item(item: &Item) -> Node<'_> {
    match item {
        Item::Table(t) => Node::Table(t),
        Item::ArrayOfTables(a) => Node::Tables(a),
        Item::Value(v) => node_of_value(v),
        Item::None => Node::Leaf,
    }
}

fn node_of_value(v: &Value) -> Node<'_> {
    match v {
        Value::Array(a) => Node::Array(a),
        Value::InlineTable(t) => Node::Inline(t),
        _ => Node::Leaf,
    }
}

/// The child `segment` of `node`, and where it is written (`None` for a table that has no
/// header of its own, such as `a` in `[a.b]`).
fn child<'d>(node: Node<'d>, segment: Segment<'_>) -> Option<(Node<'d>, Option<usize>)> {
    let start = |s: Option<Range<usize>>| s.map(|s| s.start);
    match (node, segment) {
        (Node::Table(t), Segment::Key(name)) => {
            let (key, item) = t.get_key_value(name)?;
            let implicit = matches!(item, Item::Table(sub) if sub.is_implicit());
            let at = if implicit { None } else { start(key.span()) };
            Some((node_of_item(item), at))
        }
        (Node::Inline(t), Segment::Key(name)) => {
            let v = t.get(name)?;
            Some((node_of_value(v), start(t.key(name)?.span())))
        }
        (Node::Tables(a), Segment::Index(i)) => {
            let t = a.get(i)?;
            Some((Node::Table(t), start(t.span())))
        }
        (Node::Array(a), Segment::Index(i)) => {
            let v = a.get(i)?;
            Some((node_of_value(v), start(v.span())))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path_at(text: &str, needle: &str) -> String {
        let pos = text.find(needle).expect("needle in text");
        entry_at(text, pos..pos + 1).expect("an entry").path
    }

    fn line_of(text: &str, path: &str) -> Option<usize> {
        position_of(text, path).map(|p| text[..p].matches('\n').count() + 1)
    }

    const TEXT: &str = "[gateway]\nid = \"x\"\n[[mqtt]]\nhost = \"a\"\n[[mqtt]]\nhost = \"b\"\n[[mqtt.subscription]]\ntopic = \"t\"\ncounters = { in = \"counter\", out = 5 }\n[aggregation]\nstats = [\n  \"mean\",\n  \"p95\",\n  7,\n]\n[aqi.lki_top_edge]\npm10 = 1\n";

    #[test]
    fn paths_of_offsets() {
        assert_eq!(path_at(TEXT, "\"x\""), "gateway.id");
        assert_eq!(path_at(TEXT, "\"a\""), "mqtt[0].host");
        assert_eq!(path_at(TEXT, "\"b\""), "mqtt[1].host");
        assert_eq!(path_at(TEXT, "topic"), "mqtt[1].subscription[0].topic");
        assert_eq!(path_at(TEXT, "5 }"), "mqtt[1].subscription[0].counters.out");
        assert_eq!(path_at(TEXT, "7,"), "aggregation.stats[2]");
        assert_eq!(path_at(TEXT, "[[mqtt.sub"), "mqtt[1].subscription[0]");
        let pos = TEXT.find("7,").unwrap();
        let entry = &TEXT[entry_at(TEXT, pos..pos + 1).unwrap().entry.unwrap()];
        assert!(
            entry.starts_with("stats = [") && entry.ends_with(']'),
            "{entry}"
        );
    }

    #[test]
    fn positions_of_paths() {
        assert_eq!(line_of(TEXT, "mqtt[1].host"), Some(6));
        assert_eq!(line_of(TEXT, "mqtt[1].subscription[0].topic"), Some(8));
        assert_eq!(
            line_of(TEXT, "mqtt[1].subscription[0].counters.out"),
            Some(9)
        );
        assert_eq!(line_of(TEXT, "aggregation.stats[2]"), Some(14));
        // Not set: the line of the table that would hold it.
        assert_eq!(line_of(TEXT, "mqtt[1].port"), Some(5));
        assert_eq!(line_of(TEXT, "aqi.lki_top_edge.pm2_5"), Some(16));
        // Neither key nor table in the file.
        assert_eq!(line_of(TEXT, "spool.max_bytes"), None);
        assert_eq!(line_of(TEXT, "aqi.eaqi"), None);
    }

    #[test]
    fn dotted_keys_blank_from_their_first_part() {
        let text = "[output]\nhealth.every = \"x\"\n";
        let pos = text.find("\"x\"").unwrap();
        let e = entry_at(text, pos..pos + 3).unwrap();
        assert_eq!(e.path, "output.health.every");
        assert_eq!(&text[e.entry.unwrap()], "health.every = \"x\"");
        assert_eq!(segments("a.b[0][1].c"), {
            use Segment::*;
            vec![Key("a"), Key("b"), Index(0), Index(1), Key("c")]
        });
    }
}
