//! Rust ports of PyTorch's `TestSaveLoad` (test/jit/test_save_load.py, copied in
//! shared/seed/), on the reference implementation. Where a scenario needs modules made
//! by PyTorch (the `torch.jit.load`ed halves of the collision tests), they come from
//! `corpus/`; the archives PyTorch wrote for the whole scenario are the expected output.

mod common;

use bytes::Bytes;
use ptconform::jit::{load, load_from_buffer};
use ptconform::model::compose::ModuleBuilder;
use ptconform::model::{IValue, ScriptModule};
use ptconform::zip_archive::ExtraFilesMap;
use ptconform::zip_archive::save::{SaveOptions, save, save_to_buffer};

fn loaded(name: &str) -> ScriptModule {
    load(common::corpus(name), None, None).unwrap()
}

/// Records of an archive (name relative to the prefix, bytes), in order.
fn records(bytes: &Bytes) -> Vec<(String, Bytes)> {
    let a = ptconform::zip_archive::ZipArchiveReader::from_bytes(bytes.clone()).unwrap();
    a.record_names()
        .map(|n| (n.to_string(), a.read(n, true).unwrap()))
        .collect()
}

/// Everything but the parts that depend on the Python process that scripted the module:
/// `.debug_pkl` (source ranges of the user's .py files) and the serialization id (which
/// hashes their CRCs).
fn comparable(bytes: &Bytes) -> Vec<(String, Bytes)> {
    records(bytes)
        .into_iter()
        .filter(|(n, _)| !n.ends_with(".debug_pkl") && n != ".data/serialization_id")
        .collect()
}

fn assert_same_records(ours: &Bytes, pytorch: &str) {
    let theirs = Bytes::from(std::fs::read(common::corpus(pytorch)).unwrap());
    let a = comparable(ours);
    let b = comparable(&theirs);
    let names = |v: &[(String, Bytes)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&a), names(&b), "record names and order vs {pytorch}");
    for ((n, x), (_, y)) in a.iter().zip(&b) {
        assert!(
            x == y,
            "{pytorch}: record {n} differs:\nours:   {:?}\npytorch: {:?}",
            String::from_utf8_lossy(x),
            String::from_utf8_lossy(y)
        );
    }
}

/// `ContainsBoth` of the collision tests: `second` registered before `first`.
fn contains_both(first: &str, second: &str, returns: &str) -> ScriptModule {
    let first = loaded(first);
    let second = loaded(second);
    let mut b = ModuleBuilder::new("__torch__.ContainsBoth");
    b.submodule("second", &second);
    b.submodule("first", &first);
    b.method_source(&format!(
        "def forward(self: __torch__.ContainsBoth,\n    x: Tensor) -> {returns}:\n  first = self.first\n  x0 = (first).forward(x, )\n  second = self.second\n  return (second).forward(x0, )\n"
    ))
    .unwrap();
    b.build()
}

fn qualified_names(m: &ScriptModule) -> Vec<(String, String)> {
    m.named_modules()
        .into_iter()
        .map(|n| (n.name, n.object.class.as_str().to_string()))
        .collect()
}

fn check_contains_both(first: &str, second: &str, returns: &str, expected: &str) {
    let sm = contains_both(first, second, returns);
    let saved = save_to_buffer(&sm, &ExtraFilesMap::new(), &SaveOptions::default()).unwrap();
    assert_same_records(&saved, expected);
    // Loading gives the mangled names, like `torch.jit.load(contains_both)`.
    let reloaded = load_from_buffer(saved.clone(), None, None).unwrap();
    let names = qualified_names(&reloaded);
    assert_eq!(names[0].1, "__torch__.ContainsBoth");
    assert_eq!(
        names.iter().find(|(n, _)| n == "second").unwrap().1,
        "__torch__.Foo"
    );
    assert_eq!(
        names.iter().find(|(n, _)| n == "first").unwrap().1,
        "__torch__.___torch_mangle_0.Foo"
    );
    // A second load -> save cycle changes nothing.
    let again = ptconform::roundtrip::roundtrip_zip(saved).unwrap();
    assert!(again.difference.is_none(), "{:?}", again.difference);
}

#[test]
fn test_different_modules() {
    // The two halves report the same qualified name, each in its own unit.
    assert_eq!(
        loaded("different_modules_first.pt").qualified_name(),
        loaded("different_modules_second.pt").qualified_name()
    );
    check_contains_both(
        "different_modules_first.pt",
        "different_modules_second.pt",
        "Tensor",
        "different_modules.pt",
    );
}

#[test]
fn test_different_functions() {
    assert_eq!(
        loaded("different_functions_first.pt").qualified_name(),
        loaded("different_functions_second.pt").qualified_name()
    );
    check_contains_both(
        "different_functions_first.pt",
        "different_functions_second.pt",
        "str",
        "different_functions.pt",
    );
}

#[test]
fn test_different_interfaces() {
    assert_eq!(
        loaded("different_interfaces_first.pt").qualified_name(),
        loaded("different_interfaces_second.pt").qualified_name()
    );
    check_contains_both(
        "different_interfaces_first.pt",
        "different_interfaces_second.pt",
        "Tensor",
        "different_interfaces.pt",
    );
}
