//! No module imports, directly or through others, a module that imports it back: each crate's
//! modules form layers (a parent and its own submodules aside — an `impl` split over child
//! files is one module). A cycle means two modules that cannot be read, tested or moved apart.
//!
//! Edges are the `crate::…` and `super::…` paths of non-test code (comment lines and everything
//! after the first `#[cfg(test)]` of a file left out), resolved to the longest module path that
//! is a file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

fn rust_files(dir: &Path, skip: &[PathBuf], out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source dir") {
        let path = entry.expect("dir entry").path();
        if skip.contains(&path) {
            continue;
        }
        if path.is_dir() {
            rust_files(&path, skip, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/a/b.rs` → `a::b`; `src/a/mod.rs` and `src/lib.rs` name their directory.
fn module_of(root: &Path, file: &Path) -> Module {
    let rel = file.strip_prefix(root).expect("file under its crate root");
    let mut parts: Module = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts
        .last()
        .is_some_and(|l| l == "mod" || l == "lib" || l == "main")
    {
        parts.pop();
    }
    parts
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Reads `ident(::ident)*` from the start of `s`; returns the segments and what follows.
fn path_at(s: &str) -> (Vec<String>, &str) {
    let mut segments = Vec::new();
    let mut rest = s;
    loop {
        let end = rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len());
        if end == 0 {
            break;
        }
        segments.push(rest[..end].to_string());
        rest = &rest[end..];
        match rest.strip_prefix("::") {
            Some(r) if r.starts_with(is_ident) => rest = r,
            _ => break,
        }
    }
    (segments, rest)
}

/// The items of a `{a, b::c, d::{e}}` group that `s` starts after its `{`: each item's leading
/// path.
fn group_items(s: &str) -> Vec<Vec<String>> {
    let mut items = Vec::new();
    let mut depth = 0usize;
    let mut start = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(path_at(s[start..i].trim()).0);
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(path_at(s[start..i].trim()).0);
                start = i + 1;
            }
            _ => {}
        }
    }
    items
}

/// The module paths `code`, the source of module `at`, refers to.
fn referenced(code: &str, at: &Module) -> Vec<Module> {
    let mut out = Vec::new();
    for (anchor, _) in code
        .match_indices("crate::")
        .chain(code.match_indices("super::"))
    {
        if code[..anchor].ends_with(|c: char| is_ident(c) || c == ':') {
            continue;
        }
        let mut base: Module = Vec::new();
        let mut rest = &code[anchor..];
        if let Some(r) = rest.strip_prefix("crate::") {
            rest = r;
        } else {
            base = at.clone();
            while let Some(r) = rest.strip_prefix("super::") {
                base.pop();
                rest = r;
            }
        }
        let (segments, after) = path_at(rest);
        let mut prefix = base.clone();
        prefix.extend(segments);
        match after.strip_prefix("::{") {
            Some(group) => {
                for item in group_items(group) {
                    let mut p = prefix.clone();
                    p.extend(item);
                    out.push(p);
                }
            }
            None => out.push(prefix),
        }
    }
    out
}

/// Strongly connected components of more than one module (Tarjan).
fn cycles(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct Walk<'a> {
        edges: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<Module, usize>,
        low: BTreeMap<Module, usize>,
        stack: Vec<Module>,
        on_stack: BTreeSet<Module>,
        found: Vec<Vec<Module>>,
    }
    impl Walk<'_> {
        fn visit(&mut self, v: &Module) {
            let n = self.index.len();
            self.index.insert(v.clone(), n);
            self.low.insert(v.clone(), n);
            self.stack.push(v.clone());
            self.on_stack.insert(v.clone());
            for w in self.edges.get(v).into_iter().flatten() {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if self.on_stack.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(&w);
                    let done = &w == v;
                    component.push(w);
                    if done {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in edges.keys() {
        if !walk.index.contains_key(v) {
            walk.visit(v);
        }
    }
    walk.found
}

/// The module graph of the crate rooted at `root` (files under `skip` belong to other crates).
fn module_graph(root: &Path, skip: &[PathBuf]) -> BTreeMap<Module, BTreeSet<Module>> {
    let mut files = Vec::new();
    rust_files(root, skip, &mut files);
    let modules: BTreeMap<Module, PathBuf> = files
        .iter()
        .map(|f| (module_of(root, f), f.clone()))
        .collect();
    let mut edges = BTreeMap::new();
    for (module, file) in &modules {
        let source = std::fs::read_to_string(file).expect("readable source");
        // Comment lines (doc links included) are not imports.
        let code: String = source
            .split("#[cfg(test)]")
            .next()
            .unwrap_or("")
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let mut targets = BTreeSet::new();
        for path in referenced(&code, module) {
            let Some(target) = (1..=path.len())
                .rev()
                .map(|n| path[..n].to_vec())
                .find(|p| modules.contains_key(p))
            else {
                continue;
            };
            // A parent and its own submodules are one module split over files.
            if !target.starts_with(module) && !module.starts_with(&target) {
                targets.insert(target);
            }
        }
        edges.insert(module.clone(), targets);
    }
    edges
}

#[test]
fn no_crate_has_a_module_import_cycle() {
    let ws = Path::new(env!("CARGO_MANIFEST_DIR"));
    // A `main.rs` is a binary crate of its own beside the library.
    let crates = [
        (
            "src",
            vec![
                ws.join("src/core"),
                ws.join("src/api"),
                ws.join("src/main.rs"),
            ],
        ),
        ("src/core", vec![]),
        ("src/api", vec![]),
        ("sim/src", vec![ws.join("sim/src/main.rs")]),
    ];
    let mut found = Vec::new();
    for (root, skip) in crates {
        let graph = module_graph(&ws.join(root), &skip);
        assert!(
            graph.len() > 1 || root != "src",
            "no modules found under {root}"
        );
        for cycle in cycles(&graph) {
            let names: Vec<String> = cycle.iter().map(|m| m.join("::")).collect();
            found.push(format!("{root}: {}", names.join(" ↔ ")));
        }
    }
    assert!(
        found.is_empty(),
        "module import cycles:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_cycle_finder_finds_a_cycle_through_three_modules() {
    let m = |s: &str| vec![s.to_string()];
    let graph: BTreeMap<Module, BTreeSet<Module>> = [
        (m("a"), [m("b")].into()),
        (m("b"), [m("c")].into()),
        (m("c"), [m("a")].into()),
        (m("d"), [m("a")].into()),
    ]
    .into();
    assert_eq!(cycles(&graph), vec![vec![m("a"), m("b"), m("c")]]);
}

#[test]
fn paths_resolve_through_super_and_groups() {
    let at = vec![
        "engine".to_string(),
        "scans".to_string(),
        "fan_out".to_string(),
    ];
    let refs = referenced(
        "use super::super::index::{CisKey, PodKey};\nuse crate::port::{Command, x::Y};",
        &at,
    );
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Module>();
    assert!(
        refs.contains(&s(&["engine", "index", "CisKey"])),
        "{refs:?}"
    );
    assert!(refs.contains(&s(&["port", "x", "Y"])), "{refs:?}");
    assert!(!refs.iter().any(|r| r.first().is_some_and(|f| f == "super")));
}
