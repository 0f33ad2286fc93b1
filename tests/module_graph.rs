//! The module graph has no circles: a test over the `crate::`, `super::` and
//! `self::` paths of every source file.
//!
//! Two levels are checked: between top-level modules (`config` never imports
//! `probe` or `relay`; `store` never imports `crosscheck`), and between the
//! submodules of one top-level module (`relay::config` and
//! `relay::destination` may not import each other). A circle means two
//! modules that can only be understood, changed and tested together; the
//! failure names every edge of it with the file and line that makes it.
//! Test modules (`#[cfg(test)]`) are left out: a test may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One import: from module, to module, where.
type Edge = (String, String, String);

#[test]
fn no_import_circles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = rust_files(&src);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(&src, f)).collect();
    let test_only = test_only_modules(&src, &files);
    let mut edges: BTreeSet<Edge> = BTreeSet::new();
    for file in &files {
        let here = module_of(&src, file);
        if here.first().map(String::as_str) == Some("main") || test_only.iter().any(|t| here.starts_with(t)) {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        let text = text.split("#[cfg(test)]").next().unwrap_or("");
        for (line_no, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for path in paths_in(code, &here) {
                for (from, to) in levels(&here, &path, &modules) {
                    let at = format!("{}:{}", file.strip_prefix(&src).unwrap().display(), line_no + 1);
                    edges.insert((from, to, at));
                }
            }
        }
    }
    let graph: BTreeMap<&str, BTreeSet<&str>> = edges.iter().fold(BTreeMap::new(), |mut g, (a, b, _)| {
        g.entry(a.as_str()).or_default().insert(b.as_str());
        g
    });
    let cycles = strongly_connected(&graph);
    let mut report = String::new();
    for scc in &cycles {
        report.push_str(&format!("circle: {}\n", scc.join(" ↔ ")));
        for (a, b, at) in &edges {
            if scc.contains(&a.as_str()) && scc.contains(&b.as_str()) {
                report.push_str(&format!("  {a} → {b}  ({at})\n"));
            }
        }
    }
    let nodes: BTreeSet<&str> = graph.keys().copied().chain(graph.values().flatten().copied()).collect();
    println!(
        "{} modules, {} import edges, {} circles",
        nodes.len(),
        graph.values().map(BTreeSet::len).sum::<usize>(),
        cycles.len()
    );
    assert!(cycles.is_empty(), "import circles between modules:\n{report}");
}

/// Modules declared under `#[cfg(test)]` (`#[cfg(test)] mod catalogue;`):
/// test code in a file of its own, left out like inline test modules.
fn test_only_modules(src: &Path, files: &[PathBuf]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for file in files {
        let here = module_of(src, file);
        let text = std::fs::read_to_string(file).unwrap();
        let mut lines = text.lines().map(str::trim);
        while let Some(line) = lines.next() {
            if line != "#[cfg(test)]" {
                continue;
            }
            let Some(next) = lines.next() else { break };
            let decl = next.trim_start_matches("pub ").trim_start_matches("pub(crate) ");
            if let Some(name) = decl.strip_prefix("mod ").and_then(|r| r.strip_suffix(';')) {
                let mut m = here.clone();
                m.push(name.trim().to_string());
                out.push(m);
            }
        }
    }
    out
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// `src/relay/destination/slack.rs` → `[relay, destination, slack]`;
/// `mod.rs` is its folder; `lib.rs` is the crate root `[]`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|c| c.to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
        parts.pop();
    }
    parts
}

/// Absolute module paths (as segments) named in one line of code: every
/// `crate::…`, `super::…` and `self::…` path, `use` groups expanded.
fn paths_in(code: &str, here: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < code.len() {
        let rest = &code[i..];
        let start = ["crate::", "super::", "self::"].iter().find(|p| rest.starts_with(**p));
        let boundary =
            i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_' || bytes[i - 1] == b':' || bytes[i - 1] == b'$');
        let Some(prefix) = start.filter(|_| boundary) else {
            i += rest.chars().next().map_or(1, char::len_utf8);
            continue;
        };
        // The module this path is relative to.
        let mut base: Vec<String> = match *prefix {
            "crate::" => Vec::new(),
            _ => here.to_vec(),
        };
        let mut j = i + prefix.len();
        if *prefix == "super::" {
            // `super` of `a::b` is `a`, whether `a::b` is `a/b.rs` or `a/b/mod.rs`.
            base.pop();
            while code[j..].starts_with("super::") {
                base.pop();
                j += "super::".len();
            }
        }
        let (trees, end) = parse_tree(&code[j..]);
        for t in trees {
            let mut p = base.clone();
            p.extend(t.into_iter().filter(|s| s != "self"));
            out.push(p);
        }
        i = j + end.max(1);
    }
    out
}

/// Parses `a::b::{c, d::e}` into its paths; returns them and the length read.
fn parse_tree(s: &str) -> (Vec<Vec<String>>, usize) {
    let ident_len = s.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(s.len());
    if s.starts_with('{') {
        let mut out = Vec::new();
        let mut k = 1;
        loop {
            let t = &s[k..];
            let ws = t.len() - t.trim_start().len();
            k += ws;
            if s[k..].starts_with('}') || k >= s.len() {
                return (out, (k + 1).min(s.len()));
            }
            let (sub, n) = parse_tree(&s[k..]);
            out.extend(sub);
            k += n.max(1);
            let t = &s[k..];
            k += t.len() - t.trim_start().len();
            if s[k..].starts_with(',') {
                k += 1;
            }
        }
    }
    if ident_len == 0 {
        return (vec![], 0);
    }
    let head = s[..ident_len].to_string();
    if s[ident_len..].starts_with("::") {
        let (subs, n) = parse_tree(&s[ident_len + 2..]);
        if subs.is_empty() {
            return (vec![vec![head]], ident_len + 2 + n);
        }
        let out = subs
            .into_iter()
            .map(|mut p| {
                p.insert(0, head.clone());
                p
            })
            .collect();
        return (out, ident_len + 2 + n);
    }
    (vec![vec![head]], ident_len)
}

/// The edges an import makes: between top-level modules, and between
/// sibling submodules of one top-level module. Only names that are modules
/// count (`crate::relay::Relay` is the module `relay`).
fn levels(here: &[String], path: &[String], modules: &BTreeSet<Vec<String>>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let (Some(from), Some(to)) = (here.first(), path.first()) else {
        return out;
    };
    if !modules.contains(&vec![to.clone()]) {
        return out;
    }
    if from != to {
        out.push((from.clone(), to.clone()));
    } else if here.len() >= 2 && path.len() >= 2 && here[1] != path[1] && modules.contains(&path[..2].to_vec()) {
        out.push((format!("{}::{}", here[0], here[1]), format!("{}::{}", path[0], path[1])));
    }
    out
}

/// Tarjan's strongly connected components with more than one node.
fn strongly_connected<'a>(g: &BTreeMap<&'a str, BTreeSet<&'a str>>) -> Vec<Vec<&'a str>> {
    struct T<'a, 'g> {
        g: &'g BTreeMap<&'a str, BTreeSet<&'a str>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<&'a str>>,
    }
    impl<'a> T<'a, '_> {
        fn visit(&mut self, v: &'a str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on.insert(v);
            for &w in self.g.get(v).into_iter().flatten() {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if self.on.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut scc = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on.remove(w);
                    scc.push(w);
                    if w == v {
                        break;
                    }
                }
                if scc.len() > 1 {
                    scc.sort();
                    self.out.push(scc);
                }
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    let nodes: BTreeSet<&str> = g.keys().copied().chain(g.values().flatten().copied()).collect();
    for v in nodes {
        if !t.index.contains_key(v) {
            t.visit(v);
        }
    }
    t.out
}

#[test]
fn the_path_reader_expands_groups_and_resolves_super() {
    let here = vec!["relay".to_string(), "destination".to_string(), "slack".to_string()];
    let p = paths_in("use crate::{config::Secret, probe::{self, Observation}};", &here);
    assert_eq!(
        p,
        vec![
            vec!["config".to_string(), "Secret".to_string()],
            vec!["probe".to_string()],
            vec!["probe".to_string(), "Observation".to_string()]
        ]
    );
    let p = paths_in("use super::super::outbox::Outbox;", &here);
    assert_eq!(p, vec![vec!["relay".to_string(), "outbox".to_string(), "Outbox".to_string()]]);
    let mods: BTreeSet<Vec<String>> = [vec!["relay".to_string()], vec!["relay".to_string(), "outbox".to_string()]].into();
    assert_eq!(
        levels(&here, &p[0], &mods),
        vec![("relay::destination".to_string(), "relay::outbox".to_string())]
    );
}
