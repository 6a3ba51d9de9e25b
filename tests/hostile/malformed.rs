//! Bad inputs get a clear verdict (rule, record, offset), never a panic, hang or
//! unbounded allocation.

use crate::common;

use std::path::Path;

use ptconform::check::check_archive;
use ptconform::error::{FormatError, rules};
use ptconform::zip_archive::ZipArchiveReader;

/// Checks bytes as `check` would; an unreadable container is itself a finding.
fn check_bytes(bytes: Vec<u8>) -> Vec<FormatError> {
    match ZipArchiveReader::from_bytes(bytes) {
        Ok(a) => check_archive(&a),
        Err(e) => vec![e],
    }
}

fn linear() -> std::path::PathBuf {
    common::corpus("linear.pt")
}

fn assert_finding(
    v: &[FormatError],
    rule: ptconform::error::Rule,
    record_contains: &str,
) -> FormatError {
    let f = v
        .iter()
        .find(|f| f.rule == rule)
        .unwrap_or_else(|| panic!("expected rule {rule}, got {v:?}"));
    assert!(
        f.location.record.contains(record_contains),
        "expected record {record_contains:?} in {f:?}"
    );
    f.clone()
}

#[test]
fn rebuilt_archive_without_changes_conforms() {
    // The crafting helper itself must not introduce findings, or the tests below prove nothing.
    let v = check_bytes(common::rebuild(&linear(), |_, d| Some(d), &[]));
    assert!(v.is_empty(), "{v:?}");
}

#[test]
fn truncated_archives_are_rejected_at_every_cut() {
    let bytes = std::fs::read(linear()).unwrap();
    for cut in (0..bytes.len()).step_by(7) {
        let v = check_bytes(bytes[..cut].to_vec());
        assert!(!v.is_empty(), "truncation at {cut} accepted");
    }
}

#[test]
fn crc_damage_names_record_and_offset() {
    let mut bytes = std::fs::read(linear()).unwrap();
    let archive = ZipArchiveReader::from_bytes(bytes.clone()).unwrap();
    let rec = archive.record("data.pkl").unwrap().clone();
    bytes[rec.data_offset as usize + 5] ^= 0x40;
    let v = check_bytes(bytes);
    let f = assert_finding(&v, rules::ZIP_CRC, "data.pkl");
    assert_eq!(f.location.offset, Some(rec.data_offset));
}

#[test]
fn missing_records_are_named() {
    let v = check_bytes(common::rebuild(
        &linear(),
        |n, d| (!n.ends_with("/data.pkl")).then_some(d),
        &[],
    ));
    assert_finding(&v, rules::RECORD_MISSING, "data.pkl");
    let v = check_bytes(common::rebuild(
        &linear(),
        |n, d| (!n.ends_with("/data/0")).then_some(d),
        &[],
    ));
    let f = assert_finding(&v, rules::STORAGE, "data.pkl");
    assert!(f.message.contains("data/0"), "{f:?}");
    let v = check_bytes(common::rebuild(
        &linear(),
        |n, d| (!n.contains("/code/")).then_some(d),
        &[],
    ));
    assert_finding(&v, rules::TYPE_UNKNOWN, "code/");
    let v = check_bytes(common::rebuild(
        &linear(),
        |n, d| (!n.ends_with("version")).then_some(d),
        &[],
    ));
    assert_finding(&v, rules::RECORD_MISSING, "version");
}

#[test]
fn unknown_and_foreign_opcodes_are_rejected_with_offset() {
    let v = check_bytes(common::replace_record(
        &linear(),
        "/data.pkl",
        b"\x80\x02\xff.".to_vec(),
    ));
    let f = assert_finding(&v, rules::PICKLE_OPCODE, "data.pkl");
    assert_eq!(f.location.offset, Some(2));
    // FRAME is real Python pickle, but not TorchScript's dialect.
    let v = check_bytes(common::replace_record(
        &linear(),
        "/data.pkl",
        b"\x80\x02\x95\x00\x00\x00\x00\x00\x00\x00\x00N.".to_vec(),
    ));
    let f = assert_finding(&v, rules::PICKLE_OPCODE, "data.pkl");
    assert!(f.message.contains("FRAME"), "{f:?}");
}

#[test]
fn foreign_global_is_named_and_never_resolved() {
    let evil = b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00true\x85R.".to_vec();
    let v = check_bytes(common::replace_record(&linear(), "/data.pkl", evil));
    let f = assert_finding(&v, rules::PICKLE_GLOBAL, "data.pkl");
    assert_eq!(f.location.offset, Some(2));
    assert!(f.message.contains("os.system"), "{f:?}");
    // builtins other than complex are refused too.
    let evil = b"\x80\x02cbuiltins\neval\nX\x01\x00\x00\x001\x85R.".to_vec();
    let v = check_bytes(common::replace_record(&linear(), "/data.pkl", evil));
    assert_finding(&v, rules::PICKLE_GLOBAL, "data.pkl");
}

#[test]
fn deep_nesting_of_100k_levels_is_refused() {
    const N: usize = 100_000;
    let mut tuples = b"\x80\x02".to_vec();
    tuples.extend(std::iter::repeat_n(b'(', N));
    tuples.push(b')');
    tuples.extend(std::iter::repeat_n(b't', N));
    tuples.push(b'.');
    let mut lists = b"\x80\x02".to_vec();
    lists.extend(std::iter::repeat_n(b'(', N));
    lists.push(b']');
    lists.extend(std::iter::repeat_n(b'l', N));
    lists.push(b'.');
    for p in [tuples, lists] {
        let v = check_bytes(common::replace_record(&linear(), "/data.pkl", p));
        assert_finding(&v, rules::PICKLE_DEPTH, "data.pkl");
    }
}

#[test]
fn huge_declared_sizes_do_not_allocate() {
    // A string claiming 4 GiB in a tiny pickle.
    let v = check_bytes(common::replace_record(
        &linear(),
        "/data.pkl",
        b"\x80\x02X\xff\xff\xff\xffabc.".to_vec(),
    ));
    assert_finding(&v, rules::PICKLE_STRUCTURE, "data.pkl");
    let v = check_bytes(common::replace_record(
        &linear(),
        "/data.pkl",
        b"\x80\x02\x8d\xff\xff\xff\xff\xff\xff\xff\x7fabc.".to_vec(),
    ));
    assert_finding(&v, rules::PICKLE_STRUCTURE, "data.pkl");
    // A storage claiming 2^60 elements.
    let pkl = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpu\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x10tQK\x00(K\x01t(K\x01t\x89ccollections\nOrderedDict\n)Rt R.".to_vec();
    let v = check_bytes(common::replace_record(&linear(), "/data.pkl", pkl));
    assert_finding(&v, rules::STORAGE, "data.pkl");
    // A memo id of 4 billion is a map key, not an allocation: the value stored under it
    // comes back (a dense table would need 4 billion slots first), and a fetch of an id
    // never stored is its own error.
    let mut storages =
        |_: &ptconform::pickle::StorageRequest| -> Result<std::sync::Arc<ptconform::model::Storage>, String> {
            Err("no storages".into())
        };
    let stored = bytes::Bytes::from_static(b"\x80\x02(K\x07r\xff\xff\xff\xffj\xff\xff\xff\xfft.");
    let value = ptconform::pickle::unpickle(&stored, &mut storages)
        .unwrap()
        .value;
    let ptconform::model::IValue::Tuple(t) = &value else {
        panic!("{value:?}")
    };
    assert!(
        matches!(
            t.items[..],
            [
                ptconform::model::IValue::Int(7),
                ptconform::model::IValue::Int(7)
            ]
        ),
        "{value:?}"
    );
    let missing = bytes::Bytes::from_static(b"\x80\x02j\xfe\xff\xff\xff.");
    let e = ptconform::pickle::unpickle(&missing, &mut storages).unwrap_err();
    assert_eq!(
        e.kind,
        ptconform::pickle::PickleErrorKind::MissingMemo(0xffff_fffe),
        "{e}"
    );
    // Central directory claims a huge uncompressed size for a deflated record.
    let mut bytes = std::fs::read(linear()).unwrap();
    let archive = ZipArchiveReader::from_bytes(bytes.clone()).unwrap();
    let rec = archive
        .records()
        .iter()
        .find(|r| r.method == ptconform::zip_archive::read::Method::Deflated)
        .expect("linear.pt has a deflated code record")
        .clone();
    let cd = find_central_header(&bytes, &rec.full_name);
    bytes[cd + 24..cd + 28].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    let v = check_bytes(bytes);
    assert_finding(&v, rules::RECORD_SIZE, &rec.full_name);
}

fn find_central_header(bytes: &[u8], name: &str) -> usize {
    let mut i = 0;
    while i + 46 < bytes.len() {
        if &bytes[i..i + 4] == b"PK\x01\x02" {
            let n = u16::from_le_bytes([bytes[i + 28], bytes[i + 29]]) as usize;
            if &bytes[i + 46..i + 46 + n] == name.as_bytes() {
                return i;
            }
        }
        i += 1;
    }
    panic!("no central header for {name}");
}

#[test]
fn path_traversal_names_are_flagged_and_never_extracted() {
    let prefix = {
        let a = ZipArchiveReader::open(linear()).unwrap();
        a.prefix().to_string()
    };
    let evil = format!("{prefix}/extra/../../../tmp/ptconform-evil");
    let abs = format!("{prefix}/extra//etc/passwd-ptconform");
    let bytes = common::rebuild(&linear(), |_, d| Some(d), &[(&evil, b"x"), (&abs, b"y")]);
    let v = check_bytes(bytes.clone());
    assert_finding(&v, rules::EXTRA_NAME, "extra/../");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("evil.pt");
    std::fs::write(&file, &bytes).unwrap();
    let out = dir.path().join("out");
    let (code, _, stderr) = common::run_cli(&[
        "extra",
        file.to_str().unwrap(),
        "--out-dir",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("refusing"), "{stderr}");
    assert!(!dir.path().join("tmp").exists());
    assert!(!Path::new("/tmp/ptconform-evil").exists());
    let (code, _, _) = common::run_cli(&["check", file.to_str().unwrap()]);
    assert_eq!(code, 1);
}

/// A link planted in the output directory under an extra file's name is replaced by the
/// extracted file, never written through: the file it points to is left as it was.
#[cfg(unix)]
#[test]
fn extraction_replaces_a_planted_link_instead_of_following_it() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside.txt");
    std::fs::write(&outside, b"precious").unwrap();
    let file = dir.path().join("with_extra.pt");
    let prefix = ZipArchiveReader::open(linear())
        .unwrap()
        .prefix()
        .to_string();
    let name = format!("{prefix}/extra/notes.txt");
    std::fs::write(
        &file,
        common::rebuild(&linear(), |_, d| Some(d), &[(&name, b"extracted")]),
    )
    .unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::os::unix::fs::symlink(&outside, out.join("notes.txt")).unwrap();
    let (code, stdout, stderr) = common::run_cli(&[
        "extra",
        file.to_str().unwrap(),
        "--out-dir",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(std::fs::read(&outside).unwrap(), b"precious");
    let meta = std::fs::symlink_metadata(out.join("notes.txt")).unwrap();
    assert!(meta.is_file(), "the link is replaced by a regular file");
    assert_eq!(std::fs::read(out.join("notes.txt")).unwrap(), b"extracted");
    // Nothing else is left in the directory (no temporary).
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);
}

#[test]
fn random_byte_flips_never_panic() {
    // Deterministic xorshift so failures reproduce.
    let base = std::fs::read(linear()).unwrap();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..400 {
        let mut b = base.clone();
        for _ in 0..(next() % 4 + 1) {
            let i = (next() as usize) % b.len();
            b[i] = next() as u8;
        }
        let _ = check_bytes(b);
    }
}

#[test]
fn check_cli_exit_codes() {
    let (code, _, _) = common::run_cli(&["check", linear().to_str().unwrap()]);
    assert_eq!(code, 0);
    let (code, _, _) = common::run_cli(&["check", "/nonexistent/ptconform.pt"]);
    assert_eq!(code, 2);
    let (code, _, _) = common::run_cli(&["check"]);
    assert_eq!(code, 2);
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.pt");
    std::fs::write(&bad, b"not a zip").unwrap();
    let (code, stdout, _) = common::run_cli(&["check", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stdout.contains("zip-structure"), "{stdout}");
}

/// Field types that name their own class, directly or through another class: PyTorch
/// defines a class's type from its field annotations before the class exists, so both
/// files fail in `torch.jit.load` with "Unknown type name", and `check` says
/// `type-unknown`. (A method signature naming its own class, as every `self:` does, is
/// fine: it is compiled after the class.)
#[test]
fn field_types_naming_their_own_class_are_refused_as_pytorch_does() {
    const LINEAR: &str = "__torch__.torch.nn.modules.linear.Linear";
    let code_of = |rebuild_extra: Option<&str>, annotation: &str| {
        let annotation = annotation.to_string();
        let extra = rebuild_extra.map(str::to_string);
        common::rebuild(
            &linear(),
            move |name, old| {
                if name.ends_with("linear.py.debug_pkl") {
                    return None; // its source ranges describe the old text
                }
                Some(if name.ends_with("linear.py") {
                    String::from_utf8(old)
                        .unwrap()
                        .replace(
                            "  _is_full_backward_hook : NoneType",
                            &format!("  _is_full_backward_hook : {annotation}"),
                        )
                        .into_bytes()
                } else {
                    old
                })
            },
            &extra
                .as_deref()
                .map(|text| vec![("archive/code/__torch__.py", text.as_bytes())])
                .unwrap_or_default(),
        )
    };
    let own = code_of(None, &format!("Optional[{LINEAR}]"));
    let mutual = code_of(
        Some(&format!(
            "class A:\n  back : Optional[{LINEAR}]\n  def __init__(self: __torch__.A) -> NoneType:\n    self.back = None\n    return None\n"
        )),
        "Optional[__torch__.A]",
    );
    // The control: the same edit naming an unrelated defined class is fine.
    let fine = code_of(
        Some(
            "class A:\n  n : int\n  def __init__(self: __torch__.A) -> NoneType:\n    self.n = 0\n    return None\n",
        ),
        "Optional[__torch__.A]",
    );
    for (what, bytes, cycle) in [
        ("own class", &own, format!("{LINEAR} -> {LINEAR}")),
        (
            "through A",
            &mutual,
            format!("{LINEAR} -> __torch__.A -> {LINEAR}"),
        ),
    ] {
        let v = check_bytes(bytes.clone());
        let f = assert_finding(&v, rules::TYPE_UNKNOWN, "linear.py");
        assert!(f.message.contains(&cycle), "{what}: {f}");
    }
    assert!(
        check_bytes(fine.clone()).is_empty(),
        "{:?}",
        check_bytes(fine.clone())
    );
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for (name, bytes) in [("own.pt", &own), ("mutual.pt", &mutual), ("fine.pt", &fine)] {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        paths.push(p);
    }
    let script = "import sys, torch\nfor p in sys.argv[1:]:\n    try:\n        torch.jit.load(p)\n        print('loads')\n    except RuntimeError as e:\n        print('refused' if 'Unknown type name' in str(e) else 'other: ' + str(e)[:200])\n";
    let args: Vec<&std::ffi::OsStr> = paths.iter().map(|p| p.as_os_str()).collect();
    let Some(out) = common::torch_script(script, &args) else {
        return;
    };
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["refused", "refused", "loads"],
        "PyTorch's verdicts on own / mutual / fine"
    );
}

/// corpus/linear.pt with `Linear._is_full_backward_hook` declared `ty` instead of
/// `NoneType` (its value stays None; the debug records, which quote the source, dropped).
fn linear_with_hook_type(ty: &str) -> Vec<u8> {
    let annotation = format!("  _is_full_backward_hook : {ty}");
    common::rebuild(
        &linear(),
        move |record, old| {
            if record.ends_with("linear.py.debug_pkl") {
                return None;
            }
            Some(if record.ends_with("linear.py") {
                String::from_utf8(old)
                    .unwrap()
                    .replace("  _is_full_backward_hook : NoneType", &annotation)
                    .into_bytes()
            } else {
                old
            })
        },
        &[],
    )
}

/// `Optional[None]` and `Optional[NoneType]`: PyTorch's type parser fails an internal
/// assert on them, so `check` refuses them (`type-unknown`), asked of PyTorch here.
#[test]
fn optional_of_none_is_refused_as_pytorch_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for name in ["None", "NoneType"] {
        let bytes = linear_with_hook_type(&format!("Optional[{name}]"));
        let f = assert_finding(
            &check_bytes(bytes.clone()),
            rules::TYPE_UNKNOWN,
            "linear.py",
        );
        assert!(f.message.contains("Optional[None]"), "{name}: {f}");
        let p = dir.path().join(format!("{name}.pt"));
        std::fs::write(&p, bytes).unwrap();
        paths.push(p);
    }
    let script = "import sys, torch\nfor p in sys.argv[1:]:\n    try:\n        torch.jit.load(p)\n        print('loads')\n    except RuntimeError as e:\n        print('assert' if 'INTERNAL ASSERT' in str(e) else 'other')\n";
    let args: Vec<&std::ffi::OsStr> = paths.iter().map(|p| p.as_os_str()).collect();
    let Some(out) = common::torch_script(script, &args) else {
        return;
    };
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["assert", "assert"],
        "{out}"
    );
}

/// Unqualified type names: the ones TorchScript's parser knows load (and check ok), any
/// other (`Optional[Nowhere]` holding None) is "Unknown type name" in PyTorch and
/// `type-unknown` in `check`. Every name of the table is tried, against PyTorch too.
#[test]
fn unqualified_type_names_are_the_ones_pytorch_knows() {
    let known: Vec<&str> = ptconform::model::types::BASE_TYPE_NAMES
        .iter()
        .copied()
        // `Optional[None]` is an internal assert in PyTorch; bare `NoneType` is what
        // linear.pt already declares.
        .filter(|n| !matches!(*n, "None" | "NoneType"))
        .collect();
    let unknown = [
        "Nowhere",
        "Scalar",
        "ScalarType",
        "Layout",
        "Storage",
        "dict",
        "QScheme",
    ];
    let file_for = |name: &str| linear_with_hook_type(&format!("Optional[{name}]"));
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for (name, is_known) in known
        .iter()
        .map(|n| (*n, true))
        .chain(unknown.iter().map(|n| (*n, false)))
    {
        let bytes = file_for(name);
        let v = check_bytes(bytes.clone());
        if is_known {
            assert!(v.is_empty(), "{name}: {v:?}");
        } else {
            let f = assert_finding(&v, rules::TYPE_UNKNOWN, "linear.py");
            assert!(f.message.contains(&format!("{name:?}")), "{name}: {f}");
        }
        let p = dir.path().join(format!("{name}.pt"));
        std::fs::write(&p, bytes).unwrap();
        paths.push((name, is_known, p));
    }
    let script = "import sys, torch\nfor p in sys.argv[1:]:\n    try:\n        torch.jit.load(p)\n        print('loads')\n    except RuntimeError as e:\n        print('refused' if 'Unknown type name' in str(e) else 'other')\n";
    let args: Vec<&std::ffi::OsStr> = paths.iter().map(|(_, _, p)| p.as_os_str()).collect();
    let Some(out) = common::torch_script(script, &args) else {
        return;
    };
    for ((name, is_known, _), verdict) in paths.iter().zip(out.lines()) {
        let want = if *is_known { "loads" } else { "refused" };
        assert_eq!(verdict, want, "PyTorch on Optional[{name}]");
    }
    assert_eq!(out.lines().count(), paths.len());
}
