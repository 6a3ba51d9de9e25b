//! The committed real-model corpus (`corpus/models/`, made by `oracle/makers/make_models.py`
//! with PyTorch 2.15 and random weights): every file PyTorch loads checks clean, inspects
//! exactly as PyTorch reported, re-saves byte for byte, and each twin pair (one module
//! saved by two writers) compares equal. The whole set (~18 GB) is checked by
//! `oracle/check/check_models.py` against `~/.cache/ptconform/models`.

use crate::common;

use bytes::Bytes;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn models_dir() -> PathBuf {
    common::repo().join("corpus/models")
}

/// The facts PyTorch reported for `file` (named as `oracle/makers/make_models.py` names them).
fn facts_path(file: &Path) -> PathBuf {
    ptconform::conform::model_facts_path(file)
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

/// Files PyTorch writes but its own `torch.jit.load` rejects that `check` still passes
/// (none now: `timm_test_convnext`'s flatbuffers are `flatbuffer-upgrader`).
const KNOWN_CHECK_GAPS: &[&str] = &[];

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
                let got = got.to_value();
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
    let mut pairs = 0;
    let mut failures = Vec::new();
    for f in model_files() {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let Some(twin) = ptconform::conform::model_twin(&f) else {
            continue;
        };
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

/// `info` of every mobile zip (`corpus/mobile_zip*.pt`, `corpus/traced_mobile_zip.pt`,
/// `corpus/models/*.lite.ptl`) equals what PyTorch's `_get_model_bytecode_version` and
/// `_get_model_ops_and_info` report (files its lite interpreter cannot open are skipped
/// by the script and counted).
#[test]
fn mobile_zip_info_equals_pytorch() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(common::repo().join("corpus"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.ends_with(".pt") && (n.starts_with("mobile_zip") || n == "traced_mobile_zip.pt")
        })
        .collect();
    files.extend(
        model_files()
            .into_iter()
            .filter(|p| p.to_string_lossy().ends_with(".lite.ptl")),
    );
    files.sort();
    assert!(files.len() >= 15, "mobile zips: {}", files.len());
    let script = r#"
import json, sys, torch
out = {}
for f in sys.argv[1:]:
    try:
        ops = torch._C._get_model_ops_and_info(f)
        out[f] = {"bytecode_version": torch._C._get_model_bytecode_version(f),
                  "ops": {k: o.num_schema_args for k, o in ops.items()}}
    except Exception as e:
        out[f] = None
print(json.dumps(out))
"#;
    let args: Vec<&std::ffi::OsStr> = files.iter().map(|p| p.as_os_str()).collect();
    let Some(stdout) = common::torch_script(script, &args) else {
        return;
    };
    let theirs: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let mut compared = 0;
    for f in &files {
        let t = &theirs[f.to_str().unwrap()];
        if t.is_null() {
            continue;
        }
        let info = ptconform::jit::get_model_info(&std::fs::read(f).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert_eq!(
            info.bytecode_version as u64,
            t["bytecode_version"].as_u64().unwrap(),
            "{}",
            f.display()
        );
        let ours = serde_json::to_value(&info.opname_to_num_args).unwrap();
        assert_eq!(ours, t["ops"], "{}", f.display());
        compared += 1;
    }
    assert!(compared >= 15, "compared {compared}");
}

/// A module pickled through `__getstate__`: the buffer and parameter PyTorch reports are
/// what `__setstate__` assigns (`corpus/setstate_buffers.pt`, checked against PyTorch's
/// facts by `corpus_inspect`). A body ptconform does not evaluate is said in `notes`,
/// never silently dropped.
#[test]
fn setstate_buffers_are_evaluated_or_the_gap_is_said() {
    let pt = common::corpus("setstate_buffers.pt");
    let facts = ptconform::inspect::facts_of_bytes(Bytes::from(std::fs::read(&pt).unwrap()), None)
        .unwrap()
        .to_value();
    let names = |k: &str| -> Vec<String> {
        facts[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names("buffers"), ["inner.weight"]);
    assert_eq!(
        names("parameters"),
        ["inner.bias", "lin.weight", "lin.bias"]
    );
    assert!(facts.get("notes").is_none());
    // The same archive with a call ptconform does not evaluate in __setstate__.
    let archive = ptconform::zip_archive::ZipArchiveReader::open(&pt).unwrap();
    let code = archive.read("code/__torch__.py", false).unwrap();
    let text = String::from_utf8(code.to_vec()).unwrap();
    let changed = text.replace("torch.mul((state)[0], 2)", "torch.relu((state)[0])");
    assert_ne!(changed, text);
    let bytes = common::replace_record(&pt, "code/__torch__.py", changed.into_bytes());
    let facts = ptconform::inspect::facts_of_bytes(Bytes::from(bytes), None)
        .unwrap()
        .to_value();
    let notes = facts["notes"].as_array().expect("a note");
    assert!(
        notes[0]
            .as_str()
            .unwrap()
            .contains("inner: __torch__.WithState.__setstate__ is not evaluated"),
        "{notes:?}"
    );
}
