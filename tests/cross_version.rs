//! The cross-version corpus: `oracle/make_corpus.py` run under older PyTorch releases
//! (`corpus/torch-<version>/`). ptconform must read every file with the facts that
//! version's PyTorch reported, and `check` must accept it or name the rule it breaks
//! (the expected rules per file are in `corpus/torch-<version>/expected_rules.json`).

mod common;

use std::collections::BTreeMap;

const KEYS: &[&str] = &[
    "format",
    "modules",
    "parameters",
    "buffers",
    "extra_files",
    "code_files",
    "version",
    "prefix",
    "module_info",
];

fn subset(v: &serde_json::Value) -> serde_json::Value {
    serde_json::Value::Object(
        KEYS.iter()
            .filter_map(|k| v.get(*k).map(|x| (k.to_string(), x.clone())))
            .collect(),
    )
}

#[test]
fn older_pytorch_archives_read_with_their_facts() {
    let mut dirs: Vec<_> = std::fs::read_dir(common::repo().join("corpus"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("torch-") && n != "torch-crashes")
        })
        .collect();
    dirs.sort();
    assert!(
        !dirs.is_empty(),
        "no cross-version corpus under corpus/torch-*/"
    );
    for dir in dirs {
        let expected: BTreeMap<String, Vec<String>> =
            std::fs::read(dir.join("expected_rules.json"))
                .ok()
                .and_then(|d| serde_json::from_slice(&d).ok())
                .unwrap_or_default();
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "pt" || x == "ptl"))
            .collect();
        files.sort();
        assert!(
            files.len() >= 20,
            "{}: only {} archives",
            dir.display(),
            files.len()
        );
        for file in &files {
            let name = file.file_name().unwrap().to_str().unwrap().to_string();
            let json = if name.ends_with(".ptl") {
                dir.join(format!("{name}.json"))
            } else {
                file.with_extension("json")
            };
            let theirs: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
            let (code, out, err) = common::run_cli(&["inspect", "--json", file.to_str().unwrap()]);
            assert_eq!(code, 0, "{}: {err}", file.display());
            let ours: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(subset(&ours), subset(&theirs), "{}", file.display());
            let (_, out, _) = common::run_cli(&["check", file.to_str().unwrap()]);
            let mut rules: Vec<String> = out
                .lines()
                .filter(|l| !l.ends_with(": ok"))
                .filter_map(|l| l.split(": ").nth(1).map(str::to_string))
                .collect();
            rules.sort();
            rules.dedup();
            let want = expected.get(&name).cloned().unwrap_or_default();
            assert_eq!(rules, want, "{}: check found {out}", file.display());
        }
        println!("{}: {} archives agree", dir.display(), files.len());
    }
}
