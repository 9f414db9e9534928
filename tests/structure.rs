//! The source tree keeps its shape: dependencies between the top-level modules of
//! `src/` go one way (no import cycle), so configuration flows down from `config` to the
//! stages and `messages` stays a leaf that every stage may use; no file is over 500 lines
//! outside its tests and no function over 100 (rustfmt'd code: a function ends at the
//! first `}` at its own indentation).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The names after every `crate::` in `code` (also inside `use crate::{a, b::c}`).
fn crate_paths(code: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().last();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // e.g. `my_crate::`
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                names.push(name);
            }
        } else {
            names.push(
                rest.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect(),
            );
        }
    }
    names.retain(|n| !n.is_empty());
    names
}

/// Top-level module → the top-level modules its files name through `crate::`.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(&src).expect("under src");
        let first = rel.components().next().expect("component");
        let module = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        if module == "lib" || module == "main" || module == "exit" {
            continue; // the crate root and the binary sit above every module
        }
        let text = std::fs::read_to_string(&file).expect("read");
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let deps = graph.entry(module.clone()).or_default();
        for name in crate_paths(&code) {
            if name != module {
                deps.insert(name);
            }
        }
    }
    graph
}

/// A cycle through `start`, if any: the modules along it.
fn cycle_from(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    fn walk(
        graph: &BTreeMap<String, BTreeSet<String>>,
        start: &str,
        at: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in graph.get(at).into_iter().flatten() {
            if next == start {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(graph, start, next, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_owned()];
    let mut seen = BTreeSet::new();
    walk(graph, start, start, &mut path, &mut seen).then_some(path)
}

#[test]
fn the_parser_finds_grouped_and_plain_paths() {
    let code = "use crate::{capture::Source, pool};\nlet x = crate::status::X;\nmy_crate::y";
    assert_eq!(crate_paths(code), ["capture", "pool", "status"]);
    let mut g = BTreeMap::new();
    g.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    g.insert("b".to_owned(), BTreeSet::from(["a".to_owned()]));
    assert_eq!(
        cycle_from(&g, "a"),
        Some(vec!["a".into(), "b".into(), "a".into()])
    );
}

#[test]
fn top_level_modules_depend_on_each_other_one_way() {
    let graph = module_graph();
    assert!(
        graph.contains_key("config") && graph.contains_key("capture"),
        "{graph:?}"
    );
    let cycles: Vec<String> = graph
        .keys()
        .filter_map(|m| cycle_from(&graph, m))
        .map(|c| c.join(" -> "))
        .collect();
    assert!(
        cycles.is_empty(),
        "import cycles in src/:\n{}",
        cycles.join("\n")
    );
    for stage in ["capture", "preprocess", "inference", "publish"] {
        assert!(
            !graph[stage].contains("config") && !graph[stage].contains("pipeline"),
            "{stage} must not import config or pipeline: {:?}",
            graph[stage]
        );
    }
    let leaves = [
        "labels", "pool", "problems", "backoff", "status", "service", "memory",
    ];
    for leaf in leaves {
        assert!(graph[leaf].is_empty(), "{leaf} imports {:?}", graph[leaf]);
    }
    assert!(
        graph["messages"].iter().all(|m| m == "labels"),
        "messages imports {:?}",
        graph["messages"]
    );
    eprintln!("{graph:#?}");
}

fn src_files() -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files
        .into_iter()
        .map(|f| {
            let name = f
                .strip_prefix(&src)
                .expect("under src")
                .display()
                .to_string();
            (name, std::fs::read_to_string(&f).expect("read"))
        })
        .collect()
}

/// The lines of `text` before its `#[cfg(test)]` module.
fn code_lines(text: &str) -> Vec<&str> {
    text.lines()
        .take_while(|l| l.trim() != "#[cfg(test)]")
        .collect()
}

/// (length in lines, name) of every function with a body in `lines`.
fn functions(lines: &[&str]) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let starts = [
            "fn ",
            "pub fn ",
            "pub(super) fn ",
            "pub(crate) fn ",
            "async fn ",
            "pub(super) async fn ",
            "pub async fn ",
        ]
        .iter()
        .find(|p| trimmed.starts_with(*p));
        if let Some(prefix) = starts {
            if !trimmed.trim_end().ends_with(';') {
                let name: String = trimmed[prefix.len()..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                // `fn f() {}` ends on its own line; otherwise at the first `}` at the
                // function's indentation.
                let end = if trimmed.trim_end().ends_with('}') {
                    i
                } else {
                    (i + 1..lines.len())
                        .find(|&j| {
                            lines[j].trim() == "}"
                                && lines[j].len() - lines[j].trim_start().len() == indent
                        })
                        .unwrap_or(i)
                };
                out.push((end - i + 1, name));
                i = end;
            }
        }
        i += 1;
    }
    out
}

#[test]
fn the_function_finder_measures_bodies() {
    let code =
        "fn a() {\n    let x = 1;\n}\n\n    pub fn b(&self) -> u8 {\n        2\n    }\nfn c();\nfn d() {}";
    let lines: Vec<&str> = code.lines().collect();
    assert_eq!(
        functions(&lines),
        [
            (3, "a".to_owned()),
            (3, "b".to_owned()),
            (1, "d".to_owned())
        ]
    );
}

#[test]
fn files_and_functions_stay_a_readable_size() {
    let mut problems = Vec::new();
    for (name, text) in src_files() {
        let lines = code_lines(&text);
        if lines.len() > 500 {
            problems.push(format!("{name}: {} lines outside its tests", lines.len()));
        }
        for (len, f) in functions(&lines) {
            if len > 100 {
                problems.push(format!("{name}: fn {f} is {len} lines"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
