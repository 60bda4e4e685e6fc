//! The top-level modules of `src/` form no cycle, and their graph is the one
//! written in docs/architecture.md ("Module graph"), so the diagram stays true.
//!
//! An edge `a -> b` is any `crate::b…` path in a file of module `a` (code and
//! tests alike, `use crate::{b, c::d}` groups included; comments and string
//! literals are skipped). `super::` stays inside a module. `crate::Name` for a
//! name that lib.rs re-exports (`pub use error::{Error, …}`) counts as an edge
//! to the module it comes from.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// module -> dependency -> where the first reference is (file:line).
type Graph = BTreeMap<String, BTreeMap<String, String>>;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// The source with comments and string/char literals blanked out (newlines
/// kept, so line numbers stay right).
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && !prev_is_ident(&chars, i)
            && raw_string_hashes(&chars, i + 1).is_some()
        {
            let hashes = raw_string_hashes(&chars, i + 1).unwrap_or(0);
            let start = i;
            i += 2 + hashes;
            loop {
                if i >= chars.len() {
                    break;
                }
                if chars[i] == '"' && (1..=hashes).all(|k| chars.get(i + k) == Some(&'#')) {
                    i += 1 + hashes;
                    break;
                }
                i += 1;
            }
            out.extend(chars[start..i.min(chars.len())].iter().map(|&c| blank(c)));
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' && (next == Some('\\') || chars.get(i + 2) == Some(&'\'')) {
            // A char literal ('x', '\n', '\''); a lifetime ('a) has no closing quote.
            let start = i;
            i += if next == Some('\\') { 3 } else { 2 };
            while i < chars.len() && chars[i] != '\'' {
                i += 1;
            }
            i += 1;
            out.extend(chars[start..i.min(chars.len())].iter().map(|&c| blank(c)));
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn prev_is_ident(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

/// `r"`, `r#"`, `r##"`…: the number of hashes, if a raw string starts at `i`.
fn raw_string_hashes(chars: &[char], mut i: usize) -> Option<usize> {
    let mut hashes = 0;
    while chars.get(i) == Some(&'#') {
        hashes += 1;
        i += 1;
    }
    (chars.get(i) == Some(&'"')).then_some(hashes)
}

fn ident_at(code: &[char], mut i: usize) -> (String, usize) {
    let mut name = String::new();
    while i < code.len() && (code[i].is_alphanumeric() || code[i] == '_') {
        name.push(code[i]);
        i += 1;
    }
    (name, i)
}

fn skip_space(code: &[char], mut i: usize) -> usize {
    while i < code.len() && code[i].is_whitespace() {
        i += 1;
    }
    i
}

/// Every first segment after `crate::`, with the index where it stands.
fn crate_references(code: &str) -> Vec<(String, usize)> {
    let chars: Vec<char> = code.chars().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i + 7 <= chars.len() {
        let is_crate =
            chars[i..i + 7].iter().copied().eq("crate::".chars()) && !prev_is_ident(&chars, i);
        if !is_crate {
            i += 1;
            continue;
        }
        i = skip_space(&chars, i + 7);
        if chars.get(i) == Some(&'{') {
            // A group: the first segment of each item at depth one.
            let mut depth = 1;
            let mut item_start = true;
            i += 1;
            while i < chars.len() && depth > 0 {
                let c = chars[i];
                if c == '{' {
                    depth += 1;
                    i += 1;
                } else if c == '}' {
                    depth -= 1;
                    i += 1;
                } else if c == ',' {
                    item_start = depth == 1;
                    i += 1;
                } else if depth == 1 && item_start && (c.is_alphanumeric() || c == '_') {
                    let (name, end) = ident_at(&chars, i);
                    found.push((name, i));
                    item_start = false;
                    i = end;
                } else {
                    i += 1;
                }
            }
        } else {
            let (name, end) = ident_at(&chars, i);
            if !name.is_empty() {
                found.push((name, i));
            }
            i = end.max(i + 1);
        }
    }
    found
}

fn line_of(code: &str, char_index: usize) -> usize {
    code.chars().take(char_index).filter(|&c| c == '\n').count() + 1
}

/// The top-level modules declared in lib.rs and the names it re-exports
/// (`pub use module::{A, B}`), which `crate::A` reaches.
fn lib_rs() -> (BTreeSet<String>, BTreeMap<String, String>) {
    let text = std::fs::read_to_string(root().join("src/lib.rs")).expect("reading src/lib.rs");
    let code = code_only(&text);
    let mut modules = BTreeSet::new();
    let mut reexports = BTreeMap::new();
    for statement in code.split(';') {
        let words: Vec<&str> = statement.split_whitespace().collect();
        match words.as_slice() {
            ["pub", "mod", name] => {
                modules.insert((*name).to_string());
            }
            ["pub", "use", ..] => {
                let path = statement
                    .trim_start()
                    .trim_start_matches("pub")
                    .trim_start();
                let path = path.trim_start_matches("use").trim();
                let Some((module, rest)) = path.split_once("::") else {
                    continue;
                };
                let names = rest.trim().trim_start_matches('{').trim_end_matches('}');
                for name in names.split(',') {
                    let name = name.split_whitespace().last().unwrap_or_default();
                    if !name.is_empty() {
                        reexports.insert(name.to_string(), module.trim().to_string());
                    }
                }
            }
            _ => {}
        }
    }
    (modules, reexports)
}

/// The graph the code has.
fn code_graph() -> Graph {
    let (modules, reexports) = lib_rs();
    let src = root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: Graph = modules
        .iter()
        .map(|m| (m.clone(), BTreeMap::new()))
        .collect();
    for file in files {
        let relative = file.strip_prefix(&src).expect("file under src");
        let first = relative
            .components()
            .next()
            .expect("a path component")
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if !modules.contains(&first) {
            continue; // lib.rs and main.rs are the crate root, not a module
        }
        let text = std::fs::read_to_string(&file).expect("reading a source file");
        let code = code_only(&text);
        for (name, at) in crate_references(&code) {
            let target = if modules.contains(&name) {
                name
            } else if let Some(module) = reexports.get(&name) {
                module.clone()
            } else {
                continue; // an item of the crate root itself (VERSION)
            };
            if target == first {
                continue;
            }
            let place = format!("src/{}:{}", relative.display(), line_of(&code, at));
            graph
                .get_mut(&first)
                .expect("module listed")
                .entry(target)
                .or_insert(place);
        }
    }
    graph
}

/// The graph in docs/architecture.md: the first fenced block after the
/// "## Module graph" heading, one `module -> dep, dep` line per module.
fn documented_graph() -> BTreeMap<String, BTreeSet<String>> {
    let text = std::fs::read_to_string(root().join("docs/architecture.md"))
        .expect("reading docs/architecture.md");
    let section = text
        .split("\n## Module graph")
        .nth(1)
        .expect("docs/architecture.md has a \"## Module graph\" section");
    let block = section
        .split("```")
        .nth(1)
        .expect("the Module graph section has a fenced block");
    let mut graph = BTreeMap::new();
    for line in block.lines().skip(1) {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (module, deps) = line.split_once("->").unwrap_or((line, ""));
        let deps = deps
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(String::from)
            .collect();
        let previous = graph.insert(module.trim().to_string(), deps);
        assert!(
            previous.is_none(),
            "{} is listed twice in the docs",
            module.trim()
        );
    }
    graph
}

/// Shortest path from `from` to `to` (both inside one strongly connected set).
fn shortest_path(graph: &Graph, from: &str, to: &str) -> Option<Vec<String>> {
    let mut previous: BTreeMap<String, String> = BTreeMap::new();
    let mut queue = VecDeque::from([from.to_string()]);
    let mut seen = BTreeSet::from([from.to_string()]);
    while let Some(node) = queue.pop_front() {
        if node == to {
            let mut path = vec![node.clone()];
            let mut at = node;
            while let Some(p) = previous.get(&at) {
                path.push(p.clone());
                at = p.clone();
            }
            path.reverse();
            return Some(path);
        }
        for next in graph.get(&node).into_iter().flat_map(|deps| deps.keys()) {
            if seen.insert(next.clone()) {
                previous.insert(next.clone(), node.clone());
                queue.push_back(next.clone());
            }
        }
    }
    None
}

/// One cycle per edge that lies on a cycle (the shortest through it),
/// each cycle once, as its list of modules starting at its smallest.
fn cycles(graph: &Graph) -> BTreeSet<Vec<String>> {
    let mut found = BTreeSet::new();
    for (from, deps) in graph {
        for to in deps.keys() {
            if let Some(back) = shortest_path(graph, to, from) {
                let mut cycle = vec![from.clone()];
                cycle.extend(back.into_iter().take_while(|m| m != from));
                let smallest = (0..cycle.len())
                    .min_by_key(|&k| &cycle[k])
                    .unwrap_or_default();
                cycle.rotate_left(smallest);
                found.insert(cycle);
            }
        }
    }
    found
}

fn render_cycles(graph: &Graph, cycles: &BTreeSet<Vec<String>>) -> String {
    let mut text = String::new();
    for cycle in cycles {
        let _ = writeln!(text, "cycle: {} -> {}", cycle.join(" -> "), cycle[0]);
        for (k, from) in cycle.iter().enumerate() {
            let to = &cycle[(k + 1) % cycle.len()];
            let _ = writeln!(text, "  {from} -> {to}  at {}", graph[from][to]);
        }
    }
    text
}

fn render_diff(graph: &Graph, documented: &BTreeMap<String, BTreeSet<String>>) -> String {
    let mut text = String::new();
    let modules: BTreeSet<&String> = graph.keys().chain(documented.keys()).collect();
    for module in modules {
        let Some(actual) = graph.get(module) else {
            let _ = writeln!(
                text,
                "- {module}: in the docs but not a module of src/lib.rs"
            );
            continue;
        };
        let Some(written) = documented.get(module) else {
            let deps: Vec<&str> = actual.keys().map(String::as_str).collect();
            let _ = writeln!(
                text,
                "+ {module} -> {}   (missing in the docs)",
                deps.join(", ")
            );
            continue;
        };
        for (dep, place) in actual {
            if !written.contains(dep) {
                let _ = writeln!(
                    text,
                    "+ {module} -> {dep}   (in the code at {place}, not in the docs)"
                );
            }
        }
        for dep in written {
            if !actual.contains_key(dep) {
                let _ = writeln!(text, "- {module} -> {dep}   (in the docs, not in the code)");
            }
        }
    }
    text
}

#[test]
fn top_level_modules_form_no_cycle() {
    let graph = code_graph();
    let found = cycles(&graph);
    assert!(
        found.is_empty(),
        "the top-level modules of src/ have {} cycle(s):\n{}",
        found.len(),
        render_cycles(&graph, &found)
    );
}

#[test]
fn docs_module_graph_matches_the_code() {
    let graph = code_graph();
    let documented = documented_graph();
    let diff = render_diff(&graph, &documented);
    assert!(
        diff.is_empty(),
        "the \"Module graph\" of docs/architecture.md differs from the code \
         (+ only in the code, - only in the docs):\n{diff}"
    );
}

#[test]
fn references_are_found_in_groups_and_not_in_comments_or_strings() {
    let code = code_only(
        "use crate::{config::{Job, Config}, keys,\n  store::x};\n\
         // crate::engine in a comment\n\
         /* crate::drill /* nested */ crate::web */\n\
         let s = \"crate::notify\"; let r = r#\"crate::health \"# ;\n\
         let c = '\"'; fn f<'a>(x: &'a str) { crate::time::now(); }\n",
    );
    let names: Vec<String> = crate_references(&code)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["config", "keys", "store", "time"]);
    let time_at = crate_references(&code)[3].1;
    assert_eq!(line_of(&code, time_at), 6);
}

#[test]
fn a_cycle_is_named_with_each_edge() {
    let mut graph = Graph::new();
    let edge = |g: &mut Graph, a: &str, b: &str| {
        g.entry(a.into())
            .or_default()
            .insert(b.into(), format!("src/{a}.rs:1"));
    };
    edge(&mut graph, "config", "keys");
    edge(&mut graph, "keys", "redact");
    edge(&mut graph, "redact", "config");
    edge(&mut graph, "engine", "config");
    graph.entry("engine".into()).or_default();
    let found = cycles(&graph);
    assert_eq!(found.len(), 1);
    let text = render_cycles(&graph, &found);
    assert!(
        text.contains("cycle: config -> keys -> redact -> config"),
        "{text}"
    );
    assert!(
        text.contains("redact -> config  at src/redact.rs:1"),
        "{text}"
    );
}
