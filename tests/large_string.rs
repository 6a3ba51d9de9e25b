//! `test_save_load_large_string_attribute`: a module with a string attribute of
//! 2^32 + 1 bytes saves and loads. PyTorch's own test needs 60 GB free; here the string
//! is streamed into the archive and borrowed from the memory map on load, so peak memory
//! stays near one copy of the string. Its own test binary, so the peak RSS it reports is
//! this test's alone.

mod common;

use bytes::Bytes;
use ptconform::model::compose::{module_from_source, object};
use ptconform::model::{IValue, Str};
use ptconform::zip_archive::ExtraFilesMap;
use ptconform::zip_archive::save::{SaveOptions, save};

const MODEL: &str = "class Model(Module):\n  __parameters__ = []\n  __buffers__ = []\n  training : bool\n  _is_full_backward_hook : Optional[bool]\n  x : str\n  def forward(self: __torch__.Model,\n    i: Tensor) -> int:\n    x = self.x\n    _0 = torch.add(torch.len(x), torch.numel(i))\n    return _0\n";

/// The process's peak RSS (`VmHWM`). Panics when it cannot be read: a reading of 0 would
/// pass the memory bound below for the wrong reason.
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status")
        .expect("/proc/self/status is readable (Linux): the memory bound needs it");
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("/proc/self/status has a VmHWM line");
    assert!(kb > 0, "VmHWM reads 0 kB");
    kb * 1024
}

const LEN: usize = (1 << 32) + 1;

/// Bytes the archive needs on disk (the string plus the rest of the archive), with room
/// to spare so the test never fills a disk other work shares.
const DISK_NEEDED: u64 = LEN as u64 + (512 << 20);

/// Bytes free to an unprivileged writer on the file system holding `dir`.
fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    let s = rustix::fs::statvfs(dir).ok()?;
    Some(s.f_bavail.saturating_mul(s.f_frsize))
}

/// The first of the system temp dir, cargo's target temp dir and `/dev/shm` (memory,
/// 24 GiB here) with room for the archive. A CI machine once had too little disk
/// under `/tmp`, and the save failed with ENOSPC rather than testing anything.
fn roomy_temp_dir() -> Result<tempfile::TempDir, String> {
    let candidates = [
        std::env::temp_dir(),
        std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")),
        std::path::PathBuf::from("/dev/shm"),
    ];
    let mut seen = Vec::new();
    for dir in candidates {
        match free_bytes(&dir) {
            Some(free) if free >= DISK_NEEDED => {
                return tempfile::tempdir_in(&dir).map_err(|e| format!("{}: {e}", dir.display()));
            }
            Some(free) => seen.push(format!("{} has {} MiB free", dir.display(), free >> 20)),
            None => seen.push(format!("{} cannot be measured", dir.display())),
        }
    }
    Err(format!(
        "no temp dir has the {} MiB the 4 GiB + 1 archive needs: {}",
        DISK_NEEDED >> 20,
        seen.join(", ")
    ))
}

#[test]
fn test_save_load_large_string_attribute() {
    let dir = match roomy_temp_dir() {
        Ok(dir) => dir,
        Err(why) => {
            common::say_skipped(&format!("test_save_load_large_string_attribute: {why}"));
            return;
        }
    };
    let path = dir.path().join("large_string.pt");
    {
        let x = Bytes::from(vec![b'x'; LEN]);
        let root = object(
            "__torch__.Model",
            vec![
                ("training", IValue::Bool(true)),
                ("_is_full_backward_hook", IValue::None),
                ("x", IValue::String(Str(x))),
            ],
        );
        let m = module_from_source(&[("__torch__", MODEL)], root).unwrap();
        save(&m, &path, &ExtraFilesMap::new(), &SaveOptions::default()).unwrap();
    }
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size > LEN as u64, "archive holds the string");
    let loaded = ptconform::jit::load(&path, None, None).unwrap();
    let IValue::String(s) = loaded.root.attribute("x").unwrap() else {
        panic!("x is not a string")
    };
    // forward() would return len(self.x) + i.numel() with i = torch.ones(0).
    assert_eq!(s.len(), LEN);
    assert_eq!(&s.as_bytes()[..4], b"xxxx");
    assert_eq!(s.as_bytes()[LEN - 1], b'x');
    // The archive is a real zip64 archive (an independent reader agrees).
    let z = zip::ZipArchive::with_config(
        zip::read::Config {
            archive_offset: zip::read::ArchiveOffset::Known(0),
        },
        std::fs::File::open(&path).unwrap(),
    )
    .unwrap();
    let data_pkl = (0..z.len())
        .map(|i| z.name_for_index(i).unwrap().unwrap().to_string())
        .find(|n| n.ends_with("data.pkl"))
        .unwrap();
    drop(z);
    let mut z = zip::ZipArchive::with_config(
        zip::read::Config {
            archive_offset: zip::read::ArchiveOffset::Known(0),
        },
        std::fs::File::open(&path).unwrap(),
    )
    .unwrap();
    assert!(z.by_name(&data_pkl).unwrap().size() > LEN as u64);
    let peak = peak_rss_bytes();
    eprintln!(
        "large string: {} byte string, archive {size} bytes, peak RSS {} MiB ({:.2}x the string)",
        LEN,
        peak >> 20,
        peak as f64 / LEN as f64
    );
    // One copy of the string plus bookkeeping (the performance issue's bound: 1.25x);
    // PyTorch's test demands 60 GB.
    assert!(
        peak <= LEN as u64 * 5 / 4,
        "peak RSS {peak} is more than 1.25x the string"
    );
}
