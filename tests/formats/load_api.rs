//! The load API: zero-copy storages, extra files and map_location as PyTorch 2.15.

use crate::common;

use bytes::Bytes;
use ptconform::jit::{load, load_from_buffer};
use ptconform::model::Device;
use ptconform::zip_archive::ExtraFilesMap;

#[test]
fn tensor_data_borrows_from_the_callers_buffer() {
    for name in [
        "linear.pt",
        "dtypes.pt",
        "views.pt",
        "params_buffers_submodules.pt",
    ] {
        let buf = Bytes::from(std::fs::read(common::corpus(name)).unwrap());
        let range = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
        let m = load_from_buffer(buf.clone(), None, None).unwrap();
        let tensors: Vec<_> = m
            .named_parameters()
            .into_iter()
            .chain(m.named_buffers())
            .collect();
        assert!(!tensors.is_empty(), "{name} has tensors");
        for t in tensors {
            let data = &t.tensor.storage.data;
            if data.is_empty() {
                continue;
            }
            let p = data.as_ptr() as usize;
            assert!(
                range.contains(&p) && range.contains(&(p + data.len() - 1)),
                "{name}: {} was copied",
                t.name
            );
        }
    }
}

#[test]
fn extra_files_present_are_returned_as_bytes_absent_become_empty() {
    let path = common::corpus("extra_files.pt");
    let mut extra = ExtraFilesMap::new();
    extra.insert("foo".into(), Bytes::from_static(b"ignored"));
    extra.insert("foo2".into(), Bytes::new());
    extra.insert("bar".into(), Bytes::from_static(b"keep?"));
    load(&path, None, Some(&mut extra)).unwrap();
    assert_eq!(&extra["foo"][..], b"bar\x00\xffbaz");
    assert_eq!(&extra["foo2"][..], b"bar");
    // PyTorch 2.15 returns b"" for a requested name the archive lacks (checked against
    // real PyTorch in `pytorch_agrees_on_missing_extra_file`).
    assert_eq!(&extra["bar"][..], b"");
}

#[test]
fn pytorch_agrees_on_missing_extra_file() {
    let Some(py) = common::torch_python() else {
        return;
    };
    let script = r#"
import sys, warnings, torch
warnings.filterwarnings("ignore")
ef = {"foo": "", "foo2": None, "bar": "keep?"}
torch.jit.load(sys.argv[1], _extra_files=ef)
print(repr(sorted(ef.items())))
"#;
    let out = std::process::Command::new(py)
        .args([
            "-c",
            script,
            common::corpus("extra_files.pt").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"[('bar', b''), ('foo', b'bar\x00\xffbaz'), ('foo2', b'bar')]"#
    );
}

#[test]
fn map_location_moves_cpu_storages_but_meta_stays_meta() {
    let path = common::corpus("meta_tensors_to_device.pt");
    let m = load(&path, Some(Device::meta()), None).unwrap();
    for p in m.named_parameters() {
        assert!(p.tensor.device().is_meta(), "{} should be on meta", p.name);
    }
    let m = load(&path, Some(Device::parse("cuda:1").unwrap()), None).unwrap();
    let devices: Vec<String> = m
        .named_parameters()
        .iter()
        .map(|p| format!("{}={}", p.name, p.tensor.device()))
        .collect();
    assert_eq!(
        devices,
        [
            "foo.weight=meta",
            "foo.bias=meta",
            "bar.weight=cuda:1",
            "bar.bias=cuda:1"
        ]
    );
}

#[test]
fn archives_saved_to_buffers_and_paths_have_their_prefixes() {
    let a = ptconform::zip_archive::ZipArchiveReader::open(common::corpus("extra_files_buffer.pt"))
        .unwrap();
    assert_eq!(a.prefix(), "archive");
    let a = ptconform::zip_archive::ZipArchiveReader::open(common::corpus("prefix_path_name.pt"))
        .unwrap();
    assert_eq!(a.prefix(), "prefix_path_name");
}

/// The container walk over PyTorch's own archives: `from_bytes` checks its direct walk
/// of the central directory against the `zip` crate's reading and refuses any
/// difference (the unit tests in `zip_archive/read.rs` damage the walk to show it does).
#[test]
fn every_corpus_zip_opens_with_the_walk_the_zip_crate_agrees_with() {
    let archives = common::corpus_archives();
    assert!(archives.len() > 20, "corpus zips: {}", archives.len());
    for path in archives {
        let bytes = Bytes::from(std::fs::read(&path).unwrap());
        ptconform::zip_archive::ZipArchiveReader::from_bytes(bytes)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

#[test]
fn the_tensor_fast_path_reads_every_corpus_pickle_as_the_general_machine_does() {
    // `unpickle_both_ways` panics on any difference (value, error, memo decisions).
    let mut fast = 0;
    let mut pickles = 0;
    for path in common::corpus_archives() {
        let bytes = Bytes::from(std::fs::read(&path).unwrap());
        let archive = ptconform::zip_archive::ZipArchiveReader::from_bytes(bytes).unwrap();
        for rec in archive
            .records()
            .iter()
            .filter(|r| r.full_name.ends_with(".pkl"))
        {
            let data = archive.read_record(rec, false).unwrap();
            if let Ok(u) = ptconform::fuzz_support::unpickle_both_ways(&data) {
                fast += u.fast_tensors;
                pickles += 1;
            }
        }
    }
    assert!(
        pickles > 50 && fast > 50,
        "{pickles} pickles, {fast} fast tensors"
    );
}
