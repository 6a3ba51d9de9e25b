//! The PyTorch failures in `corpus/torch-crashes/README.md`, reproduced against the
//! pinned PyTorch (skipped visibly without it), with ptconform's side of each.

use crate::common;

use std::process::Command;

fn run(script: &str, args: &[&str]) -> Option<std::process::Output> {
    let python = common::torch_python()?;
    Some(
        Command::new(python)
            .arg(common::repo().join("oracle/findings").join(script))
            .args(args)
            .output()
            .expect("run python"),
    )
}

#[test]
fn flatbuffer_submodule_after_root_crashes_pytorch() {
    let file = common::corpus("fb_different_modules_first.ptl");
    let (code, out, _) = common::run_cli(&["check", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let Some(out) = run(
        "flatbuffer_submodule_after_root.py",
        &[file.to_str().unwrap(), "foo"],
    ) else {
        return;
    };
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        out.status.signal(),
        Some(11),
        "PyTorch no longer crashes here ({}): update corpus/torch-crashes/README.md",
        out.status
    );
    // The same with the zip twin works.
    let zip = common::corpus("different_modules_first.pt");
    let out = run(
        "flatbuffer_submodule_after_root.py",
        &[zip.to_str().unwrap(), "foo"],
    )
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn empty_quantized_tensor_does_not_load_in_pytorch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.pt");
    let Some(out) = run("empty_quantized_tensor.py", &[path.to_str().unwrap()]) else {
        return;
    };
    assert!(
        !out.status.success(),
        "PyTorch loads it now: update the README"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("out of bounds for storage of size 0"), "{err}");
    // ptconform reads what PyTorch wrote: an empty qint8 tensor.
    let m = ptconform::jit::load(&path, None, None).unwrap();
    match m.root.attribute("q") {
        Some(ptconform::model::IValue::Tensor(t)) => {
            assert_eq!(t.dtype(), ptconform::model::ScalarType::QInt8);
            assert_eq!(t.numel(), 0);
            assert!(t.quantization.is_some());
        }
        other => panic!("attribute q: {other:?}"),
    }
}

/// Every mutant kept in `corpus/torch-crashes/cases.json`: ptconform's `check` rejects it
/// with the listed rule, and PyTorch still crashes or exhausts memory on it.
#[test]
fn kept_mutants_crash_pytorch_and_are_rejected_by_check() {
    let dir = common::repo().join("corpus/torch-crashes");
    let cases: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(dir.join("cases.json")).unwrap()).unwrap();
    assert!(cases.len() >= 10);
    let python = common::torch_python();
    for case in &cases {
        let file = dir.join(case["file"].as_str().unwrap());
        let (code, out, _) = common::run_cli(&["check", file.to_str().unwrap()]);
        assert_eq!(code, 1, "{}: {out}", file.display());
        let rule = case["rule"].as_str().unwrap();
        assert!(
            out.contains(&format!(": {rule}: ")),
            "{}: wanted {rule}: {out}",
            file.display()
        );
        let Some(python) = &python else { continue };
        let res = Command::new(python)
            .arg(common::repo().join("oracle/findings/load_in_child.py"))
            .arg(&file)
            .arg(case["call"].as_str().unwrap())
            .output()
            .unwrap();
        let res: serde_json::Value = serde_json::from_slice(&res.stdout).unwrap();
        // One expected status, or (undefined behaviour in PyTorch, whose outcome varies
        // between runs) a list of them, where an exception must be the garbage one named.
        let expected: Vec<&serde_json::Value> = match &case["pytorch"] {
            serde_json::Value::Array(all) => all.iter().collect(),
            one => vec![one],
        };
        assert!(
            expected.contains(&&res["status"]),
            "{}: PyTorch now {res}, expected {expected:?}",
            file.display()
        );
        if let (Some(want), "exception") = (
            case["exception_contains"].as_str(),
            res["status"].as_str().unwrap_or(""),
        ) {
            let detail = res["detail"].as_str().unwrap_or("");
            assert!(detail.contains(want), "{}: {detail}", file.display());
        }
    }
}

/// `flatbuffer-missing-field` agrees with PyTorch: every "one offset field absent"
/// mutant of a few corpus flatbuffers (tensors, quantized tensors, `__setstate__`
/// objects, extra files) is rejected by `check` exactly when `torch.jit.load` fails on it
/// (most crash with SIGSEGV), and passed when PyTorch loads it.
#[test]
fn absent_fields_are_rejected_exactly_when_pytorch_cannot_load_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for name in [
        "linear.ptl",
        "quantized.ptl",
        "getstate.ptl",
        "extra_files.ptl",
    ] {
        let data = std::fs::read(common::corpus(name)).unwrap();
        let mutants = ptconform::mutate::field_drop_mutants(&data);
        assert!(mutants.len() >= 10, "{name}: {} mutants", mutants.len());
        for (k, m) in mutants.iter().enumerate() {
            let path = dir.path().join(format!("{name}.drop{k}.ptl"));
            std::fs::write(&path, m).unwrap();
            files.push(path);
        }
    }
    let rejected: Vec<bool> = files
        .iter()
        .map(|f| !ptconform::check::check_file(f).unwrap().is_empty())
        .collect();
    let Some(python) = common::torch_python() else {
        // Without PyTorch only ptconform's side: most mutants are rejected.
        assert!(rejected.iter().filter(|r| **r).count() * 2 > files.len());
        return;
    };
    let out = Command::new(python)
        .arg(common::repo().join("oracle/findings/load_in_child.py"))
        .args(["--many", "jit"])
        .args(&files)
        .output()
        .unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.len(),
        files.len(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (mut crashes, mut loads) = (0, 0);
    for ((file, rejected), res) in files.iter().zip(&rejected).zip(&lines) {
        let loaded = res["status"] == "ok";
        crashes += (res["status"] == "crash") as usize;
        loads += loaded as usize;
        assert_eq!(
            *rejected,
            !loaded,
            "{}: PyTorch {res}, check rejected: {rejected}",
            file.display()
        );
    }
    assert!(crashes > files.len() / 2, "{crashes} crashes");
    assert!(loads >= 1);
}
