//! The shape of the source tree, checked from the code itself so that it stays true:
//! the dependency arrows between subsystems run one way, and no source file grows past what a
//! reader can hold. docs/architecture.md explains the layers.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The crate's top-level modules from the bottom layer up. A module may use modules of lower
/// layers only; modules within one layer do not use each other.
const LAYERS: &[&[&str]] = &[
    &["model", "clock", "alloc", "runtime", "net"],
    &["protocol"],
    &["sasl"],
    &["client"],
    &["log"],
    &["config"],
    &["metrics"],
    &["quota"],
    &["security"],
    &["controller"],
    &["replication"],
    &["group"],
    &["txn"],
    &["handlers"],
    &["server"],
    &["broker"],
    &["admin"],
];

/// Files that may be longer: none today. Generated code would go here.
const LONG_FILES_ALLOWED: &[&str] = &[];
const MAX_LINES: usize = 800;

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The text of `file` without its unit-test module, which may reach anywhere.
fn non_test_code(text: &str) -> &str {
    match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    }
}

/// The top-level modules `code` names as `crate::<module>`.
fn crate_modules_used(code: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    for line in code.lines() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                used.insert(name);
            }
            rest = after;
        }
        // `use crate::{a, b::c}` names several modules at once.
        if let Some(group) = line.strip_prefix("use crate::{") {
            for part in group.split(',') {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    used.insert(name);
                }
            }
        }
    }
    used
}

#[test]
fn dependency_arrows_run_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src).expect("under src");
        let module = rel
            .iter()
            .next()
            .expect("a component")
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if matches!(module.as_str(), "lib" | "main") {
            continue;
        }
        let Some(own) = layer_of(&module) else {
            violations.push(format!(
                "src/{}: module `{module}` has no layer in tests/architecture.rs",
                rel.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).expect("read");
        for used in crate_modules_used(non_test_code(&text)) {
            if used == module {
                continue;
            }
            match layer_of(&used) {
                Some(l) if l < own => {}
                Some(_) => violations.push(format!(
                    "src/{}: `{module}` uses `{used}`, which is not below it",
                    rel.display()
                )),
                None => {}
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports against the layering:\n{}",
        violations.join("\n")
    );
}

#[test]
fn no_source_file_is_too_long() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["src", "tiering/src", "benches"] {
        rust_files(&root.join(dir), &mut files);
    }
    let mut long = Vec::new();
    for file in &files {
        let rel = file
            .strip_prefix(root)
            .expect("under the root")
            .display()
            .to_string();
        let lines = std::fs::read_to_string(file).expect("read").lines().count();
        if lines > MAX_LINES && !LONG_FILES_ALLOWED.contains(&rel.as_str()) {
            long.push(format!("{rel}: {lines} lines"));
        }
    }
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines:\n{}",
        long.join("\n")
    );
}

#[test]
fn the_checker_sees_imports() {
    let code = "use crate::log::LogError;\nuse crate::{broker::Broker, model};\n// crate::server in a comment\nlet x = crate::group::partition_for(\"g\", 1);";
    let used = crate_modules_used(code);
    assert_eq!(
        used.into_iter().collect::<Vec<_>>(),
        ["broker", "group", "log", "model"]
    );
    assert_eq!(
        non_test_code("a\n#[cfg(test)]\nmod tests {\nuse crate::x;\n}"),
        "a\n"
    );
}
