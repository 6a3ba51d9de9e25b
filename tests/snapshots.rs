//! Snapshot tests (insta) over the top-level `snapshots/` directory, plus the `diff`
//! command's tests.
//!
//! * `dump@<corpus path>.snap`: `ptconform dump` of every corpus archive (`corpus/*.pt`,
//!   `corpus/*.ptl`, `corpus/quirks/`, `corpus/flatbuffer_bugs/`; `/` becomes `__`);
//! * `dump@gen-<SEED>-<i>.pt|ptl.snap`: the dump of generated cases `0..CASES`;
//! * `inspect@<file>.snap`: the human `inspect` report of the TestSaveLoad scenarios.
//!
//! Under `CI=true` insta fails on a new or changed snapshot and writes nothing; locally
//! it writes `*.snap.new` for `cargo insta review`. `INSTA_UPDATE=always` accepts.

use std::collections::BTreeSet;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

use ptconform::convert::Format;
use ptconform::generator::{Config, case_from_seed, write_case};

/// The generator seed and number of cases snapshotted in each format.
const SEED: u64 = 0;
const CASES: u64 = 8;

/// Corpus files named after `TestSaveLoad` / `TestSaveLoadFlatbuffer` scenarios
/// (corpus/README.md, rows marked TSL and the `fb_*` ports); each stem is taken as
/// `.pt` and `.ptl` where the file exists.
const TSL_STEMS: &[&str] = &[
    "different_modules_first",
    "different_modules_second",
    "different_modules",
    "different_modules_resaved",
    "different_functions_first",
    "different_functions_second",
    "different_functions",
    "different_interfaces_first",
    "different_interfaces_second",
    "different_interfaces",
    "extra_files",
    "extra_files_buffer",
    "namedtuple_input_only",
    "namedtuple_input_only_resaved",
    "namedtuple_input_only_forwardref",
    "namedtuple_input_only_forwardref_resaved",
    "namedtuple_output_only",
    "namedtuple_output_only_resaved",
    "params_buffers_submodules",
    "params_buffers_submodules_resaved",
    "meta_tensors",
    "meta_tensors_resaved",
    "meta_tensors_to_device",
    "meta_tensors_to_device_resaved",
    "large_string_small",
    "fb_different_modules_first",
    "fb_different_modules_second",
    "fb_different_functions_first",
    "fb_different_functions_second",
    "fb_different_interfaces_first",
    "fb_different_interfaces_second",
    "fb_many_collisions_first",
    "fb_many_collisions_second",
    "fb_module_info_flatbuffer",
    "fb_save_load_params_buffers_submodules",
    "fb_save_load_params_buffers_submodules_resaved",
    "fb_save_load_using_pathlib",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn is_archive(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "pt" || e == "ptl")
}

/// Corpus archives relative to `corpus/` (`linear.pt`, `quirks/extra_files_nul_name.pt`),
/// sorted.
fn corpus_files() -> Vec<String> {
    let mut out = Vec::new();
    for dir in ["", "quirks", "flatbuffer_bugs"] {
        let path = root().join("corpus").join(dir);
        let entries = std::fs::read_dir(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        for e in entries {
            let p = e.unwrap().path();
            if p.is_file() && is_archive(&p) {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                out.push(if dir.is_empty() {
                    name
                } else {
                    format!("{dir}/{name}")
                });
            }
        }
    }
    out.sort();
    out
}

fn generated_names() -> Vec<(u64, Format, String)> {
    let mut out = Vec::new();
    for i in 0..CASES {
        for (format, ext) in [(Format::Zip, "pt"), (Format::Flatbuffer, "ptl")] {
            out.push((i, format, format!("gen-{SEED}-{i}.{ext}")));
        }
    }
    out
}

fn inspect_files() -> Vec<String> {
    let mut out = Vec::new();
    for stem in TSL_STEMS {
        for ext in ["pt", "ptl"] {
            let name = format!("{stem}.{ext}");
            if root().join("corpus").join(&name).is_file() {
                out.push(name);
            }
        }
    }
    out
}

fn snapshot_name(kind: &str, input: &str) -> String {
    format!("{kind}@{}", input.replace('/', "__"))
}

fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path("../snapshots");
    s.set_prepend_module_to_snapshot(false);
    s.set_omit_expression(true);
    s
}

/// Runs every check, collecting failures instead of stopping at the first one (so one
/// run shows, and writes `.snap.new` for, every changed snapshot).
fn run_all(checks: Vec<(String, Box<dyn FnOnce() + '_>)>) {
    let mut failed = Vec::new();
    let total = checks.len();
    for (name, check) in checks {
        if std::panic::catch_unwind(AssertUnwindSafe(check)).is_err() {
            failed.push(name);
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {total} snapshot checks failed:\n  {}",
        failed.len(),
        failed.join("\n  ")
    );
}

fn assert_dump_snapshot(name: &str, input: Option<&Path>, bytes: &[u8]) {
    let d = ptconform::dump::dump_report(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut s = settings();
    if let Some(p) = input {
        s.set_input_file(p);
    }
    s.bind(|| insta::assert_snapshot!(name, d.text));
    assert!(
        d.problems.is_empty(),
        "{name}: dump found problems: {:?}",
        d.problems
    );
}

#[test]
fn dump_corpus_snapshots() {
    let files = corpus_files();
    assert!(
        files.len() > 100,
        "corpus looks incomplete: {}",
        files.len()
    );
    let checks = files
        .iter()
        .map(|rel| {
            let name = snapshot_name("dump", rel);
            let check: Box<dyn FnOnce() + '_> = Box::new(move || {
                let path = root().join("corpus").join(rel);
                let bytes = std::fs::read(&path).unwrap();
                assert_dump_snapshot(&snapshot_name("dump", rel), Some(&path), &bytes);
            });
            (name, check)
        })
        .collect();
    run_all(checks);
}

#[test]
fn dump_generated_snapshots() {
    let config = Config::default();
    let checks = generated_names()
        .into_iter()
        .map(|(i, format, file)| {
            let name = snapshot_name("dump", &file);
            let config = &config;
            let check: Box<dyn FnOnce() + '_> = Box::new(move || {
                let case = case_from_seed(SEED, i, config, format);
                let bytes = write_case(&case, format).unwrap();
                // The same seed gives the same bytes (else the snapshot would flap).
                let again = write_case(&case_from_seed(SEED, i, config, format), format).unwrap();
                assert_eq!(bytes, again, "{file}: generation is not deterministic");
                assert_dump_snapshot(&snapshot_name("dump", &file), None, &bytes);
            });
            (name, check)
        })
        .collect();
    run_all(checks);
}

#[test]
fn inspect_scenario_snapshots() {
    let files = inspect_files();
    assert!(files.len() >= 40, "scenario files missing: {files:?}");
    let checks = files
        .iter()
        .map(|rel| {
            let name = snapshot_name("inspect", rel);
            let check: Box<dyn FnOnce() + '_> = Box::new(move || {
                let path = root().join("corpus").join(rel);
                let data = bytes::Bytes::from(std::fs::read(&path).unwrap());
                let facts = ptconform::inspect::facts_of_bytes(data, None)
                    .unwrap_or_else(|e| panic!("{rel}: {e}"));
                let report = ptconform::inspect::report(&facts);
                let mut s = settings();
                s.set_input_file(&path);
                s.bind(|| insta::assert_snapshot!(snapshot_name("inspect", rel), report));
            });
            (name, check)
        })
        .collect();
    run_all(checks);
}

/// Every `.snap` in `snapshots/` belongs to an input that still exists (a renamed or
/// deleted corpus file, or a lowered CASES, leaves an orphan that would never be
/// checked again).
#[test]
fn no_orphan_snapshots() {
    let mut expected: BTreeSet<String> = BTreeSet::new();
    for rel in corpus_files() {
        expected.insert(snapshot_name("dump", &rel));
    }
    for (_, _, file) in generated_names() {
        expected.insert(snapshot_name("dump", &file));
    }
    for rel in inspect_files() {
        expected.insert(snapshot_name("inspect", &rel));
    }
    let dir = root().join("snapshots");
    let mut orphans = Vec::new();
    let mut found = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if name == ".gitkeep" || name.ends_with(".snap.new") || name.ends_with(".pending-snap") {
            continue;
        }
        match name.strip_suffix(".snap") {
            Some(stem) if expected.contains(stem) => found += 1,
            _ => orphans.push(name),
        }
    }
    assert!(
        orphans.is_empty(),
        "snapshots/ holds files for no existing input (delete them): {orphans:?}"
    );
    assert!(found > 0, "no snapshots found in {dir:?}");
}

// ---------------------------------------------------------------------------------------
// dump on bad input
// ---------------------------------------------------------------------------------------

#[test]
fn dump_rejects_garbage_and_truncations_without_panicking() {
    let tiny = std::fs::read(root().join("corpus/tiny.pt")).unwrap();
    let ptl = std::fs::read(root().join("corpus/linear.ptl")).unwrap();
    for data in [&tiny, &ptl] {
        for cut in [0, 1, 8, 30, data.len() / 2, data.len() - 22, data.len() - 1] {
            // Either an error or a dump; never a panic.
            let _ = ptconform::dump::dump_report(&data[..cut]);
            let _ = ptconform::dump::dump(&data[..cut]);
        }
        // Every single-byte corruption of the first 2 KiB: no panic.
        for i in 0..data.len().min(2048) {
            let mut d = data.clone();
            d[i] ^= 0xa5;
            let _ = ptconform::dump::dump_report(&d);
        }
    }
    assert!(ptconform::dump::dump(b"not an archive").is_err());
}

#[test]
fn dump_reports_a_damaged_record_and_cli_exits_1() {
    let mut data = std::fs::read(root().join("corpus/tiny.pt")).unwrap();
    // A byte inside data.pkl (data at offset 64): its CRC no longer matches.
    data[64 + 30] ^= 0x01;
    let d = ptconform::dump::dump_report(&data).unwrap();
    assert!(
        d.problems.iter().any(|p| p.rule == "zip-crc"),
        "{:?}",
        d.problems
    );
    assert!(d.text.contains("!! CRC-32 is"), "{}", d.text);
    assert!(ptconform::dump::dump(&data).is_err());

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.pt");
    std::fs::write(&bad, &data).unwrap();
    let out = ptconform_cmd(&["dump", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("zip-crc"));
    let junk = dir.path().join("junk.pt");
    std::fs::write(&junk, b"PK\x03\x04 not really").unwrap();
    let out = ptconform_cmd(&["dump", junk.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty());
}

// ---------------------------------------------------------------------------------------
// diff
// ---------------------------------------------------------------------------------------

fn ptconform_cmd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ptconform"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run ptconform")
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn diff_pytorch_save_vs_ptconform_roundtrip_is_equal() {
    let dir = tempfile::tempdir().unwrap();
    // quirks/extra_files_nul_name.pt does not re-save byte for byte (padding): diff
    // must still call it equal.
    for file in [
        "linear.pt",
        "attributes.pt",
        "views.pt",
        "quantized.pt",
        "extra_files_many.pt",
        "different_modules.pt",
        "quirks/extra_files_nul_name.pt",
        "linear.ptl",
        "fbonly_attributes_no_enum.ptl",
    ] {
        let src = format!("corpus/{file}");
        if !root().join(&src).is_file() {
            continue;
        }
        let out = dir.path().join(file.replace('/', "_"));
        let rt = ptconform_cmd(&["roundtrip", &src, "--out", out.to_str().unwrap()]);
        assert!(out.is_file(), "{file}: roundtrip wrote nothing: {rt:?}");
        let d = ptconform_cmd(&["diff", &src, out.to_str().unwrap()]);
        assert_eq!(d.status.code(), Some(0), "{file}: {}", stdout(&d));
        assert!(stdout(&d).ends_with("equal\n"), "{file}: {}", stdout(&d));
    }
}

#[test]
fn diff_flatbuffer_vs_its_converted_zip_is_equal() {
    let dir = tempfile::tempdir().unwrap();
    for file in [
        "linear.ptl",
        "containers.ptl",
        "quantized.ptl",
        "views.ptl",
        "extra_files_many.ptl",
        "bigcode.ptl",
        "getstate.ptl",
    ] {
        let src = format!("corpus/{file}");
        let out = dir.path().join(file.replace(".ptl", ".pt"));
        let c = ptconform_cmd(&["convert", &src, out.to_str().unwrap()]);
        assert_eq!(c.status.code(), Some(0), "{file}: {c:?}");
        let d = ptconform_cmd(&["diff", &src, out.to_str().unwrap()]);
        assert_eq!(d.status.code(), Some(0), "{file}: {}", stdout(&d));
        assert!(stdout(&d).contains("equal\n"), "{file}: {}", stdout(&d));
    }
}

/// Every loadable corpus file diffs equal to itself, and, where it is a zip with a
/// non-empty `data/0` storage, unequal to a copy whose storage bytes are inverted (so
/// "equal" is a finding the diff can withhold, not a comparison of a value with itself).
#[test]
fn diff_is_equal_to_itself_and_sees_a_changed_storage() {
    let mut changed = 0;
    for rel in corpus_files() {
        let path = root().join("corpus").join(&rel);
        let data = std::fs::read(&path).unwrap();
        if ptconform::diff::load_check(&data).is_err() {
            continue; // e.g. flatbuffer_bugs/ collisions, refused by the reader
        }
        let r = ptconform::diff::diff(&data, &data).unwrap();
        assert!(r.is_equal(), "{rel}:\n{}", r.to_text());
        // (The quirks/ and flatbuffer_bugs/ files are not all readable by the zip crate
        // that rebuilds the copy.)
        if ptconform::flatbuffer::is_flatbuffer(&data) || rel.contains('/') {
            continue;
        }
        let inverted = std::cell::Cell::new(false);
        let other = common::rebuild(
            &path,
            |name, old| {
                Some(if name.ends_with("/data/0") && !old.is_empty() {
                    inverted.set(true);
                    old.iter().map(|b| !b).collect()
                } else {
                    old
                })
            },
            &[],
        );
        if !inverted.get() {
            continue;
        }
        let r = ptconform::diff::diff(&data, &other).unwrap();
        assert!(!r.is_equal(), "{rel}: inverted data/0 diffs equal");
        assert!(r.to_text().contains("sha256"), "{rel}:\n{}", r.to_text());
        changed += 1;
    }
    assert!(
        changed >= 20,
        "only {changed} corpus files had a storage to change"
    );
}

#[test]
fn diff_names_the_attribute_differences_of_different_modules() {
    let out = ptconform_cmd(&[
        "diff",
        "corpus/different_modules_first.pt",
        "corpus/different_modules_second.pt",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    // `first`'s Foo has `foo` and `bar`, `second`'s only `foo`.
    assert!(
        text.contains("modules:\n  - bar: __torch__.torch.nn.modules.linear.Linear\n"),
        "{text}"
    );
    assert!(text.contains("  - bar.weight: float32 [2, 2] cpu requires_grad\n"));
    assert!(text.contains("  ~ foo.weight: values: sha256 "));
    assert!(text.contains("      -  bar : __torch__.torch.nn.modules.linear.Linear\n"));
    assert!(text.contains("      +    return (foo).forward(x, )\n"));

    let out = ptconform_cmd(&[
        "diff",
        "--json",
        "corpus/different_modules_first.pt",
        "corpus/different_modules_second.pt",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["equal"], false);
    let diffs = v["differences"].as_array().unwrap();
    assert!(
        diffs
            .iter()
            .any(|d| d["section"] == "modules" && d["path"] == "bar" && d["change"] == "removed")
    );
    assert!(
        diffs
            .iter()
            .any(|d| d["section"] == "code" && d["diff"].as_str().is_some())
    );
}

#[test]
fn diff_of_two_generated_seeds_names_the_differences() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::default();
    for (format, ext) in [(Format::Zip, "pt"), (Format::Flatbuffer, "ptl")] {
        let a = dir.path().join(format!("a.{ext}"));
        let b = dir.path().join(format!("b.{ext}"));
        std::fs::write(
            &a,
            write_case(&case_from_seed(1, 0, &config, format), format).unwrap(),
        )
        .unwrap();
        std::fs::write(
            &b,
            write_case(&case_from_seed(2, 0, &config, format), format).unwrap(),
        )
        .unwrap();
        let out = ptconform_cmd(&["diff", a.to_str().unwrap(), b.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{ext}: {}", stdout(&out));
        let text = stdout(&out);
        assert!(text.contains(" differences\n"), "{text}");
        // Each difference line names a path: `+ x`, `- x` or `~ x: ...`.
        let items: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("  + ") || l.starts_with("  - ") || l.starts_with("  ~ "))
            .collect();
        assert!(!items.is_empty(), "{text}");
        let json = ptconform_cmd(&["diff", "--json", a.to_str().unwrap(), b.to_str().unwrap()]);
        let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
        assert_eq!(
            v["differences"].as_array().unwrap().len(),
            text.lines()
                .next()
                .and_then(|l| l.split(' ').next())
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(0),
            "{text}"
        );
        // Same seed: equal.
        let same = ptconform_cmd(&["diff", a.to_str().unwrap(), a.to_str().unwrap()]);
        assert_eq!(same.status.code(), Some(0));
    }
}

#[test]
fn diff_across_formats_reports_what_a_flatbuffer_loses() {
    // views.ptl: PyTorch's flatbuffer writer drops the conj/neg bits (corpus note 6).
    let out = ptconform_cmd(&["diff", "corpus/views.pt", "corpus/views.ptl"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("  ~ conj_view: math bits: conj true neg false -> conj false neg false\n"),
        "{text}"
    );
    // The twins of an ordinary module compare equal across formats.
    let out = ptconform_cmd(&["diff", "corpus/containers.pt", "corpus/containers.ptl"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

#[test]
fn diff_bad_input_exits_1_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pt");
    std::fs::write(&junk, b"junk").unwrap();
    let out = ptconform_cmd(&["diff", "corpus/linear.pt", junk.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("junk.pt"));
    let out = ptconform_cmd(&["diff", "corpus/linear.pt", "/nonexistent/x.pt"]);
    assert_eq!(out.status.code(), Some(2));
}

/// Every zip archive in `corpus/` and its flatbuffer twin (`X.pt` / `X.ptl`: one module
/// object saved by `torch.jit.save` and `save_jit_module_to_flatbuffer`) compare equal:
/// the two writers' other definition order and generated local names are noted as form,
/// not reported as differences.
#[test]
fn diff_of_every_corpus_twin_pair_is_equal() {
    let dir = root().join("corpus");
    let mut pairs = 0;
    let mut failures = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pt"))
        .collect();
    entries.sort();
    for pt in entries {
        let ptl = pt.with_extension("ptl");
        if !ptl.exists() {
            continue;
        }
        pairs += 1;
        let name = pt.file_name().unwrap().to_string_lossy().to_string();
        // The known exception, checked to still differ (so it cannot go stale): views:
        // PyTorch's flatbuffer writer drops the conj/neg bits (a real difference).
        if name == "views.pt" {
            let r =
                ptconform::diff::diff(&std::fs::read(&pt).unwrap(), &std::fs::read(&ptl).unwrap())
                    .unwrap();
            assert!(
                !r.is_equal(),
                "{name}: now equal; remove it from the exceptions"
            );
            continue;
        }
        let a = std::fs::read(&pt).unwrap();
        let b = std::fs::read(&ptl).unwrap();
        match ptconform::diff::diff(&a, &b) {
            Ok(r) if r.is_equal() => {}
            Ok(r) => failures.push(format!("{}: {}", pt.display(), r.to_text())),
            Err(e) => failures.push(format!("{}: {e}", pt.display())),
        }
    }
    assert!(pairs >= 30, "twin pairs: {pairs}");
    assert!(
        failures.is_empty(),
        "{} of {pairs} twin pairs differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
