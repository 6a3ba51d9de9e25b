//! The committed real-model corpus (`corpus/models/`, made by `oracle/make_models.py`
//! with PyTorch 2.15 and random weights): every file PyTorch loads checks clean, inspects
//! exactly as PyTorch reported, re-saves byte for byte, and each twin pair (one module
//! saved by two writers) compares equal. The whole set (~18 GB) is checked by
//! `oracle/check_models.py` against `~/.cache/ptconform/models`.

mod common;

use bytes::Bytes;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn models_dir() -> PathBuf {
    common::repo().join("corpus/models")
}

/// The facts PyTorch reported for `file` (named as in `corpus/`), if it loads there.
fn facts_path(file: &Path) -> PathBuf {
    let name = file.file_name().unwrap().to_string_lossy().to_string();
    let json = if let Some(stem) = name.strip_suffix(".lite.ptl") {
        format!("{stem}.lite.json")
    } else if let Some(stem) = name.strip_suffix(".pt") {
        format!("{stem}.json")
    } else {
        format!("{name}.json")
    };
    file.with_file_name(json)
}

fn model_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(models_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pt" || e == "ptl"))
        .collect();
    v.sort();
    v
}

/// Files PyTorch writes but its own `torch.jit.load` rejects that `check` still passes:
/// `torch.gelu(input, approximate="tanh")` in a flatbuffer's `jit_sources` ("Arguments
/// for call are not valid"; the lite interpreter loads and runs the file). `check` does
/// not resolve operator schemas.
const KNOWN_CHECK_GAPS: &[&str] = &["timm_test_convnext."];

#[test]
fn every_loadable_model_file_checks_inspects_and_roundtrips_like_pytorch() {
    let files = model_files();
    assert!(
        files.len() >= 100,
        "corpus/models holds {} files",
        files.len()
    );
    let mut failures = Vec::new();
    let (mut loadable, mut rejected) = (0, 0);
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let findings = ptconform::check::check_file(f).unwrap();
        let facts = facts_path(f);
        if !facts.exists() {
            // torch.jit.load rejects it: check must say so, except the known gaps.
            rejected += 1;
            let gap = KNOWN_CHECK_GAPS.iter().any(|g| name.starts_with(g));
            if findings.is_empty() != gap {
                failures.push(format!(
                    "{name}: PyTorch rejects it; check found {findings:?} (known gap: {gap})"
                ));
            }
            continue;
        }
        loadable += 1;
        if !findings.is_empty() {
            failures.push(format!("{name}: check: {findings:?}"));
            continue;
        }
        let expected: Value = serde_json::from_slice(&std::fs::read(&facts).unwrap()).unwrap();
        let data = Bytes::from(std::fs::read(f).unwrap());
        match ptconform::inspect::facts_of_bytes(data.clone(), None) {
            Ok(got) => {
                for (k, v) in expected.as_object().unwrap() {
                    // lite_interpreter_loads is PyTorch's outcome, not a fact of the file.
                    if k != "lite_interpreter_loads" && got.get(k) != Some(v) {
                        failures.push(format!("{name}: inspect {k} differs from PyTorch's"));
                    }
                }
            }
            Err(e) => failures.push(format!("{name}: inspect: {e}")),
        }
        match ptconform::roundtrip::roundtrip(data) {
            Ok(rt) if rt.difference.is_none() => {}
            Ok(rt) => failures.push(format!("{name}: roundtrip: {:?}", rt.difference)),
            Err(e) => failures.push(format!("{name}: roundtrip: {e}")),
        }
    }
    assert!(
        loadable >= 90 && rejected >= 1,
        "{loadable} loadable, {rejected} rejected"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_model_twin_pair_compares_equal() {
    let dir = models_dir();
    let mut pairs = 0;
    let mut failures = Vec::new();
    for f in model_files() {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let twin = if let Some(stem) = name.strip_suffix(".lite.ptl") {
            format!("{stem}.lite_fb.ptl")
        } else if let Some(stem) = name.strip_suffix(".pt") {
            format!("{stem}.ptl")
        } else {
            continue;
        };
        let twin = dir.join(twin);
        // Only pairs PyTorch loads both of.
        if !twin.exists() || !facts_path(&f).exists() || !facts_path(&twin).exists() {
            continue;
        }
        pairs += 1;
        let report =
            ptconform::diff::diff(&std::fs::read(&f).unwrap(), &std::fs::read(&twin).unwrap())
                .unwrap();
        if !report.is_equal() {
            failures.push(format!("{name}: {}", report.to_text()));
        }
    }
    assert!(pairs >= 30, "twin pairs: {pairs}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
