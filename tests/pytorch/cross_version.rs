//! The cross-version corpus: `oracle/makers/make_corpus.py` run under older PyTorch releases
//! (`corpus/torch-<version>/`). ptconform must read every file with the facts that
//! version's PyTorch reported, and `check` must accept each file of the directory's top
//! level (PyTorch made and loaded every one of them; `quirks/` and `flatbuffer_bugs/`
//! hold the ones with findings, checked below by rule).

use crate::common;

const KEYS: &[&str] = &[
    "format",
    "modules",
    "parameters",
    "buffers",
    "extra_files",
    "code_files",
    "version",
    "prefix",
    "module_info",
];

fn subset(v: &serde_json::Value) -> serde_json::Value {
    serde_json::Value::Object(
        KEYS.iter()
            .filter_map(|k| v.get(*k).map(|x| (k.to_string(), x.clone())))
            .collect(),
    )
}

#[test]
fn older_pytorch_archives_read_with_their_facts() {
    for dir in common::release_dirs() {
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "pt" || x == "ptl"))
            .collect();
        files.sort();
        assert!(
            files.len() >= 20,
            "{}: only {} archives",
            dir.display(),
            files.len()
        );
        for file in &files {
            let name = file.file_name().unwrap().to_str().unwrap().to_string();
            let json = if name.ends_with(".ptl") {
                dir.join(format!("{name}.json"))
            } else {
                file.with_extension("json")
            };
            let theirs: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
            let (code, out, err) = common::run_cli(&["inspect", "--json", file.to_str().unwrap()]);
            assert_eq!(code, 0, "{}: {err}", file.display());
            let ours: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(subset(&ours), subset(&theirs), "{}", file.display());
            // A file PyTorch writes and loads must check clean.
            let (code, out, _) = common::run_cli(&["check", file.to_str().unwrap()]);
            assert_eq!(code, 0, "{}: check found {out}", file.display());
            assert!(
                out.lines().all(|l| l.ends_with(": ok")),
                "{}: check found {out}",
                file.display()
            );
        }
        println!("{}: {} archives agree", dir.display(), files.len());
    }
}

/// Each release's archives re-save byte for byte: the writer profile is read off the
/// archive (2.0 writes no `byteorder` and no serialization id). The exceptions are the
/// ones the 2.15 corpus has too, each with PyTorch's own behaviour: flatbuffers whose
/// merged classes `torch.jit.load` crashes on (refused, rule `flatbuffer-object-types`),
/// and the NUL-named extra file (PyTorch pads for the name it does not store).
#[test]
fn every_release_archive_roundtrips_byte_identical() {
    let mut failures = Vec::new();
    for dir in common::release_dirs() {
        let (mut identical, mut exceptions) = (0, 0);
        let files = common::archives_under(&dir);
        for file in &files {
            let rel = file
                .strip_prefix(&dir)
                .unwrap()
                .to_string_lossy()
                .to_string();
            let bytes = bytes::Bytes::from(std::fs::read(file).unwrap());
            match ptconform::roundtrip::roundtrip(bytes) {
                Ok(rt) if rt.difference.is_none() => identical += 1,
                Ok(rt)
                    if rel == "quirks/extra_files_nul_name.pt"
                        && rt.difference.as_ref().is_some_and(|d| {
                            d.record == "local header of archive/extra/nul" && d.offset == 28
                        }) =>
                {
                    exceptions += 1
                }
                Err(ptconform::Error::Format(e))
                    if rel.starts_with("flatbuffer_bugs/")
                        && e.rule == "flatbuffer-object-types" =>
                {
                    exceptions += 1
                }
                Ok(rt) => failures.push(format!("{}: {:?}", file.display(), rt.difference)),
                Err(e) => failures.push(format!("{}: {e}", file.display())),
            }
        }
        println!(
            "PyTorch {}: {identical} of {} archives re-save byte for byte, {exceptions} known exceptions",
            common::release_of(&dir),
            files.len()
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The names of the records a zip ends with, from `constants.pkl` on: what the writer
/// adds after the module, which is what differs between releases (the module's own
/// records differ with the scenario: 2.0 lacks dtypes that 2.15's `dtypes` saves, and
/// library modules print other code files).
fn record_names(bytes: &[u8]) -> Vec<String> {
    let names: Vec<String> =
        ptconform::zip_archive::ZipArchiveReader::from_bytes(bytes::Bytes::copy_from_slice(bytes))
            .unwrap()
            .records()
            .iter()
            .filter_map(|r| r.name().map(str::to_string))
            .collect();
    let start = names.iter().position(|n| n == "constants.pkl").unwrap_or(0);
    names[start..].to_vec()
}

/// `--as-pytorch V` on a 2.15 archive writes the records release V writes for the same
/// scenario, in V's order; and V's archive re-saved as 2.15 has 2.15's records.
#[test]
fn as_pytorch_writes_each_release_layout() {
    use ptconform::release::Release;
    let mut compared = 0;
    for dir in common::release_dirs() {
        let version = common::release_of(&dir);
        let release: Release = version.parse().unwrap();
        for theirs in std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()) {
            if theirs.extension().is_none_or(|x| x != "pt") {
                continue;
            }
            let latest = common::corpus(theirs.file_name().unwrap().to_str().unwrap());
            if !latest.exists() {
                continue;
            }
            let latest = std::fs::read(&latest).unwrap();
            let theirs_bytes = std::fs::read(&theirs).unwrap();
            let as_release =
                ptconform::roundtrip::roundtrip_as(latest.clone().into(), Some(release)).unwrap();
            assert_eq!(
                record_names(&as_release.rewritten),
                record_names(&theirs_bytes),
                "{} as {version}",
                theirs.display()
            );
            let as_latest =
                ptconform::roundtrip::roundtrip_as(theirs_bytes.into(), Some(Release::LATEST))
                    .unwrap();
            assert_eq!(
                record_names(&as_latest.rewritten),
                record_names(&latest),
                "{} as 2.15",
                theirs.display()
            );
            compared += 1;
        }
    }
    assert!(compared >= 100, "only {compared} scenario pairs");
    println!("{compared} scenario archives compared across releases");
}

/// Generated cases written `--as-pytorch V` load in release V (each older release whose
/// venv is made; CI has only 2.15) with the facts the generator predicted.
#[test]
fn generated_cases_as_each_release_load_there() {
    use ptconform::convert::Format;
    use ptconform::generator::{Config, Output, case_from_seed, write_output};
    const CASES: u64 = 100;
    for dir in common::release_dirs() {
        let version = common::release_of(&dir);
        let Some(python) = common::older_torch_python(&version) else {
            continue;
        };
        let config = Config {
            release: version.parse().unwrap(),
            ..Config::default()
        };
        let tmp = tempfile::tempdir().unwrap();
        let mut paths = Vec::new();
        let mut expected = Vec::new();
        let outputs = [
            Output::Format(Format::Zip),
            Output::Format(Format::Flatbuffer),
            Output::MobileZip,
        ];
        for i in 0..CASES {
            for output in outputs {
                let case = case_from_seed(71, i, &config, output.case_format());
                let bytes = write_output(&case, output).unwrap();
                let path = tmp.path().join(format!("case{i}.{}", output.extension()));
                std::fs::write(&path, bytes).unwrap();
                paths.push(path);
                expected.push(case.tree.expected_facts());
            }
        }
        let facts = common::pytorch_facts_with(&python, &paths);
        let mut failures = Vec::new();
        for ((path, want), got) in paths.iter().zip(&expected).zip(&facts) {
            match got {
                Err(e) => failures.push(format!("{}: PyTorch {version}: {e}", path.display())),
                Ok(got) => {
                    for key in ["modules", "parameters", "buffers", "extra_files"] {
                        if got[key] != want[key] {
                            failures.push(format!("{}: {key} differs", path.display()));
                        }
                    }
                }
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {}:\n{}",
            failures.len(),
            paths.len(),
            failures.join("\n")
        );
        println!(
            "PyTorch {version}: {} generated cases per format load with the predicted facts",
            CASES
        );
    }
}

/// The dtype table (`Release::has_dtype`) against each release's corpus: every dtype a
/// release's `dtypes` scenario saved and loaded back is one the table gives it, and
/// every dtype 2.15's scenario has that an older release's lacks, the table denies it.
#[test]
fn the_dtype_table_matches_each_release_corpus() {
    use ptconform::model::ScalarType;
    use ptconform::release::Release;
    let dtypes_of = |json: &std::path::Path| -> std::collections::BTreeSet<String> {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
        v["buffers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["dtype"].as_str().unwrap().to_string())
            .collect()
    };
    let latest = dtypes_of(&common::corpus("dtypes.json"));
    assert!(latest.len() >= 40, "{latest:?}");
    for name in &latest {
        let d = ScalarType::from_name(name).unwrap();
        assert!(Release::LATEST.has_dtype(d), "{name}");
    }
    for dir in common::release_dirs() {
        let version = common::release_of(&dir);
        let release: Release = version.parse().unwrap();
        let theirs = dtypes_of(&dir.join("dtypes.json"));
        for name in &theirs {
            let d = ScalarType::from_name(name).unwrap();
            assert!(release.has_dtype(d), "PyTorch {version} saves {name}");
        }
        for name in latest.difference(&theirs) {
            let d = ScalarType::from_name(name).unwrap();
            assert!(
                !release.has_dtype(d),
                "PyTorch {version} cannot save {name}"
            );
        }
    }
}

/// `check --for-pytorch V` against release V itself, on the 2.15 corpus: every file it
/// says V cannot load (rule `release-dtype`), V fails to load, and every file V fails
/// on for a dtype (its unpickler's "unknown torch global ...Storage", or its flatbuffer
/// loader's error on an unknown scalar type) it flagged. Each older release whose venv
/// is made; CI has only 2.15.
#[test]
fn check_for_pytorch_predicts_what_each_release_cannot_load() {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(common::repo().join("corpus"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pt" || x == "ptl"))
        .collect();
    files.sort();
    for dir in common::release_dirs() {
        let version = common::release_of(&dir);
        let Some(python) = common::older_torch_python(&version) else {
            continue;
        };
        let release = version.parse().unwrap();
        let loads = common::pytorch_facts_with(&python, &files);
        let (mut flagged, mut other_failures) = (0, 0);
        for (file, load) in files.iter().zip(&loads) {
            let predicted = ptconform::check::check_file_for(file, release)
                .unwrap()
                .iter()
                .any(|v| v.rule == "release-dtype");
            match load {
                Ok(_) => assert!(!predicted, "{}: PyTorch {version} loads it", file.display()),
                Err(e) => {
                    // Unknown scalar types reach the flatbuffer loader as a device
                    // lookup, which asks CUDA ("Found no NVIDIA driver").
                    let dtype_failure = e.contains("Storage'") || e.contains("NVIDIA driver");
                    if dtype_failure {
                        assert!(predicted, "{}: PyTorch {version}: {e}", file.display());
                    } else if !predicted {
                        other_failures += 1;
                    }
                    if predicted {
                        flagged += 1;
                    }
                }
            }
        }
        println!(
            "PyTorch {version}: {flagged} of {} files flagged and refused; {other_failures} refused for other reasons",
            files.len()
        );
    }
}

/// What each older release writes, against its profile: generated cases (as that
/// release) are loaded and re-saved three ways (`torch.jit.save`, flatbuffer,
/// `_save_for_lite_interpreter`) by the release and by 2.15 (`oracle/peer/resave.py`); the
/// release's bytes must be what ptconform writes from 2.15's file `--as-pytorch` that
/// release. Each older release whose venv is made; CI has only 2.15.
#[test]
fn each_release_writes_what_its_profile_says() {
    use ptconform::convert::Format;
    use ptconform::generator::{Config, Output, case_from_seed, write_output};
    const CASES: u64 = 100;
    let Some(latest) = common::torch_python() else {
        return;
    };
    let resave = |python: &std::path::Path, src: &std::path::Path, out: &std::path::Path| {
        let status = std::process::Command::new(python)
            .arg(common::repo().join("oracle/peer/resave.py"))
            .arg(src)
            .arg(out)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "oracle/peer/resave.py under {}",
            python.display()
        );
    };
    for dir in common::release_dirs() {
        let version = common::release_of(&dir);
        let Some(python) = common::older_torch_python(&version) else {
            continue;
        };
        let release: ptconform::release::Release = version.parse().unwrap();
        let config = Config {
            release,
            ..Config::default()
        };
        let tmp = tempfile::tempdir().unwrap();
        let cases = tmp.path().join("cases");
        std::fs::create_dir(&cases).unwrap();
        for i in 0..CASES {
            for output in [
                Output::Format(Format::Zip),
                Output::Format(Format::Flatbuffer),
            ] {
                let case = case_from_seed(83, i, &config, output.case_format());
                let bytes = write_output(&case, output).unwrap();
                std::fs::write(cases.join(format!("c{i}.{}", output.extension())), bytes).unwrap();
            }
        }
        let (theirs, ours) = (tmp.path().join("theirs"), tmp.path().join("latest"));
        resave(&python, &cases, &theirs);
        resave(&latest, &cases, &ours);
        let mut compared = std::collections::BTreeMap::<String, usize>::new();
        for entry in std::fs::read_dir(&theirs).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let Ok(latest_bytes) = std::fs::read(ours.join(&name)) else {
                panic!("{name}: PyTorch {version} writes it, 2.15 does not");
            };
            let want = std::fs::read(entry.path()).unwrap();
            let got = ptconform::roundtrip::roundtrip_as(latest_bytes.into(), Some(release))
                .unwrap()
                .rewritten;
            assert!(
                got == want,
                "{name}: PyTorch {version} wrote other bytes than its profile gives"
            );
            *compared
                .entry(name.rsplit('.').next().unwrap().to_string())
                .or_default() += 1;
        }
        assert!(
            compared.get("zip").copied().unwrap_or(0) >= CASES as usize,
            "{compared:?}"
        );
        println!("PyTorch {version}: byte for byte as its profile says: {compared:?}");
    }
}
