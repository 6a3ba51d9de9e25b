//! Round-trip properties over generated modules, both formats (proptest over the
//! generator's input bytes: shrinking the bytes shrinks the module, and a fuzz input is
//! directly a regression case). Cases per property: `PROPTEST_CASES` (default below).

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use ptconform::flatbuffer::{MobileModule, WriteOptions, read_flatbuffer, write_flatbuffer};
use ptconform::generator::Config;
use ptconform::generator::compare::same_model;
use ptconform::generator::tree::{Tree, gen_tree};
use ptconform::model::ScriptModule;
use ptconform::zip_archive::save::{SaveOptions, save_to_buffer};
use ptconform::zip_archive::{ExtraFilesMap, LoadOptions, ZipArchiveReader, load_archive};

/// Cases per property unless `PROPTEST_CASES` says otherwise (sized for 2 cores).
const DEFAULT_CASES: u32 = 96;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    }
}

fn input() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..4096)
}

fn tree(bytes: &[u8], flatbuffer: bool) -> Tree {
    let mut u = arbitrary::Unstructured::new(bytes);
    gen_tree(&mut u, &Config::default(), flatbuffer).expect("the generator is total")
}

/// Loads a zip archive asking for `names` as extra files.
fn load_zip(bytes: &[u8], names: &[String]) -> (ScriptModule, ExtraFilesMap) {
    let archive = ZipArchiveReader::from_bytes(Bytes::copy_from_slice(bytes)).unwrap();
    let mut extra: ExtraFilesMap = names.iter().map(|n| (n.clone(), Bytes::new())).collect();
    let mut options = LoadOptions {
        extra_files: Some(&mut extra),
        ..LoadOptions::default()
    };
    let m = load_archive(&archive, &mut options).unwrap();
    (m, extra)
}

fn facts_of_zip(bytes: &[u8]) -> serde_json::Value {
    let archive = ZipArchiveReader::from_bytes(Bytes::copy_from_slice(bytes)).unwrap();
    let (m, _) = load_zip(bytes, &[]);
    ptconform::inspect::facts(&archive, &m).unwrap().to_value()
}

fn expected_subset(facts: &serde_json::Value) -> serde_json::Value {
    let keys = ["modules", "parameters", "buffers", "extra_files"];
    serde_json::Value::Object(
        keys.iter()
            .map(|k| (k.to_string(), facts[k].clone()))
            .collect(),
    )
}

proptest! {
    #![proptest_config(config())]

    /// zip: save → load gives the same model, the predicted facts (names uniqued as the
    /// mangling rules say), and the extra files byte for byte; load → save is identical,
    /// and a second cycle keeps the names.
    #[test]
    fn zip_save_load_save(bytes in input()) {
        let t = tree(&bytes, false);
        let saved = save_to_buffer(&t.module, &t.extra_files, &SaveOptions::default()).unwrap();
        let names: Vec<String> = t.extra_files.keys().cloned().collect();
        let (loaded, extra) = load_zip(&saved, &names);
        prop_assert_eq!(same_model(&t.module, &loaded), Ok(()));
        prop_assert_eq!(&extra, &t.extra_files);
        prop_assert_eq!(expected_subset(&facts_of_zip(&saved)), t.expected_facts());
        let rt = ptconform::roundtrip::roundtrip_zip(saved.clone()).unwrap();
        prop_assert!(rt.difference.is_none(), "{:?}", rt.difference);
        // Second cycle: the loaded module saved afresh keeps names and model.
        let again = save_to_buffer(&loaded, &extra, &SaveOptions::default()).unwrap();
        prop_assert_eq!(expected_subset(&facts_of_zip(&again)), t.expected_facts());
        let (reloaded, _) = load_zip(&again, &names);
        prop_assert_eq!(same_model(&loaded, &reloaded), Ok(()));
    }

    /// flatbuffer: write → read gives the same model and extra files; read → write is
    /// identical bytes.
    #[test]
    fn flatbuffer_write_read_write(bytes in input()) {
        let t = tree(&bytes, true);
        let mut m = MobileModule::new(t.module.clone(), Vec::new());
        m.extra_files = t.extra_files.iter().map(|(n, c)| (n.clone(), c.clone())).collect();
        let written = write_flatbuffer(&m, &WriteOptions::default()).unwrap();
        let back = read_flatbuffer(&Bytes::from(written.clone()), None).unwrap();
        prop_assert_eq!(same_model(&t.module, &back.module), Ok(()));
        prop_assert_eq!(&back.extra_files, &m.extra_files);
        let again = write_flatbuffer(&back, &WriteOptions::default()).unwrap();
        prop_assert!(again == written, "read → write changed the bytes");
    }

    /// zip → flatbuffer → zip keeps the model (and the flatbuffer's facts are the
    /// predicted ones).
    #[test]
    fn zip_flatbuffer_zip(bytes in input()) {
        let t = tree(&bytes, true);
        let saved = save_to_buffer(&t.module, &ExtraFilesMap::new(), &SaveOptions::default()).unwrap();
        let (loaded, _) = load_zip(&saved, &[]);
        let fb = write_flatbuffer(&MobileModule::new(loaded.clone(), Vec::new()), &WriteOptions::default()).unwrap();
        let fb_module = read_flatbuffer(&Bytes::from(fb), None).unwrap();
        prop_assert_eq!(same_model(&loaded, &fb_module.module), Ok(()));
        let zip_again = save_to_buffer(&fb_module.module, &ExtraFilesMap::new(), &SaveOptions::default()).unwrap();
        let (last, _) = load_zip(&zip_again, &[]);
        prop_assert_eq!(same_model(&t.module, &last), Ok(()));
        let mut expected = t.expected_facts();
        expected["extra_files"] = serde_json::json!([]);
        prop_assert_eq!(expected_subset(&facts_of_zip(&zip_again)), expected);
    }
}
