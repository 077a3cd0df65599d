//! Checks one Grafana dashboard (JSON) against the dashboard shape Grafana imports and against
//! what the daemon actually emits ([`Emitted`]). Every problem is returned as a message, so a
//! test can show them all at once and a negative test can assert a problem is found.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::query::{influx_refs, prom_refs, variables};

/// Names the daemon produced in a real run: `/metrics` and the store.
#[derive(Debug, Default)]
pub struct Emitted {
    /// Prometheus metric name -> label names, from `/metrics`.
    pub prom: BTreeMap<String, BTreeSet<String>>,
    /// Store series name (`<measurement>_<field>`, as VictoriaMetrics names line protocol)
    /// -> label names (the point's tags).
    pub store: BTreeMap<String, BTreeSet<String>>,
}

/// Labels Prometheus adds when it scrapes a target; never in `/metrics` itself.
const SCRAPE_LABELS: &[&str] = &["instance", "job"];
/// Variables Grafana defines itself (plus the InfluxDB alias patterns `$col`, `$tag_x`).
fn builtin(var: &str) -> bool {
    var.starts_with("__")
        || var.starts_with("tag_")
        || matches!(var, "timeFilter" | "interval" | "col" | "m" | "measurement")
}

impl Emitted {
    /// Tags of measurement `m`: the labels of every store series of it.
    fn tags_of(&self, m: &str) -> BTreeSet<String> {
        let prefix = format!("{m}_");
        self.store
            .iter()
            .filter(|(name, _)| name.starts_with(&prefix))
            .flat_map(|(_, labels)| labels.iter().cloned())
            .collect()
    }

    fn check_prom(&self, at: &str, expr: &str, errs: &mut Vec<String>) {
        let refs = prom_refs(expr);
        if refs.metrics.is_empty() {
            errs.push(format!("{at}: no metric in `{expr}`"));
        }
        let mut labels: BTreeSet<String> = BTreeSet::new();
        for m in &refs.metrics {
            // Daemon metrics come from /metrics; anything else is a stored field.
            let known = match m.starts_with("citysense_") {
                true => self.prom.get(m).map(|l| {
                    let scrape = SCRAPE_LABELS.iter().map(|s| s.to_string());
                    l.iter().cloned().chain(scrape).collect::<BTreeSet<_>>()
                }),
                false => self.store.get(m).cloned(),
            };
            match known {
                Some(l) => labels.extend(l),
                None => errs.push(format!("{at}: metric `{m}` is not emitted by the daemon")),
            }
        }
        for l in refs.labels.iter().filter(|l| !labels.contains(*l)) {
            errs.push(format!("{at}: label `{l}` not on {:?}", refs.metrics));
        }
    }

    fn check_influx(&self, at: &str, q: &str, errs: &mut Vec<String>) {
        let Some(r) = influx_refs(q) else {
            errs.push(format!("{at}: no FROM \"measurement\" in `{q}`"));
            return;
        };
        let tags = self.tags_of(&r.measurement);
        if tags.is_empty() {
            errs.push(format!(
                "{at}: measurement `{}` is never written",
                r.measurement
            ));
            return;
        }
        let field = |f: &str| self.store.contains_key(&format!("{}_{f}", r.measurement));
        for f in r.fields.iter().filter(|f| !field(f)) {
            errs.push(format!(
                "{at}: field `{}.{f}` is never written",
                r.measurement
            ));
        }
        for o in r.other.iter().filter(|o| !tags.contains(*o) && !field(o)) {
            errs.push(format!(
                "{at}: `{o}` is no tag or field of `{}`",
                r.measurement
            ));
        }
    }
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// Every string in `v`, recursively (for variable references).
fn strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

/// A query target's language by its datasource type.
fn check_query(at: &str, ds_type: &str, q: &str, emitted: &Emitted, errs: &mut Vec<String>) {
    match ds_type {
        "prometheus" => emitted.check_prom(at, q, errs),
        "influxdb" => emitted.check_influx(at, q, errs),
        other => errs.push(format!("{at}: unexpected datasource type `{other}`")),
    }
}

/// Template variables: name -> (type, datasource type for `datasource` variables).
fn check_templating(
    d: &Value,
    emitted: &Emitted,
    errs: &mut Vec<String>,
) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    let list = d["templating"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for v in &list {
        let (Some(name), Some(kind)) = (str_of(v, "name"), str_of(v, "type")) else {
            errs.push(format!("template variable without name/type: {v}"));
            continue;
        };
        let at = format!("variable `{name}`");
        let ds_kind = match kind {
            "datasource" => str_of(v, "query").unwrap_or_default().to_string(),
            "query" => {
                let ds_type = str_of(&v["datasource"], "type").unwrap_or_default();
                match str_of(v, "query") {
                    Some(q) => check_query(&at, ds_type, q, emitted, errs),
                    None => errs.push(format!("{at}: query must be a string")),
                }
                String::new()
            }
            _ => String::new(),
        };
        if vars.insert(name.to_string(), ds_kind).is_some() {
            errs.push(format!("{at} defined twice"));
        }
    }
    vars
}

/// All problems of dashboard `d` (named `file` in messages).
pub fn check_dashboard(file: &str, d: &Value, emitted: &Emitted) -> Vec<String> {
    let mut errs = Vec::new();
    for key in ["uid", "title"] {
        if str_of(d, key).is_none_or(str::is_empty) {
            errs.push(format!("{file}: `{key}` missing"));
        }
    }
    if d["schemaVersion"].as_u64().is_none_or(|v| v < 36) {
        errs.push(format!(
            "{file}: schemaVersion missing or < 36 (Grafana 9+)"
        ));
    }
    let vars = check_templating(d, emitted, &mut errs);
    let panels = d["panels"].as_array().cloned().unwrap_or_default();
    if panels.is_empty() {
        errs.push(format!("{file}: no panels"));
    }
    let mut ids = BTreeSet::new();
    for p in &panels {
        check_panel(file, p, &vars, emitted, &mut ids, &mut errs);
    }
    let mut texts = Vec::new();
    strings(d, &mut texts);
    for var in texts.iter().flat_map(|t| variables(t)) {
        if !builtin(&var) && !vars.contains_key(&var) {
            errs.push(format!("{file}: `${var}` is no template variable"));
        }
    }
    errs
}

fn check_panel(
    file: &str,
    p: &Value,
    vars: &BTreeMap<String, String>,
    emitted: &Emitted,
    ids: &mut BTreeSet<u64>,
    errs: &mut Vec<String>,
) {
    let title = str_of(p, "title").unwrap_or("<untitled>");
    let at = format!("{file}: panel `{title}`");
    match p["id"].as_u64() {
        Some(id) if !ids.insert(id) => errs.push(format!("{at}: id {id} used twice")),
        Some(_) => {}
        None => errs.push(format!("{at}: no numeric id")),
    }
    let g = &p["gridPos"];
    let dims: Vec<Option<u64>> = ["x", "y", "w", "h"]
        .iter()
        .map(|k| g[*k].as_u64())
        .collect();
    match dims.as_slice() {
        [Some(x), Some(_), Some(w), Some(h)] if x + w <= 24 && *w > 0 && *h > 0 => {}
        _ => errs.push(format!("{at}: bad gridPos {g}")),
    }
    if str_of(p, "type") == Some("row") {
        return;
    }
    let ds_type = str_of(&p["datasource"], "type").unwrap_or_default();
    let ds_uid = str_of(&p["datasource"], "uid").unwrap_or_default();
    let var = ds_uid.trim_start_matches("${").trim_end_matches('}');
    if vars.get(var).map(String::as_str) != Some(ds_type) || ds_type.is_empty() {
        errs.push(format!(
            "{at}: datasource {} is no `{ds_type}` datasource variable",
            p["datasource"]
        ));
    }
    let targets = p["targets"].as_array().cloned().unwrap_or_default();
    if targets.is_empty() {
        errs.push(format!("{at}: no targets"));
    }
    let mut refs = BTreeSet::new();
    for t in &targets {
        let ref_id = str_of(t, "refId").unwrap_or_default();
        if ref_id.is_empty() || !refs.insert(ref_id.to_string()) {
            errs.push(format!("{at}: refId `{ref_id}` missing or repeated"));
        }
        if t["datasource"] != p["datasource"] {
            errs.push(format!(
                "{at}/{ref_id}: target datasource differs from the panel's"
            ));
        }
        let q = match ds_type {
            "prometheus" => str_of(t, "expr"),
            _ if t["rawQuery"] == true => str_of(t, "query"),
            _ => None,
        };
        match q {
            Some(q) => check_query(&format!("{at}/{ref_id}"), ds_type, q, emitted, errs),
            None => errs.push(format!("{at}/{ref_id}: no expr / raw query")),
        }
    }
}
