//! `convert` between mobile zips and flatbuffers, both of which carry bytecode: every
//! PyTorch-made mobile zip of the corpus becomes a flatbuffer and back, and PyTorch loads
//! each result with `torch.jit.load` and the lite interpreter, its forward outputs equal
//! to the original file's.

use crate::common;

use std::path::PathBuf;

use bytes::Bytes;
use ptconform::convert::{Target, convert};
use ptconform::flatbuffer::NameMode;

/// The corpus's mobile zips (PyTorch's `_save_for_lite_interpreter`) and the inputs
/// their forward takes, as Python expressions.
const MOBILE_ZIPS: &[(&str, &str)] = &[
    ("mobile_zip", "(torch.randn(2, 3),)"),
    ("mobile_zip_frozen", "(torch.randn(2, 3),)"),
    ("mobile_zip_debug", "(torch.randn(2, 3),)"),
    ("mobile_zip_torchbind", "(torch.randn(2, 4),)"),
    ("traced_mobile_zip", "(torch.randn(2, 4), torch.randn(5))"),
    ("mobile_zip_setstate", "(torch.randn(3, 2),)"),
];

fn converted(bytes: &[u8], to: Target) -> Vec<u8> {
    convert(
        Bytes::copy_from_slice(bytes),
        to,
        "archive",
        NameMode::Unique,
    )
    .unwrap_or_else(|e| panic!("convert to {to:?}: {e}"))
}

/// Writes, for each corpus mobile zip, its flatbuffer, the mobile zip made back from that
/// flatbuffer, and the mobile zip re-made from the mobile zip itself.
fn write_conversions(dir: &std::path::Path) -> Vec<(String, String, Vec<PathBuf>)> {
    MOBILE_ZIPS
        .iter()
        .map(|(name, inputs)| {
            let original = common::corpus(&format!("{name}.pt"));
            let bytes = std::fs::read(&original).unwrap();
            let fb = converted(&bytes, Target::Flatbuffer);
            assert!(ptconform::flatbuffer::is_flatbuffer(&fb), "{name}");
            let back = converted(&fb, Target::MobileZip);
            let again = converted(&bytes, Target::MobileZip);
            let mut files = Vec::new();
            for (suffix, data) in [("fb.ptl", &fb), ("back.pt", &back), ("again.pt", &again)] {
                let p = dir.join(format!("{name}.{suffix}"));
                std::fs::write(&p, data).unwrap();
                // What ptconform writes, its own check accepts.
                let (code, out, err) = common::run_cli(&["check", p.to_str().unwrap()]);
                assert_eq!(code, 0, "check {}: {out}{err}", p.display());
                files.push(p);
            }
            files.insert(0, original);
            (name.to_string(), inputs.to_string(), files)
        })
        .collect()
}

#[test]
fn mobile_zip_and_flatbuffer_convert_into_each_other_with_bytecode_intact() {
    // Without PyTorch: the bytecode read from the converted file is the original's.
    let dir = tempfile::tempdir().unwrap();
    for (name, _, files) in write_conversions(dir.path()) {
        let info = |p: &PathBuf| {
            let mut i = ptconform::jit::get_model_info(&std::fs::read(p).unwrap()).unwrap();
            // A flatbuffer says bytecode version 9 and operator version 1 for what a zip
            // calls 8 and its `version` record.
            i.bytecode_version = 0;
            i.operator_version = 0;
            i
        };
        let reference = info(&files[0]);
        for p in &files[1..] {
            assert_eq!(info(p), reference, "{name}: {}", p.display());
        }
    }
}

#[test]
fn pytorch_runs_converted_mobile_files_with_the_original_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let cases = write_conversions(dir.path());
    let mut script = String::from(
        "import sys, torch\n\
         from torch.jit.mobile import _load_for_lite_interpreter\n\
         cases = []\n",
    );
    for (name, inputs, files) in &cases {
        let paths: Vec<String> = files
            .iter()
            .map(|p| format!("{:?}", p.display().to_string()))
            .collect();
        script.push_str(&format!(
            "cases.append(({name:?}, lambda: {inputs}, [{}]))\n",
            paths.join(", ")
        ));
    }
    script.push_str(
        "n = 0\n\
         for name, inputs, (original, *converted) in cases:\n\
         \x20   torch.manual_seed(0)\n\
         \x20   x = inputs()\n\
         \x20   want = _load_for_lite_interpreter(original)(*x)\n\
         \x20   for path in converted:\n\
         \x20       for load in (torch.jit.load, _load_for_lite_interpreter):\n\
         \x20           got = load(path)(*x)\n\
         \x20           assert torch.equal(got, want), (name, path, load.__name__, got, want)\n\
         \x20           n += 1\n\
         print(n)\n",
    );
    let Some(out) = common::torch_script(&script, &[]) else {
        return;
    };
    let runs: usize = out.trim().parse().unwrap();
    assert_eq!(runs, cases.len() * 3 * 2);
    println!("{runs} PyTorch loads of converted mobile files agree");
}

/// PyTorch's flatbuffer writer lists every function of the mobile module as a method,
/// a submodule's `__setstate__` among them (its object refers to it by index; without it
/// the lite interpreter has no function to run). A mobile zip converted to a flatbuffer
/// lists what PyTorch's own flatbuffer of that module class lists.
#[test]
fn a_converted_flatbuffer_lists_every_function_as_pytorch_does() {
    let zip = std::fs::read(common::corpus("mobile_zip_setstate.pt")).unwrap();
    let ours = converted(&zip, Target::Flatbuffer);
    let names = |bytes: &[u8]| -> Vec<String> {
        ptconform::flatbuffer::read_flatbuffer(&Bytes::copy_from_slice(bytes), None)
            .unwrap()
            .methods
            .iter()
            .map(|f| f.qualified_name.as_str().to_string())
            .collect()
    };
    let pytorch = std::fs::read(common::corpus("setstate_buffers.ptl")).unwrap();
    let want = names(&pytorch);
    assert!(
        want.iter().any(|n| n.ends_with("WithState.__setstate__")),
        "{want:?}"
    );
    assert_eq!(names(&ours), want);
    let violations = ptconform::check::check_bytes(&ours);
    assert!(violations.is_empty(), "{violations:?}");
}

#[test]
fn a_torch_jit_save_archive_cannot_become_mobile() {
    let bytes = std::fs::read(common::corpus("attributes.pt")).unwrap();
    for to in [Target::Flatbuffer, Target::MobileZip] {
        let e = convert(Bytes::from(bytes.clone()), to, "archive", NameMode::Unique)
            .expect_err("no bytecode");
        assert!(e.to_string().contains("no mobile bytecode"), "{e}");
    }
}

#[test]
fn converted_flatbuffers_get_the_version_pytorch_writes_for_their_operators() {
    // `a / b` of ints is `aten::div.int` (no upgrader: PyTorch writes version 3), of
    // tensors `aten::div.Scalar` (4); both print as `torch.div(`.
    for name in ["version_div_int", "version_div"] {
        let ptl = std::fs::read(common::corpus(&format!("{name}.ptl"))).unwrap();
        let pytorch =
            ptconform::zip_archive::ZipArchiveReader::open(common::corpus(&format!("{name}.pt")))
                .unwrap();
        for to in [Target::Zip, Target::MobileZip] {
            let zip = converted(&ptl, to);
            let ours =
                ptconform::zip_archive::ZipArchiveReader::from_bytes(Bytes::from(zip)).unwrap();
            assert_eq!(
                ours.version().unwrap().0,
                pytorch.version().unwrap().0,
                "{name} as {to:?}"
            );
        }
    }
}
