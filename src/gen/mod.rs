//! Generators of random modules (wasm-smith style): one generator driven by
//! `arbitrary::Unstructured` and a [`Config`], serving fuzzing and property tests alike.
//!
//! * [`tree`]: module trees, attributes, tensors, colliding names, extra files;
//! * [`method`]: `forward` bodies as TorchScript source and mobile bytecode, with an
//!   evaluator that predicts their output;
//! * [`compare`]: model equality for the round-trip properties.

pub mod compare;
pub mod config;
pub mod method;
pub mod tree;

use std::path::Path;

use arbitrary::Unstructured;

pub use config::Config;

use crate::convert::Format;
use crate::error::{Error, Result};
use crate::flatbuffer::{MobileModule, WriteOptions, write_flatbuffer};
use crate::zip_archive::save::{SaveOptions, save_to_buffer};
use tree::{Tree, gen_tree};

/// One generated case: the module tree (with what it must look like to a loader) and
/// the mobile module to write as a flatbuffer.
pub struct Case {
    pub tree: Tree,
    pub mobile: MobileModule,
}

/// Generates one case for `format` (a flatbuffer case leaves out what a flatbuffer
/// cannot hold).
pub fn generate(u: &mut Unstructured, config: &Config, format: Format) -> arbitrary::Result<Case> {
    let tree = gen_tree(u, config, format == Format::Flatbuffer)?;
    let mut mobile = MobileModule::new(tree.module.clone(), Vec::new());
    mobile.extra_files = tree
        .extra_files
        .iter()
        .map(|(n, c)| (n.clone(), c.clone()))
        .collect();
    Ok(Case { tree, mobile })
}

/// The generator's input bytes for case `index` of `seed` (splitmix64): the same seed
/// always gives the same cases.
pub fn seed_bytes(seed: u64, index: u64, len: usize) -> Vec<u8> {
    let mut state = seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend((z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Case `index` of `seed`.
pub fn case_from_seed(seed: u64, index: u64, config: &Config, format: Format) -> Case {
    let bytes = seed_bytes(seed, index, 16 * 1024);
    let mut u = Unstructured::new(&bytes);
    generate(&mut u, config, format).expect("the generator is total")
}

/// The archive bytes of a case in `format`.
pub fn write_case(case: &Case, format: Format) -> Result<Vec<u8>> {
    match format {
        Format::Zip => Ok(save_to_buffer(
            &case.tree.module,
            &case.tree.extra_files,
            &SaveOptions::default(),
        )?
        .to_vec()),
        Format::Flatbuffer => write_flatbuffer(&case.mobile, &WriteOptions::default()),
    }
}

/// `ptconform gen`: writes `count` cases per format into `out`, each with the JSON that
/// `inspect --json` must print for it beside it (`NAME.json`). Returns the paths written.
pub fn write_cases(
    seed: u64,
    count: u64,
    out: &Path,
    formats: &[Format],
    config: &Config,
) -> Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out.display().to_string(), e))?;
    let mut written = Vec::new();
    for i in 0..count {
        for &format in formats {
            let case = case_from_seed(seed, i, config, format);
            let bytes = write_case(&case, format)?;
            let ext = if format == Format::Zip { "pt" } else { "ptl" };
            let path = out.join(format!("gen-{seed}-{i}.{ext}"));
            // The facts as ptconform's reader reports them for the written bytes; the
            // tests check them against the generator's own prediction and PyTorch.
            let facts = crate::inspect::facts_of_bytes(bytes::Bytes::from(bytes.clone()), None)?;
            crate::flatbuffer::write_file_atomically(&path, &bytes)?;
            let json = serde_json::to_string_pretty(&facts).expect("facts serialize");
            let json_path = out.join(format!("gen-{seed}-{i}.{ext}.json"));
            crate::flatbuffer::write_file_atomically(&json_path, format!("{json}\n").as_bytes())?;
            written.push(path);
        }
    }
    Ok(written)
}
