//! The layering rule of `src/lib.rs`, checked from the source text: a module may import only
//! from layers strictly below its own. The layer table is read from the `## Layers` section of
//! the crate doc, so the documentation and the check cannot drift apart.
//!
//! Imports are found as `crate::name` paths (grouped `crate::{a, b}` too) and `super::` paths
//! that climb to the crate root, outside comments and outside unit-test code (`*tests.rs` files
//! and everything after a file's first `#[cfg(test)]`): tests may reach across layers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

/// Module name -> layer number, from the crate doc's `## Layers` table rows
/// `//! | N name | `a`, `b` |`.
fn layer_table(lib: &str) -> BTreeMap<String, u32> {
    let mut table = BTreeMap::new();
    let section = lib
        .split("//! ## Layers")
        .nth(1)
        .expect("src/lib.rs has a `## Layers` section");
    for line in section.lines().skip(1).take_while(|l| l.starts_with("//!")) {
        let cells: Vec<&str> = line.trim_start_matches("//!").split('|').collect();
        let (Some(head), Some(mods)) = (cells.get(1), cells.get(2)) else {
            continue;
        };
        let Some(n) = head.split_whitespace().next().and_then(|n| n.parse().ok()) else {
            continue;
        };
        for m in mods.split('`').skip(1).step_by(2) {
            let name = m.trim_end_matches(".rs").to_string();
            assert!(
                table.insert(name.clone(), n).is_none(),
                "{name} listed twice"
            );
        }
    }
    assert!(table.len() > 5, "layer table not found in src/lib.rs");
    table
}

pub(crate) fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file: `src/a/b.rs` and `src/a/b/mod.rs` -> [a, b]; `src/lib.rs` -> [lib].
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    if parts.first().is_some_and(|p| p == "bin") {
        return vec!["bin".into()];
    }
    parts
}

/// Source text without comments and without unit-test code.
fn code_of(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The top-level modules `code` imports through `crate::` paths.
fn crate_imports(code: &str, out: &mut BTreeSet<String>) {
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut start = 0;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        out.insert(ident_at(group[start..].trim_start()).to_string());
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.insert(ident_at(group[start..].trim_start()).to_string());
                        start = j + 1;
                    }
                    _ => {}
                }
            }
        } else {
            out.insert(ident_at(rest).to_string());
        }
    }
}

/// The top-level modules reached by `super::` chains that climb out of `module`.
fn super_imports(code: &str, module: &[String], out: &mut BTreeSet<String>) {
    for (i, _) in code.match_indices("super::") {
        if code[..i].ends_with("super::") {
            continue; // counted from the first `super::` of the chain
        }
        let mut rest = &code[i..];
        let mut up = 0;
        while let Some(r) = rest.strip_prefix("super::") {
            up += 1;
            rest = r;
        }
        if up >= module.len() {
            out.insert(ident_at(rest).to_string());
        }
    }
}

fn violations(table: &BTreeMap<String, u32>) -> BTreeMap<String, Vec<String>> {
    let mut files = Vec::new();
    rust_files(Path::new(SRC), &mut files);
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(SRC).expect("under src");
        let name = rel.to_string_lossy().to_string();
        if name.ends_with("tests.rs") {
            continue;
        }
        let module = module_path(rel);
        let from = &module[0];
        let layer = *table
            .get(from)
            .unwrap_or_else(|| panic!("src/{name}: module `{from}` is in no layer of src/lib.rs"));
        let code = code_of(&std::fs::read_to_string(&file).expect("read source"));
        let mut imports = BTreeSet::new();
        crate_imports(&code, &mut imports);
        super_imports(&code, &module, &mut imports);
        for to in imports
            .iter()
            .filter(|m| *m != from && table.contains_key(*m))
        {
            if table[to] >= layer {
                found
                    .entry(format!("{from} -> {to}"))
                    .or_default()
                    .push(format!("src/{name}"));
            }
        }
    }
    found
}

#[test]
fn no_module_imports_from_its_own_layer_or_above() {
    let lib = std::fs::read_to_string(format!("{SRC}/lib.rs")).expect("read src/lib.rs");
    let table = layer_table(&lib);
    let found = violations(&table);
    let found: Vec<String> = found
        .iter()
        .map(|(pair, files)| format!("{pair} (in {})", files.join(", ")))
        .collect();
    assert!(
        found.is_empty(),
        "imports from the same or a higher layer (see `## Layers` in src/lib.rs):\n  {}",
        found.join("\n  ")
    );
}

#[test]
fn the_checker_sees_grouped_and_super_imports() {
    let mut got = BTreeSet::new();
    crate_imports(
        "use crate::{a::X, b, c::{d, e}};\nlet x = crate::f::g();",
        &mut got,
    );
    let want: BTreeSet<String> = ["a", "b", "c", "f"].map(String::from).into();
    assert_eq!(got, want);
    let mut got = BTreeSet::new();
    let module = vec!["pipeline".to_string(), "aggregate".to_string()];
    super_imports(
        "use super::window; use super::super::service::x;",
        &module,
        &mut got,
    );
    assert_eq!(got, BTreeSet::from(["service".to_string()]));
    assert_eq!(code_of("a // crate::x\n#[cfg(test)]\nuse crate::y;"), "a ");
}
