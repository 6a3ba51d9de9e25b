//! Ports of `class TestSaveLoadFlatbuffer` in PyTorch's `test/jit/test_save_load.py`
//! (`../shared/seed/`). PyTorch's side of each scenario (the modules the test scripts and
//! saves) is in `corpus/fb_*.ptl`, made by `oracle/makers/make_corpus.py`; these tests do in
//! Rust what the Python test does with them, and where the test runs a module, real
//! PyTorch runs what ptconform wrote (skipped visibly without the venv).

use crate::common;

use std::path::Path;

use bytes::Bytes;
use ptconform::flatbuffer::{
    MobileModule, WriteOptions, read_flatbuffer, save_jit_module_to_flatbuffer,
    save_to_buffer_for_lite_interpreter, write_flatbuffer,
};
use ptconform::model::ScriptModule;
use ptconform::model::compose::ModuleBuilder;
use ptconform::zip_archive::ExtraFilesMap;
use serde_json::json;

fn read_path(path: &Path) -> MobileModule {
    let data = Bytes::from(std::fs::read(path).unwrap());
    read_flatbuffer(&data, None).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read(name: &str) -> MobileModule {
    read_path(&common::corpus(name))
}

/// `script_module_to_buffer` then `torch.jit.load`, for a module ptconform built.
fn to_buffer(m: &MobileModule) -> Vec<u8> {
    write_flatbuffer(m, &WriteOptions::default()).unwrap()
}

fn module_names(m: &ScriptModule) -> Vec<(String, String)> {
    m.named_modules()
        .into_iter()
        .map(|n| (n.name, n.object.class.as_str().to_string()))
        .collect()
}

/// `ContainsBoth`: `second` registered before `first`, `forward` calls first then second.
/// Its forward exists as TorchScript code only (no mobile bytecode: ptconform does not
/// compile code), which is what `torch.jit.load` of a flatbuffer runs.
fn contains_both(first: &str, second: &str, forward: &str) -> MobileModule {
    let first = read(first);
    let second = read(second);
    // The two halves have one qualified name, each in its own compilation unit.
    assert_eq!(
        first.module.qualified_name(),
        second.module.qualified_name()
    );
    let mut b = ModuleBuilder::new("__torch__.ContainsBoth");
    b.submodule("second", &second.module);
    b.submodule("first", &first.module);
    b.method_source(forward).unwrap();
    MobileModule::new(b.build(), Vec::new())
}

/// `forward(x)`: `second(first(x))`, as the collision tests write it.
fn chained(returns: &str) -> String {
    format!(
        "def forward(self: __torch__.ContainsBoth,\n    x: Tensor) -> {returns}:\n  first = self.first\n  x0 = (first).forward(x, )\n  second = self.second\n  return (second).forward(x0, )\n"
    )
}

/// Saves ContainsBoth, loads it back (both in ptconform), checks the names were made
/// unique, and has PyTorch run it: each child like the module it came from and, when
/// `chain`, `sm(x)` like `second(first(x))` of the originals.
fn check_contains_both(
    first: &str,
    second: &str,
    forward: &str,
    chain: bool,
) -> (tempfile::TempDir, std::path::PathBuf) {
    let sm = contains_both(first, second, forward);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("contains_both.ptl");
    std::fs::write(&path, to_buffer(&sm)).unwrap();
    let loaded = read_path(&path);
    let names = module_names(&loaded.module);
    assert_eq!(names[0].1, "__torch__.ContainsBoth");
    let class_of = |n: &str| names.iter().find(|(m, _)| m == n).unwrap().1.clone();
    assert_ne!(class_of("first"), class_of("second"), "{names:?}");
    assert!(
        [class_of("first"), class_of("second")].contains(&"__torch__.Foo".to_string()),
        "{names:?}"
    );
    // A second load -> save cycle changes nothing.
    let again =
        ptconform::roundtrip::roundtrip_flatbuffer(Bytes::from(std::fs::read(&path).unwrap()))
            .unwrap();
    assert_eq!(again.difference, None);
    let mut jobs = vec![
        json!({"reference": common::corpus(first), "candidate": path,
               "cand_attr": "first", "loaders": ["jit"]}),
        json!({"reference": common::corpus(second), "candidate": path,
               "cand_attr": "second", "loaders": ["jit"]}),
    ];
    if chain {
        jobs.push(json!({
            "reference": [common::corpus(first), common::corpus(second)],
            "candidate": path, "loaders": ["jit"],
        }));
    }
    if let Some(n) = common::forward::check_forward(&jobs) {
        assert_eq!(n, jobs.len(), "every forward must have run");
    }
    (dir, path)
}

#[test]
fn test_different_modules() {
    check_contains_both(
        "fb_different_modules_first.ptl",
        "fb_different_modules_second.ptl",
        &chained("Tensor"),
        true,
    );
}

#[test]
fn test_different_functions() {
    check_contains_both(
        "fb_different_functions_first.ptl",
        "fb_different_functions_second.ptl",
        &chained("str"),
        true,
    );
}

#[test]
fn test_different_interfaces() {
    check_contains_both(
        "fb_different_interfaces_first.ptl",
        "fb_different_interfaces_second.ptl",
        &chained("Tensor"),
        true,
    );
}

#[test]
fn test_many_collisions() {
    // ContainsBoth's forward of this test, as PyTorch prints it.
    let forward = "def forward(self: __torch__.ContainsBoth,\n    x: Tensor) -> int:\n  first = self.first\n  x0, named_tuple_1, = (first).forward(x, )\n  second = self.second\n  x1, named_tuple_2, = (second).forward(x0, )\n  _0 = torch.len(torch.add(x1, (named_tuple_2)[0]))\n  return torch.add(_0, (named_tuple_1)[0])\n";
    let (_dir, path) = check_contains_both(
        "fb_many_collisions_first.ptl",
        "fb_many_collisions_second.ptl",
        forward,
        false,
    );
    // len("asdofij" + "hello") + 5: both NamedTuples and both `lol`s resolved apart.
    if let Some(python) = common::torch_python() {
        let out = std::process::Command::new(python)
            .arg("-c")
            .arg("import sys, torch\nm = torch.jit.load(sys.argv[1])\nprint(m(torch.ones(2, 2)))\n")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "17");
    }
}

#[test]
fn test_save_load_using_pathlib() {
    // `torch.jit.save_jit_module_to_flatbuffer(m, Path(fname))`, then `torch.jit.load`.
    let original = common::corpus("fb_save_load_using_pathlib.ptl");
    let m = read_path(&original);
    let dir = tempfile::tempdir().unwrap();
    let path: std::path::PathBuf = dir.path().join("sub dir").join("model.ptl");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    save_jit_module_to_flatbuffer(&m, &path, &ExtraFilesMap::new(), &WriteOptions::default())
        .unwrap();
    let m2 = read_path(&path);
    assert_eq!(module_names(&m2.module), module_names(&m.module));
    // Saving into a missing directory fails and leaves nothing behind.
    let bad = dir.path().join("missing").join("model.ptl");
    assert!(
        save_jit_module_to_flatbuffer(&m, &bad, &ExtraFilesMap::new(), &Default::default())
            .is_err()
    );
    assert!(!bad.exists());
    // m(x) == m2(x): PyTorch runs both.
    let jobs = [json!({"reference": original, "candidate": path, "loaders": ["jit", "lite"]})];
    if let Some(n) = common::forward::check_forward(&jobs) {
        assert_eq!(n, 2);
    }
}

/// `getExportImportCopy`: save, load; the copy keeps the NamedTuple type in its code.
fn export_import_copy(name: &str) -> (MobileModule, std::path::PathBuf, tempfile::TempDir) {
    let m = read(name);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, to_buffer(&m)).unwrap();
    (read_path(&path), path, dir)
}

#[test]
fn test_save_namedtuple_input_only() {
    let (copy, path, _dir) = export_import_copy("fb_save_namedtuple_input_only.ptl");
    assert!(
        copy.module.cu.get_str("__torch__.FooTuple").is_some(),
        "the NamedTuple used only as an input is kept"
    );
    // `m_loaded(FooTuple(a=5)) == tensor(3)`: PyTorch loads the copy (the fixed inputs
    // are not FooTuples, so only loading is compared here).
    common::torch_script(
        "import sys, torch, typing\n\
         class FooTuple(typing.NamedTuple):\n    a: int\n\
         m = torch.jit.load(sys.argv[1])\n\
         assert torch.equal(m(FooTuple(a=5)), torch.tensor(3)), m(FooTuple(a=5))\n",
        &[path.as_os_str()],
    );
}

#[test]
fn test_save_namedtuple_output_only() {
    let (copy, path, _dir) = export_import_copy("fb_save_namedtuple_output_only.ptl");
    assert!(copy.module.cu.get_str("__torch__.FooTuple").is_some());
    // `m_loaded() is None`.
    let jobs = [json!({
        "reference": common::corpus("fb_save_namedtuple_output_only.ptl"),
        "candidate": path, "loaders": ["jit"],
    })];
    if let Some(n) = common::forward::check_forward(&jobs) {
        assert_eq!(n, 1);
    }
}

#[test]
fn test_module_info_flatbuffer() {
    let check = |m: &MobileModule| {
        let info = m.module_info();
        assert_eq!(info.bytecode_version, 9);
        assert_eq!(info.operator_version, 1);
        assert!(info.type_names.is_empty());
        assert_eq!(
            info.opname_to_num_args.into_iter().collect::<Vec<_>>(),
            [("aten::linear".to_string(), 3)]
        );
        assert_eq!(info.function_names.len(), 1);
        assert!(
            info.function_names
                .iter()
                .next()
                .unwrap()
                .ends_with("forward")
        );
    };
    let m = read("fb_module_info_flatbuffer.ptl");
    check(&m);
    // The same for what ptconform writes.
    check(&read_flatbuffer(&Bytes::from(to_buffer(&m)), None).unwrap());
}

#[test]
fn test_save_load_params_buffers_submodules() {
    let m = read("fb_save_load_params_buffers_submodules.ptl");
    let (loaded, _, _dir) = export_import_copy("fb_save_load_params_buffers_submodules.ptl");
    // The PyTorch copy (getExportImportCopy done by PyTorch) agrees as well.
    let theirs = read("fb_save_load_params_buffers_submodules_resaved.ptl");
    for other in [&loaded, &theirs] {
        assert_eq!(module_names(&other.module), module_names(&m.module));
        let tensors = |m: &ScriptModule| {
            m.named_parameters()
                .into_iter()
                .chain(m.named_buffers())
                .map(|t| {
                    let v = &t.tensor;
                    let values = (v.strides.clone(), v.storage_offset, v.storage.data.clone());
                    (t.name, v.sizes.clone(), values)
                })
                .collect::<Vec<_>>()
        };
        let (a, b) = (tensors(&m.module), tensors(&other.module));
        assert_eq!(a.len(), b.len());
        assert_eq!(
            a.len(),
            3,
            "parameter_a, parameter_b, buffer (`t` is a plain attribute)"
        );
        for ((n1, s1, d1), (n2, s2, d2)) in a.iter().zip(&b) {
            assert_eq!((n1, s1), (n2, s2));
            assert_eq!(d1, d2, "{n1}: values");
        }
    }
}

#[test]
fn test_save_load_with_extra_files() {
    let m = read("fb_save_load_with_extra_files.ptl");
    let mut extra = ExtraFilesMap::new();
    extra.insert("abc.json".into(), Bytes::from_static(b"[1,2,3]"));
    let buffer = save_to_buffer_for_lite_interpreter(&m, &extra, &WriteOptions::default()).unwrap();
    // PyTorch's own buffer for the same module and extra files is byte-identical.
    assert_eq!(
        buffer,
        std::fs::read(common::corpus("fb_save_load_with_extra_files.ptl")).unwrap()
    );
    let back = read_flatbuffer(&Bytes::from(buffer), None).unwrap();
    let got: ExtraFilesMap = back.extra_files.into_iter().collect();
    assert_eq!(got, extra);
}
