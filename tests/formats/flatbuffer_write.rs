//! The flatbuffer writer: PyTorch's files re-written byte for byte, the PyTorch-named save
//! API, colliding class names in both name modes, conversion, and real PyTorch loading and
//! running what ptconform writes.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use ptconform::convert::{Format, convert};
use ptconform::flatbuffer::{
    MobileModule, NameMode, WriteOptions, read_flatbuffer, save_to_buffer_for_lite_interpreter,
    write_flatbuffer,
};
use ptconform::model::compose::ModuleBuilder;
use ptconform::roundtrip::roundtrip_flatbuffer;
use ptconform::zip_archive::{ExtraFilesMap, LoadOptions, ZipArchiveReader, load_archive};

/// Every PyTorch-made flatbuffer in the corpus (incl. quirks and PyTorch's buggy ones).
fn corpus_flatbuffers() -> Vec<PathBuf> {
    let mut v = Vec::new();
    for dir in ["corpus", "corpus/quirks", "corpus/flatbuffer_bugs"] {
        for e in std::fs::read_dir(common::repo().join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "ptl") {
                v.push(p);
            }
        }
    }
    v.sort();
    assert!(v.len() >= 60, "corpus flatbuffers missing: {}", v.len());
    v
}

fn read(path: &Path) -> MobileModule {
    let data = Bytes::from(std::fs::read(path).unwrap());
    read_flatbuffer(&data, None).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn write(m: &MobileModule, names: NameMode) -> Vec<u8> {
    write_flatbuffer(m, &WriteOptions { names }).unwrap()
}

/// The flatbuffer_bugs files whose colliding classes the reader rejects (the attribute
/// counts of the merged ObjectType and of an object disagree).
const UNREADABLE_BUGS: &[&str] = &[
    "different_modules.ptl",
    "fb_different_modules.ptl",
    "fb_many_collisions.ptl",
    "many_collisions.ptl",
    "many_same_name.ptl",
];

#[test]
fn every_pytorch_flatbuffer_is_rewritten_byte_for_byte() {
    let mut identical = 0;
    for p in corpus_flatbuffers() {
        let name = p.file_name().unwrap().to_str().unwrap();
        let data = Bytes::from(std::fs::read(&p).unwrap());
        let in_bugs = p.parent().unwrap().ends_with("flatbuffer_bugs");
        if in_bugs && UNREADABLE_BUGS.contains(&name) {
            assert!(
                read_flatbuffer(&data, None).is_err(),
                "{name} should be rejected"
            );
            continue;
        }
        let rt = roundtrip_flatbuffer(data.clone()).unwrap();
        assert_eq!(rt.difference, None, "{}", p.display());
        // Without colliding names both modes write the same bytes.
        let m = read(&p);
        assert_eq!(
            write(&m, NameMode::Unique),
            data.as_ref(),
            "{}",
            p.display()
        );
        identical += 1;
    }
    assert!(identical >= 55, "{identical}");
    println!("{identical} PyTorch flatbuffers re-written identically");
}

#[test]
fn save_api_writes_extra_files_in_pytorchs_map_order() {
    for name in [
        "extra_files_many.ptl",
        "fb_save_load_with_extra_files.ptl",
        "extra_files.ptl",
    ] {
        let p = common::corpus(name);
        let original = std::fs::read(&p).unwrap();
        let m = read(&p);
        assert!(!m.extra_files.is_empty(), "{name}");
        // Inserting in reverse file order reproduces the unordered_map's order.
        let mut map = ExtraFilesMap::new();
        for (n, c) in m.extra_files.iter().rev() {
            map.insert(n.clone(), c.clone());
        }
        let bytes =
            save_to_buffer_for_lite_interpreter(&m, &map, &WriteOptions::default()).unwrap();
        assert_eq!(bytes, original, "{name}");
        // Other extra files: they are what comes back.
        let mut other = ExtraFilesMap::new();
        other.insert(
            "ptconform.txt".into(),
            Bytes::from_static(b"\x00\xffbinary"),
        );
        let bytes =
            save_to_buffer_for_lite_interpreter(&m, &other, &WriteOptions::default()).unwrap();
        let back = read_flatbuffer(&Bytes::from(bytes), None).unwrap();
        assert_eq!(
            back.extra_files,
            vec![(
                "ptconform.txt".to_string(),
                Bytes::from_static(b"\x00\xffbinary")
            )]
        );
    }
}

/// Two distinct `__torch__.Foo` classes (PyTorch's TestSaveLoadFlatbuffer
/// `test_different_modules`) held by one new parent.
fn colliding() -> MobileModule {
    let first = read(&common::corpus("fb_different_modules_first.ptl"));
    let second = read(&common::corpus("fb_different_modules_second.ptl"));
    assert_eq!(first.module.root.class, second.module.root.class);
    let mut b = ModuleBuilder::new("__torch__.Holder");
    b.submodule("first", &first.module);
    b.submodule("second", &second.module);
    MobileModule::new(b.build(), Vec::new())
}

#[test]
fn colliding_classes_unique_mode_loads_pytorch_mode_reproduces_the_bug() {
    let m = colliding();
    let unique = write(&m, NameMode::Unique);
    let back = read_flatbuffer(&Bytes::from(unique), None).unwrap();
    let types: Vec<&str> = back
        .object_types
        .iter()
        .map(|t| t.type_name.as_str())
        .collect();
    assert_eq!(
        types,
        [
            "__torch__.torch.nn.modules.linear.Linear",
            "__torch__.Foo",
            "__torch__.torch.nn.modules.linear.___torch_mangle_1.Linear",
            "__torch__.___torch_mangle_0.Foo",
            "__torch__.Holder"
        ],
        "post-order; the second Foo and its Linear (another compilation unit's) mangled"
    );
    // The code for both classes is there, under their file names.
    let qualifiers: Vec<&str> = back.jit_sources.iter().map(|(q, _)| q.as_str()).collect();
    assert!(
        qualifiers.contains(&"__torch__.___torch_mangle_0"),
        "{qualifiers:?}"
    );
    // PyTorch's writer merges the two Foo types; the reader (and `check`) refuse that.
    let merged = write(&m, NameMode::PyTorch);
    let err = read_flatbuffer(&Bytes::from(merged), None).unwrap_err();
    assert_eq!(err.rule, "flatbuffer-object-types", "{err}");
}

#[test]
fn zip_to_flatbuffer_is_refused_with_a_reason() {
    let data = Bytes::from(std::fs::read(common::corpus("linear.pt")).unwrap());
    let err = convert(data, Format::Flatbuffer, "archive", NameMode::Unique).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("no mobile bytecode"), "{text}");
}

#[test]
fn flatbuffer_to_zip_keeps_the_module() {
    let mut converted = 0;
    for p in corpus_flatbuffers() {
        if p.parent().unwrap().ends_with("flatbuffer_bugs") {
            continue;
        }
        let data = Bytes::from(std::fs::read(&p).unwrap());
        let fb = read_flatbuffer(&data, None).unwrap();
        let zip = convert(data, Format::Zip, "archive", NameMode::Unique)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let archive = ZipArchiveReader::from_bytes(Bytes::from(zip)).unwrap();
        let mut names: Vec<String> = fb.extra_files.iter().map(|(n, _)| n.clone()).collect();
        let mut extra: ExtraFilesMap = names.iter().map(|n| (n.clone(), Bytes::new())).collect();
        let mut options = LoadOptions {
            extra_files: Some(&mut extra),
            ..LoadOptions::default()
        };
        let z =
            load_archive(&archive, &mut options).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let modules = |m: &ptconform::model::ScriptModule| {
            m.named_modules()
                .into_iter()
                .map(|n| (n.name, n.object.class.as_str().to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(modules(&z), modules(&fb.module), "{}", p.display());
        let tensors = |m: &ptconform::model::ScriptModule| {
            m.named_parameters()
                .into_iter()
                .chain(m.named_buffers())
                .map(|t| {
                    (
                        t.name,
                        t.tensor.sizes.clone(),
                        t.tensor.dtype(),
                        t.tensor.storage.data.clone(),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(tensors(&z), tensors(&fb.module), "{}", p.display());
        names.sort();
        for (n, c) in &fb.extra_files {
            if n.contains('\0') {
                // A zip entry name ends at a NUL (corpus/quirks): the zip cannot keep it.
                continue;
            }
            assert_eq!(&extra[n], c, "{}: extra/{n}", p.display());
        }
        converted += 1;
    }
    assert!(converted >= 50);
}

/// `debug_handles` shifted: the bytes differ from PyTorch's but nothing a loader uses.
fn with_new_debug_handles(m: &MobileModule) -> MobileModule {
    let mut m = m.clone();
    m.methods = m
        .methods
        .iter()
        .map(|f| {
            let mut f = (**f).clone();
            for h in &mut f.debug_handles {
                *h += 1000;
            }
            Arc::new(f)
        })
        .collect();
    m
}

#[test]
fn pytorch_loads_and_runs_flatbuffers_written_by_ptconform() {
    let dir = tempfile::tempdir().unwrap();
    let mut jobs = Vec::new();
    for p in corpus_flatbuffers() {
        if p.parent().unwrap().ends_with("flatbuffer_bugs") {
            continue;
        }
        let name = p.file_stem().unwrap().to_str().unwrap().to_string();
        let m = with_new_debug_handles(&read(&p));
        let mut extra = ExtraFilesMap::new();
        extra.insert("written_by".into(), Bytes::from_static(b"ptconform"));
        let bytes =
            save_to_buffer_for_lite_interpreter(&m, &extra, &WriteOptions::default()).unwrap();
        assert_ne!(
            bytes,
            std::fs::read(&p).unwrap(),
            "{name}: must differ from PyTorch's"
        );
        let ours = dir.path().join(format!("{name}.ptl"));
        std::fs::write(&ours, &bytes).unwrap();
        jobs.push(serde_json::json!({
            "reference": p, "candidate": ours, "loaders": ["jit", "lite"],
        }));
        // The same module converted to a zip archive by ptconform.
        let zip = convert(
            Bytes::from(std::fs::read(&p).unwrap()),
            Format::Zip,
            &name,
            NameMode::Unique,
        )
        .unwrap();
        let zpath = dir.path().join(format!("{name}.pt"));
        std::fs::write(&zpath, zip).unwrap();
        jobs.push(serde_json::json!({
            "reference": p, "candidate": zpath, "loaders": ["jit"],
        }));
    }
    // Colliding classes, uniqued: each child runs like the module it came from.
    let holder = dir.path().join("holder.ptl");
    std::fs::write(&holder, write(&colliding(), NameMode::Unique)).unwrap();
    for (child, source) in [
        ("first", "fb_different_modules_first.ptl"),
        ("second", "fb_different_modules_second.ptl"),
    ] {
        jobs.push(serde_json::json!({
            "reference": common::corpus(source), "candidate": holder,
            "cand_attr": child, "loaders": ["jit"],
        }));
    }
    let Some(equal) = common::forward::check_forward(&jobs) else {
        return;
    };
    // Most corpus modules run on one of the fixed inputs, in both loaders.
    assert!(equal >= 100, "only {equal} comparisons ran");
}

#[test]
fn cli_roundtrip_prints_identical_for_every_corpus_flatbuffer() {
    let mut n = 0;
    for p in corpus_flatbuffers() {
        let name = p.file_name().unwrap().to_str().unwrap();
        if p.parent().unwrap().ends_with("flatbuffer_bugs") && UNREADABLE_BUGS.contains(&name) {
            let (code, _, err) = common::run_cli(&["roundtrip", p.to_str().unwrap()]);
            assert_eq!(code, 1, "{name}: {err}");
            assert!(err.contains("flatbuffer-object-types"), "{err}");
            continue;
        }
        let (code, out, err) = common::run_cli(&["roundtrip", p.to_str().unwrap()]);
        assert_eq!(
            (code, out.trim()),
            (0, "identical"),
            "{}: {err}",
            p.display()
        );
        n += 1;
    }
    assert!(n >= 55);
}

#[test]
fn cli_convert_between_formats() {
    let dir = tempfile::tempdir().unwrap();
    let ptl = common::corpus("params_buffers_submodules.ptl");
    let pt = dir.path().join("converted.pt");
    // By extension: .pt is a zip archive; its facts are the flatbuffer's.
    let (code, _, err) = common::run_cli(&["convert", ptl.to_str().unwrap(), pt.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = common::run_cli(&["inspect", "--json", pt.to_str().unwrap()]);
    let zip: serde_json::Value = serde_json::from_str(&out).unwrap();
    let fb: serde_json::Value = serde_json::from_slice(
        &std::fs::read(common::corpus("params_buffers_submodules.ptl.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(zip["format"], "zip");
    assert_eq!(zip["prefix"], "converted");
    for key in ["modules", "parameters", "buffers", "extra_files"] {
        assert_eq!(zip[key], fb[key], "{key}");
    }
    // And back: a zip archive has no bytecode, so no flatbuffer (and no file) comes out.
    let back = dir.path().join("back.ptl");
    let (code, _, err) =
        common::run_cli(&["convert", pt.to_str().unwrap(), back.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("no mobile bytecode"), "{err}");
    assert!(!back.exists());
    // flatbuffer -> flatbuffer in PyTorch's naming mode: PyTorch's bytes.
    let again = dir.path().join("again.bin");
    let (code, _, err) = common::run_cli(&[
        "convert",
        ptl.to_str().unwrap(),
        again.to_str().unwrap(),
        "--format",
        "flatbuffer",
        "--pytorch-names",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(&again).unwrap(), std::fs::read(&ptl).unwrap());
}
