//! Just enough of PromQL/MetricsQL and InfluxQL to find what a Grafana query refers to: metric
//! names and label names (PromQL), measurement, fields and tags (InfluxQL), and the template
//! variables (`$name`, `${name}`, `[[name]]`) in any string. Not a parser for evaluating
//! queries; it only has to be right for the query styles our dashboards use, and any name it
//! cannot place is reported rather than ignored.

/// What a PromQL expression refers to.
#[derive(Debug, Default, PartialEq)]
pub struct PromRefs {
    pub metrics: Vec<String>,
    pub labels: Vec<String>,
}

/// Words that look like identifiers but are operators or modifiers.
const PROM_KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
];

fn ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Reads an identifier starting at `i`; returns it and the index after it.
fn ident(s: &[char], mut i: usize) -> (String, usize) {
    let start = i;
    while i < s.len() && ident_char(s[i]) {
        i += 1;
    }
    (s[start..i].iter().collect(), i)
}

/// Index after the string literal opened at `i` (quote char `s[i]`, backslash escapes).
fn skip_string(s: &[char], mut i: usize) -> usize {
    let q = s[i];
    i += 1;
    while i < s.len() && s[i] != q {
        i += if s[i] == '\\' { 2 } else { 1 };
    }
    i + 1
}

/// Index after a Grafana variable reference at `i` (`$name`, `${name...}`).
fn skip_variable(s: &[char], i: usize) -> usize {
    match s.get(i + 1) {
        Some('{') => s[i..]
            .iter()
            .position(|c| *c == '}')
            .map_or(s.len(), |p| i + p + 1),
        _ => ident(s, i + 1).1,
    }
}

fn next_non_space(s: &[char], mut i: usize) -> Option<(usize, char)> {
    while i < s.len() && s[i].is_whitespace() {
        i += 1;
    }
    s.get(i).map(|c| (i, *c))
}

/// Label names in a `(a, b)` list at `i`; returns them and the index after `)`.
fn label_list(s: &[char], i: usize) -> (Vec<String>, usize) {
    let end = s[i..]
        .iter()
        .position(|c| *c == ')')
        .map_or(s.len(), |p| i + p);
    let inner: String = s[i + 1..end].iter().collect();
    let labels = inner
        .split(',')
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    (labels, end + 1)
}

/// Label names of the matchers in `{...}` at `i`; returns them and the index after `}`.
fn matchers(s: &[char], mut i: usize) -> (Vec<String>, usize) {
    let mut labels = Vec::new();
    i += 1;
    while i < s.len() && s[i] != '}' {
        let c = s[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(s, i);
        } else if ident_start(c) {
            let (name, next) = ident(s, i);
            labels.push(name);
            i = next;
        } else {
            i += 1;
        }
    }
    (labels, i + 1)
}

/// Metric and label names an expression refers to. `label_values(m{..}, l)` (a Grafana
/// variable query) counts `m` as a metric and `l` as a label.
pub fn prom_refs(expr: &str) -> PromRefs {
    let mut refs = PromRefs::default();
    if let Some(inner) = expr
        .trim()
        .strip_prefix("label_values(")
        .and_then(|r| r.strip_suffix(')'))
    {
        let (selector, label) = inner.rsplit_once(',').unwrap_or((inner, ""));
        let mut r = prom_refs(selector);
        r.labels.push(label.trim().to_string());
        return r;
    }
    let s: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&s, i);
        } else if c == '$' {
            i = skip_variable(&s, i);
        } else if c == '[' {
            i = s[i..]
                .iter()
                .position(|c| *c == ']')
                .map_or(s.len(), |p| i + p + 1);
        } else if c == '{' {
            let (labels, next) = matchers(&s, i);
            refs.labels.extend(labels);
            i = next;
        } else if c.is_ascii_digit() || c == '.' {
            // A number (also 1e3, 0x1f): letters glued to it are part of it.
            while i < s.len() && (ident_char(s[i]) || s[i] == '.') {
                i += 1;
            }
        } else if ident_start(c) {
            let (word, next) = ident(&s, i);
            i = next;
            // A function call, or an aggregation written `sum by (..) (..)`.
            let paren = match next_non_space(&s, i) {
                Some((_, '(')) => true,
                Some((at, c)) if ident_start(c) => {
                    let (next_word, _) = ident(&s, at);
                    matches!(next_word.as_str(), "by" | "without")
                }
                _ => false,
            };
            if matches!(word.as_str(), "by" | "without" | "on" | "ignoring") && paren {
                let (at, _) = next_non_space(&s, i).unwrap_or((i, '('));
                let (labels, after) = label_list(&s, at);
                refs.labels.extend(labels);
                i = after;
            } else if !paren && !PROM_KEYWORDS.contains(&word.as_str()) {
                refs.metrics.push(word);
            }
        } else {
            i += 1;
        }
    }
    refs
}

/// What an InfluxQL statement refers to: its measurement, the fields it selects, and every
/// other quoted identifier (tags in WHERE/GROUP BY/WITH KEY, or fields used in WHERE).
#[derive(Debug, Default, PartialEq)]
pub struct InfluxRefs {
    pub measurement: String,
    pub fields: Vec<String>,
    pub other: Vec<String>,
}

/// Quoted identifiers of `part`, skipping those right after `AS` (aliases), regex and
/// string literals.
fn quoted_idents(part: &str) -> Vec<String> {
    let s: Vec<char> = part.chars().collect();
    let (mut out, mut i, mut last_word) = (Vec::new(), 0, String::new());
    while i < s.len() {
        match s[i] {
            '"' => {
                let end = skip_string(&s, i);
                let name: String = s[i + 1..end.saturating_sub(1).max(i + 1)].iter().collect();
                if !last_word.eq_ignore_ascii_case("AS") {
                    out.push(name);
                }
                last_word.clear();
                i = end;
            }
            '\'' | '/' => i = skip_string(&s, i),
            '$' => i = skip_variable(&s, i),
            c if ident_start(c) => {
                let (w, next) = ident(&s, i);
                last_word = w;
                i = next;
            }
            _ => i += 1,
        }
    }
    out
}

/// Splits `SELECT .. FROM "m" ..` or `SHOW TAG VALUES FROM "m" WITH KEY = "k" ..`.
/// `None` when the statement has no `FROM "measurement"` (reported by the caller).
pub fn influx_refs(q: &str) -> Option<InfluxRefs> {
    let from = q.find("FROM \"")?;
    let rest = &q[from + 6..];
    let end = rest.find('"')?;
    let measurement = rest[..end].to_string();
    let head = &q[..from];
    let fields = match head.trim_start().strip_prefix("SELECT") {
        Some(select) => quoted_idents(select),
        None => Vec::new(),
    };
    Some(InfluxRefs {
        measurement,
        fields,
        other: quoted_idents(&rest[end + 1..]),
    })
}

/// Template variables referenced in `text`: `$name`, `${name}`, `${name:fmt}`, `[[name]]`.
pub fn variables(text: &str) -> Vec<String> {
    // `:` ends a variable name (`${x:csv}`), unlike a PromQL identifier.
    let ident = |s: &[char], i: usize| {
        let (name, next) = ident(s, i);
        match name.split_once(':') {
            Some((head, _)) => (head.to_string(), next),
            None => (name, next),
        }
    };
    let s: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        if s[i] == '$' && s.get(i + 1) == Some(&'{') {
            let (name, next) = ident(&s, i + 2);
            out.push(name);
            i = next;
        } else if s[i] == '$' && s.get(i + 1).is_some_and(|c| ident_start(*c)) {
            let (name, next) = ident(&s, i + 1);
            out.push(name);
            i = next;
        } else if s[i] == '[' && s.get(i + 1) == Some(&'[') {
            let (name, next) = ident(&s, i + 2);
            out.push(name);
            i = next;
        } else {
            i += 1;
        }
    }
    out.retain(|n| !n.is_empty());
    out
}

#[test]
fn prom_refs_finds_metrics_and_labels() {
    let r = prom_refs(
        r#"sum by (site, sensor) (rate(air_quality_pm2_5_mean{gateway=~"$gateway"}[$__rate_interval])) / on (site) group_left foo_total offset 5m"#,
    );
    assert_eq!(r.metrics, ["air_quality_pm2_5_mean", "foo_total"]);
    assert_eq!(r.labels, ["site", "sensor", "gateway", "site"]);
    let r = prom_refs(r#"time() - citysense_aggregator_heartbeat_seconds{instance=~"$instance"}"#);
    assert_eq!(r.metrics, ["citysense_aggregator_heartbeat_seconds"]);
    let r = prom_refs(r#"label_values(citysense_source_up{instance=~"$instance"}, source)"#);
    assert_eq!(r.metrics, ["citysense_source_up"]);
    assert_eq!(r.labels, ["instance", "source"]);
    let r = prom_refs("count_over_time((x_y == 1)[$__interval]) > 1e3");
    assert_eq!(r.metrics, ["x_y"]);
}

#[test]
fn influx_refs_splits_fields_from_tags() {
    let r = influx_refs(
        r#"SELECT mean("pm2_5_mean") AS "mean", last("eaqi") FROM "air_quality" WHERE "site" =~ /^$site$/ AND "rh_capped" = true AND $timeFilter GROUP BY time($__interval), "sensor" fill(none)"#,
    )
    .expect("has FROM");
    assert_eq!(r.measurement, "air_quality");
    assert_eq!(r.fields, ["pm2_5_mean", "eaqi"]);
    assert_eq!(r.other, ["site", "rh_capped", "sensor"]);
    let r = influx_refs(
        r#"SHOW TAG VALUES FROM "footfall" WITH KEY = "zone" WHERE "site" =~ /^$site$/"#,
    )
    .expect("has FROM");
    assert_eq!((r.measurement.as_str(), r.fields.len()), ("footfall", 0));
    assert_eq!(r.other, ["zone", "site"]);
}

#[test]
fn variables_in_all_spellings() {
    assert_eq!(
        variables(r#"a=~"$site" ${influx} [[zone]] ${x:csv} /^$gw$/ 5$"#),
        ["site", "influx", "zone", "x", "gw"]
    );
}
