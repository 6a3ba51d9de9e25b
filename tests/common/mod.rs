//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod forward;

use std::io::Write;
use std::path::{Path, PathBuf};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `corpus/*.pt` (PyTorch-made), sorted. Panics if the corpus is empty: it is
/// committed, so an empty corpus is a broken checkout, not a reason to skip.
pub fn corpus_archives() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(repo().join("corpus"))
        .expect("corpus/ exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pt"))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "corpus/ holds no .pt archives");
    v
}

/// Every PyTorch 2.15 `.pt` of the corpus, subfolders included (`corpus/torch-*/` holds
/// other releases and PyTorch's own crashes: not 2.15 writer output), sorted.
pub fn corpus_2_15_archives() -> Vec<PathBuf> {
    let v: Vec<PathBuf> = archives_under(&repo().join("corpus"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "pt"))
        .filter(|p| {
            !p.components().any(|c| {
                c.as_os_str()
                    .to_str()
                    .is_some_and(|n| n.starts_with("torch-"))
            })
        })
        .collect();
    assert!(!v.is_empty(), "corpus/ holds no .pt archives");
    v
}

pub fn corpus(name: &str) -> PathBuf {
    repo().join("corpus").join(name)
}

/// The PyTorch 2.15 interpreter, if installed. Tests that need PyTorch call this and
/// return early with a printed reason when it is absent; under `CI=true` absence is a
/// failure, because CI must run them.
pub fn torch_python() -> Option<PathBuf> {
    static FOUND: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    let found = FOUND.get_or_init(|| {
        let candidate = std::env::var_os("PTCONFORM_TORCH_PYTHON")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| {
                    PathBuf::from(h).join(".cache/ptconform/venv-torch-2.15.0/bin/python")
                })
            })
            .filter(|p| p.exists())
            .ok_or("PyTorch 2.15 venv not found (run `bash oracle/setup.sh` or set PTCONFORM_TORCH_PYTHON)")?;
        // A file at the path is not enough: it must be PyTorch 2.15.0 itself.
        let out = std::process::Command::new(&candidate)
            .args(["-c", "import torch; print(torch.__version__)"])
            .output()
            .map_err(|e| format!("{}: {e}", candidate.display()))?;
        let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !out.status.success() || version.split('+').next() != Some("2.15.0") {
            return Err(format!(
                "{} is not PyTorch 2.15.0 (it reports {version:?}{})",
                candidate.display(),
                if out.status.success() { "" } else { ", import failed" }
            ));
        }
        Ok(candidate)
    });
    match found {
        Ok(p) => Some(p.clone()),
        Err(why) => {
            if is_ci() {
                panic!("{why}: under CI the PyTorch tests must run");
            }
            say_skipped(why);
            None
        }
    }
}

/// Whether this is a CI run: `CI` set to anything but empty, `0` or `false` (GitHub
/// Actions and most CIs set `CI=true`, some `CI=1`).
pub fn is_ci() -> bool {
    std::env::var("CI")
        .is_ok_and(|v| !matches!(v.to_ascii_lowercase().as_str(), "" | "0" | "false"))
}

/// Prints `SKIPPED: why` where `cargo test` shows it: straight to the process's stderr,
/// past the test harness's output capture (`.ci/run` counts these lines).
pub fn say_skipped(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED: {why}");
}

/// Rebuilds an archive with the `zip` crate (stored entries), letting `edit` replace or
/// drop records and append new ones. Used to craft malformed inputs from real archives.
pub fn rebuild(
    src: &Path,
    edit: impl Fn(&str, Vec<u8>) -> Option<Vec<u8>>,
    extra: &[(&str, &[u8])],
) -> Vec<u8> {
    use std::io::Read;
    let mut zin = zip::ZipArchive::with_config(
        zip::read::Config {
            archive_offset: zip::read::ArchiveOffset::Known(0),
        },
        std::fs::File::open(src).unwrap(),
    )
    .unwrap();
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..zin.len() {
        let mut f = zin.by_index(i).unwrap();
        let name = f.name().unwrap().to_string();
        let mut data = Vec::new();
        f.read_to_end(&mut data).unwrap();
        if let Some(d) = edit(&name, data) {
            out.start_file(name, opts).unwrap();
            out.write_all(&d).unwrap();
        }
    }
    for (name, data) in extra {
        out.start_file(*name, opts).unwrap();
        out.write_all(data).unwrap();
    }
    out.finish().unwrap().into_inner()
}

pub fn run_cli(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ptconform"))
        .args(args)
        .output()
        .expect("run ptconform");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asks real PyTorch (through `oracle/peer/facts.py --worker`, one process for all files)
/// what `torch.jit.load` sees in each archive. `None` when PyTorch is absent (skipped).
pub fn pytorch_facts(paths: &[PathBuf]) -> Option<Vec<Result<serde_json::Value, String>>> {
    Some(pytorch_facts_with(&torch_python()?, paths))
}

/// [`pytorch_facts`] with a given release's python.
pub fn pytorch_facts_with(
    python: &Path,
    paths: &[PathBuf],
) -> Vec<Result<serde_json::Value, String>> {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(python)
        .arg(repo().join("oracle/peer/facts.py"))
        .arg("--worker")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the PyTorch worker");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut out = Vec::new();
    for p in paths {
        let req = serde_json::json!({"path": p, "map_location": null});
        writeln!(stdin, "{req}").unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        stdout.read_line(&mut line).expect("worker answers");
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad worker line {line:?}: {e}"));
        if v["ok"].as_bool() == Some(true) {
            out.push(Ok(v["facts"].clone()));
        } else {
            out.push(Err(v["error"].to_string()));
        }
    }
    drop(stdin);
    let _ = child.wait();
    out
}

/// Runs a Python script with PyTorch (`python -c SCRIPT ARGS...`), asserts it succeeds
/// and returns its stdout; `None` (skipped, said on stderr) without the venv.
pub fn torch_script(script: &str, args: &[&std::ffi::OsStr]) -> Option<String> {
    let out = std::process::Command::new(torch_python()?)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `archive` (a zip) with a `bytecode.pkl` record added: a mobile zip as far as the
/// format checks go.
pub fn mobile_zip(archive: &Path) -> Vec<u8> {
    let prefix = ptconform::zip_archive::ZipArchiveReader::open(archive)
        .unwrap()
        .prefix()
        .to_string();
    let bytecode = format!("{prefix}/bytecode.pkl");
    rebuild(archive, |_, d| Some(d), &[(&bytecode, &b"\x80\x02)."[..])])
}

/// `src` rebuilt with the record whose name ends with `record_suffix` replaced by `data`.
pub fn replace_record(src: &std::path::Path, record_suffix: &str, data: Vec<u8>) -> Vec<u8> {
    rebuild(
        src,
        |name, old| {
            Some(if name.ends_with(record_suffix) {
                data.clone()
            } else {
                old
            })
        },
        &[],
    )
}

/// The cross-version corpus directories (`corpus/torch-<version>/`), sorted.
pub fn release_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(repo().join("corpus"))
        .expect("corpus/ exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("torch-") && n != "torch-crashes")
        })
        .collect();
    dirs.sort();
    assert!(
        !dirs.is_empty(),
        "no cross-version corpus under corpus/torch-*/"
    );
    dirs
}

/// The release a cross-version directory holds (`corpus/torch-2.0.1` → `2.0.1`).
pub fn release_of(dir: &Path) -> String {
    dir.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("torch-"))
        .expect("a corpus/torch-<version> directory")
        .to_string()
}

/// The python of an older release's venv (`bash oracle/setup.sh VERSION`), if made.
/// CI installs only 2.15 (the others do not fit its time), so absence is a skip, said.
pub fn older_torch_python(version: &str) -> Option<PathBuf> {
    let p = PathBuf::from(std::env::var_os("HOME")?)
        .join(format!(".cache/ptconform/venv-torch-{version}/bin/python"));
    if p.exists() {
        Some(p)
    } else {
        say_skipped(&format!(
            "PyTorch {version}: its venv is not made (run `bash oracle/setup.sh {version}`)"
        ));
        None
    }
}

/// Every `.pt` / `.ptl` file under `dir`, recursively, sorted.
pub fn archives_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "pt" || x == "ptl") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// A growth check in place of a wall-clock limit: times `f(small)` and `f(large)` (best
/// of three each, so a busy machine slows both) and fails when the large run costs more
/// than `max_ratio` times the small one, plus 50 ms of timer noise. Linear work at
/// `large = 10 * small` costs about 10x; the quadratic blow-ups these tests guard
/// against cost 100x. Machine speed cancels out.
pub fn assert_growth<R>(
    what: &str,
    small: usize,
    large: usize,
    max_ratio: f64,
    f: impl Fn(usize) -> R,
) {
    let best = |n: usize| {
        (0..3)
            .map(|_| {
                let t = std::time::Instant::now();
                std::hint::black_box(f(n));
                t.elapsed()
            })
            .min()
            .expect("three runs")
    };
    let (ts, tl) = (best(small), best(large));
    let limit = ts.mul_f64(max_ratio) + std::time::Duration::from_millis(50);
    assert!(
        tl <= limit,
        "{what}: size {large} took {tl:?}, size {small} took {ts:?}: more than {max_ratio}x"
    );
}
