//! The cargo-fuzz targets. Each `fuzz_targets/<name>.rs` is one line over
//! [`ptconform_gen::fuzz_support`], where the targets are listed once
//! ([`TARGETS`](ptconform_gen::fuzz_support::TARGETS)) and run under `cargo test` too
//! (`tests/generator/fuzz_targets.rs`). The tests here keep every other list of targets (this
//! crate's binaries, `.ci/fuzz`, the ClusterFuzzLite build, the README) equal to it.

// Every target links this crate, so this is their allocator (see the feature's note in
// Cargo.toml).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// libFuzzer's custom mutator for a load target: half of the mutations are structure-aware
/// ([`ptconform_gen::fuzz_support::structured_mutation`]: a change inside one record, the
/// container repacked), the other half libFuzzer's own byte mutations.
/// `PTCONFORM_NO_CUSTOM_MUTATOR=1` leaves every mutation to libFuzzer.
#[macro_export]
macro_rules! structure_aware_mutator {
    () => {
        libfuzzer_sys::fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
            if seed % 2 == 0
                && std::env::var_os("PTCONFORM_NO_CUSTOM_MUTATOR").is_none()
                && let Some(m) =
                    ptconform_gen::fuzz_support::structured_mutation(&data[..size], seed)
                && m.len() <= max_size
            {
                data[..m.len()].copy_from_slice(&m);
                return m.len();
            }
            libfuzzer_sys::fuzzer_mutate(data, size, max_size)
        });
    };
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use ptconform_gen::fuzz_support::TARGETS;

    fn read(rel: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn names() -> Vec<&'static str> {
        TARGETS.iter().map(|(name, _)| *name).collect()
    }

    /// The `[[bin]]` names of this crate's manifest, in order.
    fn binaries() -> Vec<String> {
        let manifest = read("Cargo.toml");
        let mut out = Vec::new();
        let mut in_bin = false;
        for line in manifest.lines() {
            let line = line.trim();
            if line.starts_with('[') {
                in_bin = line == "[[bin]]";
            } else if in_bin && let Some(v) = line.strip_prefix("name = ") {
                out.push(v.trim_matches('"').to_string());
            }
        }
        out
    }

    #[test]
    fn each_target_is_a_binary_with_a_one_line_wrapper() {
        assert_eq!(binaries(), names(), "fuzz/Cargo.toml [[bin]] names");
        for name in names() {
            let source = read(&format!("fuzz_targets/{name}.rs"));
            assert!(
                source.contains(&format!("ptconform_gen::fuzz_support::{name}(data)")),
                "fuzz_targets/{name}.rs does not call fuzz_support::{name}"
            );
        }
    }

    #[test]
    fn ci_and_clusterfuzzlite_run_the_binaries_cargo_fuzz_lists() {
        // Both scripts take the list from `cargo fuzz list` (this manifest's binaries),
        // so no second list can drift.
        for script in ["../.ci/fuzz", "../.clusterfuzzlite/build.sh"] {
            let text = read(script);
            assert!(
                text.contains("cargo fuzz list"),
                "{script} must use `cargo fuzz list`"
            );
            for name in names() {
                assert!(
                    !text.contains(name),
                    "{script} names {name}: use `cargo fuzz list`"
                );
            }
        }
    }

    #[test]
    fn the_readme_lists_every_target() {
        let readme = read("../README.md");
        let section = readme
            .split("\n## Fuzzing\n")
            .nth(1)
            .expect("README has a Fuzzing section");
        let intro = section.split("\n\n").next().unwrap();
        let listed: Vec<&str> = intro
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|w| w.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            .collect();
        assert_eq!(listed, names(), "README Fuzzing paragraph's target list");
    }
}
