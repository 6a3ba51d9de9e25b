//! Every fuzz target under plain `cargo test`: its seed corpus (`corpus/<target>/`, if
//! any), every crash ever found (kept there as regression inputs), and a few hundred
//! deterministic random inputs.

use crate::common;

use ptconform::fuzz_support::TARGETS;

/// Random inputs per target (deterministic: splitmix64 from the target's index).
const RANDOM_INPUTS: u64 = 300;

fn corpus_inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = common::repo().join("corpus").join(target);
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    v.sort();
    v
}

#[test]
fn every_fuzz_target_survives_its_corpus_and_random_inputs() {
    for (k, (name, target)) in TARGETS.iter().enumerate() {
        let seeds = corpus_inputs(name);
        for (path, data) in &seeds {
            target(data);
            let _ = path;
        }
        for i in 0..RANDOM_INPUTS {
            let len = (i as usize * 37) % 3000;
            let data = ptconform::generator::seed_bytes(k as u64, i, len);
            target(&data);
        }
        println!(
            "{name}: {} corpus inputs, {RANDOM_INPUTS} random inputs",
            seeds.len()
        );
    }
}

/// Load targets also get every PyTorch-made archive of the corpus, whole and cut short.
#[test]
fn load_targets_survive_corpus_archives_and_their_truncations() {
    let mut files: Vec<_> = std::fs::read_dir(common::repo().join("corpus"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pt" || x == "ptl"))
        .collect();
    files.sort();
    for p in files {
        let data = std::fs::read(&p).unwrap();
        for cut in [data.len(), data.len() / 2, data.len() * 3 / 4, 100, 30] {
            let d = &data[..cut.min(data.len())];
            ptconform::fuzz_support::zip_load(d);
            ptconform::fuzz_support::flatbuffer_load(d);
        }
    }
}
