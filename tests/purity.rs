//! The core must stay pure: no Kubernetes client, async runtime, clock, randomness or hash-order
//! dependence. Clippy's `disallowed_*` lints enforce most of it at compile time; this test also
//! catches imports clippy cannot see (e.g. a `use kube::Client` that is never called).

use std::path::Path;

const FORBIDDEN: &[&str] = &[
    "kube::Client",
    "kube::Api",
    "kube::api::",
    "kube::runtime",
    "kube::client",
    "tokio",
    "SystemTime",
    "Instant::now",
    "thread_rng",
    "rand::",
    "Uuid::new_v4",
    "std::collections::HashMap",
    "std::collections::HashSet",
    "HashMap<",
    "HashSet<",
    "std::env::",
    "std::fs::",
    "std::net::",
];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn core_imports_nothing_impure() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/core");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(
        files.len() > 5,
        "expected the core's sources under {}",
        root.display()
    );
    let mut violations = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable source");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for needle in FORBIDDEN {
                if code.contains(needle) {
                    violations.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "impure code in src/core:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_purity_check_itself_detects_a_violation() {
    // Guards against a check that can never fail: a line with a forbidden import is caught.
    let sample = "use tokio::time::sleep;";
    assert!(FORBIDDEN.iter().any(|n| sample.contains(n)));
}
