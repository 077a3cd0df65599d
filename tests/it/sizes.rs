//! Size limits a newcomer can rely on: no production file of `src/` over 500 lines and no
//! function over 80, counted on the code before a file's `#[cfg(test)]` (unit-test files,
//! `*tests.rs`, are exempt). Functions are found by their `fn` line and measured to the brace
//! that closes them.

use std::path::Path;

use crate::layers::rust_files;

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
const MAX_FILE_LINES: usize = 500;
const MAX_FN_LINES: usize = 80;

/// Whether `line` starts a function definition (`pub(crate) async fn x(`...).
fn starts_fn(line: &str) -> Option<&str> {
    let mut rest = line.trim_start();
    for prefix in [
        "pub(crate) ",
        "pub(super) ",
        "pub ",
        "async ",
        "const ",
        "unsafe ",
    ] {
        rest = rest.strip_prefix(prefix).unwrap_or(rest);
    }
    let rest = rest.strip_prefix("async ").unwrap_or(rest);
    let name = rest.strip_prefix("fn ")?;
    Some(name.split(['(', '<']).next().unwrap_or(name))
}

/// (name, lines) of each function in `lines` longer than the limit.
fn long_functions<'a>(lines: &[&'a str]) -> Vec<(&'a str, usize)> {
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(name) = starts_fn(line) else {
            continue;
        };
        let mut depth = 0i64;
        let mut opened = false;
        for (j, l) in lines[i..].iter().enumerate() {
            depth += l.matches('{').count() as i64 - l.matches('}').count() as i64;
            opened |= l.contains('{');
            if !opened && l.trim_end().ends_with(';') {
                break; // a declaration without a body
            }
            if opened && depth <= 0 {
                if j + 1 > MAX_FN_LINES {
                    found.push((name, j + 1));
                }
                break;
            }
        }
    }
    found
}

#[test]
fn production_files_and_functions_stay_small() {
    let mut files = Vec::new();
    rust_files(Path::new(SRC), &mut files);
    let mut problems = Vec::new();
    for file in files {
        let name = file
            .strip_prefix(SRC)
            .expect("under src")
            .display()
            .to_string();
        if name.ends_with("tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read source");
        let lines: Vec<&str> = text.lines().collect();
        let end = lines
            .iter()
            .position(|l| l.trim() == "#[cfg(test)]")
            .unwrap_or(lines.len());
        if end > MAX_FILE_LINES {
            problems.push(format!("src/{name}: {end} lines (limit {MAX_FILE_LINES})"));
        }
        for (f, n) in long_functions(&lines[..end]) {
            problems.push(format!(
                "src/{name}: fn {f} is {n} lines (limit {MAX_FN_LINES})"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "split these:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_size_check_measures_a_function_to_its_closing_brace() {
    let body: Vec<String> = (0..90)
        .map(|i| format!("    let x{i} = {{ 1 }};"))
        .collect();
    let text = format!(
        "pub async fn big() {{\n{}\n}}\nfn small() {{}}\n",
        body.join("\n")
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(long_functions(&lines), vec![("big", 92)]);
}
