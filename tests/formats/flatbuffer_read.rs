//! Mobile flatbuffers (`.ptl`) through the tools and the load API: `inspect --json` and
//! `info` equal what PyTorch reported for every corpus flatbuffer, `check` accepts them
//! and flags the `flatbuffer_bugs/` files it can detect, `extra` gives the bytes back,
//! and the format is detected as PyTorch does it.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use ptconform::inspect::sha256_hex;
use ptconform::jit::{self, FileFormat};
use ptconform::zip_archive::ExtraFilesMap;
use serde_json::Value;

/// Keys of a `.ptl.json` that record what PyTorch's *lite interpreter* did with the file
/// (`lite_interpreter_loads`, and `lite_interpreter_error` /
/// `extra_files_from_buffer*` which facts.py writes only when something failed or
/// differed): observations of PyTorch's runtime, not facts about the file, so `inspect`
/// does not report them. Every other key must be equal.
const PYTORCH_SIDE_KEYS: &[&str] = &[
    "lite_interpreter_loads",
    "lite_interpreter_error",
    "extra_files_from_buffer",
    "extra_files_from_buffer_error",
];

fn sorted_files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

/// Every `corpus/*.ptl` and `corpus/quirks/*.ptl` (PyTorch-made, loadable by PyTorch).
fn corpus_flatbuffers() -> Vec<PathBuf> {
    let mut v = sorted_files(&common::repo().join("corpus"), "ptl");
    v.extend(sorted_files(&common::repo().join("corpus/quirks"), "ptl"));
    assert!(v.len() >= 53, "corpus flatbuffers missing: {}", v.len());
    v
}

/// Every `corpus/flatbuffer_bugs/*.ptl`.
fn bug_flatbuffers() -> Vec<PathBuf> {
    let v = sorted_files(&common::repo().join("corpus/flatbuffer_bugs"), "ptl");
    assert_eq!(v.len(), 12, "flatbuffer_bugs/ should hold 12 files");
    v
}

fn json_of(ptl: &Path) -> Value {
    let path = PathBuf::from(format!("{}.json", ptl.display()));
    serde_json::from_slice(
        &std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `run_cli` keeps stdout lossily as text; extra-file contents need the exact bytes.
fn run_cli_bytes(args: &[&str]) -> (i32, Vec<u8>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ptconform"))
        .args(args)
        .output()
        .expect("run ptconform");
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn inspect_json_equals_pytorch_facts_for_every_corpus_flatbuffer() {
    let mut compared = 0;
    for ptl in corpus_flatbuffers() {
        let mut expected = json_of(&ptl);
        let obj = expected.as_object_mut().unwrap();
        for k in PYTORCH_SIDE_KEYS {
            obj.shift_remove(*k);
        }
        assert_eq!(obj["format"], "flatbuffer", "{}", ptl.display());
        let (code, stdout, stderr) = common::run_cli(&["inspect", "--json", path_str(&ptl)]);
        assert_eq!(code, 0, "{}: {stderr}", ptl.display());
        let got: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(
            got,
            expected,
            "{}: ptconform facts differ from PyTorch's",
            ptl.display()
        );
        // Same keys in PyTorch's order (serde_json's map equality ignores order).
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&got), keys(&expected), "{}", ptl.display());
        compared += 1;
    }
    eprintln!("compared {compared} flatbuffer fact sets");
}

#[test]
fn inspect_report_shows_flatbuffer_module_info() {
    let ptl = common::corpus("fb_module_info_flatbuffer.ptl");
    let (code, stdout, stderr) = common::run_cli(&["inspect", path_str(&ptl)]);
    assert_eq!(code, 0, "{stderr}");
    for needle in [
        "format: flatbuffer",
        "module info: bytecode_version 9  operator_version 1",
        "__torch__.Foo.forward",
        "aten::linear",
        "foo.weight",
    ] {
        assert!(
            stdout.contains(needle),
            "{needle:?} missing from:\n{stdout}"
        );
    }
    assert!(!stdout.contains("code files"), "{stdout}");
}

#[test]
fn info_equals_pytorch_module_info_for_corpus_and_bug_files() {
    let mut files: Vec<(PathBuf, Value)> = corpus_flatbuffers()
        .into_iter()
        .map(|p| {
            let info = json_of(&p)["module_info"].clone();
            (p, info)
        })
        .collect();
    // PyTorch's get_flatbuffer_module_info reads only the functions, so it works on every
    // bug file (they fail in other loaders).
    for p in bug_flatbuffers() {
        let j = json_of(&p);
        assert_eq!(j["module_info"]["ok"], true, "{}", p.display());
        files.push((p, j["module_info"]["module_info"].clone()));
    }
    for (p, expected) in files {
        let (code, stdout, stderr) = common::run_cli(&["info", path_str(&p)]);
        assert_eq!(code, 0, "{}: {stderr}", p.display());
        let got: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(got, expected, "{}", p.display());
        // The library function says the same.
        let lib = jit::get_flatbuffer_module_info(&std::fs::read(&p).unwrap()).unwrap();
        assert_eq!(
            serde_json::to_value(lib).unwrap(),
            expected,
            "{}",
            p.display()
        );
    }
}

#[test]
fn info_refuses_zip_archives_with_a_clear_message() {
    let pt = common::corpus("linear.pt");
    let (code, stdout, stderr) = common::run_cli(&["info", path_str(&pt)]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stderr.contains("file not found: bytecode.pkl")
            && stderr.contains("a torch.jit.save archive holds no mobile bytecode"),
        "{stderr}"
    );
    // A mobile zip (one with bytecode.pkl) has info (tests/pytorch/models.rs compares it with
    // PyTorch's), but it is not a flatbuffer.
    let mobile = common::mobile_zip(&pt);
    let err = jit::get_flatbuffer_module_info(&mobile).unwrap_err();
    assert!(err.to_string().contains("mobile zip"), "{err}");
    // Garbage and truncated flatbuffers are errors, never crashes.
    let fb = std::fs::read(common::corpus("bigcode.ptl")).unwrap();
    for len in (0..fb.len()).step_by(7) {
        assert!(
            jit::get_flatbuffer_module_info(&fb[..len]).is_err(),
            "prefix of {len} bytes accepted"
        );
    }
    let mut bad = b"xxxxPTMFxxxx".to_vec();
    assert!(jit::get_flatbuffer_module_info(&bad).is_err());
    bad.truncate(3);
    assert!(jit::get_flatbuffer_module_info(&bad).is_err());
}

#[test]
fn check_accepts_every_corpus_flatbuffer() {
    for ptl in corpus_flatbuffers() {
        let violations = ptconform::check::check_file(&ptl).unwrap();
        assert!(violations.is_empty(), "{}: {violations:?}", ptl.display());
    }
    // A directory check covers the flatbuffers too.
    let (code, stdout, _) = common::run_cli(&["check", path_str(&common::repo().join("corpus"))]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("linear.ptl: ok"), "{stdout}");
    assert!(stdout.contains("linear.pt: ok"), "{stdout}");
}

/// What `check` reports per `flatbuffer_bugs/` file: the set of rule ids (empty = the
/// file passes).
fn bug_rules() -> BTreeMap<String, Vec<&'static str>> {
    bug_flatbuffers()
        .iter()
        .map(|p| {
            let mut rules: Vec<&'static str> = ptconform::check::check_file(p)
                .unwrap()
                .iter()
                .map(|v| v.rule.id())
                .collect();
            rules.sort();
            rules.dedup();
            (name(p), rules)
        })
        .collect()
}

#[test]
fn check_flags_the_flatbuffer_bugs_it_can_detect() {
    let got = bug_rules();
    let expected: BTreeMap<String, Vec<&str>> = [
        // Enum values: every PyTorch flatbuffer loader fails on them.
        ("attributes.ptl", vec!["flatbuffer-enum"]),
        ("interfaces_classes.ptl", vec!["flatbuffer-enum"]),
        // Merged classes: an attribute declared `__torch__.___torch_mangle_0.Foo` in
        // jit_sources holds an object whose ObjectType is `__torch__.Foo`.
        ("different_functions.ptl", vec!["flatbuffer-object-types"]),
        (
            "fb_different_functions.ptl",
            vec!["flatbuffer-object-types"],
        ),
        ("different_interfaces.ptl", vec!["flatbuffer-object-types"]),
        (
            "fb_different_interfaces.ptl",
            vec!["flatbuffer-object-types"],
        ),
        ("nested_collisions.ptl", vec!["flatbuffer-object-types"]),
        // Merged classes whose objects have more or fewer attributes than the one
        // ObjectType names: the reader refuses them.
        ("different_modules.ptl", vec!["flatbuffer-object-types"]),
        ("fb_different_modules.ptl", vec!["flatbuffer-object-types"]),
        ("many_collisions.ptl", vec!["flatbuffer-object-types"]),
        ("fb_many_collisions.ptl", vec!["flatbuffer-object-types"]),
        ("many_same_name.ptl", vec!["flatbuffer-object-types"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(got, expected);
    // The CLI exits 1 on each and names the rule.
    for p in bug_flatbuffers() {
        let (code, stdout, _) = common::run_cli(&["check", path_str(&p)]);
        assert_eq!(code, 1, "{}: {stdout}", p.display());
        for rule in &expected[&name(&p)] {
            assert!(stdout.contains(&format!(": {rule}: ")), "{stdout}");
        }
    }
}

#[test]
fn check_names_the_merged_class_and_the_enum() {
    let v =
        ptconform::check::check_file(&common::corpus("flatbuffer_bugs/different_functions.ptl"))
            .unwrap();
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].location.record, "Module.state_obj.first");
    assert!(
        v[0].message.contains("__torch__.___torch_mangle_0.Foo")
            && v[0].message.contains("ObjectType __torch__.Foo"),
        "{}",
        v[0].message
    );
    let v =
        ptconform::check::check_file(&common::corpus("flatbuffer_bugs/attributes.ptl")).unwrap();
    assert!(!v.is_empty());
    for e in &v {
        assert_eq!(e.rule, "flatbuffer-enum");
        assert!(e.location.record.starts_with("Module.ivalues["), "{e}");
        assert!(e.message.contains("__torch__.Color"), "{e}");
    }
}

/// Replaces the only occurrence of `from` in `data` by `to`.
fn patch(data: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at: Vec<usize> = data
        .windows(from.len())
        .enumerate()
        .filter(|(_, w)| *w == from)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(at.len(), 1, "pattern occurs {} times", at.len());
    let mut out = data.to_vec();
    out[at[0]..at[0] + to.len()].copy_from_slice(to);
    out
}

fn u32s(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn check_flags_objects_of_one_class_with_different_attribute_kinds() {
    // different_modules_first.ptl: Foo holds two Linear objects; the second one's attrs
    // vector is [weight 6, bias 7, training 2, hook 0]. Point its weight at ivalue 2 (the
    // shared Bool): the two Linear objects now disagree on the kind of `weight`.
    let data = std::fs::read(common::corpus("different_modules_first.ptl")).unwrap();
    assert!(ptconform::check::check_bytes(&data).is_empty());
    let bad = patch(&data, &u32s(&[4, 6, 7, 2, 0]), &u32s(&[4, 2, 7, 2, 0]));
    let v = ptconform::check::check_bytes(&bad);
    let rules: Vec<&str> = v.iter().map(|e| e.rule.id()).collect();
    assert!(rules.contains(&"attribute-type"), "{v:?}");
    assert!(rules.contains(&"flatbuffer-object-types"), "{v:?}");
    let kinds = v
        .iter()
        .find(|e| e.rule == "flatbuffer-object-types")
        .unwrap();
    assert_eq!(
        kinds.location.record, "Module.state_obj.bar.weight",
        "{kinds}"
    );
    assert!(kinds.message.contains("bool") && kinds.message.contains("Tensor"));
}

#[test]
fn check_flags_object_type_attr_names_that_differ_from_jit_sources() {
    // linear.ptl: rename the ObjectType attribute `weight` (a shared flatbuffer string,
    // length-prefixed; the jit_sources text still declares `weight`).
    let data = std::fs::read(common::corpus("linear.ptl")).unwrap();
    assert!(ptconform::check::check_bytes(&data).is_empty());
    let bad = patch(
        &data,
        b"\x06\x00\x00\x00weight\x00",
        b"\x06\x00\x00\x00wexght\x00",
    );
    let v = ptconform::check::check_bytes(&bad);
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].rule, "flatbuffer-object-types");
    assert!(
        v[0].location.record.starts_with("Module.object_types["),
        "{}",
        v[0]
    );
    assert!(
        v[0].message.contains("\"wexght\"") && v[0].message.contains("\"weight\""),
        "{}",
        v[0]
    );
}

#[test]
fn check_reports_reader_errors_as_violations() {
    let data = std::fs::read(common::corpus("linear.ptl")).unwrap();
    for len in [8, 100, data.len() / 2, data.len() - 1] {
        let v = ptconform::check::check_bytes(&data[..len]);
        assert!(!v.is_empty(), "prefix of {len} bytes accepted");
        // A cut buffer fails the verifier, or a field check before it.
        assert_eq!(v[0].rule.legacy_id(), "flatbuffer", "{v:?}");
        assert!(!v[0].location.record.is_empty(), "{v:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.ptl");
    std::fs::write(&cut, &data[..data.len() / 2]).unwrap();
    let (code, stdout, _) = common::run_cli(&["check", path_str(&cut)]);
    assert_eq!(code, 1);
    assert!(stdout.contains(": flatbuffer-verifier: "), "{stdout}");
}

#[test]
fn extra_prints_each_extra_file_byte_exact() {
    let mut printed = 0;
    for ptl in corpus_flatbuffers() {
        let expected = json_of(&ptl)["extra_files"].as_array().unwrap().clone();
        // The listing: one line per file with its size.
        let (code, stdout, stderr) = common::run_cli(&["extra", path_str(&ptl)]);
        assert_eq!(code, 0, "{}: {stderr}", ptl.display());
        // Names are escaped for the terminal (a newline prints as `\n`): one line each.
        let mut want: Vec<(String, u64)> = expected
            .iter()
            .map(|e| {
                (
                    ptconform::display::escaped(e["name"].as_str().unwrap()).into_owned(),
                    e["size"].as_u64().unwrap(),
                )
            })
            .collect();
        want.sort();
        let mut listed: Vec<(String, u64)> = stdout
            .lines()
            .map(|l| {
                let (size, name) = l.trim_start().split_once("  ").unwrap();
                (name.to_string(), size.parse().unwrap())
            })
            .collect();
        listed.sort();
        assert_eq!(listed, want, "{}", ptl.display());
        for e in &expected {
            let n = e["name"].as_str().unwrap();
            if n.contains('\0') {
                continue; // not expressible as a command-line argument
            }
            let (code, bytes, stderr) = run_cli_bytes(&["extra", path_str(&ptl), n]);
            assert_eq!(code, 0, "{} {n:?}: {stderr}", ptl.display());
            assert_eq!(bytes.len() as u64, e["size"].as_u64().unwrap());
            assert_eq!(sha256_hex(&bytes), e["sha256"].as_str().unwrap(), "{n:?}");
            printed += 1;
        }
        let (code, _, _) = common::run_cli(&["extra", path_str(&ptl), "no-such-file"]);
        assert_eq!(code, 1);
    }
    assert!(printed >= 20, "only {printed} extra files printed");
}

#[test]
fn extra_out_dir_extracts_flatbuffer_extra_files() {
    let ptl = common::corpus("extra_files_many.ptl");
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) =
        common::run_cli(&["extra", path_str(&ptl), "--out-dir", path_str(dir.path())]);
    assert_eq!(code, 0, "{stderr}");
    let expected = json_of(&ptl)["extra_files"].as_array().unwrap().clone();
    assert!(expected.len() >= 20);
    for e in expected {
        let n = e["name"].as_str().unwrap();
        let data = std::fs::read(dir.path().join(n)).unwrap_or_else(|err| panic!("{n:?}: {err}"));
        assert_eq!(sha256_hex(&data), e["sha256"].as_str().unwrap(), "{n:?}");
    }
    // A name with NUL is refused (exit 1), the other file is still written.
    let quirk = common::repo().join("corpus/quirks/extra_files_nul_name.ptl");
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) =
        common::run_cli(&["extra", path_str(&quirk), "--out-dir", path_str(dir.path())]);
    assert_eq!(code, 1);
    assert!(stderr.contains("refusing"), "{stderr}");
    assert!(dir.path().join("after").exists());
}

#[test]
fn get_model_extra_files_from_buffer_follows_pytorch() {
    // Flatbuffer: every extra file is added; a requested name it lacks keeps its value.
    let fb = std::fs::read(common::corpus("extra_files.ptl")).unwrap();
    let mut map = ExtraFilesMap::new();
    map.insert("foo".into(), Bytes::new());
    map.insert("zz".into(), Bytes::from_static(b"keep"));
    jit::get_model_extra_files_from_buffer(&fb, &mut map).unwrap();
    assert_eq!(&map["foo"][..], b"bar\x00\xffbaz");
    assert_eq!(&map["foo2"][..], b"bar");
    assert_eq!(&map["zz"][..], b"keep");
    assert_eq!(map.len(), 3);

    // A torch.jit.save zip has no bytecode.pkl: an error naming it, map untouched.
    let pt = common::corpus("extra_files.pt");
    let zip = std::fs::read(&pt).unwrap();
    let mut map = ExtraFilesMap::new();
    map.insert("foo".into(), Bytes::from_static(b"x"));
    let err = jit::get_model_extra_files_from_buffer(&zip, &mut map).unwrap_err();
    // Named as every zip record is in findings: under the archive's top-level folder.
    assert_eq!(
        err.as_format().unwrap().location.record,
        "extra_files/bytecode.pkl"
    );
    assert!(err.to_string().contains("bytecode.pkl"), "{err}");
    assert_eq!(&map["foo"][..], b"x");

    // A mobile zip (with bytecode.pkl): the map comes back unchanged.
    let mobile = common::mobile_zip(&pt);
    jit::get_model_extra_files_from_buffer(&mobile, &mut map).unwrap();
    assert_eq!(map.len(), 1);
    assert_eq!(&map["foo"][..], b"x");

    // Bad input is an error, never a panic.
    for len in (0..fb.len()).step_by(5) {
        assert!(jit::get_model_extra_files_from_buffer(&fb[..len], &mut map).is_err());
    }
    assert_eq!(map.len(), 1);
}

#[test]
fn pytorch_recorded_extra_files_from_buffer_on_bug_files() {
    // facts of the bug files record PyTorch's _get_model_extra_files_from_buffer; where
    // ptconform reads the file it returns the same names.
    let mut compared = 0;
    for p in bug_flatbuffers() {
        let j = json_of(&p);
        let rec = &j["get_model_extra_files_from_buffer"];
        let mut map = ExtraFilesMap::new();
        let ours = jit::get_model_extra_files_from_buffer(&std::fs::read(&p).unwrap(), &mut map);
        if rec["ok"] == true && ours.is_ok() {
            let names: Vec<&str> = map.keys().map(String::as_str).collect();
            let theirs: Vec<&str> = rec["extra_files"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e.as_str().or_else(|| e["name"].as_str()).unwrap())
                .collect();
            assert_eq!(names, theirs, "{}", p.display());
            compared += 1;
        }
    }
    assert!(compared >= 3, "{compared}");
}

#[test]
fn jit_load_reads_flatbuffers_with_torch_jit_load_extra_files() {
    let path = common::corpus("extra_files.ptl");
    // torch.jit.load on a flatbuffer: requested names are emptied, then every extra file
    // of the buffer is added.
    let mut extra = ExtraFilesMap::new();
    extra.insert("zz".into(), Bytes::from_static(b"keep"));
    extra.insert("foo".into(), Bytes::from_static(b"ignored"));
    let m = jit::load(&path, None, Some(&mut extra)).unwrap();
    assert_eq!(m.qualified_name().as_str(), "__torch__.MyMod");
    assert_eq!(&extra["zz"][..], b"");
    assert_eq!(&extra["foo"][..], b"bar\x00\xffbaz");
    assert_eq!(&extra["foo2"][..], b"bar");

    // From a buffer: tensor data borrows from it.
    let buf = Bytes::from(std::fs::read(common::corpus("linear.ptl")).unwrap());
    let range = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
    let m = jit::load_from_buffer(buf.clone(), None, None).unwrap();
    let params = m.named_parameters();
    assert!(!params.is_empty());
    for p in params {
        let d = &p.tensor.storage.data;
        assert!(
            range.contains(&(d.as_ptr() as usize)),
            "{} was copied",
            p.name
        );
    }
}

#[test]
fn ptmf_at_offset_4_wins_over_zip_as_in_pytorch() {
    let pt = common::corpus("linear.pt");
    let mut data = std::fs::read(&pt).unwrap();
    assert_eq!(&data[..4], b"PK\x03\x04");
    assert_eq!(jit::file_format(&data), FileFormat::Zip);
    data[4..8].copy_from_slice(b"PTMF");
    assert_eq!(jit::file_format(&data), FileFormat::Flatbuffer);
    // The zip itself is still readable (its central directory is intact) ...
    let archive = ptconform::zip_archive::ZipArchiveReader::from_bytes(data.clone()).unwrap();
    assert!(archive.has_record("data.pkl"));
    // ... but everything treats it as a flatbuffer, as PyTorch does, and it fails as one.
    let err = jit::load_from_buffer(data.clone(), None, None).unwrap_err();
    assert_eq!(
        err.as_format().unwrap().rule,
        "flatbuffer-verifier",
        "{err}"
    );
    let err = jit::get_model_extra_files_from_buffer(&data, &mut ExtraFilesMap::new()).unwrap_err();
    assert_eq!(
        err.as_format().unwrap().rule,
        "flatbuffer-verifier",
        "{err}"
    );
    let v = ptconform::check::check_bytes(&data);
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].rule, "flatbuffer-verifier");

    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("fake.pt");
    std::fs::write(&fake, &data).unwrap();
    let err = jit::load(&fake, None, None).unwrap_err();
    assert_eq!(err.as_format().unwrap().rule, "flatbuffer-verifier");
    for cmd in ["inspect", "info", "check", "extra"] {
        let (code, stdout, stderr) = common::run_cli(&[cmd, path_str(&fake)]);
        assert_eq!(code, 1, "{cmd}: {stdout}{stderr}");
        assert!(
            format!("{stdout}{stderr}").contains(": flatbuffer-verifier: "),
            "{cmd}: {stdout}{stderr}"
        );
    }
    // Unpatched, the same bytes are a zip everywhere.
    let (code, _, stderr) = common::run_cli(&["inspect", "--json", path_str(&pt)]);
    assert_eq!(code, 0, "{stderr}");
    assert!(jit::load(&pt, None, None).is_ok());
}
