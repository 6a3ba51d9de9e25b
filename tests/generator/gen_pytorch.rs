//! Generated modules in real PyTorch: a sample per format loads with `torch.jit.load`
//! and PyTorch reports the facts the generator predicted (skipped visibly without the
//! venv; CI runs it). Also `ptconform gen`: deterministic, with the facts beside each file.

use crate::common;

use ptconform::convert::Format;
use ptconform::generator::{Config, case_from_seed, write_case};

/// Cases per format checked against PyTorch.
const SAMPLE: u64 = 200;
const SEED: u64 = 20261128;

#[test]
fn pytorch_loads_generated_archives_with_the_predicted_facts() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::default();
    let mut paths = Vec::new();
    let mut expected = Vec::new();
    for i in 0..SAMPLE {
        for (format, ext) in [(Format::Zip, "pt"), (Format::Flatbuffer, "ptl")] {
            let case = case_from_seed(SEED, i, &config, format);
            let bytes = write_case(&case, format).unwrap();
            let path = dir.path().join(format!("case{i}.{ext}"));
            std::fs::write(&path, bytes).unwrap();
            paths.push(path);
            expected.push(case.tree.expected_facts());
        }
    }
    let Some(facts) = common::pytorch_facts(&paths) else {
        return;
    };
    let mut agree = 0;
    for ((path, want), got) in paths.iter().zip(&expected).zip(&facts) {
        let got = got
            .as_ref()
            .unwrap_or_else(|e| panic!("PyTorch cannot load {}: {e}", path.display()));
        for key in ["modules", "parameters", "buffers", "extra_files"] {
            assert_eq!(got[key], want[key], "{}: {key}", path.display());
        }
        agree += 1;
    }
    assert_eq!(agree, 2 * SAMPLE as usize);
    println!("PyTorch reports the predicted facts for {agree} generated archives");
}

#[test]
fn gen_cli_is_deterministic_and_writes_the_facts() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    for dir in [&a, &b] {
        let (code, _, err) = common::run_cli(&[
            "gen",
            "--seed",
            "5",
            "--count",
            "4",
            "--out",
            dir.path().to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{err}");
    }
    let mut names: Vec<_> = std::fs::read_dir(a.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    let archives = names
        .iter()
        .filter(|n| !n.to_string_lossy().ends_with(".json"))
        .count();
    assert_eq!(archives, 8, "4 cases x 2 formats");
    let facts = names
        .iter()
        .filter(|n| {
            n.to_string_lossy().ends_with("t.json") || n.to_string_lossy().ends_with("l.json")
        })
        .count();
    assert_eq!(facts, 8, "a facts JSON beside each archive");
    for name in &names {
        let x = std::fs::read(a.path().join(name)).unwrap();
        let y = std::fs::read(b.path().join(name)).unwrap();
        assert!(x == y, "{name:?} differs between two runs with one seed");
    }
    let config = Config::default();
    for i in 0..4 {
        for (format, ext) in [(Format::Zip, "pt"), (Format::Flatbuffer, "ptl")] {
            let path = a.path().join(format!("gen-5-{i}.{ext}"));
            let beside: serde_json::Value =
                serde_json::from_slice(&std::fs::read(format!("{}.json", path.display())).unwrap())
                    .unwrap();
            // The JSON beside equals what inspect prints, and the generator's prediction.
            let (_, out, _) = common::run_cli(&["inspect", "--json", path.to_str().unwrap()]);
            let printed: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(beside, printed);
            let want = case_from_seed(5, i, &config, format).tree.expected_facts();
            for key in ["modules", "parameters", "buffers", "extra_files"] {
                assert_eq!(beside[key], want[key], "{}: {key}", path.display());
            }
        }
    }
    // A config file: absent keys keep their defaults, bad ones are refused.
    let cfg = a.path().join("config.json");
    std::fs::write(&cfg, r#"{"max_depth": 0, "max_extra_files": 0}"#).unwrap();
    let out = a.path().join("small");
    let (code, _, err) = common::run_cli(&[
        "gen",
        "--count",
        "2",
        "--format",
        "zip",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let facts: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("gen-0-0.pt.json")).unwrap()).unwrap();
    assert_eq!(
        facts["modules"].as_array().unwrap().len(),
        1,
        "max_depth 0: the root only"
    );
    std::fs::write(&cfg, r#"{"no_such_key": 1}"#).unwrap();
    let (code, _, err) = common::run_cli(&[
        "gen",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("no_such_key"), "{err}");
}

#[test]
fn gen_cli_writes_mobile_zips_of_the_flatbuffer_cases() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = common::run_cli(&[
        "gen",
        "--seed",
        "7",
        "--count",
        "6",
        "--format",
        "mobile-zip",
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let config = Config::default();
    for i in 0..6 {
        let path = dir.path().join(format!("gen-7-{i}.mobile.pt"));
        let bytes = std::fs::read(&path).unwrap();
        let (code, out, err) = common::run_cli(&["check", path.to_str().unwrap()]);
        assert_eq!(code, 0, "{out}{err}");
        let case = case_from_seed(7, i, &config, Format::Flatbuffer);
        // The module is the flatbuffer case's, and so is the bytecode.
        let beside: serde_json::Value =
            serde_json::from_slice(&std::fs::read(format!("{}.json", path.display())).unwrap())
                .unwrap();
        let want = case.tree.expected_facts();
        for key in ["modules", "parameters", "buffers", "extra_files"] {
            assert_eq!(beside[key], want[key], "{}: {key}", path.display());
        }
        let fb =
            ptconform::flatbuffer::write_flatbuffer(&case.mobile, &Default::default()).unwrap();
        let mut fb_info = ptconform::jit::get_model_info(&fb).unwrap();
        let zip_info = ptconform::jit::get_model_info(&bytes).unwrap();
        assert_eq!(
            zip_info.bytecode_version, 8,
            "a mobile zip's bytecode version"
        );
        fb_info.bytecode_version = 8;
        fb_info.operator_version = zip_info.operator_version;
        assert_eq!(zip_info, fb_info, "{}", path.display());
    }
}
