//! The list of outputs: `[[output]]` (several, each with a `name` and an optional `filter`),
//! or the single `[output]` table of older configs, read as one output named `default`.
//!
//! Both spellings deserialize into [`Outputs`] without buffering (a visitor takes the map
//! or the sequence the TOML deserializer hands it), so errors inside keep file:line: key.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::{OutputApi, OutputConfig};

/// Name of the output an `[output]` table (the single-output spelling) becomes.
pub const DEFAULT_OUTPUT: &str = "default";
/// Longest output name: it names a file in the spool directory and a metrics label.
pub const MAX_OUTPUT_NAME: usize = 64;

/// `filter` of an output: which points it receives. Empty lists match everything; a point
/// must match both parts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputFilter {
    /// Measurements sent (e.g. `["air_quality"]`). Default: all.
    #[serde(default)]
    pub measurements: Vec<String>,
    /// Tags a point must carry with exactly these values (e.g. `{ site = "centrum" }`).
    /// Default: none required.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

impl OutputFilter {
    /// True when a point of `measurement` with `tag(key)` lookups passes the filter.
    pub fn matches<'a>(&self, measurement: &str, tag: impl Fn(&str) -> Option<&'a str>) -> bool {
        let m_ok =
            self.measurements.is_empty() || self.measurements.iter().any(|m| m == measurement);
        m_ok && self.tags.iter().all(|(k, v)| tag(k) == Some(v.as_str()))
    }
}

/// Every configured output, in file order.
#[derive(Debug, Clone)]
pub struct Outputs {
    list: Vec<OutputConfig>,
    /// Written as the single `[output]` table (key paths `output.x`, not `output[i].x`).
    table: bool,
}

impl Outputs {
    /// The outputs, in file order (never empty once checked).
    pub fn all(&self) -> &[OutputConfig] {
        &self.list
    }

    /// The first output: the only one of a single-output config.
    pub fn first(&self) -> Option<&OutputConfig> {
        self.list.first()
    }

    /// True when the config has the single `[output]` table.
    pub fn is_table(&self) -> bool {
        self.table
    }

    /// The name in effect of output `i` (`default` for an `[output]` table without one).
    pub fn name(&self, i: usize) -> &str {
        let named = self.list.get(i).and_then(|o| o.name.as_deref());
        named.unwrap_or(DEFAULT_OUTPUT)
    }

    /// True when output 0 prints on standard output (then it is the only one).
    pub fn is_stdout(&self) -> bool {
        self.list
            .first()
            .is_some_and(|o| o.api == OutputApi::Stdout)
    }

    /// Key path of output `i` in error messages.
    pub fn key(&self, i: usize) -> String {
        if self.table {
            "output".to_string()
        } else {
            format!("output[{i}]")
        }
    }

    pub(super) fn check(&self, errs: &mut Vec<(String, String)>) {
        if self.list.is_empty() {
            let msg = "at least one [[output]] is required".to_string();
            errs.push(("output".into(), msg));
        }
        for (i, o) in self.list.iter().enumerate() {
            let key = self.key(i);
            o.check(&key, errs);
            self.check_name(i, &key, errs);
            if let Some(f) = &o.filter {
                check_filter(f, &format!("{key}.filter"), errs);
            }
            if o.api == OutputApi::Stdout && self.list.len() > 1 {
                let msg = "api = \"stdout\" must be the only output (nothing is spooled for it)";
                errs.push((format!("{key}.api"), msg.into()));
            }
        }
    }

    fn check_name(&self, i: usize, key: &str, errs: &mut Vec<(String, String)>) {
        let Some(name) = self.list.get(i).and_then(|o| o.name.as_deref()) else {
            if !self.table {
                let msg = "missing `name`: every [[output]] needs a unique name".to_string();
                errs.push((key.to_string(), msg));
            }
            return;
        };
        let ok_chars = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if name.is_empty() || name.len() > MAX_OUTPUT_NAME || !ok_chars {
            let msg = format!(
                "must be 1 to {MAX_OUTPUT_NAME} characters of A-Z, a-z, 0-9, '_' and '-' \
                 (it names the output's delivery position file in the spool)"
            );
            errs.push((format!("{key}.name"), msg));
        } else if (0..i).any(|j| self.name(j) == name) {
            let msg = format!("\"{name}\" is used by another [[output]]");
            errs.push((format!("{key}.name"), msg));
        }
    }
}

fn check_filter(f: &OutputFilter, key: &str, errs: &mut Vec<(String, String)>) {
    if f.measurements.is_empty() && f.tags.is_empty() {
        let msg = "matches every point: remove it, or list measurements or tags".to_string();
        errs.push((key.to_string(), msg));
    }
    if f.measurements.iter().any(|m| m.trim().is_empty()) {
        let msg = "must not hold an empty name".to_string();
        errs.push((format!("{key}.measurements"), msg));
    }
    if f.tags.keys().any(|k| k.trim().is_empty()) {
        errs.push((format!("{key}.tags"), "a tag key must not be empty".into()));
    }
}

impl<'de> Deserialize<'de> for Outputs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(OutputsVisitor)
    }
}

struct OutputsVisitor;

impl<'de> Visitor<'de> for OutputsVisitor {
    type Value = Outputs;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[[output]] tables (or one [output] table)")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Outputs, A::Error> {
        let one = OutputConfig::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(Outputs {
            list: vec![one],
            table: true,
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Outputs, A::Error> {
        let list = Vec::<OutputConfig>::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        Ok(Outputs { list, table: false })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{Config, ConfigErrors};
    use super::*;

    const HEAD: &str = "[gateway]\nid = \"gw\"\n\n";

    fn parse(outputs: &str) -> Result<Config, ConfigErrors> {
        Config::parse(&format!("{HEAD}{outputs}"), Path::new("t.toml"))
    }

    /// (line, key, message) of each error.
    fn errors(outputs: &str) -> Vec<(usize, String, String)> {
        let errs = parse(outputs).err().map(|e| e.0).unwrap_or_default();
        errs.into_iter()
            .map(|e| (e.line, e.key, e.message))
            .collect()
    }

    const STORE: &str = "api = \"v1\"\nurl = \"http://127.0.0.1:8086\"\ndb = \"x\"\n";

    #[test]
    fn an_output_table_is_one_output_named_default() {
        let cfg = parse(&format!("[output]\n{STORE}")).unwrap();
        assert!(cfg.output.is_table());
        assert_eq!(cfg.output.all().len(), 1);
        assert_eq!(cfg.output.name(0), DEFAULT_OUTPUT);
        assert!(cfg.output.all()[0].filter.is_none());
    }

    #[test]
    fn an_output_array_has_names_and_filters() {
        let text = format!(
            "[[output]]\nname = \"partner\"\n{STORE}\
             filter = {{ measurements = [\"air_quality\"], tags = {{ site = \"centrum\" }} }}\n"
        );
        let cfg = parse(&text).unwrap();
        assert!(!cfg.output.is_table());
        assert_eq!(cfg.output.name(0), "partner");
        let f = cfg.output.all()[0].filter.clone().unwrap();
        assert_eq!(f.measurements, ["air_quality"]);
        assert!(f.matches("air_quality", |k| (k == "site").then_some("centrum")));
        assert!(!f.matches("air_quality", |_| None));
        assert!(!f.matches("footfall", |k| (k == "site").then_some("centrum")));
    }

    #[test]
    fn errors_name_the_line_and_key_of_the_output() {
        // Line 4 is `[[output]]` (after the 3 lines of HEAD).
        let e = errors(&format!("[[output]]\n{STORE}"));
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!((e[0].0, e[0].1.as_str()), (4, "output[0]"));
        assert!(e[0].2.contains("name"), "{e:?}");
        let e = errors(&format!("[[output]]\nname = \"a b\"\n{STORE}"));
        assert_eq!((e[0].0, e[0].1.as_str()), (5, "output[0].name"), "{e:?}");
        let e = errors(&format!("[[output]]\nname = \"a\"\n{STORE}bogus = 1\n"));
        assert_eq!((e[0].0, e[0].1.as_str()), (9, "output[0].bogus"), "{e:?}");
        let e = errors(
            "[[output]]
name = \"a\"
api = \"v1\"
db = \"x\"
",
        );
        assert_eq!(e[0].1, "output[0].url", "{e:?}");
        // The single table keeps its old key paths.
        let e = errors("[output]\napi = \"v1\"\ndb = \"x\"\n");
        assert_eq!((e[0].0, e[0].1.as_str()), (4, "output.url"), "{e:?}");
    }

    #[test]
    fn names_are_unique_and_stdout_stands_alone() {
        let two = format!("[[output]]\nname = \"a\"\n{STORE}\n[[output]]\nname = \"a\"\n{STORE}");
        let e = errors(&two);
        let dup = e
            .iter()
            .find(|e| e.1 == "output[1].name")
            .expect("duplicate");
        assert_eq!(dup.0, 11);
        assert!(dup.2.contains("used by another"), "{e:?}");
        let mixed = format!(
            "[[output]]\nname = \"a\"\napi = \"stdout\"\n\n[[output]]\nname = \"b\"\n{STORE}"
        );
        let e = errors(&mixed);
        assert!(e.iter().any(|e| e.1 == "output[0].api"), "{e:?}");
    }

    #[test]
    fn an_empty_filter_is_refused() {
        let e = errors(&format!(
            "[[output]]\nname = \"a\"\n{STORE}[output.filter]\n"
        ));
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!((e[0].0, e[0].1.as_str()), (9, "output[0].filter"), "{e:?}");
        let e = errors(&format!(
            "[[output]]\nname = \"a\"\n{STORE}filter = {{ tags = {{ \"\" = \"x\" }} }}\n"
        ));
        assert_eq!(e[0].1, "output[0].filter.tags", "{e:?}");
    }

    #[test]
    fn several_outputs_parse_and_changing_their_names_needs_a_restart() {
        let two = format!("[[output]]\nname = \"a\"\n{STORE}\n[[output]]\nname = \"b\"\n{STORE}");
        let cfg = parse(&two).unwrap();
        assert_eq!((cfg.output.name(0), cfg.output.name(1)), ("a", "b"));
        let restart = |new: &Config| super::super::restart_keys(&cfg, new);
        let renamed = parse(&two.replace("\"b\"", "\"c\"")).unwrap();
        assert!(restart(&renamed).iter().any(|k| k.contains("output names")));
        let tweaked = parse(&two.replacen("db = \"x\"", "db = \"y\"", 1)).unwrap();
        assert!(restart(&tweaked).is_empty(), "{:?}", restart(&tweaked));
    }

    #[test]
    fn an_mqtt_output_needs_a_host_and_plain_topics() {
        let ok = "[[output]]\nname = \"d\"\napi = \"mqtt\"\nhost = \"b\"\nretain = true\n\
                  payload = \"line_protocol\"\ntopic = \"x/{sensor}\"\n";
        let cfg = parse(ok).unwrap();
        let o = &cfg.output.all()[0];
        assert_eq!(
            (o.retain, o.payload),
            (true, super::super::MqttPayload::LineProtocol)
        );
        let e = errors(
            "[[output]]\nname = \"d\"\napi = \"mqtt\"\nurl = \"http://x\"\ntopic = \"a/#\"\n",
        );
        let keys: Vec<&str> = e.iter().map(|e| e.1.as_str()).collect();
        assert_eq!(
            keys,
            ["output[0].host", "output[0].url", "output[0].topic"],
            "{e:?}"
        );
    }
}
