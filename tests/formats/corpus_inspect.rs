//! `inspect --json` must equal what PyTorch reported for every corpus archive.

use crate::common;

use ptconform::inspect;
use ptconform::model::Device;
use ptconform::zip_archive::{LoadOptions, ZipArchiveReader, load_archive};

fn facts(path: &std::path::Path, map_location: Option<Device>) -> serde_json::Value {
    let archive =
        ZipArchiveReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut options = LoadOptions {
        map_location,
        ..Default::default()
    };
    let module =
        load_archive(&archive, &mut options).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    inspect::facts(&archive, &module).unwrap().to_value()
}

#[test]
fn inspect_json_equals_pytorch_facts_for_every_corpus_archive() {
    let mut compared = 0;
    for pt in common::corpus_archives() {
        let json_path = pt.with_extension("json");
        let expected: serde_json::Value = serde_json::from_slice(
            &std::fs::read(&json_path)
                .unwrap_or_else(|_| panic!("{} has no PyTorch JSON", pt.display())),
        )
        .unwrap();
        let got = facts(&pt, None);
        assert_eq!(
            got,
            expected,
            "{}: ptconform facts differ from PyTorch's",
            pt.display()
        );
        compared += 1;
        let mapped = pt.with_extension("map_location_cpu.json");
        if mapped.exists() {
            let expected: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&mapped).unwrap()).unwrap();
            assert_eq!(
                facts(&pt, Some(Device::cpu())),
                expected,
                "{} with map_location=cpu",
                pt.display()
            );
            compared += 1;
        }
    }
    eprintln!("compared {compared} fact sets");
}

#[test]
fn check_accepts_every_corpus_archive() {
    for pt in common::corpus_archives() {
        let violations = ptconform::check::check_file(&pt).unwrap();
        assert!(violations.is_empty(), "{}: {violations:?}", pt.display());
    }
}

#[test]
fn cli_inspect_json_matches_library_facts() {
    let pt = common::corpus_archives().remove(0);
    let (code, stdout, stderr) = common::run_cli(&["inspect", "--json", pt.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let printed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(printed, facts(&pt, None));
}
