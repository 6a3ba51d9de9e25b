//! The PyTorch failures in `corpus/torch-crashes/README.md`, reproduced against the
//! pinned PyTorch (skipped visibly without it), with ptconform's side of each.

mod common;

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
        assert_eq!(
            res["status"],
            case["pytorch"],
            "{}: PyTorch now {res}",
            file.display()
        );
    }
}
