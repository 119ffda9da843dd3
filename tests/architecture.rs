//! The runtime's structure, checked as text: its modules are layers that each use only the layers
//! below (so there is no cycle among them), every reference names the module it uses (not a
//! re-export at the crate root), and no file is longer than about 500 lines outside its unit
//! tests. ARCHITECTURE.md explains the layers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The runtime's modules, lowest layer first. A module may use the modules of earlier rows only.
const LAYERS: &[&[&str]] = &[
    &["os"],
    &["config"],
    &["state"],
    &["counters", "health"],
    &["memory"],
    &["record"],
    &["context"],
    &["backtrace", "unwind"],
    &["panic"],
    &["guard"],
    &["exit"],
    &["shutdown", "watch"],
    &["fatal"],
    &["dumps"],
    &["entry"],
    &["http"],
];

const MAX_LINES: usize = 500;

fn runtime_sources() -> Vec<PathBuf> {
    fn walk(directory: &Path, files: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(directory).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, files);
            } else if path.extension().is_some_and(|extension| extension == "rs") {
                files.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&source_root(), &mut files);
    files.sort();
    files
}

fn source_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("crashguard-runtime/src")
}

/// The top-level module a file belongs to (`record` for `record.rs` and `record/json.rs`), or
/// `None` for `lib.rs`, which only wires the modules together.
fn module_of(file: &Path) -> Option<String> {
    let relative = file.strip_prefix(source_root()).unwrap();
    let first = relative.components().next()?.as_os_str().to_str()?;
    let module = first.strip_suffix(".rs").unwrap_or(first);
    (module != "lib").then(|| module.to_owned())
}

/// The code of a file without comments (doc links name modules without using them) and without
/// its `#[cfg(test)]` module.
fn code_of(text: &str) -> String {
    let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
    code.lines()
        .map(|line| match line.find("//") {
            Some(comment) => &line[..comment],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `crate::name` in `code`.
fn crate_references(code: &str) -> Vec<String> {
    code.match_indices("crate::")
        .filter(|(at, _)| {
            // `$crate::` and identifiers ending in `crate` are not the crate root.
            !code[..*at].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '$')
        })
        .map(|(at, prefix)| {
            code[at + prefix.len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

#[test]
fn every_module_uses_only_the_layers_below_it() {
    let mut uses: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut problems = Vec::new();
    for file in runtime_sources() {
        let Some(module) = module_of(&file) else {
            continue;
        };
        let Some(layer) = layer_of(&module) else {
            problems.push(format!("{module} is in no layer of LAYERS"));
            continue;
        };
        let code = code_of(&std::fs::read_to_string(&file).unwrap());
        let name = file
            .strip_prefix(source_root())
            .unwrap()
            .display()
            .to_string();
        if file.parent() == Some(source_root().as_path()) && code.contains("super::") {
            problems.push(format!(
                "{name}: `super::` in a top-level module is the crate root"
            ));
        }
        for used in crate_references(&code) {
            if used == module {
                continue;
            }
            match layer_of(&used) {
                Some(used_layer) if used_layer < layer => {}
                Some(_) => problems.push(format!(
                    "{name}: {module} uses {used}, which is not in a lower layer"
                )),
                None => problems.push(format!(
                    "{name}: `crate::{used}` names no module: name the module that defines it"
                )),
            }
            uses.entry(module.clone())
                .or_default()
                .entry(used)
                .or_default()
                .push(name.clone());
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    // The layering is what makes the graph acyclic; the modules do use one another.
    assert!(uses["entry"].contains_key("fatal") || cfg!(not(target_os = "linux")));
    assert!(uses["panic"].contains_key("context"));
}

#[test]
fn no_runtime_file_is_longer_than_500_lines_outside_its_tests() {
    let long: Vec<String> = runtime_sources()
        .into_iter()
        .filter_map(|file| {
            let text = std::fs::read_to_string(&file).unwrap();
            let lines = text
                .split("#[cfg(test)]\nmod tests")
                .next()
                .unwrap()
                .lines()
                .count();
            (lines > MAX_LINES).then(|| format!("{}: {lines} lines", file.display()))
        })
        .collect();
    assert!(long.is_empty(), "{long:#?}");
}

#[test]
fn the_check_finds_an_upward_reference_and_a_root_re_export() {
    let code = code_of("use crate::entry::install; // crate::fatal\nlet c = crate::Config::new();");
    assert_eq!(crate_references(&code), ["entry", "Config"]);
    assert!(layer_of("entry") > layer_of("record"));
    assert_eq!(layer_of("Config"), None);
}
