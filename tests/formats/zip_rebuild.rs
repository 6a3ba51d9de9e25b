//! The zip writer against PyTorch's own archives: every corpus archive rebuilt from its
//! records is byte-identical (padding, descriptors, central directory, serialization id),
//! and the extra-file order is PyTorch's. (Were unit tests of `zip_archive::write`; they
//! read the corpus, so they live here.)

use std::io::{Cursor, Read};

use ptconform::zip_archive::write::SERIALIZATION_ID_RECORD;
use ptconform::zip_archive::{PyTorchZipWriter, extra_files_write_order};

use crate::common;

/// Every `*.pt` under `corpus/` (subfolders such as `quirks/` included).
fn corpus_file(file_name: &str) -> Option<Vec<u8>> {
    let path = common::corpus_2_15_archives()
        .into_iter()
        .find(|p| p.file_name().is_some_and(|n| n == file_name))?;
    std::fs::read(path).ok()
}

/// Every entry of a zip as the `zip` crate reads it (an independent reader): name, bytes.
fn read_entries(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut z = zip::ZipArchive::with_config(
        zip::read::Config {
            archive_offset: zip::read::ArchiveOffset::Known(0),
        },
        Cursor::new(bytes),
    )
    .expect("zip crate reads the archive");
    (0..z.len())
        .map(|i| {
            let mut f = z.by_index(i).unwrap();
            let name = String::from_utf8(f.name_raw().to_vec()).unwrap();
            let mut data = Vec::new();
            f.read_to_end(&mut data).unwrap();
            (name, data)
        })
        .collect()
}

/// Names the archive cannot carry: miniz cuts entry names at a NUL, but PyTorch pads
/// and hashes the whole string. Known from `oracle/makers/scenarios.py`.
fn full_record_name(archive: &str, name: &str) -> String {
    match (archive, name) {
        ("extra_files_nul_name.pt", "extra/nul") => "extra/nul\0inside".to_string(),
        _ => name.to_string(),
    }
}

/// Rewrites a corpus archive from its records; returns (bytes, computed id, stored id).
fn rebuild(bytes: &[u8], archive: &str, restore_names: bool) -> (Vec<u8>, String, String) {
    let entries = read_entries(bytes);
    let prefix = entries[0].0.split('/').next().unwrap().to_string();
    let mut w = PyTorchZipWriter::new(Vec::new(), &prefix);
    let mut stored_id = String::new();
    for (full, data) in &entries {
        let name = full
            .strip_prefix(&format!("{prefix}/"))
            .expect("every record under the prefix");
        if name == SERIALIZATION_ID_RECORD {
            stored_id = String::from_utf8(data.clone()).unwrap();
            continue;
        }
        let name = if restore_names {
            full_record_name(archive, name)
        } else {
            name.to_string()
        };
        w.write_record(&name, data).unwrap();
    }
    let id = w.computed_serialization_id();
    (w.finish().unwrap(), id, stored_id)
}

fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or((a.len() != b.len()).then(|| a.len().min(b.len())))
}

/// The strongest check: every PyTorch-written corpus archive, rebuilt from its records,
/// is byte-identical, and the computed serialization id equals the stored one.
#[test]
fn corpus_rebuilds_byte_identically() {
    let archives = common::corpus_2_15_archives();
    assert!(
        archives.len() >= 40,
        "corpus/ holds {} .pt archives",
        archives.len()
    );
    let mut failures = Vec::new();
    let mut identical = 0;
    for path in &archives {
        let file = path.file_name().unwrap().to_str().unwrap();
        let original = std::fs::read(path).unwrap();
        let (rebuilt, id, stored) = rebuild(&original, file, true);
        if id != stored {
            failures.push(format!("{file}: id {id} != stored {stored}"));
        }
        if let Some(at) = first_difference(&original, &rebuilt) {
            failures.push(format!(
                "{file}: first difference at {at:#x} (len {} vs {})",
                original.len(),
                rebuilt.len()
            ));
        } else {
            identical += 1;
        }
    }
    eprintln!(
        "{identical} of {} corpus archives rebuilt byte-identically",
        archives.len()
    );
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Without the full NUL-containing name, that archive cannot be reproduced: the
/// padding and the id both depend on the part after the NUL.
#[test]
fn corpus_nul_name_needs_the_full_name() {
    let original = corpus_file("extra_files_nul_name.pt").expect("in corpus/quirks/");
    let (rebuilt, id, stored) = rebuild(&original, "extra_files_nul_name.pt", false);
    assert_ne!(rebuilt, original);
    assert_ne!(id, stored);
    let mut z = zip::ZipArchive::with_config(
        zip::read::Config {
            archive_offset: zip::read::ArchiveOffset::Known(0),
        },
        Cursor::new(&original),
    )
    .unwrap();
    let f = z.by_name("archive/extra/nul").unwrap();
    // Padded as if the name were 7 bytes longer.
    assert_eq!(f.data_start().unwrap() % 64, 64 - 7);
}

/// Spec §5 against real archives whose dicts are known (`oracle/makers/scenarios.py`).
#[test]
fn corpus_extra_file_order() {
    let many: Vec<String> = [
        "a",
        "b.json",
        "config.yaml",
        "dir/sub.txt",
        "dir/deeper/leaf.bin",
        "\u{fc}n\u{ef}\u{e7}\u{f8}d\u{e9}-\u{540d}\u{524d}.txt",
        "empty",
        "pk_magic",
        "pk_local",
        "blob10k.bin",
        "producer_info.json",
        "model.txt",
        "spaces in name",
        &"x".repeat(100),
        "UPPER",
        "123",
        ".hidden",
        "trailing_newline\n",
        "z_last",
        "semi;colon=eq",
    ]
    .map(String::from)
    .to_vec();
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("extra_files_many.pt", many),
        ("extra_files.pt", vec!["foo".into(), "foo2".into()]),
        ("extra_files_buffer.pt", vec!["foo".into(), "foo2".into()]),
        (
            "extra_files_nul_name.pt",
            vec!["nul\0inside".into(), "after".into()],
        ),
    ];
    let mut checked = 0;
    for (file, dict_order) in cases {
        let bytes = corpus_file(file).unwrap_or_else(|| panic!("{file} not in the corpus"));
        let in_archive: Vec<String> = read_entries(&bytes)
            .into_iter()
            .filter_map(|(n, _)| n.split_once("/extra/").map(|(_, e)| e.to_string()))
            .collect();
        let names: Vec<&str> = dict_order.iter().map(String::as_str).collect();
        let predicted: Vec<String> = extra_files_write_order(&names)
            .into_iter()
            .map(|i| names[i].split('\0').next().unwrap().to_string())
            .collect();
        assert_eq!(predicted, in_archive, "{file}");
        checked += 1;
    }
    assert_eq!(checked, 4);
}
