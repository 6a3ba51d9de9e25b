//! Load → save reproduces every PyTorch-made corpus archive byte for byte, the `zip` crate
//! reads what we write, and real PyTorch loads it with the same facts.

use crate::common;

use bytes::Bytes;
use ptconform::roundtrip::roundtrip_zip;

#[test]
fn roundtrip_of_every_corpus_archive_is_byte_identical() {
    let mut failures = Vec::new();
    let archives = common::corpus_archives();
    for pt in &archives {
        let original = Bytes::from(std::fs::read(pt).unwrap());
        let rt = roundtrip_zip(original).unwrap_or_else(|e| panic!("{}: {e}", pt.display()));
        if let Some(d) = rt.difference {
            failures.push(format!(
                "{}: first difference in {} at offset {}",
                pt.display(),
                d.record,
                d.offset
            ));
        }
        // Independent check: the zip crate reads what we wrote.
        let mut z = zip::ZipArchive::with_config(
            zip::read::Config {
                archive_offset: zip::read::ArchiveOffset::Known(0),
            },
            std::io::Cursor::new(rt.rewritten),
        )
        .unwrap();
        for i in 0..z.len() {
            let mut f = z.by_index(i).unwrap();
            std::io::copy(&mut f, &mut std::io::sink()).unwrap();
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} not identical:\n{}",
        failures.len(),
        archives.len(),
        failures.join("\n")
    );
}

#[test]
fn roundtrip_cli_reports_identical() {
    let pt = common::corpus("linear.pt");
    let (code, stdout, stderr) = common::run_cli(&["roundtrip", pt.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(stdout.trim(), "identical");
}

#[test]
fn pytorch_loads_what_ptconform_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut written = Vec::new();
    let mut expected = Vec::new();
    for pt in common::corpus_archives() {
        let rt = roundtrip_zip(Bytes::from(std::fs::read(&pt).unwrap())).unwrap();
        let out = dir.path().join(pt.file_name().unwrap());
        std::fs::write(&out, &rt.rewritten).unwrap();
        written.push(out);
        expected.push(
            serde_json::from_slice::<serde_json::Value>(
                &std::fs::read(pt.with_extension("json")).unwrap(),
            )
            .unwrap(),
        );
    }
    let Some(got) = common::pytorch_facts(&written) else {
        return;
    };
    for ((path, got), want) in written.iter().zip(got).zip(expected) {
        let got = got.unwrap_or_else(|e| panic!("PyTorch failed to load {}: {e}", path.display()));
        assert_eq!(got, want, "{}", path.display());
    }
}

#[test]
fn nul_named_extra_file_differs_only_in_its_padding() {
    let pt = common::repo().join("corpus/quirks/extra_files_nul_name.pt");
    let rt = roundtrip_zip(Bytes::from(std::fs::read(&pt).unwrap())).unwrap();
    let d = rt
        .difference
        .expect("cannot be identical: the full name is not in the archive");
    assert_eq!(d.record, "local header of archive/extra/nul");
    // Offset 28 is the extra-field length: PyTorch padded for the 16-byte full name.
    assert_eq!(d.offset, 28);
    let a = ptconform::zip_archive::ZipArchiveReader::from_bytes(rt.original.clone()).unwrap();
    let b = ptconform::zip_archive::ZipArchiveReader::from_bytes(rt.rewritten.clone()).unwrap();
    let names = |z: &ptconform::zip_archive::ZipArchiveReader| {
        z.record_names().map(str::to_string).collect::<Vec<_>>()
    };
    assert_eq!(names(&a), names(&b));
    for n in names(&a) {
        assert_eq!(a.read(&n, true).unwrap(), b.read(&n, true).unwrap(), "{n}");
    }
}

/// A generated archive (ptconform's writer, PyTorch's layout) that the `zip` crate's
/// default archive-offset detection rejected ("Invalid Central Directory header"): the
/// reader now reads archives at offset 0, as PyTorch's miniz does. PyTorch loads it too.
#[test]
fn archive_offset_is_not_guessed() {
    let path = common::repo().join("tests/data/zip_offset_detection.pt");
    let (code, out, err) = common::run_cli(&["check", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let rt = ptconform::roundtrip::roundtrip_zip(bytes::Bytes::from(std::fs::read(&path).unwrap()))
        .unwrap();
    assert!(rt.difference.is_none(), "{:?}", rt.difference);
    if let Some(facts) = common::pytorch_facts(std::slice::from_ref(&path)) {
        assert!(facts[0].is_ok(), "{:?}", facts[0]);
    }
}

/// The `zip` crate's offset detection assumes the central directory ends where the end
/// record starts; PyTorch puts the zip64 end records between them (76 bytes), so an
/// archive whose first central-directory entry is exactly 76 bytes long (a 30-byte name,
/// e.g. `archive/extra/` + 16 characters) was misread. PyTorch writes such files.
#[test]
fn pytorch_archive_with_a_76_byte_first_directory_entry() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("name30.pt");
    let script = "import io, sys, torch\n\
class M(torch.nn.Module):\n    def forward(self, x):\n        return x\n\
buf = io.BytesIO()\n\
torch.jit.save(torch.jit.script(M()), buf, _extra_files={'abcdefghijklmnop': b'x'})\n\
open(sys.argv[1], 'wb').write(buf.getvalue())\n";
    // The script's class needs its source on disk for torch.jit.script.
    let py = dir.path().join("make.py");
    std::fs::write(&py, script).unwrap();
    let Some(python) = common::torch_python() else {
        return;
    };
    let out = std::process::Command::new(python)
        .arg(&py)
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, out, err) = common::run_cli(&["check", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let rt = roundtrip_zip(Bytes::from(std::fs::read(&path).unwrap())).unwrap();
    assert!(rt.difference.is_none(), "{:?}", rt.difference);
}

/// A TorchBind namespace's code file is empty; converting a flatbuffer to a zip writes it
/// with the record-less `.debug_pkl` PyTorch writes for it (compared with the zip twin
/// PyTorch wrote of the same module).
#[test]
fn converted_torchbind_namespace_file_matches_pytorch() {
    use ptconform::convert::{Format, convert};
    use ptconform::flatbuffer::NameMode;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let ptl = Bytes::from(std::fs::read(dir.join("torchbind_static.ptl")).unwrap());
    let pt = Bytes::from(std::fs::read(dir.join("torchbind_static.pt")).unwrap());
    let converted = Bytes::from(convert(ptl, Format::Zip, "archive", NameMode::PyTorch).unwrap());
    let read = |b: &Bytes| {
        let a = ptconform::zip_archive::ZipArchiveReader::from_bytes(b.clone()).unwrap();
        let text = a
            .read("code/__torch__/torch/classes/quantized.py", true)
            .unwrap();
        let debug = a
            .read("code/__torch__/torch/classes/quantized.py.debug_pkl", true)
            .unwrap();
        (text, debug)
    };
    let (ours_text, ours_debug) = read(&converted);
    let (theirs_text, theirs_debug) = read(&pt);
    assert!(theirs_text.is_empty() && ours_text.is_empty());
    assert_eq!(ours_debug, theirs_debug);
}
